"""Image classification: any PNG/JPEG or pixel array, normalized the MNIST way.

Users send photos and drawings of every size, mode and polarity. Normalizing
them all to what MNIST-style models expect — 28x28 grayscale, light ink on a
dark background, the content fitted into 20x20 and centred by its centre of
mass — makes one model serve all of them, and makes the same drawing sent
twice hash to the same bytes.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

from datawheel.errors import ConfigError, InvalidInput
from datawheel.tasks.base import Task
from datawheel.tasks.sklearn_model import SklearnModel

SIDE = 28  # output is SIDE x SIDE
BOX = 20  # the longer side of the content after resizing, as in MNIST
CENTRE = 14.0  # where the centre of mass lands (row, column)
# What one request may cost, checked before the work it bounds. Decoding and normalizing hold about
# 24 bytes per pixel in NumPy float64 arrays (measured with tracemalloc on this 2-core machine, Pillow 13,
# for L, RGB and RGBA PNGs: 1024x1024 -> 24 MB and 0.01-0.11 s; 2048x2048 -> 96 MB and 0.05-0.36 s;
# 4096x4096 -> 384 MB and 0.6-0.95 s), plus up to ~13 bytes per pixel of Pillow's own buffers, which
# tracemalloc does not see. At the limits below (1224x1224, any mode, PNG or JPEG) a request peaked at
# 34-40 MB traced, at most 30 MB more resident, and 0.02-0.16 s (random RGBA noise, 6 MB of PNG, slowest).
MAX_IMAGE_SIDE = 2048
MAX_IMAGE_PIXELS = 1_500_000
MAX_PIXELS_SIDE = 1024  # a pixel array: at most 1 M values, 24 MB and ~0.1 s once typed
MAX_ENCODED = 8 * 1024 * 1024  # characters of base64, about 6 MB of file
# Pillow inflates each compressed PNG text chunk (zTXt, iTXt) up to 1 MB while it opens the file, before
# the size is known: a 63 KB PNG of 60 such chunks held 61 MB. A photo or drawing needs none of them.
MAX_PNG_TEXT_CHUNKS = 4
# A progressive JPEG is decoded scan by scan; encoders write about 10. A 1200x1200 JPEG with 30,000 tiny
# scans appended (1 MB) took 0.77 s to decode instead of 0.04 s.
MAX_JPEG_SCANS = 100
INK_SHARE = 0.1  # pixels at >= 10 % of the peak count as content when cropping
_NUMBER_TYPES = {int, float}
_DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,")
_SPACE = b" \t\n\r\x0b\x0c"  # what a bytes regex's \s matches, deleted with bytes.translate
_MEAN, _STD = 0.1307, 0.3081  # MNIST's, so the default models see familiar statistics
_BACKGROUND = (0.0 - _MEAN) / _STD  # a blank pixel after featurize


def _pixel_centres() -> torch.Tensor:
    """[3, SIDE*SIDE]: each pixel's centre as (x, y, 1) in -1..1, as affine_grid places it (align_corners=False)."""
    c = (torch.arange(SIDE, dtype=torch.float32) * 2 + 1) / SIDE - 1
    ys, xs = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([xs.flatten(), ys.flatten(), torch.ones(SIDE * SIDE)], 0)


_PIXEL_CENTRES = _pixel_centres()


def _standardized() -> np.ndarray:
    """[256] float32: what each uint8 pixel value becomes in a model's input, computed the way a whole image once was
    (divided by 255 in NumPy, then standardized in torch), so looking a pixel up gives the same bits; the lookup
    took a served image's featurization from 37 to 12 microseconds."""
    x = torch.from_numpy(np.arange(256, dtype=np.uint8).astype(np.float32) / 255.0)
    return ((x - _MEAN) / _STD).numpy()


_STANDARDIZED = _standardized()


def to_png_base64(pixels: np.ndarray) -> str:
    """A 2-D uint8 array as base64 PNG: what a product would send in ``input.image``."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _to_gray(img: Image.Image) -> np.ndarray:
    """Grayscale 0..255 floats; transparency means 'paper', so it becomes white."""
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    if img.mode.startswith("I"):  # 16-bit grayscale PNG: scale the full 16-bit range, not the image's own max
        return np.clip(np.asarray(img, dtype=np.float64) / 257.0, 0, 255)
    if img.mode != "L":
        img = img.convert("L")  # (converting an L image would only copy it)
    return np.frombuffer(img.tobytes(), dtype=np.uint8).reshape(img.height, img.width).astype(np.float64)


# what ndarray.sum()/.any() call, without their Python wrappers (the same reductions, so the same bits)
_sum, _any = np.add.reduce, np.logical_or.reduce
_POSITIONS = np.arange(BOX + 1)  # row or column indices of the resized content (at most BOX of them)


def _median(values: np.ndarray) -> float:
    """``np.median`` of a small 1-D array, to the bit (the mean of the middle two for an even count), without
    its generic machinery: it cost a tenth of a request's parsing."""
    ordered = np.sort(values)
    mid = ordered.size // 2
    return float(ordered[mid]) if ordered.size % 2 else (float(ordered[mid - 1]) + float(ordered[mid])) / 2


