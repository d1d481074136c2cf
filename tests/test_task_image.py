"""The image task's own behaviour: MNIST-style normalization, blank drawings, image files, the stored form.

What every task must do (round trips, refusing bad input, shapes, training, save/load, ONNX) is in
test_contract.py.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image, ImageDraw
from sklearn.datasets import load_digits

from datawheel.errors import InvalidInput
from datawheel.importers import parse_file
from datawheel.tasks.image import ImageClassification, to_png_base64

TASK = ImageClassification()
DIGITS = np.clip(load_digits().images * 16, 0, 255).astype(np.uint8)  # [1797, 8, 8], light ink on dark


def draw_digit(ink: int = 0, paper: int = 255, size: tuple[int, int] = (90, 120)) -> np.ndarray:
    """A hand-drawn-looking '2' as a grayscale array, off-centre on a larger page."""
    img = Image.new("L", size, paper)
    draw = ImageDraw.Draw(img)
    draw.arc((20, 15, 70, 60), start=180, end=20, fill=ink, width=8)
    draw.line((68, 45, 22, 100), fill=ink, width=8)
    draw.line((22, 100, 75, 100), fill=ink, width=8)
    return np.asarray(img)


def encode(img: Image.Image, fmt: str = "PNG", **options: object) -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **options)
    return base64.b64encode(buf.getvalue()).decode()


def centre_of_mass(a: np.ndarray) -> tuple[float, float]:
    a = a.astype(np.float64)
    rows, cols = a.sum(axis=1), a.sum(axis=0)
    return (rows * np.arange(len(rows))).sum() / a.sum(), (cols * np.arange(len(cols))).sum() / a.sum()


def assert_mnist_like(a: np.ndarray) -> None:
    assert a.shape == (28, 28) and a.dtype == np.uint8
    rows, cols = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
    assert rows[-1] - rows[0] + 1 <= 20 and cols[-1] - cols[0] + 1 <= 20
    cy, cx = centre_of_mass(a)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


# --- normalization -----------------------------------------------------------------------------------------


def test_polarity_does_not_matter():
    """A digit drawn black-on-white and the same digit white-on-black normalize to the same array."""
    dark_on_light = TASK.parse({"pixels": draw_digit(0, 255).tolist()})
    light_on_dark = TASK.parse({"pixels": draw_digit(255, 0).tolist()})
    assert np.abs(dark_on_light.astype(int) - light_on_dark.astype(int)).max() <= 1
    assert_mnist_like(dark_on_light)


def test_rgba_palette_jpeg_and_16bit_versions_match_the_plain_drawing():
    """RGBA on transparency, palette, JPEG and 16-bit PNG versions of one drawing all normalize like the plain PNG."""
    gray = draw_digit()
    plain = TASK.parse({"image": to_png_base64(gray)})
    rgba = np.zeros((*gray.shape, 4), dtype=np.uint8)
    rgba[..., 3] = 255 - gray  # black strokes on a fully transparent page
    versions = {
        "rgba": encode(Image.fromarray(rgba, "RGBA")),
        "palette": encode(Image.fromarray(gray).convert("RGB").convert("P")),
        "rgb": encode(Image.fromarray(gray).convert("RGB")),
        "16-bit": encode(Image.fromarray(gray.astype(np.uint16) * 257)),
        "jpeg": encode(Image.fromarray(gray).convert("RGB"), "JPEG", quality=90),
    }
    for kind, b64 in versions.items():
        got = TASK.parse({"image": f"data:image/png;base64,{b64}" if kind == "rgba" else b64})
        diff = np.abs(got.astype(int) - plain.astype(int))
        assert diff.mean() < (2 if kind == "jpeg" else 0.5), kind
        assert_mnist_like(got)


def test_all_sklearn_digits_are_fitted_and_centred():
    """Every scikit-learn digit comes out 28x28 uint8, within a 20x20 box, centre of mass within 1 px of (14, 14)."""
    for pixels in DIGITS:
        assert_mnist_like(TASK.parse({"pixels": pixels.tolist()}))


def test_sklearn_digits_pixels_and_png_agree():
    """A load_digits image sent as ``pixels`` and as PNG base64 normalizes to identical bytes."""
    for pixels in DIGITS[::7]:
        via_pixels = TASK.parse({"pixels": pixels.tolist()})
        assert TASK.encode(via_pixels) == TASK.encode(TASK.parse({"image": to_png_base64(pixels)}))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(DIGITS) - 1), scale=st.integers(1, 12), invert=st.booleans(),
       margins=st.tuples(*[st.integers(0, 60)] * 4))
def test_scaled_padded_digits_are_centred(index: int, scale: int, invert: bool, margins: tuple[int, ...]):
    """A digit at any scale, anywhere on a page, in either polarity, is fitted into 20x20 and centred."""
    page = np.kron(DIGITS[index], np.ones((scale, scale), dtype=np.uint8))
    top, bottom, left, right = margins
    page = np.pad(page, ((top, bottom), (left, right)))
    got = TASK.parse({"image": to_png_base64(255 - page if invert else page)})
    assert_mnist_like(got)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_any_pixel_array_normalizes_the_same_through_png(pixels: np.ndarray):
    """Any uint8 array gives a 28x28 uint8 item within 20x20, identical whether sent as pixels or as PNG."""
    got = TASK.parse({"pixels": pixels.tolist()})
    assert got.shape == (28, 28) and got.dtype == np.uint8
    if got.any():
        rows, cols = np.flatnonzero(got.any(axis=1)), np.flatnonzero(got.any(axis=0))
        assert rows[-1] - rows[0] + 1 <= 20 and cols[-1] - cols[0] + 1 <= 20
    assert np.array_equal(got, TASK.parse({"image": to_png_base64(pixels)}))


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 30), st.integers(1, 30))))
def test_inverting_any_array_changes_nothing(pixels: np.ndarray):
    """Inverting an image never changes its normalized form, unless its border is exactly mid-grey."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]).astype(float)
    if np.median(border) == 127.5:
        return
    assert np.array_equal(TASK.parse({"pixels": pixels.tolist()}), TASK.parse({"pixels": (255 - pixels).tolist()}))


