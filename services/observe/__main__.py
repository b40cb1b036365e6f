"""Entry point: ``python -m services.observe`` serves the local trace viewer on the OTLP port."""

from urllib.parse import urlparse

import uvicorn

from services.common.config import get_settings
from services.observe.app import create_app

if __name__ == "__main__":
    endpoint = urlparse(get_settings().otel_endpoint)
    uvicorn.run(create_app(), host=endpoint.hostname or "127.0.0.1", port=endpoint.port or 4318,
                log_level="warning")
