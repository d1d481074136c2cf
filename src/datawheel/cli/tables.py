"""Tables that stay readable in an 80-column terminal: light borders, short headers, cells that never wrap.

Every column but one keeps its full text, so ids, versions and numbers are never mangled; the one column
allowed to give way (``flex``) is cut with an ellipsis when the terminal is narrow.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich import box
from rich.table import Table

GAP = 2  # between two columns: a space of border and one of (collapsed) padding


def compact(headers: Sequence[str], rows: Sequence[Sequence[str]], *, flex: str, width: int) -> Table:
    """A table of ``rows`` that fits ``width`` columns; only the ``flex`` column shrinks."""
    fixed = {h: max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers) if h != flex}
    room = max(8, width - sum(fixed.values()) - GAP * (len(headers) - 1))
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True, show_edge=False)
    for h in headers:
        if h == flex:
            table.add_column(h, no_wrap=True, overflow="ellipsis", max_width=room)
        else:
            table.add_column(h, no_wrap=True, min_width=fixed[h])
    for row in rows:
        table.add_row(*row)
    return table


def short_time(value: object) -> str:
    """``2026-11-29 23:26`` from a datetime or its ISO string."""
    return str(value).replace("T", " ")[:16]


#: aliases that answer (or watch) live traffic, shown in a version's decision before how it got there
SERVING_ALIASES = ("champion", "canary", "shadow", "previous")


def short_reason(reasons: Sequence[str]) -> str:
    """The gate's first reason in a few words (``accuracy fell``, ``not significant``), with how many more."""
    if not reasons:
        return ""
    first = reasons[0]
    if " fell by " in first:  # "recall of class '3' fell by 0.0600 (> ...)" -> "recall '3' fell"
        first = re.sub(r" \(\d+ items\)", "", first.split(" fell by ")[0].replace("of class ", "")) + " fell"
    elif first.startswith("no significant improvement"):
        first = "not significant"
    elif "were erased while it trained" in first:
        first = "a user it saw was erased"
    else:
        first = first.split(":")[0]
    return first + (f" (+{len(reasons) - 1})" if len(reasons) > 1 else "")


def version_decision(version: int, aliases: Sequence[str], cycle: dict | None) -> str:
    """What a model version is now, or else what the gate made of it: ``champion``, ``previous``,
    ``promoted``, ``rejected: accuracy fell``, ``init``."""
    held = [a for a in SERVING_ALIASES if a in aliases]
    if held:
        return ",".join(held)
    if cycle is None:
        return "init" if version == 1 else "-"
    decision = cycle["decision"] or "-"
    reason = short_reason((cycle.get("report") or {}).get("decision_reasons", []))
    return f"{decision}: {reason}" if decision == "rejected" and reason else decision


def cycle_table(title: str, r: dict) -> Table:
    """One cycle's report, one row per measure: readable at any terminal width (turns and retrain-withouts)."""
    table = Table(title=title, show_header=False, min_width=50)
    table.add_column("measure", style="bold")
    table.add_column("value", justify="right", overflow="fold")
    for key, name in (("records_in", "records in"), ("accepted", "accepted into snapshot"),
                      ("replaces", "replaces champion"), ("rows_removed", "rows removed")):
        if key in r:
            table.add_row(name, str(r[key]))
    for reason, count in r.get("rejected_by_reason", {}).items():
        table.add_row(f"rejected: {reason}", str(count))
    if "snapshot" in r:
        table.add_row("snapshot items", str(r["snapshot"]["items"]))
        if "users_excluded" in r["snapshot"]:
            table.add_row("users excluded as unreliable", str(r["snapshot"]["users_excluded"]))
    for kind in ("sft", "dpo", "kto"):
        if kind in r.get("snapshot", {}):
            table.add_row(f"{kind.upper()} rows", str(r["snapshot"][kind]))
    if "candidate_metrics" in r and "score" in r["candidate_metrics"]:  # a language model
        cand, paired = r["candidate_metrics"], r["paired_test"]
        lo, hi = cand["score_ci"]
        table.add_row(f"candidate {cand['metric']}", f"{cand['score']:.1%} [{lo:.1%}, {hi:.1%}] "
                                                     f"(v{r['candidate_version']})")
        table.add_row(f"vs champion ({paired['test']})", f"p={paired['p_value']:.2g}")
        table.add_row("training seconds", str(r.get("training_seconds", "-")))
    elif "candidate_metrics" in r:
        cand = r["candidate_metrics"]
        lo, hi = cand["accuracy_ci95"]
        table.add_row("candidate accuracy", f"{cand['accuracy']:.1%} [{lo:.1%}, {hi:.1%}] (v{r['candidate_version']})")
        m = r["mcnemar"]
        table.add_row("vs champion (McNemar)",
                      f"+{m['only_candidate']} / -{m['only_champion']} items, p={m['p_value']:.2g}")
    table.add_row("decision", r["decision"])
    if r["decision"] != "promoted":
        for reason in r.get("decision_reasons", []):
            table.add_row("  because", reason)
    if "champion_score" in r:
        table.add_row("champion score", f"{r['champion_score']:.1%} (v{r['champion_version']})")
    elif "champion_accuracy" in r:
        table.add_row("champion accuracy", f"{r['champion_accuracy']:.1%} (v{r['champion_version']})")
    else:
        table.add_row("champion", f"v{r['champion_version']}")
    return table
