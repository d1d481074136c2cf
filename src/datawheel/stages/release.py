"""Release decisions as pure alias arithmetic.

The registry keeps up to three aliases: ``champion`` (what serving answers with),
``previous`` (where a rollback goes) and ``shadow`` (a version that predicts on
live traffic beside the champion without answering; promoting it ends the
shadow run). Computing the new map here, apart from the store that persists
it, keeps promote, rollback, shadow and cycle releases consistent.
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
    if aliases.get("shadow") not in (None, version):
        new["shadow"] = aliases["shadow"]
    return new


def rollback(aliases: dict[str, int]) -> dict[str, int]:
    if "previous" not in aliases:
        raise Conflict("there is no previous champion to roll back to")
    new = {"champion": aliases["previous"], "previous": aliases["champion"]}
    if aliases.get("shadow") not in (None, new["champion"]):
        new["shadow"] = aliases["shadow"]
    return new


def shadow(aliases: dict[str, int], version: int | None) -> dict[str, int]:
    """Set (or, with None, clear) the shadow; the champion cannot shadow itself."""
    new = {k: v for k, v in aliases.items() if k != "shadow"}
    if version is not None:
        if version == aliases.get("champion"):
            raise Conflict(f"v{version} is the champion; shadow a candidate instead")
        new["shadow"] = version
    return new
