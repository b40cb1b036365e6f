"""Operator tools: ``customllm doctor`` (is the platform healthy?) and ``customllm replay``
(re-drive dead-lettered or past messages after a fix).

``offsets`` holds the Kafka offset look-ups both share, ``doctor`` the checks, ``replay`` the
re-driving; the CLI rendering lives in ``services/cli/ops_cmds.py``.
"""