def normalize(gray: np.ndarray) -> np.ndarray:
    """Grayscale [H, W] in 0..255 -> [28, 28] uint8, light ink on dark, fitted and centred.

    Subtracting the background level and stretching to the peak make a faint
    pencil sketch on grey paper look like a pen drawing on black, which is
    all an MNIST-trained model has ever seen.

    It runs on every image a request sends, so it is written with few NumPy calls (each costs
    microseconds on a 28x28 image), every one computing what ``np.clip``/``np.median`` did, to the bit.
    """
    gray = np.asarray(gray, dtype=np.float64)
    background = _median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]))
    if background > 127:
        gray, background = 255.0 - gray, 255.0 - background  # dark ink on light paper: invert
    gray = gray - background
    np.maximum(gray, 0, out=gray)
    np.minimum(gray, 255, out=gray)
    peak = float(gray.max())
    if peak < 8:
        return np.zeros((SIDE, SIDE), dtype=np.uint8)  # blank: nothing to fit or centre
    gray *= 255.0 / peak
    ink = gray >= INK_SHARE * 255
    rows, cols = np.nonzero(_any(ink, axis=1))[0], np.nonzero(_any(ink, axis=0))[0]
    crop = np.ascontiguousarray(gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], dtype=np.float32)
    h, w = crop.shape
    nh, nw = max(1, round(h * BOX / max(h, w))), max(1, round(w * BOX / max(h, w)))
    # Pillow's bilinear resize is antialiased when shrinking, so thin strokes fade instead of vanishing.
    resized = Image.frombuffer("F", (w, h), crop.tobytes(), "raw", "F", 0, 1).resize((nw, nh),
                                                                                    Image.Resampling.BILINEAR)
    small = np.frombuffer(resized.tobytes(), dtype=np.float32).reshape(nh, nw).astype(np.float64)
    np.maximum(small, 0, out=small)
    np.minimum(small, 255, out=small)
    mass = _sum(small, axis=None)
    cy = _sum(_sum(small, axis=1) * _POSITIONS[:nh]) / mass if mass else nh / 2
    cx = _sum(_sum(small, axis=0) * _POSITIONS[:nw]) / mass if mass else nw / 2
    top = min(max(round(CENTRE - cy), 0), SIDE - nh)  # shift by rounding, never off the canvas
    left = min(max(round(CENTRE - cx), 0), SIDE - nw)
    out = np.zeros((SIDE, SIDE), dtype=np.uint8)
    out[top:top + nh, left:left + nw] = np.rint(small)
    return out


def _png_text_chunks(data: bytes) -> int:
    """How many zTXt/iTXt chunks the file holds, walking chunk headers only when a quick count says it may matter."""
    if data.count(b"zTXt") + data.count(b"iTXt") <= MAX_PNG_TEXT_CHUNKS:
        return 0  # the byte count over-counts, so a small one is already an answer
    found, pos = 0, 8  # after the signature: length (4), type (4), data, CRC (4)
    while pos + 8 <= len(data):
        kind = data[pos + 4:pos + 8]
        found += kind in (b"zTXt", b"iTXt")
        if kind == b"IEND":
            break
        pos += 12 + int.from_bytes(data[pos:pos + 4], "big")
    return found


def _check_container(data: bytes, field: str) -> None:
    """Refuse what makes Pillow spend memory or time before the image's size can be checked."""
    if data.startswith(b"\x89PNG") and _png_text_chunks(data) > MAX_PNG_TEXT_CHUNKS:
        raise InvalidInput(f"PNG carries more than {MAX_PNG_TEXT_CHUNKS} compressed text chunks", field)
    if data.startswith(b"\xff\xd8") and data.count(b"\xff\xda") > MAX_JPEG_SCANS:
        raise InvalidInput(f"JPEG has more than {MAX_JPEG_SCANS} scans", field)


def _check_size(img: Image.Image, field: str) -> None:
    """The header's size, read before a pixel is decoded (``Image.open`` is lazy), against the pixel budget."""
    width, height = img.size
    if max(width, height) > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise InvalidInput(f"image is {width}x{height}; at most {MAX_IMAGE_SIDE} pixels per side and "
                           f"{MAX_IMAGE_PIXELS} pixels in all", field)
    if min(width, height) < 1:
        raise InvalidInput("image has no pixels", field)


