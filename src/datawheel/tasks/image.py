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
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn

from datawheel.errors import ConfigError, InvalidInput
from datawheel.tasks.base import Task

SIDE = 28
BOX = 20
MAX_PIXELS_SIDE = 1024
MAX_IMAGE_SIDE = 4096
MAX_ENCODED = 8 * 1024 * 1024
_DATA_URL = re.compile(r"^data:image/[a-zA-Z0-9.+-]+;base64,")
_MEAN, _STD = 0.1307, 0.3081  # MNIST's, so the default models see familiar statistics


def to_png_base64(pixels: np.ndarray) -> str:
    """A 2-D uint8 array as base64 PNG: what a product would send in ``input.image``."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _to_gray(img: Image.Image) -> np.ndarray:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(canvas, rgba)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = arr.max() or 1.0
        return np.clip(arr / top * 255.0, 0, 255)
    return np.asarray(img.convert("L"), dtype=np.float64)


def normalize(gray: np.ndarray) -> np.ndarray:
    """Grayscale [H, W] in 0..255 -> [28, 28] uint8, light ink on dark, fitted and centred."""
    background = float(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    if background > 127:
        gray, background = 255.0 - gray, 255.0 - background  # dark ink on a light background: invert
    gray = np.clip(gray - background, 0, 255)
    peak = gray.max()
    if peak < 8:
        return np.zeros((SIDE, SIDE), dtype=np.uint8)
    gray = gray * (255.0 / peak)
    rows = np.flatnonzero((gray >= 0.1 * 255).any(axis=1))
    cols = np.flatnonzero((gray >= 0.1 * 255).any(axis=0))
    crop = gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = np.asarray(Image.fromarray(crop.astype(np.float32)).resize((nw, nh), Image.BILINEAR))
    resized = np.clip(resized, 0, 255)
    canvas = np.zeros((SIDE, SIDE), dtype=np.float64)
    top, left = (SIDE - nh) // 2, (SIDE - nw) // 2
    canvas[top:top + nh, left:left + nw] = resized
    mass = canvas.sum()
    cy = (canvas.sum(axis=1) * np.arange(SIDE)).sum() / mass
    cx = (canvas.sum(axis=0) * np.arange(SIDE)).sum() / mass
    dy = int(np.clip(round(SIDE / 2 - 0.5 - cy), -top, SIDE - top - nh))
    dx = int(np.clip(round(SIDE / 2 - 0.5 - cx), -left, SIDE - left - nw))
    out = np.zeros_like(canvas)
    out[top + dy:top + dy + nh, left + dx:left + dx + nw] = canvas[top:top + nh, left:left + nw]
    return np.rint(out).astype(np.uint8)


def _decode_image(data: bytes, field: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format not in ("PNG", "JPEG"):
                raise InvalidInput(f"expected a PNG or JPEG image, got {img.format or 'unknown'}", field)
            if max(img.size) > MAX_IMAGE_SIDE:
                raise InvalidInput(f"image is {img.size[0]}x{img.size[1]}; at most {MAX_IMAGE_SIDE} per side", field)
            img.load()
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidInput("not a decodable PNG or JPEG image", field) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInput("image is too large to decode safely", field) from None
    if img.size[0] < 1 or img.size[1] < 1:
        raise InvalidInput("image has no pixels", field)
    return _to_gray(ImageOps.exif_transpose(img) if img.format == "JPEG" else img)


def _pixels(value: Any) -> np.ndarray:
    field = "input.pixels"
    if not isinstance(value, list) or not value:
        raise InvalidInput("must be a non-empty 2-D list of numbers (rows of pixels)", field)
    if len(value) > MAX_PIXELS_SIDE:
        raise InvalidInput(f"has {len(value)} rows; at most {MAX_PIXELS_SIDE}", field)
    width = None
    for r, row in enumerate(value):
        where = f"{field}[{r}]"
        if not isinstance(row, list) or not row:
            raise InvalidInput("each row must be a non-empty list of numbers (a 2-D array)", where)
        if width is None:
            width = len(row)
            if width > MAX_PIXELS_SIDE:
                raise InvalidInput(f"has {width} columns; at most {MAX_PIXELS_SIDE}", where)
        elif len(row) != width:
            raise InvalidInput(f"has {len(row)} values but row 0 has {width}; rows must be the same length", where)
        for c, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise InvalidInput("pixel values must be numbers in 0..255", f"{where}[{c}]")
            if not math.isfinite(v) or v < 0 or v > 255:
                raise InvalidInput("pixel values must be finite numbers in 0..255", f"{where}[{c}]")
    return np.asarray(value, dtype=np.float64)


class ImageClassification(Task):
    name = "image-classification"
    models = ("mlp", "cnn")

    def parse(self, payload: Mapping[str, Any]) -> np.ndarray:
        keys = set(payload)
        if keys not in ({"image"}, {"pixels"}):
            raise InvalidInput("give exactly one of 'image' (base64 PNG/JPEG) or 'pixels' (2-D array)", "input")
        if "pixels" in payload:
            return normalize(_pixels(payload["pixels"]))
        value = payload["image"]
        if not isinstance(value, str) or not value:
            raise InvalidInput("must be a base64-encoded PNG or JPEG string", "input.image")
        if len(value) > MAX_ENCODED:
            raise InvalidInput(f"encoded image is over {MAX_ENCODED} characters", "input.image")
        try:
            data = base64.b64decode(_DATA_URL.sub("", value, count=1), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("is not valid base64", "input.image") from None
        return normalize(_decode_image(data, "input.image"))

    def parse_file(self, path: Path) -> np.ndarray:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InvalidInput(f"cannot read file ({exc.strerror})", str(path)) from None
        return normalize(_decode_image(data, str(path)))

    def encode(self, item: np.ndarray) -> bytes:
        return np.ascontiguousarray(item, dtype=np.uint8).tobytes()

    def decode(self, data: bytes) -> np.ndarray:
        if len(data) != SIDE * SIDE:
            raise ValueError(f"an encoded image is {SIDE * SIDE} bytes, got {len(data)}")
        return np.frombuffer(data, dtype=np.uint8).reshape(SIDE, SIDE)

    def is_blank(self, item: np.ndarray) -> bool:
        return int(item.max()) < 8 or int(np.count_nonzero(item)) < 3

    def featurize(self, items: Sequence[np.ndarray]) -> torch.Tensor:
        if not items:
            return torch.zeros((0, 1, SIDE, SIDE))
        x = torch.from_numpy(np.stack(items).astype(np.float32) / 255.0)  # [N, 28, 28]
        return ((x - _MEAN) / _STD).unsqueeze(1)  # [N, 1, 28, 28]

    def build_model(self, name: str, n_classes: int) -> nn.Module:
        if name == "mlp":
            # The seed document's classic: 784 -> 1000 -> 10.
            return nn.Sequential(
                nn.Flatten(),  # [N, 784]
                nn.Linear(SIDE * SIDE, 1000),  # [N, 1000]
                nn.ReLU(),
                nn.Linear(1000, n_classes),  # [N, n_classes] logits
            )
        if name == "cnn":
            return nn.Sequential(
                nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [N, 32, 14, 14]
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [N, 64, 7, 7]
                nn.Flatten(),  # [N, 3136]
                nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25),  # [N, 128]
                nn.Linear(128, n_classes),  # [N, n_classes] logits
            )
        raise ConfigError(f"unknown image model {name!r}; choose one of {', '.join(self.models)}")
