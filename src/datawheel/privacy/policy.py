"""The workspace's privacy policy: what to do with each kind of personal data, and per source of record
the consent it needs and how long it may be kept.

It lives in ``WS/policy.toml`` beside the config, so a privacy officer can read
and change it without touching anything else; every change is recorded in the
audit chain (by its sha256) the next time the workspace is opened.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from datawheel.config import config_error
from datawheel.errors import ConfigError

PII_TYPES = ("EMAIL", "PHONE", "CN_ID", "CARD", "IBAN", "IP", "URL_SECRET", "SECRET")
SOURCES = ("interaction", "contribution", "feedback")
Action = Literal["redact", "pseudonymize", "reject"]
ConsentLevel = Literal["none", "analytics", "training"]
POLICY_FILE = "policy.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourcePolicy(_Strict):
    #: the consent a user must have given for a record of this source to be stored at all
    min_consent: ConsentLevel = "none"
    #: days a record of this source is kept; 0 keeps it until the user asks for erasure
    retention_days: int = Field(0, ge=0, le=36500)


def _default_sources() -> dict[str, SourcePolicy]:
    return {"interaction": SourcePolicy(retention_days=365), "contribution": SourcePolicy(min_consent="training"),
            "feedback": SourcePolicy(retention_days=365)}


def _default_pii() -> dict[str, Action]:
    return {"SECRET": "redact", "CN_ID": "redact"}


class Policy(_Strict):
    #: per PII type; types not listed take ``default``
    pii: dict[str, Action] = Field(default_factory=_default_pii)
    default: Action = "redact"
    sources: dict[str, SourcePolicy] = Field(default_factory=_default_sources)
    #: also run Microsoft Presidio's analyzer (names, addresses) where it is installed
    presidio: bool = False

    @field_validator("pii")
    @classmethod
    def _known_types(cls, pii: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(pii) - set(PII_TYPES))
        if unknown:
            raise ValueError(f"unknown PII type {unknown[0]!r}; known types are {', '.join(PII_TYPES)}")
        return pii

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, sources: dict[str, SourcePolicy]) -> dict[str, SourcePolicy]:
        unknown = sorted(set(sources) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown source {unknown[0]!r}; sources are {', '.join(SOURCES)}")
        return {**_default_sources(), **sources}

    def action(self, pii_type: str) -> Action:
        return self.pii.get(pii_type, self.default)

    def source(self, name: str) -> SourcePolicy:
        return self.sources[name]

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()

    def to_toml(self) -> str:
        return tomli_w.dumps(self.model_dump(mode="json"))


def load_policy(root: Path) -> Policy:
    path = Path(root) / POLICY_FILE
    if not path.exists():
        return Policy()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return Policy.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, str(path)) from None