def _decode_image(data: bytes, field: str) -> np.ndarray:
    """Pixels of a PNG/JPEG, refusing anything whose size could exhaust memory before decoding it."""
    _check_container(data, field)
    try:
        # Only these two decoders ever read a request's bytes; nothing is decoded before the size is checked.
        img: Image.Image = Image.open(io.BytesIO(data), formats=("PNG", "JPEG"))
        if img.format not in ("PNG", "JPEG"):
            raise InvalidInput(f"expected a PNG or JPEG image, got {img.format or 'an unknown format'}", field)
        _check_size(img, field)
        img.load()
        if img.format == "JPEG":
            img = ImageOps.exif_transpose(img)  # phones store portrait photos sideways plus a tag
        return _to_gray(img)
    except InvalidInput:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard (Image.MAX_IMAGE_PIXELS) fires inside open() for headers far over ours.
        raise InvalidInput(f"image is too large to decode safely; at most {MAX_IMAGE_PIXELS} pixels", field) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise InvalidInput("is not a decodable PNG or JPEG image", field) from None


def _pixels(value: Any) -> np.ndarray:
    """The array, shape checked row by row before any value is read, values checked in bulk.

    Checking a million values one by one in Python cost 1.4 s; the types are read with ``map`` and the
    range with NumPy instead, and only a refused array is walked value by value, so the error points at
    the exact row and column.
    """
    field = "input.pixels"
    if not isinstance(value, list) or not value:
        raise InvalidInput("must be a non-empty 2-D list of numbers (a list of rows)", field)
    if len(value) > MAX_PIXELS_SIDE:
        raise InvalidInput(f"has {len(value)} rows; at most {MAX_PIXELS_SIDE}", field)
    width = len(value[0]) if isinstance(value[0], list) else None
    for r, row in enumerate(value):
        where = f"{field}[{r}]"
        if not isinstance(row, list) or not row:
            raise InvalidInput("each row must be a non-empty list of numbers (a 2-D array)", where)
        if len(row) > MAX_PIXELS_SIDE:
            raise InvalidInput(f"has {len(row)} values; at most {MAX_PIXELS_SIDE} per row", where)
        if len(row) != width:
            raise InvalidInput(f"has {len(row)} values but row 0 has {width}; rows must be the same length", where)
    if all(set(map(type, row)) <= _NUMBER_TYPES for row in value):  # bool is its own type: not a number here
        try:
            array = np.asarray(value, dtype=np.float64)
        except OverflowError:  # an integer beyond float64: out of range below
            array = None
        if array is not None and np.isfinite(array).all() and array.min() >= 0 and array.max() <= 255:
            return array
    raise _first_bad_pixel(value)


def _first_bad_pixel(value: list[list[Any]]) -> InvalidInput:
    """The refusal of the first value that is not a number in 0..255, saying where it is (not what it is)."""
    for r, row in enumerate(value):
        for c, v in enumerate(row):
            where = f"input.pixels[{r}][{c}]"
            if isinstance(v, (list, tuple, dict)):
                return InvalidInput("is not a number; pixels must be a 2-D array (one gray value each)", where)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return InvalidInput("is not a number; pixel values are numbers in 0..255", where)
            if (isinstance(v, float) and not math.isfinite(v)) or not 0 <= v <= 255:
                return InvalidInput("is out of range; pixel values must be finite numbers in 0..255", where)
    return InvalidInput("must hold finite numbers in 0..255", "input.pixels")


def _blank(item: np.ndarray) -> bool:
    """Faint (peak below 8) or a couple of specks: normalization stretched noise, not a drawing."""
    return int(np.max(item)) < 8 or int(np.count_nonzero(item)) < 3


