"""Request bodies. Strict types: a wrong type is the client's mistake, answered with 422 (answers: responses.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

UserId = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.@:\-]+$")
MetaValue = StrictStr | StrictInt | StrictFloat | StrictBool | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Consent(_Body):
    """Consent per scope; a scope left out is left as it is."""

    training: StrictBool | None = None
    analytics: StrictBool | None = None

    @model_validator(mode="after")
    def _some_scope(self) -> Consent:
        if self.training is None and self.analytics is None:
            raise ValueError("give at least one scope: training or analytics")
        return self

    def scopes(self) -> dict[str, bool]:
        return {k: v for k, v in (("training", self.training), ("analytics", self.analytics)) if v is not None}


class _WithMetadata(_Body):
    metadata: dict[StrictStr, MetaValue] | None = None

    @field_validator("metadata")
    @classmethod
    def _small(cls, meta: dict[str, Any] | None) -> dict[str, Any] | None:
        if meta is None:
            return meta
        if len(meta) > 32:
            raise ValueError("at most 32 keys")
        for key, value in meta.items():
            if len(key) > 64 or (isinstance(value, str) and len(value) > 1000):
                raise ValueError(f"key {key[:64]!r}: keys are at most 64 and values at most 1000 characters")
        return meta


class PredictIn(_WithMetadata):
    user_id: StrictStr = UserId
    input: dict[StrictStr, Any]
    consent: Consent | None = None


class InteractionIn(_WithMetadata):
    user_id: StrictStr = UserId
    input: dict[StrictStr, Any]
    output_label: StrictStr
    model_name: StrictStr = Field(min_length=1, max_length=256)
    model_version: StrictStr = Field(min_length=1, max_length=64)
    consent: Consent | None = None


class FeedbackIn(_Body):
    interaction_id: StrictStr = Field(min_length=1, max_length=64)
    user_id: StrictStr = UserId
    label: StrictStr | None = None
    rating: Literal[-1, 1] | None = None
    comment: StrictStr | None = Field(None, max_length=2000)


class ContributionIn(_WithMetadata):
    user_id: StrictStr = UserId
    input: dict[StrictStr, Any]
    label: StrictStr
    consent: Consent


class AnnotationIn(_Body):
    label: StrictStr


class CycleIn(_Body):
    #: start the candidate from the champion's weights (true) or from scratch (false); absent: the config's
    warm_start: bool | None = None