@pytest.mark.parametrize("value", [0, 37, 255])
def test_blank_image_is_all_zero_and_blank(value: int):
    """A one-colour image normalizes to all zeros without error, and curation will drop it as blank."""
    item = TASK.parse({"image": to_png_base64(np.full((50, 30), value, dtype=np.uint8))})
    assert not item.any() and TASK.quality_issue(item) == "blank_input"


def test_digit_is_not_blank():
    """A drawn digit is not blank, nor is any scikit-learn digit."""
    assert TASK.quality_issue(TASK.parse({"pixels": draw_digit().tolist()})) is None
    assert all(TASK.quality_issue(TASK.parse({"pixels": p.tolist()})) is None for p in DIGITS[:50])


def test_near_blank_items_are_blank():
    """Faint specks (max below 8, or fewer than 3 lit pixels) count as blank."""
    faint = np.full((28, 28), 7, dtype=np.uint8)
    specks = np.zeros((28, 28), dtype=np.uint8)
    specks[3, 3] = specks[20, 20] = 255
    assert TASK.quality_issue(faint) == TASK.quality_issue(specks) == "blank_input"


# --- files (read by the importer, which sends their bytes as ``input.image``) -------------------------------
# Malformed requests are checked for every task in test_contract.py.

PNG = base64.b64decode(to_png_base64(draw_digit()))


def test_image_files_read_like_requests(tmp_path: Path):
    """A PNG or JPEG on disk normalizes exactly as the same bytes sent in ``input.image``."""
    path = tmp_path / "two.png"
    path.write_bytes(PNG)
    assert np.array_equal(parse_file(path, TASK), TASK.parse({"image": base64.b64encode(PNG).decode()}))
    jpeg = tmp_path / "two.jpg"
    Image.fromarray(draw_digit()).save(jpeg, quality=90)
    assert_mnist_like(parse_file(jpeg, TASK))


@pytest.mark.parametrize("content", [None, b"", b"not an image", PNG[:100]])
def test_unreadable_file_names_the_file(tmp_path: Path, content: bytes | None):
    """A missing, empty, non-image or truncated file raises InvalidInput naming the file, not the request field."""
    path = tmp_path / "broken-7.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidInput) as info:
        parse_file(path, TASK)
    assert info.value.field == str(path) and "broken-7.png" in str(info.value)


def test_a_text_file_is_not_an_image(tmp_path: Path):
    """A text file in an image import is refused as the wrong kind of file, naming the file."""
    path = tmp_path / "note.txt"
    path.write_text("a seven", encoding="utf-8")
    with pytest.raises(InvalidInput, match="text files cannot be read by the image-classification task") as info:
        parse_file(path, TASK)
    assert info.value.field == str(path)


# --- storage and features ----------------------------------------------------------------------------------


def test_items_are_stored_as_784_raw_bytes():
    """The stored form is the 28x28 uint8 pixels as they are, and other lengths or shapes are refused."""
    item = TASK.parse({"pixels": DIGITS[0].tolist()})
    assert TASK.encode(item) == item.tobytes() and len(item.tobytes()) == 784
    with pytest.raises(ValueError):
        TASK.decode(TASK.encode(item)[:-1])
    with pytest.raises(ValueError):
        TASK.encode(np.zeros((8, 8), dtype=np.uint8))


def test_featurize_shape_and_scale():
    """Items stack into a float32 [N, 1, 28, 28] tensor, standardized with MNIST's mean and std."""
    items = [TASK.parse({"pixels": p.tolist()}) for p in DIGITS[:5]]
    x = TASK.featurize(items)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert torch.allclose(x.min(), torch.tensor((0 - 0.1307) / 0.3081))
    assert TASK.featurize([]).shape == (0, 1, 28, 28)


@given(arrays(np.uint8, st.tuples(st.integers(1, 4), st.just(28), st.just(28))))
@settings(max_examples=50, deadline=None)
def test_featurize_gives_the_bits_the_arithmetic_gave(batch: np.ndarray):
    """Features come from a table of 256 values; a model must see exactly what dividing and standardizing whole
    images gave before (the weights of every registered model were trained on those bits)."""
    x = torch.from_numpy(batch.astype(np.float32) / 255.0)
    expected = ((x - 0.1307) / 0.3081).unsqueeze(1)
    assert torch.equal(TASK.featurize(list(batch)), expected)


def test_every_pixel_value_featurizes_as_the_arithmetic_did():
    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    item = np.zeros((28, 28), dtype=np.uint8)
    item[:16, :16] = values[0]
    x = torch.from_numpy(item.astype(np.float32) / 255.0)
    assert torch.equal(TASK.featurize([item])[0, 0], (x - 0.1307) / 0.3081)
