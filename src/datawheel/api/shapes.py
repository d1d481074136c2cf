"""The shapes an item takes as JSON: a request's ``input``, and an item as an answer shows it to a person.

Named models rather than a free object, so ``/openapi.json`` gives each shape a name and a generated client a
type per shape. Both unions are documented as ``oneOf``: each member has one required key and allows no other,
so exactly one matches.

Only pydantic is imported (the Python client reads answers with these models, without the server stack). The
limits repeat the tasks' own (``tasks/image.py``, ``tasks/text.py``, ``tasks/chat.py``);
``tests/test_api_openapi.py`` fails if they part.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

#: tasks/image.py MAX_ENCODED and MAX_PIXELS_SIDE; tasks/text.py MAX_RAW_CHARS
MAX_IMAGE_CHARS = 8 * 1024 * 1024
MAX_PIXELS_SIDE = 1024
MAX_TEXT_CHARS = 20_000


class OneOf:
    """Document a union as ``oneOf`` (pydantic says ``anyOf``): right when its members exclude each other."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["oneOf"] = schema.pop("anyOf")
        return schema


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageInput(_Shape):
    """An image: what an image classifier takes as a file, and how any image item is shown (a PNG)."""

    image: str = Field(min_length=1, max_length=MAX_IMAGE_CHARS,
                       description="a PNG or JPEG file in base64 (a `data:image/...;base64,` prefix is allowed)")


class PixelsInput(_Shape):
    """An image classifier's input as gray values, one list per row."""

    pixels: list[Annotated[list[Annotated[float, Field(ge=0, le=255)]],
                           Field(min_length=1, max_length=MAX_PIXELS_SIDE)]] = Field(
        min_length=1, max_length=MAX_PIXELS_SIDE, description="rows of equal length; values 0 (black) to 255")


class TextInput(_Shape):
    """A text classifier's input, and how a text item is shown (normalized, personal data replaced)."""

    text: str = Field(max_length=MAX_TEXT_CHARS)


class ChatTurn(_Shape):
    role: Literal["system", "user", "assistant"]
    content: str


class MessagesInput(_Shape):
    """A text-generation item: the conversation, ending with the user's turn."""

    messages: list[ChatTurn] = Field(min_length=1)


#: what ``input`` may be in /v1/predict, /v1/interactions and /v1/contributions (the workspace's task decides which)
RequestInput = Annotated[ImageInput | PixelsInput | TextInput, OneOf]
#: an item as a person is shown it: in a user's export and in the annotation queue
ShownInput = Annotated[ImageInput | TextInput | MessagesInput, OneOf]
