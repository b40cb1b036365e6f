"""Entry point: ``python -m services.audit`` runs the audit recorder."""

from services.audit.app import main
from services.common import logs
from services.common.config import get_settings

if __name__ == "__main__":
    settings = get_settings()
    logs.configure(settings.log_level)
    main(settings)
