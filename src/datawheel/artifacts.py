"""What flows between stages, and how an artifact's identity is computed.

An artifact's id is a fingerprint of its inputs' ids, the stage name and the
stage's config (as Hugging Face ``datasets`` fingerprints transforms), so the
same inputs under the same settings always name the same artifact.
Files are written to a temporary name and renamed into place: a reader never
sees half an artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

#: a training progress callback: (epoch, epochs, that epoch's stats)
Progress = Callable[[int, int, dict], None]


def fingerprint(stage: str, inputs: list[str], config: Any) -> str:
    payload = json.dumps({"stage": stage, "inputs": inputs, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def private_file(path: Path) -> Path:
    """Create ``path`` (and its folders) readable by its owner only, if it does not exist yet.

    Workspace files hold users' (redacted) inputs and lineage: no other local account may read them.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write, fsync, then rename: the file is either absent or whole, and readable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_parquet(table: pa.Table, path: Path) -> str:
    """Write a Parquet file atomically and return its sha256."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue().to_pybytes()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class LabelledSet:
    """Canonical item bytes with one label each: the seed set, the golden set, a snapshot's training view."""

    inputs: list[bytes]
    labels: list[str]
    hashes: list[str]
    #: per item, the slice it belongs to ({"locale": "zh-CN", "device": "ios"}); golden sets may carry it
    meta: list[dict[str, str]] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[bytes, str]]:
        return iter(zip(self.inputs, self.labels))

    def to_arrow(self) -> pa.Table:
        columns = {"input": pa.array(self.inputs, pa.binary()), "label": pa.array(self.labels, pa.string()),
                   "content_hash": pa.array(self.hashes, pa.string())}
        if self.meta is not None:
            columns["metadata"] = pa.array([json.dumps(m, sort_keys=True) for m in self.meta], pa.string())
        return pa.table(columns)

    @classmethod
    def from_arrow(cls, table: pa.Table) -> LabelledSet:
        meta = ([json.loads(m) for m in table.column("metadata").to_pylist()]
                if "metadata" in table.column_names else None)
        return cls(table.column("input").to_pylist(), table.column("label").to_pylist(),
                   table.column("content_hash").to_pylist(), meta)

    @classmethod
    def read(cls, path: Path) -> LabelledSet:
        wanted = ["input", "label", "content_hash", "metadata"]
        return cls.from_arrow(pq.read_table(path, columns=[c for c in wanted if c in pq.read_schema(path).names]))

    def __add__(self, other: LabelledSet) -> LabelledSet:
        """Training sets are concatenated; slices matter only on the golden set, so they are not carried."""
        return LabelledSet(self.inputs + other.inputs, self.labels + other.labels, self.hashes + other.hashes)


def drop_users(snapshot: pa.Table, user_refs: set[str]) -> pa.Table:
    """A snapshot table's rows minus every row one of these users (by keyed pseudonym) contributed to.

    A row pools every vote on one input, so a row any of them voted on goes whole: its content may be theirs.
    """
    keep = [not user_refs.intersection(refs) for refs in snapshot.column("user_refs").to_pylist()]
    return snapshot.filter(pa.array(keep, pa.bool_()))


@dataclass(frozen=True)
class Verdict:
    """A stage's judgement on one record: kept, or dropped with a reason code."""

    record_id: str
    stage: str
    accepted: bool
    reason: str


@dataclass(frozen=True)
class Snapshot:
    """The curated dataset of one cycle: one row per distinct item, with lineage to records and users."""

    id: str
    items: LabelledSet
    confidence: list[float]
    record_ids: list[list[str]]
    user_ids: list[list[str]]
    stats: dict[str, Any] = field(default_factory=dict)

    def to_arrow(self, user_ref: Callable[[str], str]) -> pa.Table:
        """The Parquet view; user ids are replaced by keyed pseudonyms (lineage lives in the store)."""
        refs = [[user_ref(u) for u in users] for users in self.user_ids]
        return self.items.to_arrow().append_column("confidence", pa.array(self.confidence, pa.float64())) \
            .append_column("record_ids", pa.array(self.record_ids, pa.list_(pa.string()))) \
            .append_column("user_refs", pa.array(refs, pa.list_(pa.string())))


@dataclass(frozen=True)
class Vote:
    """One label a user gave for one record: a correction, a confirmation or a donation."""

    record_id: str
    user_id: str
    label: str
    source: str  # contribution | correction | confirmation


@dataclass(frozen=True)
class LabelledRecord:
    record_id: str
    user_id: str
    kind: str
    content_hash: str
    input: bytes
    consent_at_creation: bool
    consent_now: bool
    created_at: datetime


@dataclass(frozen=True)
class AnswerFeedback:
    """One user's judgement of a generated answer: a thumb, the answer they wanted, or the better of two."""

    user_id: str
    rating: int | None
    correction: str | None
    chosen: int | None


@dataclass(frozen=True)
class Exchange:
    """A text-generation interaction as curation sees it: the conversation, the answers given, the feedback."""

    record_id: str
    user_id: str
    content_hash: str
    input: bytes
    answers: tuple[str, ...]
    feedback: tuple[AnswerFeedback, ...]
    consent_at_creation: bool
    consent_now: bool
    created_at: datetime
    #: the model version that answered (an upstream server's version in proxy mode)
    model_version: str = ""
