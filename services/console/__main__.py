"""Entry point: ``python -m services.console`` serves the web console with uvicorn."""

from services.common.config import get_settings
from services.console.server import serve

if __name__ == "__main__":
    serve(get_settings())
