"""A package so this folder's test_handlers.py does not clash with tests/unit/ingest's
(pytest's default import mode needs unique basenames outside packages)."""
