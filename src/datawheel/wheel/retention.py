"""Retention: records older than their source's retention period are deleted, by every cycle and by `gc`."""

from __future__ import annotations

from datetime import timedelta

from datawheel.store.db import utcnow
from datawheel.workspace import Workspace


def collect_garbage(ws: Workspace, actor: str, keep: set[str] | None = None) -> dict[str, int]:
    """Delete what the policy no longer allows to be kept; return the counts per source.

    ``keep``: content hashes held outside the store (the seed and golden sets), whose derived features stay;
    a caller that has not read those sets leaves it None and they are read here.
    """
    now = utcnow()
    cutoffs = {name: now - timedelta(days=src.retention_days)
               for name, src in ws.policy.sources.items() if src.retention_days}
    deleted = ws.store.delete_expired(cutoffs, actor) if cutoffs else {}
    prune_derived(ws, keep if keep is not None else set(ws.seed().hashes) | set(ws.golden().hashes))
    return deleted


def prune_derived(ws: Workspace, keep: set[str]) -> int:
    """Features derived from inputs (cached embeddings) live no longer than the inputs themselves.

    Run at both ends of a cycle: an erasure while a cycle trains may see its entries written back.
    """
    if not (ws.root / "cache").is_dir():
        return 0
    return ws.task.keep_cached(ws.store.content_hashes_of() | keep)
