"""The HTTP API: ``create_app(workspace, settings)`` builds it; nothing happens at import.

``create_app`` is imported on first use (PEP 562): the Python client reads its answers with
``api.responses`` and must not pay for the server stack (torch, the store) by importing this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datawheel.api.app import create_app


def __getattr__(name: str) -> Any:
    if name != "create_app":
        raise AttributeError(f"module 'datawheel.api' has no attribute {name!r}")
    return importlib.import_module("datawheel.api.app").create_app


__all__ = ["create_app"]
