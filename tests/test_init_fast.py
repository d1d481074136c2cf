"""What makes `datawheel init` quick, checked as behaviour (never as time): imports only where used, image
files decoded in worker processes with the same result and the same errors, the augmentation's own grid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from datawheel import importers
from datawheel.errors import ImportDataError
from datawheel.importers import load_labelled
from datawheel.tasks.image import _BACKGROUND, SIDE, ImageClassification

LABELS = ("0", "1", "2")


def _folder(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = np.zeros((28, 28), dtype=np.uint8)
        pixels[4 + i % 9:20, 6:8 + i % 13] = rng.integers(128, 256)
        (root / LABELS[i % 3]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / LABELS[i % 3] / f"{i:04d}.png")
    return root


def test_init_imports_neither_the_web_server_nor_curation_libraries():
    """Creating a workspace loads what it uses: no FastAPI, scikit-learn, imagehash or datasketch."""
    heavy = ("fastapi", "sklearn", "imagehash", "datasketch", "datawheel.api")
    code = ("import sys, datawheel.wheel.init, datawheel.cli.main; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_public_api_still_resolves_lazily():
    import datawheel

    assert datawheel.init_workspace.__module__ == "datawheel.wheel.init"
    with pytest.raises(AttributeError):
        datawheel.no_such_name  # noqa: B018


def test_worker_processes_decode_to_the_same_set_and_run_the_callers_work(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch):
    task = ImageClassification()
    folder = _folder(tmp_path / "seed", 40)
    alone = load_labelled(folder, task, LABELS)
    monkeypatch.setattr(importers, "PARALLEL_MIN_FILES", 10)
    monkeypatch.setattr(importers, "_workers", lambda: 2)
    called = []
    together = load_labelled(folder, task, LABELS, meanwhile=lambda: called.append(True))
    assert called == [True]
    assert together.inputs == alone.inputs and together.labels == alone.labels and together.hashes == alone.hashes


def test_a_broken_file_decoded_by_a_worker_is_still_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = _folder(tmp_path / "seed", 30)
    (folder / "1" / "0007.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    monkeypatch.setattr(importers, "PARALLEL_MIN_FILES", 10)
    monkeypatch.setattr(importers, "_workers", lambda: 2)
    with pytest.raises(ImportDataError, match=r"0007\.png"):
        load_labelled(folder, ImageClassification(), LABELS)


def test_augmentation_samples_the_grid_affine_grid_would_give():
    """The grid is computed as one matrix product; the images are those of affine_grid with the same draws."""
    batch = ImageClassification().featurize([np.eye(SIDE, dtype=np.uint8) * 255, np.full((SIDE, SIDE), 90, np.uint8)])
    got = ImageClassification().augment(batch, torch.Generator().manual_seed(3))
    u = torch.rand((2, 4), generator=torch.Generator().manual_seed(3)) * 2 - 1
    angle, scale = u[:, 0] * np.radians(10), 1 + u[:, 1] * 0.1
    cos, sin, shift = torch.cos(angle) / scale, torch.sin(angle) / scale, u[:, 2:] * (4 / SIDE)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = nn.functional.affine_grid(theta, list(batch.shape), align_corners=False)
    expected = nn.functional.grid_sample(batch - _BACKGROUND, grid, align_corners=False) + _BACKGROUND
    assert torch.allclose(got, expected, atol=1e-5) and not torch.allclose(got, batch)
