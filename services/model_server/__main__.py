"""Entry point: ``python -m services.model_server`` (internal port, API key required)."""

from services.common.config import get_settings
from services.model_server.app import serve

if __name__ == "__main__":
    serve(get_settings())
