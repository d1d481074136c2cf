"""Request bodies and path parameters. Strict types: a wrong type is the client's mistake, answered with 422
(answers: responses.py).

Every string a body carries is checked here for what the store cannot keep (a lone surrogate cannot be
encoded to UTF-8, PostgreSQL refuses NUL), so such a request is a 422 at the door rather than a 500 when
the value is written or, later, exported. The free-form ``input`` is bounded in depth, keys, list items
and characters before a task reads it; the task then applies its own limits (pixels, characters).

``input`` is documented as one of the shapes in ``shapes.py`` (image, pixels, text), so a generated
client has a type for each, but validated here only by those bounds: the workspace's task parses it,
and its refusals name the exact row, column or field (a union's error per alternative would not).
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
    PlainValidator,
    StrictBool,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

from datawheel.api.shapes import RequestInput

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


def _as_sent(value: Any) -> Any:
    return value


#: a request's ``input``: documented as the shapes the tasks take, checked here only for size (see the docstring)
Input = Annotated[dict[StrictStr, Any],
                  BeforeValidator(_as_sent, json_schema_input_type=RequestInput),
                  AfterValidator(_bounded_input), Field(
    description=f"the task's input: image or pixels for an image classifier, text for a text classifier; at "
                f"most {MAX_INPUT_DEPTH} levels deep, {MAX_INPUT_KEYS} keys, {MAX_INPUT_ITEMS} list items and "
                f"{MAX_INPUT_CHARS} characters in all")]


MAX_SCORES = 1000
_INT64 = 2 ** 63 - 1


def _model_version(value: Any) -> str:
    """Either form, kept as text (the column the product's own versions share); one message for both, rather
    than a union's error per alternative."""
    if type(value) is int:
        if not 0 <= value <= _INT64:
            raise ValueError("an integer version is at least 0 and fits in 64 bits")
        return str(value)
    if isinstance(value, str):
        if not 1 <= len(value) <= 64:
            raise ValueError("a version string is 1 to 64 characters")
        return _storable(value)
    raise ValueError("must be an integer (a datawheel model version) or a string (your model's own version)")


def _scores(value: Any) -> dict[str, float]:
    """Probabilities by label; a bad one is named by its position, since the keys are the client's words."""
    if not isinstance(value, dict):
        raise ValueError("must be an object of label: probability")
    if not 1 <= len(value) <= MAX_SCORES:
        raise ValueError(f"give 1 to {MAX_SCORES} labels' scores, or leave scores out")
    for i, v in enumerate(value.values()):
        if type(v) not in (int, float) or not (math.isfinite(v) and 0 <= v <= 1):
            raise ValueError(f"the value of key {i} (counting from 0) is not a finite number in 0..1")
    return {k: float(v) for k, v in value.items()}


ModelVersion = Annotated[str, PlainValidator(_model_version, json_schema_input_type=Annotated[
    int, Field(ge=0, le=_INT64)] | Annotated[str, Field(min_length=1, max_length=64)]), Field(
    description="the version of the model that answered: an integer (a datawheel version, as /v1/predict answers) "
                "or your own model's version string (e.g. \"gpt-4o-2024-08-06\"); kept as text",
    examples=[3, "gpt-4o-2024-08-06"])]
Scores = Annotated[dict[str, float], PlainValidator(_scores, json_schema_input_type=Annotated[
    dict[str, Annotated[float, Field(ge=0, le=1)]], Field(min_length=1, max_length=MAX_SCORES)]), Field(
    description="your model's probability for each label it scored; keys are workspace labels",
    examples=[{"7": 0.91, "1": 0.06}])]


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
    model_version: ModelVersion
    scores: Scores | None = None
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
