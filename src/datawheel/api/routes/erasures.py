"""Erasure receipts, readable after the fact: later cycles may name more models than the receipt first did.

The receipt names the user only by keyed pseudonym (the id itself is erased); knowing a receipt id, which
only the erasure's answer gave out, is what lets a product show it to the user again.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from datawheel.api.deps import AppKey, WorkspaceDep
from datawheel.api.responses import StoredReceipt, errors

router = APIRouter(prefix="/v1/erasures", tags=["users"])
ReceiptPath = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="the receipt_id an erasure answered")]


@router.get("/{receipt_id}", response_model=StoredReceipt, responses=errors(401, 403, 404, 422))
def get_erasure_receipt(_: AppKey, receipt_id: ReceiptPath, ws: WorkspaceDep) -> StoredReceipt:
    """The receipt as it stands now: every model version that ever saw the erased user's data."""
    return StoredReceipt.model_validate(ws.store.receipt(receipt_id))
