"""Errors of the local stack launchers."""


class StackError(RuntimeError):
    """A local component could not be prepared, started or stopped; the message says which."""
