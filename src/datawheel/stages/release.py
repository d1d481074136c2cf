"""Release decisions as pure alias arithmetic.

The registry keeps up to three aliases: ``champion`` (what serving answers with),
``previous`` (where a rollback goes) and ``shadow`` (a version that predicts on
live traffic beside the champion without answering) or ``canary`` (a version
that answers a stable share of users); promoting either ends its trial.
Computing the new map here, apart from the store that persists it, keeps
promote, rollback, shadow and cycle releases consistent.
"""

from __future__ import annotations

from datawheel.errors import Conflict

#: aliases for versions on trial beside the champion
TRIALS = ("shadow", "canary")


def promote(aliases: dict[str, int], version: int) -> dict[str, int]:
    current = aliases.get("champion")
    if current == version:
        return dict(aliases)
    new = {"champion": version}
    if current is not None:
        new["previous"] = current
    return _keep_trials(aliases, new)


def rollback(aliases: dict[str, int]) -> dict[str, int]:
    if "previous" not in aliases:
        raise Conflict("there is no previous champion to roll back to")
    return _keep_trials(aliases, {"champion": aliases["previous"], "previous": aliases["champion"]})


def _keep_trials(old: dict[str, int], new: dict[str, int]) -> dict[str, int]:
    """A running shadow or canary survives a change of champion, unless it is the new champion."""
    for name in TRIALS:
        if old.get(name) not in (None, new["champion"]):
            new[name] = old[name]
    return new


def trial(aliases: dict[str, int], name: str, version: int | None) -> dict[str, int]:
    """Set (or, with None, clear) the ``shadow`` or ``canary``; the champion cannot be its own trial."""
    new = {k: v for k, v in aliases.items() if k != name}
    if version is not None:
        if version == aliases.get("champion"):
            raise Conflict(f"v{version} is the champion; a {name} must be another version")
        new[name] = version
    return new
