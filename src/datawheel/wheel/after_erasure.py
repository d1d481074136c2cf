"""What follows an erasure for the models trained on the erased user: the workspace's ``[erasure]`` policy.

The erasure itself is complete before anything here runs (the store's rows, the snapshot files, checkpoints and
cached features); what is left is the models. One that serves (the champion, a canary, a shadow) and is named in
the receipt still holds the user's data. With ``champion = "retrain"`` a retrain-without cycle starts at once;
with ``"operator"`` (the default: retraining costs compute) the receipt names the step to take instead. A canary
or shadow is never retrained (it is a trial): it is left to the operator to stop.

A retrain-without exists to carry out an erasure, so one asked for a user who was never erased is refused, and
one whose champion holds none of the erased user's data ends without training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from datawheel.errors import Conflict
from datawheel.workspace import Workspace

#: aliases whose model answers or watches live traffic
SERVING = ("champion", "canary", "shadow")
#: the route that replaces the champion; generic on purpose, so no answer or log ever holds a user's id
RETRAIN_ROUTE = "POST /v1/users/{user_id}/retrain-without"
Action = Literal["retrain_started", "retrain_blocked", "left_to_operator", "none"]


@dataclass(frozen=True)
class FollowUp:
    """``serving``: the serving aliases whose model the receipt names; ``action``: what was done about them."""

    serving: tuple[str, ...]
    action: Action
    retrain_cycle_id: str | None = None

    def next_step(self) -> str:
        """The API calls an operator makes next ('' when none)."""
        steps = []
        if self.action == "retrain_started":
            steps.append(f"follow the replacement: GET /v1/cycles/{self.retrain_cycle_id}")
        elif self.action == "retrain_blocked":
            steps.append(f"another cycle is running; when it has finished: {RETRAIN_ROUTE}")
        elif "champion" in self.serving:
            steps.append(f"replace the champion: {RETRAIN_ROUTE}")
        steps += [f"stop the {alias}: DELETE /v1/{alias}" for alias in self.serving if alias != "champion"]
        return "; ".join(steps)

    def receipt_fields(self) -> dict:
        return {"serving_model_affected": bool(self.serving), "serving_aliases_affected": list(self.serving),
                "action": self.action, "retrain_cycle_id": self.retrain_cycle_id, "next_step": self.next_step()}


def follow_up(ws: Workspace, user_id: str, receipt: dict, start: Callable[[dict], str]) -> FollowUp:
    """Apply the policy to an erasure's receipt. ``start(params)`` starts a "forget" cycle and returns its id (the
    API's background runner, or the CLI's own run); a cycle already running is said, never raised: the erasure
    has happened either way."""
    aliases, named = ws.store.aliases(), set(receipt["model_versions_trained_on_user_data"])
    serving = tuple(alias for alias in SERVING if aliases.get(alias) in named)
    if not serving:
        return FollowUp((), "none")
    if "champion" not in serving or ws.config.erasure.champion == "operator":
        return FollowUp(serving, "left_to_operator")
    try:
        cycle_id = start({"without_user_ref": ws.user_ref(user_id)})
    except Conflict:
        return FollowUp(serving, "retrain_blocked")
    return FollowUp(serving, "retrain_started", cycle_id)


def check_retrain_without(ws: Workspace, user_id: str) -> None:
    """Refuse a retrain-without for a user who was never erased: it would replace the champion while the user's
    data stays in the store (and goes into the next cycle)."""
    if ws.store.receipt_versions(ws.user_ref(user_id)) is not None:
        return
    if ws.store.aliases().get("champion") in _versions_trained_on(ws, user_id):
        raise Conflict("user_id: this user has not been erased; erase them first (DELETE /v1/users/{user_id} or "
                       "`datawheel erase`), then retrain without them")
    raise Conflict("user_id: nothing to retrain: this user has not been erased and the champion was not trained "
                   "on their data")


def nothing_to_retrain(ws: Workspace, champion: int, user_ref: str) -> str | None:
    """Why a retrain-without has nothing to do: the erased user's receipts do not name the champion."""
    named = ws.store.receipt_versions(user_ref)
    if named is None or champion in named:
        return None
    return f"champion v{champion} was not trained on the erased user's data (their receipt does not name it)"


def _versions_trained_on(ws: Workspace, user_id: str) -> set[int]:
    """Versions trained on a (not erased) user's rows, and those warm-started from one: as a receipt would name."""
    snapshots = set(ws.store.snapshots_of_user(user_id))
    out: set[int] = set()
    for m in ws.store.list_models():  # oldest first: a model starts only from an older one
        if m["dataset_id"] in snapshots or (m["train_info"] or {}).get("warm_start_from") in out:
            out.add(m["version"])
    return out
