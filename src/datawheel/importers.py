"""Reading a team's labelled bootstrap data: ImageFolder, CSV, JSONL or Parquet.

Every error names the file and the line (or row) so the team can fix its data,
and nothing is returned until the whole file has been read: an import either
yields a complete set or fails.
"""

from __future__ import annotations

import base64
import csv
import json
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from datawheel.artifacts import LabelledSet
from datawheel.errors import ImportDataError, InvalidInput, PolicyRejected
from datawheel.tasks.base import Task

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
#: image files below this many are decoded in this process: starting workers would cost more than it saves
PARALLEL_MIN_FILES = 500


def load_labelled(path: Path, task: Task, labels: tuple[str, ...],
                  clean: Callable[[Any, str], Any] | None = None,
                  meanwhile: Callable[[], object] | None = None) -> LabelledSet:
    """Read a labelled set; ``clean(item, where)`` (the privacy screen) sees every item before it is kept.

    ``meanwhile``: work of the caller's to do while worker processes decode image files (skipped when there
    are none), so it costs no extra wait.
    """
    path = Path(path)
    rows = list(_rows(path))
    allowed = set(labels)
    # text-generation rows carry a reference answer (``response``) where classifier rows carry a label
    target = "response" if task.name == "text-generation" else "label"
    decoded = _decode_images(rows, task, meanwhile)
    inputs, out_labels, hashes, metas = [], [], [], []
    for where, row, base in rows:
        label = row.get(target)
        if label is None or str(label).strip() == "":
            raise ImportDataError(f"{where}: missing {target}")
        label = str(label)
        if target == "label" and label not in allowed:
            raise ImportDataError(f"{where}: unknown label {label!r}; the workspace's labels are {', '.join(labels)}")
        try:
            item = decoded.get(row["file"]) if "file" in row else None
            item = _parse_row(row, task, base, where) if item is None else task.decode(item)
            meta = _slice_meta(row, where)
            if clean is not None:
                item = clean(item, "text")
                label = clean(label, target) if target == "response" else label
                meta = {key: clean(v, f"metadata.{key}") for key, v in
                        ((clean(k, "metadata key"), v) for k, v in meta.items())}
        except (InvalidInput, PolicyRejected) as exc:
            raise ImportDataError(f"{where}: {exc}") from None
        data = task.encode(item)
        inputs.append(data)
        out_labels.append(label)
        hashes.append(task.content_hash(item))
        metas.append(meta)
    if not inputs:
        raise ImportDataError(f"{path}: no labelled examples found")
    return LabelledSet(inputs, out_labels, hashes, metas if any(metas) else None)


def _rows(path: Path) -> Iterator[tuple[str, dict, Path]]:
    """(where, row, folder relative paths start from) for each row of the file or ImageFolder."""
    if not path.exists():
        raise ImportDataError(f"{path}: no such file or directory")
    if path.is_dir():
        return _image_folder(path)
    if path.suffix.lower() == ".csv":
        return _csv_rows(path)
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        return _jsonl_rows(path)
    if path.suffix.lower() == ".parquet":
        return _parquet_rows(path)
    raise ImportDataError(f"{path}: unsupported format; use an ImageFolder directory, .csv, .jsonl or .parquet")


def _workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _decode_images(rows: list[tuple[str, dict, Path]], task: Task,
                   meanwhile: Callable[[], object] | None) -> dict[Any, bytes | None]:
    """The image files among ``rows``, decoded in worker processes, one per CPU: file -> canonical bytes.

    Decoding and normalizing 8,000 PNGs took 2.7 s in one process. Workers are forked (nothing to import
    again), so only where fork exists; a file a worker could not parse maps to None and is parsed again
    in the caller, which raises the error naming it. A small set, or one CPU, is decoded in the caller.
    """
    files = [row["file"] for _, row, _ in rows if "file" in row and Path(row["file"]).suffix.lower() in IMAGE_SUFFIXES]
    workers = min(_workers(), 8)
    if len(files) < PARALLEL_MIN_FILES or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return {}
    chunks = [files[i:i + 250] for i in range(0, len(files), 250)]
    Image.preinit()  # the decoders' plugins, imported before the fork rather than once per worker
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        results = pool.map(_encode_files, chunks, [task] * len(chunks))  # every chunk submitted: workers busy
        if meanwhile is not None:
            meanwhile()
        return {f: data for chunk, out in zip(chunks, results) for f, data in zip(chunk, out)}


def _encode_files(files: list[Path], task: Task) -> list[bytes | None]:
    """In a worker: each file's canonical bytes, or None where it cannot be parsed (the caller says why)."""
    out: list[bytes | None] = []
    for f in files:
        try:
            out.append(task.encode(parse_file(Path(f), task)))
        except InvalidInput:
            out.append(None)
    return out


