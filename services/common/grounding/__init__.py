"""Answer text normalization and claim support (grounding): one library used by the output
guardrails at serving time and by the evaluation harness, so both judge an answer the same way."""
