"""Prompt templates and the context items they cite: a library shared by the rag worker, the
fine-tuning data builders and the evaluation harness, so all three render the same prompt."""
