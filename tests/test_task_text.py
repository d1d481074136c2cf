"""The text task: NFKC normalization, stable hashed features in English and Chinese, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from datawheel.errors import ConfigError, InvalidInput
from datawheel.tasks.text import TextClassification

task = TextClassification()


def test_nfkc_and_whitespace():
    """Full-width forms become plain, whitespace runs collapse, Chinese is kept as is."""
    assert task.parse({"text": "ＡＢＣ１２３"}) == "ABC123"
    assert task.parse({"text": "  a \t\n b  "}) == "a b"
    assert task.parse({"text": "我喜欢这个产品"}) == "我喜欢这个产品"


def test_chinese_is_tokenized_per_character():
    """Han characters are tokens of their own, so a word glued to Chinese is still its own feature."""
    feats = task.features("价格abc好")
    assert {"w:价", "w:格", "w:abc", "w:好", "c:价格"} <= set(feats)


FEATURE_SCRIPT = "from datawheel.tasks.text import TextClassification as T; print(T().featurize(['hello 世界']).tolist())"


def test_features_do_not_depend_on_the_process_hash_seed():
    """Feature ids are the same in processes with different PYTHONHASHSEED."""
    outs = {subprocess.run([sys.executable, "-c", FEATURE_SCRIPT], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1
    assert outs.pop().strip() == str(task.featurize(["hello 世界"]).tolist())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
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


@pytest.mark.parametrize("payload, field", [
    ({}, "input"),
    ({"text": "a", "extra": 1}, "input"),
    ({"text": 5}, "input.text"),
    ({"text": None}, "input.text"),
    ({"text": ["a"]}, "input.text"),
    ({"text": "x" * 10_001}, "input.text"),
    ({"text": "bad \ud800 surrogate"}, "input.text"),
])
def test_bad_input_names_the_field(payload, field):
    """Missing, mistyped, too long or invalid text is refused with the field named."""
    with pytest.raises(InvalidInput) as info:
        task.parse(payload)
    assert str(info.value).startswith(field + ":")


def test_blank_detection():
    """Texts without letters or digits are blank; a single Chinese character or 'a1' is not."""
    for text in ("", "   ", "!!!"):
        assert task.is_blank(task.parse({"text": text}))
    assert not task.is_blank("好") and not task.is_blank("a1")


def test_empty_text_featurizes_to_padding_and_model_gives_finite_logits():
    """An empty text is a row of padding, and the model still returns finite logits for it."""
    x = task.featurize(["", "hello"])
    assert x.shape[0] == 2 and int(x[0].sum()) == 0
    logits = task.build_model("ngram", 3)(x)
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    with pytest.raises(ConfigError, match="ngram"):
        task.build_model("bert", 3)


def test_ngram_model_learns_a_bilingual_sentiment_set():
    """The hashed n-gram model separates English and Chinese positive from negative texts."""
    pos = ["great", "excellent", "好", "喜欢", "wonderful", "非常好"]
    neg = ["terrible", "awful", "差", "讨厌", "horrible", "非常差"]
    texts, labels = [], []
    for i in range(40):
        texts.append(f"{pos[i % 6]} item {i}")
        labels.append(0)
        texts.append(f"{neg[i % 6]} item {i}")
        labels.append(1)
    torch.manual_seed(0)
    x, y = task.featurize(texts), torch.tensor(labels)
    model = task.build_model("ngram", 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (model(x).argmax(1) == y).float().mean() >= 0.9