class ImageClassification(Task):
    """Digits and other small drawings; items are normalized 28x28 uint8 arrays."""

    name = "image-classification"
    models = ("mlp", "cnn", "sklearn")
    #: measured on 8,000 MNIST digits against float32: the MLP's golden accuracy the same over six seeds at half
    #: the time per epoch, the CNN's the same over two seeds at two thirds
    bf16_models = ("mlp", "cnn")

    def parse(self, payload: Mapping[str, Any]) -> np.ndarray:
        if not isinstance(payload, Mapping) or set(payload) not in ({"image"}, {"pixels"}):
            raise InvalidInput("give exactly one of 'image' (base64 PNG/JPEG) or 'pixels' (2-D array)", "input")
        if "pixels" in payload:
            return normalize(_pixels(payload["pixels"]))
        value = payload["image"]
        if not isinstance(value, str) or not value:
            raise InvalidInput("must be a non-empty base64 string of a PNG or JPEG file", "input.image")
        if len(value) > MAX_ENCODED:
            raise InvalidInput(f"is over {MAX_ENCODED} characters of base64", "input.image")
        try:
            data = base64.b64decode(_DATA_URL.sub("", value, count=1).encode("ascii").translate(None, _SPACE),
                                    validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise InvalidInput("is not valid base64", "input.image") from None
        return normalize(_decode_image(data, "input.image"))

    def encode(self, item: np.ndarray) -> bytes:
        item = np.asarray(item)
        if item.shape != (SIDE, SIDE):
            raise ValueError(f"an image item is {SIDE}x{SIDE}, got shape {item.shape}")
        return np.ascontiguousarray(item, dtype=np.uint8).tobytes()

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) != SIDE * SIDE:
            raise ValueError(f"an encoded image is {SIDE * SIDE} bytes, got {len(data)}")
        return np.frombuffer(data, dtype=np.uint8).reshape(SIDE, SIDE).copy()  # writable, like parse's output

    def quality_issue(self, item: np.ndarray) -> str | None:
        return "blank_input" if _blank(item) else None

    def near_duplicate_clusters(self, items: Sequence[np.ndarray]) -> list[int]:
        from datawheel.curation.near_dup import image_clusters  # imagehash and SciPy: curation only

        return image_clusters(items)

    def vectorize(self, items: Sequence[np.ndarray]) -> np.ndarray:
        """14x14 average-pooled intensities: enough for a linear model, 4x cheaper than 28x28."""
        if len(items) == 0:
            return np.zeros((0, (SIDE // 2) ** 2))
        x = np.stack(items).astype(np.float64) / 255.0  # [N, 28, 28]
        return x.reshape(len(items), SIDE // 2, 2, SIDE // 2, 2).mean(axis=(2, 4)).reshape(len(items), -1)

    def show(self, item: np.ndarray) -> dict:
        return {"image": to_png_base64(item)}

    def featurize(self, items: Sequence[np.ndarray], model: str = "", *, cache: bool = False) -> torch.Tensor:
        if len(items) == 0:
            return torch.zeros((0, 1, SIDE, SIDE))
        return torch.from_numpy(_STANDARDIZED[np.stack(items)]).unsqueeze(1)  # [N, 1, 28, 28] standardized

    def augment(self, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Rotate up to 10 degrees, scale 0.9-1.1 and shift up to 2 pixels: how hands vary, never a new digit."""
        n = len(batch)
        u = torch.rand((n, 4), generator=gen) * 2 - 1  # [N, 4] in -1..1
        angle, scale = u[:, 0] * math.radians(10), 1 + u[:, 1] * 0.1
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        shift = u[:, 2:] * (2 * 2 / SIDE)  # grid units span 2 over SIDE pixels
        theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
        # affine_grid's own result, as one [2N, 3] x [3, 784] product: affine_grid took 1.2 s of a 20-epoch run
        grid = (theta @ _PIXEL_CENTRES).transpose(1, 2).reshape(n, SIDE, SIDE, 2)  # [N, 28, 28, 2] (x, y)
        # Shift so the background is 0: grid_sample pads with zeros, which must mean "no ink".
        return nn.functional.grid_sample(batch - _BACKGROUND, grid, align_corners=False) + _BACKGROUND

    def build_model(self, name: str, n_classes: int) -> nn.Module:
        if name == "mlp":
            # The seed document's classic: 784 -> 1000 -> n_classes.
            return nn.Sequential(
                nn.Flatten(),  # [N, 1, 28, 28] -> [N, 784]
                nn.Linear(SIDE * SIDE, 1000),  # [N, 1000]
                nn.ReLU(),  # [N, 1000]
                nn.Linear(1000, n_classes),  # [N, n_classes] logits
            )
        if name == "cnn":
            return nn.Sequential(
                nn.Conv2d(1, 32, 3, padding=1),  # [N, 32, 28, 28]
                nn.ReLU(),  # [N, 32, 28, 28]
                nn.MaxPool2d(2),  # [N, 32, 14, 14]
                nn.Conv2d(32, 64, 3, padding=1),  # [N, 64, 14, 14]
                nn.ReLU(),  # [N, 64, 14, 14]
                nn.MaxPool2d(2),  # [N, 64, 7, 7]
                nn.Flatten(),  # [N, 3136]
                nn.Linear(64 * 7 * 7, 128),  # [N, 128]
                nn.ReLU(),  # [N, 128]
                nn.Dropout(0.25),  # [N, 128]
                nn.Linear(128, n_classes),  # [N, n_classes] logits
            )
        if name == "sklearn":
            return SklearnModel("image", n_classes)  # the same standardized pixels, flattened
        raise ConfigError(f"unknown image model {name!r}; choose one of {', '.join(self.models)}")
