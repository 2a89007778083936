"""The REST API: Flask, SQLAlchemy Core, and domain events forwarded to the bridge."""

from api.app import create_app
from api.config import ApiConfig

__all__ = ["ApiConfig", "create_app"]
