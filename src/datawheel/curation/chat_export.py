"""Export a text-generation snapshot's SFT, DPO and KTO sets in the forms fine-tuning tools read.

- ``openai``: OpenAI fine-tuning JSONL: ``sft.jsonl`` (chat ``messages``) and ``dpo.jsonl`` (preference
  fine-tuning: ``input``, ``preferred_output``, ``non_preferred_output``); OpenAI has no KTO form.
- ``trl``: TRL's conversational JSONL: ``sft.jsonl`` (``messages``), ``dpo.jsonl`` (``prompt``, ``chosen``,
  ``rejected``), ``kto.jsonl`` (``prompt``, ``completion``, ``label``), as SFTTrainer, DPOTrainer and
  KTOTrainer take them.
- ``hf``: a Hugging Face dataset folder with one config per set (``load_dataset(path, "dpo")``), TRL's columns.

Pseudonyms, record ids and confidence stay behind: an export leaves the system, lineage need not.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from datawheel.artifacts import atomic_write_bytes, write_parquet
from datawheel.errors import ConfigError
from datawheel.tasks.chat import TextGeneration, as_messages

FORMATS = ("openai", "trl", "hf")


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _records(table: pa.Table, task: TextGeneration, fmt: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {"sft": [], "dpo": [], "kto": []}
    for row in table.to_pylist():
        msgs = as_messages(task.decode(row["input"]))
        kind = row["kind"]
        if kind == "sft":
            out["sft"].append({"messages": msgs + _assistant(row["label"])})
        elif kind == "dpo" and fmt == "openai":
            out["dpo"].append({"input": {"messages": msgs}, "preferred_output": _assistant(row["label"]),
                               "non_preferred_output": _assistant(row["rejected"])})
        elif kind == "dpo":
            out["dpo"].append({"prompt": msgs, "chosen": _assistant(row["label"]),
                               "rejected": _assistant(row["rejected"])})
        elif kind == "kto" and fmt != "openai":
            out["kto"].append({"prompt": msgs, "completion": _assistant(row["label"]),
                               "label": bool(row["desirable"])})
    return out


def export_chat(table: pa.Table, task: TextGeneration, fmt: str, out: Path, card: str) -> dict[str, int]:
    """Write the sets to ``out`` and return how many rows each got; ``card`` (the datasheet) goes in README.md."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    sets = _records(table, task, fmt)
    counts = {name: len(rows) for name, rows in sets.items() if rows or name != "kto" or fmt != "openai"}
    if fmt == "hf":
        configs = ""
        for name, rows in sets.items():
            if rows:
                write_parquet(pa.Table.from_pylist(rows), out / name / "train-00000-of-00001.parquet")
                configs += f"- config_name: {name}\n  data_files:\n  - split: train\n    path: {name}/train-*.parquet\n"
        atomic_write_bytes(out / "README.md", (f"---\nconfigs:\n{configs}---\n\n{card}").encode())
        return counts
    for name, rows in sets.items():
        if name in counts:
            atomic_write_bytes(out / f"{name}.jsonl",
                               "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode())
    atomic_write_bytes(out / "README.md", card.encode())
    return counts
