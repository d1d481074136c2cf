"""The text task's own behaviour: NFKC normalization, stable hashed features in English and Chinese, text files.

What every task must do (round trips, refusing bad input, shapes, training, save/load, ONNX) is in
test_contract.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import datawheel
from datawheel.errors import InvalidInput
from datawheel.importers import parse_file
from datawheel.tasks.text import MAX_FEATURES, TextClassification

task = TextClassification()


def test_nfkc_and_whitespace():
    """Full-width forms become plain, whitespace runs collapse, Chinese is kept as is."""
    assert task.parse({"text": "ＡＢＣ１２３"}) == "ABC123"
    assert task.parse({"text": "  a \t\n b  "}) == "a b"
    assert task.parse({"text": "我喜欢这个产品"}) == "我喜欢这个产品"


def test_chinese_is_tokenized_per_character():
    """Han characters, Extension B included, are tokens of their own, so a word glued to Chinese stays one feature."""
    feats = task.features("价格abc好𠀀")
    assert {"w:价", "w:格", "w:abc", "w:好", "w:𠀀", "c:价格", "c:<ab", "c:bc>", "b:abc 好"} <= set(feats)


def test_features_are_lowercased_and_capped():
    """Case does not change features, and a long text keeps only its first MAX_FEATURES features."""
    assert task.features("Hello WORLD") == task.features("hello world")
    long = " ".join(f"w{i}" for i in range(2000))
    assert task.features(long)[:3] == ["w:w0", "w:w1", "w:w2"] and len(task.features(long)) == MAX_FEATURES
    assert task.featurize([long, "a"]).shape == (2, MAX_FEATURES)


def test_text_files_read_like_requests_and_a_bad_file_is_named(tmp_path: Path):
    """The importer reads a UTF-8 file (with or without a BOM) as a request's text; invalid UTF-8 names the file."""
    good = tmp_path / "good.txt"
    good.write_bytes("\ufeff  ＡＢＣ\n 好  ".encode())
    assert parse_file(good, task) == "ABC 好" == task.parse({"text": "ＡＢＣ 好"})
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9")
    with pytest.raises(InvalidInput, match="not UTF-8") as info:
        parse_file(bad, task)
    assert info.value.field == str(bad)
    long = tmp_path / "long.txt"
    long.write_text("x" * 10_001, encoding="utf-8")
    with pytest.raises(InvalidInput, match="at most 10000") as info:
        parse_file(long, task)
    assert info.value.field == str(long)


def test_an_image_file_is_not_text(tmp_path: Path):
    """An image in a text import is refused as the wrong kind of file, naming the file."""
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(InvalidInput, match="image files cannot be read by the text-classification task") as info:
        parse_file(path, task)
    assert info.value.field == str(path)


SRC = str(Path(datawheel.__file__).resolve().parents[1])
FEATURE_SCRIPT = ("from datawheel.tasks.text import TextClassification as T; "
                  "print(T().featurize(['hello 世界']).tolist())")


def test_features_do_not_depend_on_the_process_hash_seed():
    """Feature ids are the same on every call and in processes with different PYTHONHASHSEED."""
    assert torch.equal(task.featurize(["hello 世界"]), task.featurize(["hello 世界"]))
    env = {**os.environ, "PYTHONPATH": SRC}
    outs = {subprocess.run([sys.executable, "-c", FEATURE_SCRIPT], capture_output=True, text=True, check=True,
                           env={**env, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1
    assert outs.pop().strip() == str(task.featurize(["hello 世界"]).tolist())


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_is_idempotent_and_featurize_never_fails(text):
    """Any string parses to a fixed point (or is refused clearly), and its features are valid ids."""
    try:
        once = task.parse({"text": text})
    except InvalidInput as exc:
        assert str(exc).startswith("input.text:")
        return
    assert task.parse({"text": once}) == once
    ids = task.featurize([once])
    assert ids.dtype == torch.long and int(ids.min()) >= 0 and int(ids.max()) <= task.n_buckets


def test_too_long_text_states_the_limit_and_the_length():
    """The length check runs after normalization and tells the client both numbers."""
    assert len(task.parse({"text": "  " + "x" * 10_000 + "  "})) == 10_000
    with pytest.raises(InvalidInput, match=r"10001.*10000"):
        task.parse({"text": "x" * 10_001})


def test_blank_detection():
    """Texts without letters or digits are blank; a single Chinese character or 'a1' is not."""
    for text in ("", "   ", "!!!"):
        assert task.quality_issue(task.parse({"text": text})) == "blank_input"
    assert task.quality_issue("好") is None and task.quality_issue("a1") is None


def test_only_placeholders_is_its_own_reason():
    """A text the privacy screen emptied down to placeholders is dropped as such, not as blank."""
    assert task.quality_issue("<EMAIL> <PHONE:abc>") == "only_placeholders"
    assert task.quality_issue("mail <EMAIL> about the refund") is None


def test_empty_text_featurizes_to_padding_and_model_gives_finite_logits():
    """An empty text is a row of padding, and the model still returns finite logits for it."""
    x = task.featurize(["", "hello"])
    assert x.shape[0] == 2 and int(x[0].sum()) == 0
    logits = task.build_model("ngram", 3)(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_ngram_model_learns_a_bilingual_sentiment_set():
    """The hashed n-gram model fits 40 English and Chinese sentences told apart only by sentiment words."""
    pos, neg = ["great", "excellent", "好", "喜欢"], ["bad", "terrible", "差", "讨厌"]
    fillers = ["the movie was {}", "service is {} today", "这个产品{}", "我觉得{}的地方很多", "{} experience overall"]
    texts, labels = [], []
    for i in range(20):
        filler = fillers[i % len(fillers)]
        texts += [filler.format(pos[i % 4]), filler.format(neg[(i + 1) % 4])]
        labels += [0, 1]
    torch.manual_seed(0)
    x, y = task.featurize([task.parse({"text": t}) for t in texts]), torch.tensor(labels)
    model = task.build_model("ngram", 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (model(x).argmax(1) == y).float().mean() >= 0.9
