"""Release decisions as pure alias arithmetic.

The registry keeps two aliases: ``champion`` (what serving answers with) and
``previous`` (where a rollback goes). Computing the new map here, apart from
the store that persists it, keeps promote, rollback and cycle releases
consistent with each other.
"""

from __future__ import annotations

from datawheel.errors import Conflict


def promote(aliases: dict[str, int], version: int) -> dict[str, int]:
    current = aliases.get("champion")
    if current == version:
        return dict(aliases)
    new = {"champion": version}
    if current is not None:
        new["previous"] = current
    return new


def rollback(aliases: dict[str, int]) -> dict[str, int]:
    if "previous" not in aliases:
        raise Conflict("there is no previous champion to roll back to")
    return {"champion": aliases["previous"], "previous": aliases["champion"]}
