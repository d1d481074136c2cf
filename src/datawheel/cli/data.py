"""The operator's data commands: who labels how well, the annotation queue in a terminal, snapshots.

Registered on the main Typer app by ``cli.py``; kept apart so neither file grows past reading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.markdown import Markdown

from datawheel.cli.tables import compact, short_time
from datawheel.errors import DatawheelError, NotFound

console = Console()
err = Console(stderr=True)
SHADES = " ░▒▓█"


def _open(workspace: Path):
    from datawheel.workspace import Workspace

    try:
        return Workspace.open(workspace)
    except DatawheelError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


def blocks(pixels: np.ndarray) -> str:
    """A grayscale image as shaded block characters, two per pixel so it keeps its shape."""
    levels = (np.asarray(pixels, dtype=np.float64) / 256 * len(SHADES)).astype(int).clip(0, len(SHADES) - 1)
    return "\n".join("".join(SHADES[v] * 2 for v in row) for row in levels)


def users(workspace: Path) -> None:
    """List users with consent, records and how reliable the last curation found their labels."""
    ws = _open(workspace)
    rows = [[u["user_id"], "yes" if u["consent_training"] else "no", str(u["records"]), str(u["votes"]),
             "-" if u["reliability"] is None else f"{u['reliability']:.2f}", "yes" if u["excluded"] else ""]
            for u in ws.store.users_overview()]
    console.print(compact(["user", "consent", "records", "votes", "reliability", "excluded"], rows, flex="user",
                          width=console.width))


def annotate(workspace: Path, limit: int = typer.Option(20, min=1, max=500, help="items to go through"),
             annotator: str = typer.Option("cli", help="your name, recorded with each answer")) -> None:
    """Label the most valuable items of the annotation queue, one at a time, in the terminal."""
    ws = _open(workspace)
    items = ws.store.annotation_queue(limit)
    if not items:
        console.print("the annotation queue is empty: run a cycle to fill it")
        return
    labels = ", ".join(ws.labels)
    done = 0
    for n, it in enumerate(items, 1):
        shown = ws.task.show(ws.task.decode(it["input"]))
        console.rule(f"item {n}/{len(items)}  score {it['score']:.3f}  "
                     + "  ".join(f"{k} {v:.2f}" for k, v in it["signals"].items()))
        console.print(blocks(ws.task.decode(it["input"])) if "image" in shown else shown["text"], markup=False,
                      highlight=False)
        while True:
            answer = typer.prompt(f"label ({labels}; Enter skips, . stops)", default="", show_default=False).strip()
            if answer in ("", ".") or answer in ws.labels:
                break
            err.print(f"'{answer}' is not a label; expected one of {labels}")
        if answer == ".":
            break
        if answer:
            try:
                ws.store.annotate(it["item_id"], answer, annotator=f"annotator:{annotator}")
            except NotFound as exc:  # erased while on screen
                err.print(f"skipped: {exc}")
                continue
            done += 1
    console.print(f"{done} item(s) labelled; the next cycle uses them")


def _resolve(ws, prefix: str) -> dict:
    matches = [s for s in ws.store.list_snapshots() if s["id"].startswith(prefix)]
    if len(matches) != 1:
        err.print(f"[red]error:[/] snapshot '{prefix}': " + ("no such snapshot" if not matches else
                                                            f"ambiguous, {len(matches)} snapshots match"))
        raise typer.Exit(2)
    return matches[0]


def datasets(workspace: Path,
             show: str | None = typer.Option(None, help="print this snapshot's datasheet (id or prefix)"),
             export: str | None = typer.Option(None, help="export this snapshot (id or prefix) ..."),
             to: Path | None = typer.Option(None, help="... to this folder"),
             format: str = typer.Option("hf", help="hf (a Hugging Face datasets folder); text-generation also "
                                                   "openai (fine-tuning JSONL) or trl (SFT/DPO/KTO JSONL)")
             ) -> None:
    """List snapshots with their datasheets' numbers; show a datasheet; export one for `datasets`."""
    from datawheel.artifacts import LabelledSet
    from datawheel.curation import datasheet
    from datawheel.curation.chat_export import export_chat
    from datawheel.tasks.chat import TextGeneration

    ws = _open(workspace)
    if show:
        snap = _resolve(ws, show)
        sheet = datasheet.read(ws.root / snap["path"])
        console.print(Markdown(datasheet.to_markdown(sheet)) if sheet else "this snapshot has no datasheet "
                      "(it was made by retrain-without from another snapshot)")
        return
    if export:
        if to is None:
            err.print("[red]error:[/] --export needs --to FOLDER")
            raise typer.Exit(2)
        snap = _resolve(ws, export)
        table = pq.read_table(ws.root / snap["path"])
        if isinstance(ws.task, TextGeneration):
            sheet = datasheet.read(ws.root / snap["path"])
            try:
                counts = export_chat(table, ws.task, format, to, datasheet.to_markdown(sheet) if sheet else "")
            except DatawheelError as exc:
                err.print(f"[red]error:[/] {exc}")
                raise typer.Exit(2) from None
            console.print(f"snapshot {snap['id']} exported to {to} as {format}: "
                          + ", ".join(f"{name} {n} rows" for name, n in counts.items()))
            return
        if format != "hf":
            err.print(f"[red]error:[/] --format {format}: a {ws.task.name} snapshot exports as hf only")
            raise typer.Exit(2)
        datasheet.export_huggingface(LabelledSet.from_arrow(table), table.column("confidence").to_pylist(), ws.task,
                                     ws.labels, datasheet.read(ws.root / snap["path"]), to)
        console.print(f"snapshot {snap['id']} exported to {to} ({snap['rows']} rows); "
                      f"load it with datasets.load_dataset({str(to)!r})")
        return
    trained: dict[str, list[str]] = {}
    for m in ws.store.list_models():
        if m["dataset_id"]:
            trained.setdefault(m["dataset_id"], []).append(f"v{m['version']}")
    rows = []
    for s in ws.store.list_snapshots():
        sheet = datasheet.read(ws.root / s["path"]) or {}
        cur, comp = sheet.get("curation", {}), sheet.get("composition", {})
        noise = cur.get("label_noise_estimate")
        rows.append([s["id"][:12], s["cycle_id"][:8], short_time(s["created_at"]), str(s["rows"]),
                     str(comp.get("contributors", "-")), str(sum(cur.get("dropped_by_reason", {}).values())),
                     "-" if noise is None else f"{noise:.1%}", ",".join(trained.get(s["id"], []))])
    table = compact(["snapshot", "cycle", "created", "items", "users", "dropped", "noise", "models"], rows,
                    flex="models", width=console.width)
    console.print(table)
