"""Datasheets for snapshots (after Gebru et al., "Datasheets for Datasets") and Hugging Face export.

A snapshot is only trustworthy if someone can tell what is in it without
reading code: what it holds per label and source, what was dropped and why,
how noisy its labels are estimated to be, how many people contributed, and
where it came from. The datasheet is written beside the Parquet file, as JSON
for tools and Markdown for people, and never changes afterwards.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from datawheel.artifacts import LabelledSet, atomic_write_bytes, write_parquet
from datawheel.errors import ConfigError
from datawheel.tasks.base import Task

SCHEMA_VERSION = 1


def build(*, snapshot_id: str, created_at: str, cycle_id: str, task: str, labels: tuple[str, ...],
          parquet_path: str, sha256: str, stats: dict, rejected_by_reason: dict[str, int], records_in: int,
          records_kept: int, contributors: int, lineage: dict) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "id": snapshot_id,
        "created_at": created_at,
        "cycle_id": cycle_id,
        "task": task,
        "labels": list(labels),
        "file": {"path": parquet_path, "sha256": sha256, "rows": stats["items"]},
        "composition": {
            "items": stats["items"],
            "records": records_kept,
            "per_label": stats["per_label"],
            "per_source": stats["per_source"],
            "contributors": contributors,
            "annotated_items": stats["annotated_items"],
        },
        "curation": {
            "records_in": records_in,
            "dropped_by_reason": rejected_by_reason,
            "duplicates_merged": stats["duplicates_merged"],
            "near_duplicates_merged": stats["near_duplicates_merged"],
            "labelling_users": stats["users"],
            "users_excluded_as_unreliable": stats["users_excluded"],
            "label_issues_removed": stats["label_issues"],
            "label_noise_estimate": stats["label_noise_estimate"],
        },
        "lineage": lineage,
        "privacy": ("Inputs are stored after the policy's redaction; user ids appear only as keyed pseudonyms "
                    "(user_refs) and only records whose users consented to training, then and now, are included."),
    }


def derive(source: dict | None, *, snapshot_id: str, created_at: str, cycle_id: str, parquet_path: str,
           sha256: str, per_label: dict[str, int], records: int, contributors: int, source_id: str,
           removed_rows: int) -> dict:
    """The datasheet of a snapshot made from another by removing one user's rows (a retrain-without).

    Curation did not run again: its figures are the source's, and the lineage says what was removed.
    """
    items = sum(per_label.values())
    base = source or build(snapshot_id=source_id, created_at=created_at, cycle_id=cycle_id, task="", labels=(),
                           parquet_path="", sha256="", stats=_EMPTY_STATS, rejected_by_reason={}, records_in=0,
                           records_kept=0, contributors=0, lineage={})
    composition = {**base["composition"], "items": items, "records": records, "per_label": per_label,
                   "contributors": contributors}
    return {**base, "id": snapshot_id, "created_at": created_at, "cycle_id": cycle_id,
            "file": {"path": parquet_path, "sha256": sha256, "rows": items}, "composition": composition,
            "lineage": {"derived_from_snapshot": source_id, "rows_removed": removed_rows,
                        "why": "retrain-without: the source minus the rows of one user named by keyed pseudonym"}}


_EMPTY_STATS = {"items": 0, "per_label": {}, "per_source": {}, "annotated_items": 0, "duplicates_merged": 0,
                "near_duplicates_merged": 0, "users": 0, "users_excluded": 0, "label_issues": 0,
                "label_noise_estimate": None}


def to_markdown(sheet: dict) -> str:
    comp, cur = sheet["composition"], sheet["curation"]
    lines = [
        f"# Datasheet: snapshot `{sheet['id']}`",
        "",
        f"Made by cycle `{sheet['cycle_id']}` on {sheet['created_at']} for the {sheet['task']} task.",
        f"File `{sheet['file']['path']}` (sha256 `{sheet['file']['sha256']}`), {comp['items']} items "
        f"from {comp['records']} records by {comp['contributors']} contributors.",
        "",
        "## Composition",
        "",
        "| label | items |",
        "|---|---|",
        *[f"| {lab} | {n} |" for lab, n in comp["per_label"].items()],
        "",
        "Records by source: " + (", ".join(f"{k} {v}" for k, v in comp["per_source"].items()) or "none")
        + f"; items labelled by an annotator: {comp['annotated_items']}.",
        "",
        "## Curation",
        "",
        f"{cur['records_in']} records came in. Exact duplicates merged: {cur['duplicates_merged']}; "
        f"near-duplicates merged: {cur['near_duplicates_merged']}. "
        f"{cur['labelling_users']} users gave labels; {cur['users_excluded_as_unreliable']} were excluded as "
        f"unreliable. Confident learning removed {cur['label_issues_removed']} likely wrong labels; "
        + (f"the estimated label noise before that was {cur['label_noise_estimate']:.1%}."
           if cur["label_noise_estimate"] is not None else
           "label noise was not estimated (too few items, or the check model was no better than chance)."),
        "",
        "| dropped because | records |",
        "|---|---|",
        *[f"| {reason} | {n} |" for reason, n in cur["dropped_by_reason"].items()],
        "",
        "## Lineage",
        "",
        *[f"- {k}: {json.dumps(v, sort_keys=True)}" for k, v in sheet["lineage"].items()],
        "",
        "## Privacy",
        "",
        sheet["privacy"],
        "",
    ]
    return "\n".join(lines)


def write(sheet: dict, parquet: Path) -> tuple[Path, Path]:
    """Write ``<snapshot>.datasheet.json`` and ``.md`` beside the snapshot's Parquet file."""
    stem = parquet.with_suffix("")
    js, md = stem.with_name(stem.name + ".datasheet.json"), stem.with_name(stem.name + ".datasheet.md")
    atomic_write_bytes(js, json.dumps(sheet, indent=2, sort_keys=True).encode())
    atomic_write_bytes(md, to_markdown(sheet).encode())
    return js, md


