"""Request bodies and path parameters. Strict types: a wrong type is the client's mistake, answered with 422
(answers: responses.py).

Every string a body carries is checked here for what the store cannot keep (a lone surrogate cannot be
encoded to UTF-8, PostgreSQL refuses NUL), so such a request is a 422 at the door rather than a 500 when
the value is written or, later, exported. The free-form ``input`` is bounded in depth, keys, list items
and characters before a task reads it; the task then applies its own limits (pixels, characters).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

#: letters, digits and ``_ . : -``, not only dots (``.`` and ``..`` are path segments no client can address);
#: no ``@``: an e-mail address as a user id would be personal data in every table and log line
USER_ID_PATTERN = r"^[A-Za-z0-9_.:\-]*[A-Za-z0-9_:\-][A-Za-z0-9_.:\-]*$"
MAX_USER_ID = 256
UserId = Field(min_length=1, max_length=MAX_USER_ID, pattern=USER_ID_PATTERN)

#: model versions are SQLite/PostgreSQL integers; a larger number could only overflow the query, never match
MAX_VERSION = 2 ** 31 - 1

UserPath = Annotated[str, Path(min_length=1, max_length=MAX_USER_ID, pattern=USER_ID_PATTERN)]
VersionPath = Annotated[int, Path(ge=1, le=MAX_VERSION, description="a model version")]
VersionQuery = Annotated[int | None, Query(ge=1, le=MAX_VERSION, description="a model version")]
CyclePath = Annotated[str, Path(min_length=1, max_length=64, description="a cycle id")]

MAX_META_KEYS = 32
MAX_META_KEY = 64
MAX_META_VALUE = 1000
# ``input`` as JSON: {"pixels": [[...]]} is three levels deep; a 1024x1024 pixel grid is 1,049,600 list
# items; a base64 image is at most 8 Mi characters. Anything past these no task could accept anyway.
MAX_INPUT_DEPTH = 4
MAX_INPUT_KEYS = 16
MAX_INPUT_ITEMS = 1024 * 1024 + 1024
MAX_INPUT_CHARS = 8 * 1024 * 1024 + 1024
_SCALARS = {int, float, bool, type(None)}


def _encodable(value: str) -> str:
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("contains invalid Unicode (a lone surrogate)") from None
    return value


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return _encodable(value)


def _meta_value(value: Any) -> Any:
    """One check and one message for a scalar, rather than a union's error per alternative."""
    if isinstance(value, str):
        if len(value) > MAX_META_VALUE:
            raise ValueError(f"string values are at most {MAX_META_VALUE} characters")
        return _storable(value)
    if type(value) is int and -(2 ** 63) <= value < 2 ** 63:
        return value
    if type(value) is float and math.isfinite(value):
        return value
    if value is None or type(value) is bool:
        return value
    raise ValueError("values are strings, 64-bit integers, finite numbers, booleans or null")


#: a string the store can keep and every answer can send back
Text = Annotated[StrictStr, AfterValidator(_storable)]
MetaValue = Annotated[Any, AfterValidator(_meta_value), WithJsonSchema({"anyOf": [
    {"type": "string", "maxLength": MAX_META_VALUE}, {"type": "integer", "minimum": -(2 ** 63),
                                                      "maximum": 2 ** 63 - 1},
    {"type": "number"}, {"type": "boolean"}, {"type": "null"}]})]
MetaKey = Annotated[StrictStr, Field(max_length=MAX_META_KEY), AfterValidator(_storable)]
#: labels for slicing and analysis: scalars only, so nothing nested or large hides in it
Metadata = Annotated[dict[MetaKey, MetaValue], Field(max_length=MAX_META_KEYS)]
Comment = Annotated[StrictStr, Field(max_length=2000), AfterValidator(_storable)]


def _integer(value: Any) -> Any:
    # Literal[-1, 1] alone lets True and 1.0 through: they compare equal to 1.
    if type(value) is not int:
        raise ValueError("must be the integer -1 or 1")
    return value


def _bounded_input(value: dict[str, Any]) -> dict[str, Any]:
    """Depth, keys, list items and characters of ``input``, counted without recursion before any task reads it."""
    keys = items = chars = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_INPUT_DEPTH:
            raise ValueError(f"is nested more than {MAX_INPUT_DEPTH} levels deep")
        if isinstance(node, dict):
            keys += len(node)
            chars += sum(len(_encodable(k)) for k in node)
            children = list(node.values())
        else:
            items += len(node)
            children = node
        _at_most(keys, MAX_INPUT_KEYS, "keys")
        _at_most(items, MAX_INPUT_ITEMS, "list items")  # before its items are looked at
        if not set(map(type, children)) <= _SCALARS:  # numbers only (pixel rows): nothing inside to visit
            for child in children:
                if isinstance(child, (dict, list)):
                    stack.append((child, depth + 1))
                elif isinstance(child, str):
                    chars += len(_encodable(child))
        _at_most(chars, MAX_INPUT_CHARS, "characters")
    return value


def _at_most(count: int, limit: int, what: str) -> None:
    if count > limit:
        raise ValueError(f"is too large; at most {limit} {what} in all")


#: a request's ``input``, whose shape the task decides (``{"image": ...}``, ``{"pixels": ...}``, ``{"text": ...}``)
Input = Annotated[dict[StrictStr, Any], AfterValidator(_bounded_input), Field(
    description=f"the task's input; at most {MAX_INPUT_DEPTH} levels deep, {MAX_INPUT_KEYS} keys, "
                f"{MAX_INPUT_ITEMS} list items and {MAX_INPUT_CHARS} characters in all")]


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
    metadata: Metadata | None = None


class PredictIn(_WithMetadata):
    user_id: StrictStr = UserId
    input: Input
    consent: Consent | None = None


class InteractionIn(_WithMetadata):
    user_id: StrictStr = UserId
    input: Input
    output_label: Text
    model_name: Text = Field(min_length=1, max_length=256)
    model_version: Text = Field(min_length=1, max_length=64)
    consent: Consent | None = None


class FeedbackIn(_Body):
    interaction_id: Text = Field(min_length=1, max_length=64)
    user_id: StrictStr = UserId
    #: classifiers: the right label
    label: Text | None = None
    rating: Annotated[Literal[-1, 1], BeforeValidator(_integer)] | None = None
    comment: Comment | None = None
    #: text generation: the answer the user wanted (screened for personal data like every text)
    correction: Annotated[Text, Field(min_length=1, max_length=20_000)] | None = None
    #: text generation, for a request made with n=2: the index of the better answer
    chosen: Annotated[Literal[0, 1], BeforeValidator(_integer)] | None = None


class ContributionIn(_WithMetadata):
    user_id: StrictStr = UserId
    input: Input
    label: Text
    consent: Consent


class AnnotationIn(_Body):
    label: Text


class CycleIn(_Body):
    #: start the candidate from the champion's weights (true) or from scratch (false); absent: the config's
    warm_start: bool | None = None
