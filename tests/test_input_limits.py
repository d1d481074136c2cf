"""Every cost limit is checked before the work it bounds, and answered with a 4xx naming the field and the limit.

Memory is asserted with tracemalloc (NumPy's arrays and Python's objects; Pillow's own pixel buffers are
not traced and are counted in the budget in ``tasks/image.py``). Nothing here asserts a duration.
"""

from __future__ import annotations

import base64
import io
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from conftest import APP, make_client
from datawheel.api import schemas
from datawheel.errors import InvalidInput
from datawheel.tasks import image as image_task
from datawheel.tasks import text as text_task
from datawheel.tasks.image import ImageClassification
from datawheel.tasks.text import TextClassification

IMAGES = ImageClassification()
TEXTS = TextClassification()
MB = 2 ** 20


def peak_bytes(work: Callable[[], Any]) -> tuple[Any, int]:
    """What ``work`` returned (or the exception it raised) and the most memory tracemalloc saw it hold."""
    tracemalloc.start()
    try:
        try:
            out: Any = work()
        except Exception as exc:  # noqa: BLE001 - the caller asserts on what it gets
            out = exc
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def drawing_png(width: int, height: int, mode: str = "L", **save: Any) -> bytes:
    """A dark stroke on white paper: compresses well, so a large image is a small request."""
    page = np.full((height, width), 255, np.uint8)
    page[height // 4:height // 2, width // 3:width // 2] = 0
    buf = io.BytesIO()
    Image.fromarray(page).convert(mode).save(buf, format=save.pop("format", "PNG"), **save)
    return buf.getvalue()


def b64(data: bytes) -> dict:
    return {"image": base64.b64encode(data).decode("ascii")}


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_only_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming a size, and no pixels: what a decompression bomb's first bytes look like."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def refused(resp, field: str, *words: str) -> None:
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith(field), detail
    for word in words:
        assert word in detail, detail


# -- images ------------------------------------------------------------------------------


def test_a_4096_square_png_is_refused_from_its_header(client):
    """73 KB on the wire, 384 MB and a second to decode: refused after reading the header, holding almost nothing."""
    data = drawing_png(4096, 4096)
    assert len(data) < 100_000
    resp, peak = peak_bytes(lambda: client.post("/v1/predict", headers=APP, json={"user_id": "u", "input": b64(data)}))
    refused(resp, "input.image", "4096x4096", str(image_task.MAX_IMAGE_SIDE), str(image_task.MAX_IMAGE_PIXELS))
    assert peak < 8 * MB


@pytest.mark.parametrize("size", [(image_task.MAX_IMAGE_SIDE + 1, 16), (1225, 1225)])
def test_images_over_the_side_or_the_pixel_budget_are_refused(size):
    with pytest.raises(InvalidInput, match=f"{size[0]}x{size[1]}.*{image_task.MAX_IMAGE_PIXELS}") as info:
        IMAGES.parse(b64(drawing_png(*size)))
    assert info.value.field == "input.image"


def test_the_largest_accepted_image_stays_under_50_mb():
    """The worst case measured: random RGBA noise at the pixel budget (6 MB of PNG), every pixel ink."""
    side = int(image_task.MAX_IMAGE_PIXELS ** 0.5)
    noise = np.random.default_rng(0).integers(0, 256, (side, side, 4), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise, "RGBA").save(buf, format="PNG")
    payload = b64(buf.getvalue())
    item, peak = peak_bytes(lambda: IMAGES.parse(payload))
    assert isinstance(item, np.ndarray) and item.shape == (28, 28)
    assert peak < 50 * MB


@pytest.mark.parametrize("size, mode", [((image_task.MAX_IMAGE_SIDE, 732), "RGBA"), ((1224, 1224), "RGB")])
def test_the_largest_accepted_request_stays_under_50_mb(client, size, mode):
    """Through the whole request (validation, screen, model, store) at the side and the pixel limits."""
    body = {"user_id": "u", "input": b64(drawing_png(*size, mode=mode))}
    client.post("/v1/predict", headers=APP, json={"user_id": "u", "input": b64(drawing_png(28, 28))})  # warm
    resp, peak = peak_bytes(lambda: client.post("/v1/predict", headers=APP, json=body))
    assert resp.status_code == 200, resp.text
    assert peak < 50 * MB


def test_pillows_own_decompression_bomb_guard_is_a_422(monkeypatch):
    """Pillow refuses a header far over Image.MAX_IMAGE_PIXELS inside open(), before our check: still a 422."""
    with pytest.raises(InvalidInput, match="too large to decode safely") as info:
        IMAGES.parse(b64(header_only_png(20_000, 20_000)))
    assert info.value.field == "input.image"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(InvalidInput, match="too large to decode safely"):
        IMAGES.parse(b64(drawing_png(100, 100)))


def test_a_png_inflating_text_chunks_is_refused_before_pillow_opens_it():
    """60 zTXt chunks of 1 MB each fit in 63 KB and made Pillow hold 61 MB while opening the file."""
    plain = drawing_png(28, 28)
    inflating = zlib.compress(b"a" * (1024 * 1024 - 16), 9)
    chunks = [chunk(b"zTXt", b"k%d\x00\x00" % i + inflating) for i in range(60)]
    bomb = plain[:33] + b"".join(chunks) + plain[33:]  # after the signature and IHDR
    err, peak = peak_bytes(lambda: IMAGES.parse(b64(bomb)))
    assert isinstance(err, InvalidInput) and err.field == "input.image"
    assert f"more than {image_task.MAX_PNG_TEXT_CHUNKS} compressed text chunks" in str(err)
    assert peak < 5 * MB
    few = plain[:33] + b"".join(chunks[:2]) + plain[33:]
    assert IMAGES.parse(b64(few)).shape == (28, 28)  # a couple of metadata chunks are fine


def test_a_jpeg_with_thousands_of_scans_is_refused():
    """Each progressive scan is another pass over the image: 30,000 tiny ones took 0.77 s instead of 0.04 s."""
    jpeg = drawing_png(300, 300, "RGB", format="JPEG", progressive=True)
    assert IMAGES.parse(b64(jpeg)).shape == (28, 28)
    starts = [i for i in range(len(jpeg) - 1) if jpeg[i:i + 2] == b"\xff\xda"]
    scans = [jpeg[a:b] for a, b in zip(starts, [*starts[1:], len(jpeg) - 2])]
    bomb = jpeg[:-2] + min(scans, key=len) * (image_task.MAX_JPEG_SCANS + 1) + jpeg[-2:]
    with pytest.raises(InvalidInput, match=f"more than {image_task.MAX_JPEG_SCANS} scans") as info:
        IMAGES.parse(b64(bomb))
    assert info.value.field == "input.image"


@pytest.mark.parametrize("rows, cols, field", [(image_task.MAX_PIXELS_SIDE + 1, 1, "input.pixels"),
                                               (2, image_task.MAX_PIXELS_SIDE + 1, "input.pixels[0]")])
def test_pixel_arrays_are_bounded_before_an_array_is_built(rows, cols, field):
    with pytest.raises(InvalidInput, match=f"at most {image_task.MAX_PIXELS_SIDE}") as info:
        IMAGES.parse({"pixels": [[0] * cols for _ in range(rows)]})
    assert info.value.field == field


def test_the_largest_accepted_pixel_array_stays_under_50_mb():
    side = image_task.MAX_PIXELS_SIDE
    pixels = [[float((r * c) % 251) for c in range(side)] for r in range(side)]
    item, peak = peak_bytes(lambda: IMAGES.parse({"pixels": pixels}))
    assert isinstance(item, np.ndarray) and item.shape == (28, 28)
    assert peak < 50 * MB


def test_a_bad_pixel_is_still_located_exactly_and_not_quoted():
    pixels = [[0] * 40 for _ in range(40)]
    pixels[31][17] = 1234.5
    with pytest.raises(InvalidInput) as info:
        IMAGES.parse({"pixels": pixels})
    assert info.value.field == "input.pixels[31][17]" and "1234" not in str(info.value)


# -- text --------------------------------------------------------------------------------


def test_a_string_that_nfkc_would_expand_is_refused_before_normalizing():
    """600,000 x U+FDFA is 1.8 MB of UTF-8, 10.8 M characters after NFKC (3.3 s, 215 MB); refused as sent."""
    text = "\ufdfa" * 600_000
    err, peak = peak_bytes(lambda: TEXTS.parse({"text": text}))
    assert isinstance(err, InvalidInput) and err.field == "input.text"
    assert f"at most {text_task.MAX_RAW_CHARS} before normalization" in str(err)
    assert peak < 1 * MB


def test_the_normalized_length_is_checked_too():
    """Under the raw limit, but 18 times longer once normalized."""
    with pytest.raises(InvalidInput, match=f"after normalization; at most {text_task.MAX_CHARS}") as info:
        TEXTS.parse({"text": "\ufdfa" * 1000})
    assert info.value.field == "input.text"
    assert TEXTS.parse({"text": " " * (text_task.MAX_RAW_CHARS - 10) + "ok"}) == "ok"  # spaces collapse


# -- JSON: input and metadata --------------------------------------------------------------


def test_input_nested_too_deep_is_refused(client):
    resp = client.post("/v1/predict", headers=APP, json={"user_id": "u", "input": {"pixels": [[[[1]]]]}})
    refused(resp, "input", f"more than {schemas.MAX_INPUT_DEPTH} levels")


def test_input_with_too_many_keys_is_refused(client):
    keys = {f"k{i}": {"k": 1} for i in range(schemas.MAX_INPUT_KEYS // 2 + 1)}
    refused(client.post("/v1/predict", headers=APP, json={"user_id": "u", "input": keys}),
            "input", f"at most {schemas.MAX_INPUT_KEYS} keys")


def test_input_with_too_many_list_items_is_refused(ws):
    """Only reachable when an operator raises the body limit; the JSON limits hold whatever it is."""
    side = image_task.MAX_PIXELS_SIDE + 1
    with make_client(ws, max_body_bytes=8 * MB) as client:
        resp = client.post("/v1/predict", headers=APP, json={"user_id": "u", "input": {"pixels": [[0] * side] * side}})
    refused(resp, "input", f"at most {schemas.MAX_INPUT_ITEMS} list items")


def test_input_with_too_many_characters_is_refused():
    with pytest.raises(ValidationError, match=f"at most {schemas.MAX_INPUT_CHARS} characters"):
        schemas.PredictIn.model_validate({"user_id": "u", "input": {"image": "A" * (schemas.MAX_INPUT_CHARS + 1)}})


@pytest.mark.parametrize("metadata, words", [
    ({f"k{i}": i for i in range(schemas.MAX_META_KEYS + 1)}, str(schemas.MAX_META_KEYS)),
    ({"k" * (schemas.MAX_META_KEY + 1): 1}, str(schemas.MAX_META_KEY)),
    ({"k": "v" * (schemas.MAX_META_VALUE + 1)}, str(schemas.MAX_META_VALUE)),
    ({"k": {"nested": 1}}, "strings, 64-bit integers, finite numbers, booleans or null"),
    ({"k": 2 ** 63}, "64-bit integers"),
])
def test_metadata_is_small_and_flat(client, metadata, words):
    resp = client.post("/v1/predict", headers=APP, json={"user_id": "u", "input": {"pixels": [[0, 255]]},
                                                         "metadata": metadata})
    refused(resp, "metadata", words)