def read(parquet: Path) -> dict | None:
    stem = parquet.with_suffix("")
    path = stem.with_name(stem.name + ".datasheet.json")
    return json.loads(path.read_text()) if path.is_file() else None


def hf_column(shown: dict) -> tuple[str, dict, str, Any]:
    """(column, feature, card dtype, value) of an item as the task shows it to an annotator.

    The export reads ``Task.show`` rather than asking tasks for a Hugging Face type: what a person is
    shown is what a dataset user should get, and tasks stay free of export concerns.
    """
    if set(shown) == {"image"}:
        return "image", {"_type": "Image"}, "image", {"bytes": base64.b64decode(shown["image"]), "path": None}
    if set(shown) == {"text"}:
        return "text", {"_type": "Value", "dtype": "string"}, "string", shown["text"]
    raise ConfigError(f"cannot export items shown as {sorted(shown)}: the Hugging Face export knows "
                      "{'image': base64 PNG} and {'text': str}")


def export_huggingface(items: LabelledSet, confidence: list[float], task: Task, labels: tuple[str, ...],
                       sheet: dict | None, out: Path) -> Path:
    """Write ``out/data/train-00000-of-00001.parquet`` and a dataset card ``out/README.md``.

    The Parquet file carries the ``huggingface`` schema metadata (features: the
    input column, a ClassLabel), so ``datasets.load_dataset(str(out))`` gives
    typed columns. User pseudonyms and record ids stay behind: an export leaves
    the system, lineage does not need to. An empty snapshot has no item to say
    what its input column is, so its export has none.
    """
    index = {lab: j for j, lab in enumerate(labels)}
    shown = [hf_column(task.show(task.decode(b))) for b in items.inputs]
    columns: dict[str, pa.Array] = {}
    features: dict[str, dict] = {}
    card_input = ""
    if shown:
        column, feature, dtype, _ = shown[0]
        if any(cell[0] != column for cell in shown):
            raise ConfigError(f"the {task.name} task shows items in more than one shape; cannot export one column")
        columns[column] = pa.array([cell[3] for cell in shown])
        features[column] = feature
        card_input = f"  - name: {column}\n    dtype: {dtype}\n"
    table = pa.table({
        **columns,
        "label": pa.array([index[lab] for lab in items.labels], pa.int64()),
        "content_hash": pa.array(items.hashes, pa.string()),
        "confidence": pa.array(confidence, pa.float64()),
    })
    features |= {"label": {"_type": "ClassLabel", "names": list(labels)},
                 "content_hash": {"_type": "Value", "dtype": "string"},
                 "confidence": {"_type": "Value", "dtype": "float64"}}
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    write_parquet(table, out / "data" / "train-00000-of-00001.parquet")
    names = "\n".join(f"          '{j}': {json.dumps(lab)}" for j, lab in enumerate(labels))
    card = (
        "---\n"
        "configs:\n- config_name: default\n  data_files:\n  - split: train\n    path: data/train-*.parquet\n"
        "dataset_info:\n  features:\n"
        + card_input
        + f"  - name: label\n    dtype:\n      class_label:\n        names:\n{names}\n"
        "  - name: content_hash\n    dtype: string\n  - name: confidence\n    dtype: float64\n"
        "---\n\n" + (to_markdown(sheet) if sheet else "# Exported datawheel snapshot\n")
    )
    atomic_write_bytes(out / "README.md", card.encode())
    return out
