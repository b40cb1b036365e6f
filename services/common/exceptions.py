"""The project's root exception and the errors shared by every service."""


class CustomLLMError(Exception):
    """Root of every error the project raises on purpose."""


class ContractError(CustomLLMError):
    """A message does not match its topic's JSON Schema."""


class InvalidEvent(CustomLLMError):
    """A consumed message cannot be processed; it goes to the topic's DLQ with this reason.

    ``error_type`` is one of the DLQ record's ``error_type`` values.
    """

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


class ModelUnavailable(CustomLLMError):
    """A packaged model (GGUF, converted weights) cannot be found or loaded."""