def _slice_meta(row: dict[str, Any], where: str) -> dict[str, str]:
    """Slice metadata of a row: ``meta.KEY`` columns (CSV, Parquet) or a ``metadata`` object (JSONL).

    A plain ``metadata`` string (a CSV column of that name) is the team's own and is left alone.
    """
    meta = {k[len("meta."):]: v for k, v in row.items() if isinstance(k, str) and k.startswith("meta.")}
    nested = row.get("metadata")
    if nested is not None and not isinstance(nested, str):
        if not isinstance(nested, dict):
            raise ImportDataError(f"{where}: 'metadata' must be an object of slice names to values")
        meta |= nested
    out = {}
    for n, (key, value) in enumerate(meta.items()):
        if value is None or value == "":
            continue
        if not key or not isinstance(value, (str, int, float, bool)):
            # named by position: a key is the team's data and may hold what the privacy screen would redact
            raise ImportDataError(f"{where}: metadata entry {n + 1} must have a name and a string, number or "
                                  "boolean value")
        out[key] = str(value)
    return out


def _parse_row(row: dict[str, Any], task: Task, base: Path, where: str) -> Any:
    if task.name == "text-generation":
        if row.get("messages") is None and row.get("prompt") is None:
            raise ImportDataError(f"{where}: needs a 'prompt' (a string) or 'messages' (a list of {{role, content}})")
        return task.parse({"messages": row["messages"]} if row.get("messages") is not None
                          else {"prompt": row["prompt"]})
    if "file" in row:
        return parse_file(Path(row["file"]), task)
    if row.get("text") is not None:
        return task.parse({"text": row["text"]})
    image = row.get("image")
    if isinstance(image, (bytes, bytearray)):
        return task.parse({"image": base64.b64encode(image).decode()})
    if isinstance(image, str) and image:
        return parse_file(base / image, task, kind="image")
    raise ImportDataError(f"{where}: needs a 'text' or an 'image' column")


def parse_file(path: Path, task: Task, kind: str = "") -> Any:
    """The item in one file, read as the payload a product would send, so a file and a request agree.

    ``kind`` is the payload key, "image" or "text"; by default the suffix decides (PNG/JPEG are images,
    anything else is UTF-8 text). Errors name the file instead of the request field: the team fixes files.
    """
    kind = kind or ("image" if path.suffix.lower() in IMAGE_SUFFIXES else "text")
    try:
        data = path.read_bytes()
        # utf-8-sig: editors on Windows start files with a BOM, which is not part of the text
        value = base64.b64encode(data).decode("ascii") if kind == "image" else data.decode("utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"cannot read file ({exc.strerror or exc})", str(path)) from None
    except UnicodeDecodeError:
        raise InvalidInput("is not UTF-8 text", str(path)) from None
    try:
        return task.parse({kind: value})
    except InvalidInput as exc:
        if not exc.field.startswith(f"input.{kind}"):  # the payload's shape, not its content: a wrong kind of file
            raise InvalidInput(f"{kind} files cannot be read by the {task.name} task", str(path)) from None
        raise InvalidInput(exc.reason, str(path)) from None


def _image_folder(root: Path) -> Iterator[tuple[str, dict, Path]]:
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(label_dir.iterdir()):
            if f.is_file() and (f.suffix.lower() in IMAGE_SUFFIXES or f.suffix.lower() == ".txt"):
                yield str(f), {"label": label_dir.name, "file": f}, root


def _csv_rows(path: Path) -> Iterator[tuple[str, dict, Path]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "label" not in reader.fieldnames:
                raise ImportDataError(f"{path}:1: header must name a 'label' column and a 'text' or 'image' column")
            for row in reader:
                yield f"{path}:{reader.line_num}", row, path.parent
    except UnicodeDecodeError:
        raise ImportDataError(f"{path}: not UTF-8 text") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict, Path]]:
    try:
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ImportDataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise ImportDataError(f"{path}:{n}: each line must be a JSON object")
                yield f"{path}:{n}", row, path.parent
    except UnicodeDecodeError:
        raise ImportDataError(f"{path}: not UTF-8 text") from None


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict, Path]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:  # pyarrow's own errors, I/O, and a few plain ones
        raise ImportDataError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
    if "label" not in table.column_names:
        raise ImportDataError(f"{path}: needs a 'label' column and a 'text' or 'image' column")
    for n, row in enumerate(table.to_pylist()):
        yield f"{path}: row {n}", row, path.parent
