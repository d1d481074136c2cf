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


def _bilingual(n: int) -> tuple[list[str], list[int]]:
    pos, neg = ["great", "excellent", "好", "喜欢"], ["bad", "terrible", "差", "讨厌"]
    fillers = ["the movie was {}", "service is {} today", "这个产品{}", "我觉得{}的地方很多", "{} experience overall"]
    texts, labels = [], []
    for i in range(n):
        filler = fillers[i % len(fillers)]
        texts += [filler.format(pos[i % 4]), filler.format(neg[(i + 1) % 4])]
        labels += [0, 1]
    return [task.parse({"text": t}) for t in texts], labels


def test_tfidf_is_the_default_and_ngram_still_builds():
    """``tfidf`` is the default text model; the old ``ngram`` name keeps working for saved models and configs."""
    assert task.models[0] == "tfidf" and "ngram" in task.models
    x = task.featurize(["", "hello", "你好，世界！"], "tfidf")
    assert x.shape[0] == 3 and x.shape[2] == 2 and int(x[0].sum()) == 0
    assert int(x[..., 0].max()) <= task.tfidf_buckets and int(x[..., 1].min()) >= 0
    logits = task.build_model("tfidf", 3)(x)
    assert logits.shape == (3, 3) and torch.isfinite(logits).all()


def test_tfidf_features_follow_the_scikit_learn_recipe():
    """English: words, word bigrams, space-padded character 2-5-grams; Chinese: character 1-3-grams of the
    whole text, punctuation included."""
    en = set(task.tfidf_features("Great film!"))
    assert {"w:great", "w:film", "b:great film", "c: g", "c:film!", "c:m! "} <= en
    zh = set(task.tfidf_features("好看！推荐"))
    assert {"h:好", "h:！", "h:看！", "h:好看！", "h:推荐"} <= zh and not any(f.startswith("w:") for f in zh)


def _train_tfidf(texts: list[str], labels: list[int], epochs: int = 20) -> torch.nn.Module:
    from datawheel.artifacts import LabelledSet
    from datawheel.config import ModelSection
    from datawheel.stages.train import train

    names = ("neg", "pos")
    data = LabelledSet([task.encode(t) for t in texts], [names[1 - y] for y in labels],
                       [task.content_hash(t) for t in texts])
    out = train(task, data, names, ModelSection(epochs=epochs, validation_share=0.0, calibrate=False))
    assert out.model_name == "tfidf"
    return out.module


def test_tfidf_model_learns_a_bilingual_set_through_the_trainer_and_survives_save_load(tmp_path: Path):
    """The default model, trained by the wheel's own loop, fits 40 bilingual sentences; its state dict,
    fitted document frequencies included, reloads into a fresh model that answers the same."""
    texts, labels = _bilingual(20)
    threads = torch.get_num_threads()
    try:
        model = _train_tfidf(texts, labels)
    finally:
        torch.set_num_threads(threads)
    x, y = task.featurize(texts, "tfidf"), 1 - torch.tensor(labels)
    assert (model(x).argmax(1) == y).float().mean() >= 0.95
    assert float(model.state_dict()["docs"]) > 0  # document frequencies were counted
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fresh = task.build_model("tfidf", 2).eval()
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert torch.allclose(fresh(x), model.eval()(x))


def test_tfidf_model_keeps_up_with_scikit_learn_tfidf_logistic_regression():
    """On a noisy synthetic set (sentiment carried by a few of many words, 15 % of labels flipped), the
    default model trained by the wheel scores within two points of TF-IDF + LogisticRegression(C=10)."""
    import random

    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    rng = random.Random(7)
    cues = (["good", "great", "loved", "fine", "superb", "nice"], ["bad", "awful", "hated", "poor", "boring", "dull"])
    filler = [f"w{i}" for i in range(300)]

    def sample(n: int) -> tuple[list[str], list[int]]:
        texts, labels = [], []
        for _ in range(n):
            y = rng.randrange(2)
            words = rng.sample(filler, 8) + rng.sample(cues[y], 1) + (rng.sample(cues[1 - y], 1) if rng.random() < .3
                                                                      else [])
            rng.shuffle(words)
            texts.append(task.parse({"text": " ".join(words)}))
            labels.append(y if rng.random() > .15 else 1 - y)
        return texts, labels

    train_texts, train_labels = sample(600)
    test_texts, test_labels = sample(400)
    vec = make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                     TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True))
    base = make_pipeline(vec, LogisticRegression(C=10, max_iter=1000)).fit(train_texts, train_labels)
    base_acc = float(np.mean(base.predict(test_texts) == np.array(test_labels)))
    threads = torch.get_num_threads()
    try:
        model = _train_tfidf(train_texts, train_labels)
    finally:
        torch.set_num_threads(threads)
    pred = 1 - model.eval()(task.featurize(test_texts, "tfidf")).argmax(1)
    acc = float((pred == torch.tensor(test_labels)).float().mean())
    assert acc >= base_acc - 0.02, (acc, base_acc)


def test_ngram_model_learns_a_bilingual_sentiment_set():
    """The hashed n-gram model fits 40 English and Chinese sentences told apart only by sentiment words."""
    texts, labels = _bilingual(20)
    torch.manual_seed(0)
    x, y = task.featurize(texts, "ngram"), torch.tensor(labels)
    model = task.build_model("ngram", 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (model(x).argmax(1) == y).float().mean() >= 0.9


def test_the_language_of_a_set_is_read_from_its_script_or_its_function_words():
    from datawheel.tasks.text_encoders import detect_language

    assert detect_language(["the match was amazing", "this soup is good and cheap"]) == "en"
    assert detect_language(["我喜欢这个产品", "质量很好，物流也快", "great 手机"]) == "zh"
    assert detect_language(["これはとても良いです"]) == "ja"
    assert detect_language(["배송이 빨라요"]) == "ko"
    assert detect_language(["le film était très bon", "une merveille de mise en scène"]) == "und"


def test_init_records_the_language_and_refuses_an_english_encoder_on_chinese(tmp_path):
    import json

    from datawheel.errors import WorkspaceError
    from datawheel.wheel.init import init_workspace

    rows = [{"text": t, "label": lab} for t, lab in [("质量很好，非常满意", "pos"), ("物流很快，包装完好", "pos"),
                                                    ("太差了，不会再买", "neg"), ("屏幕有划痕，退货", "neg")] * 5]
    seed, gold = tmp_path / "seed.jsonl", tmp_path / "gold.jsonl"
    for path, part in ((seed, rows), (gold, rows[:8])):
        path.write_text("".join(json.dumps({**r, "text": f"{r['text']} {i}"}) + "\n" for i, r in enumerate(part)),
                        encoding="utf-8")
    with pytest.raises(WorkspaceError, match=r"reads English only.*'zh'.*tfidf"):
        init_workspace(tmp_path / "ws", task="text-classification", labels=("neg", "pos"), seed_data=seed,
                       eval_data=gold, model_name="minilm-head")
    assert not (tmp_path / "ws").exists()
    ws = init_workspace(tmp_path / "ws", task="text-classification", labels=("neg", "pos"), seed_data=seed,
                        eval_data=gold, epochs=2)
    assert ws.config.model.language == "zh" and 'language = "zh"' in (ws.root / "datawheel.toml").read_text()
    ws.store.close()
