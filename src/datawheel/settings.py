"""Service settings: one typed object, built by the CLI or the app factory, never at import time.

Keys come from ``DATAWHEEL_APP_KEY`` / ``DATAWHEEL_ADMIN_KEY`` / ``DATAWHEEL_ANNOTATOR_KEY`` when set, else
from the workspace's ``secrets.json`` (written by ``init`` with mode 0600).
Placeholder keys are refused: a guessable key is worse than none.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from datawheel.errors import ConfigError

PLACEHOLDERS = {"changeme", "change-me", "secret", "password", "admin", "test", "key", "xxx"}


class Settings(BaseSettings):
    # hide_input_in_errors: a refused key must never be printed, not even in a traceback
    model_config = SettingsConfigDict(env_prefix="DATAWHEEL_", extra="ignore", hide_input_in_errors=True)

    app_key: str = ""
    admin_key: str = ""
    annotator_key: str = ""
    #: largest request body accepted, in bytes
    max_body_bytes: int = 2 * 1024 * 1024
    #: start a cycle after this many new labelled records (0 = only on request)
    auto_cycle: int = 0
    #: seconds between checks for a champion promoted by another process
    refresh_interval: float = 1.0
    #: serve the champion with PyTorch or with onnxruntime (exported and checked on first use)
    runtime: Literal["torch", "onnx"] = "torch"
    #: run cycles in a child process (the default) or in a thread of the server (tests)
    cycle_in_subprocess: bool = True

    @field_validator("app_key", "admin_key", "annotator_key")
    @classmethod
    def _not_placeholder(cls, key: str) -> str:
        if key and (key.lower() in PLACEHOLDERS or len(key) < 16):
            raise ValueError("must be a real secret of at least 16 characters, not a placeholder")
        return key


def load_settings(**values: object) -> Settings:
    """Settings from the environment (and ``values``); a bad one is a ConfigError naming the variable only."""
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"DATAWHEEL_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
                             for e in exc.errors(include_input=False))
        raise ConfigError(problems) from None
