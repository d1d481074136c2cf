"""Whether a turn has anything new to learn. A candidate trained on what the champion was trained on, with the
same settings, is the champion again (and one trained on a rejected candidate's inputs is that candidate again,
rejected again), so such a turn ends before training (decision ``skipped``) and registers nothing.

"New" is judged on what a turn reads: the labels of consented records (users' votes, after the consent check)
and annotators' answers, the seed set, and the settings (``[curation]`` and ``[model]``, or ``[generation]``).
Every model records the digest of those inputs when it is trained. So each of these makes the next turn train:
a new label or annotation, an erased user's labels leaving the store, records deleted by retention, a withdrawn
consent, new settings. A record that carries no label, or a repeat of the same vote, does not. A new champion on
the same inputs is not new data either: curation would use its beliefs as a prior and might shift a borderline
label, but that is the model talking to itself, not users. A retrain-without never comes here: it replaces the
champion by definition.
"""

from __future__ import annotations

import hashlib
import json

from datawheel.artifacts import LabelledSet
from datawheel.workspace import Workspace

#: the digest of a turn's votes when there are none (model v1, trained on the seed set alone)
NO_VOTES = hashlib.sha256(b"").hexdigest()


def inputs_digest(ws: Workspace, seed: LabelledSet, votes: str) -> str:
    """The same for the same seed set, votes digest and settings, whatever the champion."""
    config = ws.config.model_dump(mode="json")
    sections = ("generation",) if ws.config.workspace.task == "text-generation" else ("curation", "model")
    h = hashlib.sha256(json.dumps({name: config[name] for name in sections}, sort_keys=True).encode())
    for line in sorted(f"{c}\t{label}" for c, label in zip(seed.hashes, seed.labels)):
        h.update(f"seed\t{line}\n".encode())
    h.update(f"votes\t{votes}\n".encode())
    return h.hexdigest()


def nothing_new(ws: Workspace, champion: int, digest: str) -> str | None:
    """Why the turn would only remake a model, or None when it has something new to learn.

    The model it would remake is the champion, or a candidate already trained on the same inputs and gated
    against this same champion (rejected, or promoted and rolled back): training is seeded, so it would come
    out the same and the gate would decide the same.
    """
    for m in ws.store.list_models():
        if (m["train_info"] or {}).get("inputs_digest") != digest or champion not in (m["version"], m["parent"]):
            continue
        since = f"cycle {m['cycle_id'][:8]}" if m["cycle_id"] else "init"
        made = (f"champion v{champion} was trained on them" if m["version"] == champion
                else f"v{m['version']} was trained on them and gated against champion v{champion}")
        return f"no new accepted records since {since}: same labels and settings; {made}"
    return None


def skip(ws: Workspace, cycle_id: str, champion: int, reason: str, report: dict) -> dict:
    """End the turn before training: the champion stays, nothing is registered, the cycle row says why."""
    metrics = ws.store.get_model(champion)["metrics"]
    score = ({"champion_score": metrics["score"]} if "score" in metrics
             else {"champion_accuracy": metrics["accuracy"]} if "accuracy" in metrics else {})
    report = {**report, "trained_on": 0, "decision": "skipped", "decision_reasons": [reason],
              "candidate_version": None, "champion_version": champion, **score}
    ws.store.finish_cycle(cycle_id, status="done", decision="skipped", champion_version=champion, report=report)
    return report
