"""Entry point: ``python -m services.gateway`` serves the gateway with uvicorn."""

from services.common.config import get_settings
from services.gateway.server import serve

if __name__ == "__main__":
    serve(get_settings())
