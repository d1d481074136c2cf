"""The HTTP API: ``create_app(workspace, settings)`` builds it; nothing happens at import."""

from datawheel.api.app import create_app

__all__ = ["create_app"]
