"""Reading a team's labelled bootstrap data: ImageFolder, CSV, JSONL or Parquet.

Every error names the file and the line (or row) so the team can fix its data,
and nothing is returned until the whole file has been read: an import either
yields a complete set or fails. Columns the import does not read are named in a
warning (a typo in ``lable`` must not pass silently), and :func:`check_seed` /
:func:`golden_gaps` say when a set is too thin to train on or to measure with.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import multiprocessing
import os
from collections import Counter
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
#: a seed set needs at least this many examples of each label (text generation: this many rows in all); fewer
#: trains a model that has barely seen a class, and leaves the validation split nothing of it
MIN_EXAMPLES = 5
#: the columns each task reads (besides ``meta.*`` slice columns and a ``metadata`` object)
KNOWN_COLUMNS = {"text-generation": {"prompt", "messages", "response"},
                 "classification": {"label", "text", "image", "file"}}


def load_labelled(path: Path, task: Task, labels: tuple[str, ...],
                  clean: Callable[[Any, str], Any] | None = None,
                  meanwhile: Callable[[], object] | None = None,
                  warn: Callable[[str], None] | None = None) -> LabelledSet:
    """Read a labelled set; ``clean(item, where)`` (the privacy screen) sees every item before it is kept.

    ``meanwhile``: work of the caller's to do while worker processes decode image files (skipped when there
    are none), so it costs no extra wait. ``warn`` is told of columns the import ignores.
    """
    path = Path(path)
    # text-generation rows carry a reference answer (``response``) where classifier rows carry a label
    target = "response" if task.name == "text-generation" else "label"
    rows = list(_rows(path, target))
    if warn is not None:
        ignored = ignored_columns(rows, task)
        if ignored:
            warn(f"{path}: ignored column(s) {', '.join(ignored)}; the import reads "
                 f"{', '.join(sorted(_known(task)))}, meta.* and metadata")
    allowed = set(labels)
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


def _known(task: Task) -> set[str]:
    return KNOWN_COLUMNS["text-generation" if task.name == "text-generation" else "classification"]


def ignored_columns(rows: list[tuple[str, dict, Path]], task: Task) -> list[str]:
    """Column names no row's value is read from, sorted: a typo, or data the team thought was used."""
    known = _known(task) | {"metadata"}
    names = {k for _, row, _ in rows for k in row if isinstance(k, str)}
    return sorted(repr(k) for k in names if k not in known and not k.startswith("meta."))


def check_seed(seed: LabelledSet, task: Task, labels: tuple[str, ...], source: Path,
               min_examples: int = MIN_EXAMPLES) -> None:
    """Refuse a seed set too thin to train on: a label with fewer than ``min_examples`` rows (text generation:
    fewer rows in all), naming every label short and how many rows it has."""
    if task.name == "text-generation":
        if len(seed) < min_examples:
            raise ImportDataError(f"{source}: {len(seed)} usable row(s); the seed set needs at least {min_examples}")
        return
    counts = Counter(seed.labels)
    short = [f"{label} ({counts[label]})" for label in labels if counts[label] < min_examples]
    if short:
        raise ImportDataError(f"{source}: too few seed examples for label(s) {', '.join(short)}; each label needs "
                              f"at least {min_examples} (found in brackets; rows also in the golden set do not count)")


def golden_gaps(golden: LabelledSet, task: Task, labels: tuple[str, ...], source: Path) -> list[str]:
    """Warnings for labels the golden set has no example of: the gate cannot measure a model on them."""
    if task.name == "text-generation":
        return []
    missing = [label for label in labels if label not in set(golden.labels)]
    if not missing:
        return []
    return [f"{source}: no golden examples of label(s) {', '.join(missing)}; the gate cannot measure a model on "
            "them (its recall there is never checked)"]


def _rows(path: Path, target: str = "label") -> Iterator[tuple[str, dict, Path]]:
    """(where, row, folder relative paths start from) for each row of the file or ImageFolder."""
    if not path.exists():
        raise ImportDataError(f"{path}: no such file or directory")
    if path.is_dir():
        return _image_folder(path)
    if path.suffix.lower() == ".csv":
        return _csv_rows(path, target)
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        return _jsonl_rows(path)
    if path.suffix.lower() == ".parquet":
        return _parquet_rows(path, target)
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


def _read_text(path: Path) -> str:
    """The file as text; bytes that are not UTF-8 are reported by line. A BOM (editors on Windows) is dropped."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportDataError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ImportDataError(f"{path}:{line}: not UTF-8 text") from None


def _csv_rows(path: Path, target: str) -> Iterator[tuple[str, dict, Path]]:
    """Rows by the line they start on. Quotes are parsed strictly: an unclosed quote would otherwise swallow
    every line up to the next quote (or the end of the file) into one field, and be reported as a missing label."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    start = 1
    try:
        header = next(reader, None)
        if header is None or target not in header:
            raise ImportDataError(f"{path}:1: header must name a {target!r} column"
                                  + (" and a 'text' or 'image' column" if target == "label" else ""))
        start = reader.line_num + 1
        for fields in reader:
            if fields:  # a blank line
                if len(fields) != len(header):
                    raise ImportDataError(_field_count(path, start, reader.line_num, len(fields), len(header)))
                yield f"{path}:{start}", dict(zip(header, fields)), path.parent
            start = reader.line_num + 1
    except csv.Error as exc:
        raise ImportDataError(_quote_problem(path, start, reader.line_num, str(exc))) from None


def _field_count(path: Path, start: int, end: int, found: int, expected: int) -> str:
    if end > start:
        return (f"{path}:{start}: a quoted field starting on this line runs on to line {end} ({found} fields where "
                f"the header names {expected}); is a quote unclosed?")
    hint = "; a comma inside a value needs the value in double quotes" if found > expected else ""
    return f"{path}:{start}: {found} field{'' if found == 1 else 's'} where the header names {expected}{hint}"


def _quote_problem(path: Path, start: int, end: int, problem: str) -> str:
    if "unexpected end of data" in problem:
        return f"{path}:{start}: unclosed quote (the field starting on this line runs to the end of the file)"
    if end > start:
        return f"{path}:{start}: unclosed quote (the quoted field starting on this line runs on to line {end})"
    return f"{path}:{start}: malformed quoting ({problem}); a quote inside a quoted value is written twice (\"\")"


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict, Path]]:
    # split on newlines only: str.splitlines would also split on U+2028 and others, which JSON strings may hold
    for n, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportDataError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise ImportDataError(f"{path}:{n}: each line must be a JSON object")
        yield f"{path}:{n}", row, path.parent


def _parquet_rows(path: Path, target: str) -> Iterator[tuple[str, dict, Path]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:  # pyarrow's own errors, I/O, and a few plain ones
        raise ImportDataError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
    if target not in table.column_names:
        raise ImportDataError(f"{path}: needs a {target!r} column"
                              + (" and a 'text' or 'image' column" if target == "label" else ""))
    for n, row in enumerate(table.to_pylist()):
        yield f"{path}: row {n}", row, path.parent
