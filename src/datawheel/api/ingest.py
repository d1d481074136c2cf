"""The one way an input enters the store: parse, screen, then write with the consent check inside the write.

Predictions, interactions served elsewhere and donated examples all go through
here, so the order that keeps personal data out (nothing unparsed or unscreened
is stored, and a refusal leaves no trace) is written once. A request is checked
whole by :meth:`Ingest.accept` before anything is written or predicted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from datawheel.api.telemetry import Telemetry
from datawheel.errors import InvalidInput
from datawheel.privacy.screen import Screen
from datawheel.workspace import Workspace

Kind = Literal["interaction", "contribution"]


def check_label(label: str, labels: tuple[str, ...], field: str) -> str:
    if label not in labels:
        # The value is not echoed: a free-text field may carry personal data.
        raise InvalidInput(f"unknown label; expected one of {', '.join(labels)}", field=field)
    return label


@dataclass(frozen=True)
class Incoming:
    """A request's input after parsing and screening: the only form of it the store and the model ever see."""

    user_id: str
    item: Any
    meta: dict[str, Any] | None
    consent: dict[str, bool] | None


class Ingest:
    def __init__(self, ws: Workspace, screen: Screen, telemetry: Telemetry) -> None:
        self.ws = ws
        self.screen = screen
        self.telemetry = telemetry
        #: predictions in flight on this process's event loop (``serve_prediction``): one alone is written at once
        self.predicting = 0
        #: the records counter per kind, looked up once rather than per request
        self._stored = {kind: telemetry.records.labels(kind) for kind in ("interaction", "contribution")}

    def accept(self, user_id: str, payload: Mapping[str, Any], metadata: Mapping[str, Any] | None,
               consent: dict[str, bool] | None) -> Incoming:
        self.screen.check_user_id(user_id)  # an id shaped like an e-mail or a phone number is never stored
        # Redacted before the model sees it, so serving and training see the same text.
        item = self.screen.clean_item(self.ws.task.parse(payload), "input.text")
        if self.ws.task.quality_issue(item) == "blank_input":  # nothing to answer, nothing worth keeping
            raise InvalidInput("is blank (no letters or digits, or an empty drawing); send something to answer",
                               "input")
        return Incoming(user_id, item, self.screen.clean_meta(metadata), consent)

    def label(self, label: str, field: str) -> str:
        return check_label(label, self.ws.labels, field)

    def scores(self, scores: Mapping[str, float], field: str) -> Mapping[str, float]:
        """A model's scores by label; an unknown key is named by its position (it is the client's word)."""
        for i, label in enumerate(scores):
            if label not in self.ws.labels:
                raise InvalidInput(f"key {i} (counting from 0) is not a label; expected labels among "
                                   f"{', '.join(self.ws.labels)}", field=field)
        return scores

    def record(self, incoming: Incoming, kind: Kind, *, label: str | None = None,
               predicted_label: str | None = None, model_name: str | None = None,
               model_version: str | None = None, scores: Mapping[str, float] | None = None) -> str:
        """Store the record, committed before returning; the policy's consent rule is checked in the same write."""
        data, digest = self.ws.task.encoded(incoming.item)
        record_id, done = self.ws.store.submit_record(
            user_id=incoming.user_id, kind=kind, input=data, content_hash=digest, consent=incoming.consent, label=label,
            predicted_label=predicted_label, model_name=self.screen.clean_optional(model_name, "model_name"),
            model_version=self.screen.clean_optional(model_version, "model_version"), meta=incoming.meta,
            require=self.screen.requirement(kind), scores=scores)
        done.result()
        self._stored[kind].inc()
        return record_id

    async def record_prediction(self, incoming: Incoming, label: str, version: int) -> str:
        """Store datawheel's own answer as an interaction, durable (or refused by the consent check) on return.

        As :meth:`record`, but the model's name and version are the server's values, not a client's words, so
        they are not screened (a client-supplied one always is), and the coroutine waits holding no thread.
        """
        data, digest = self.ws.task.encoded(incoming.item)
        record_id, stored = self.ws.store.submit_record_async(
            alone=self.predicting <= 1, user_id=incoming.user_id, kind="interaction", input=data,
            content_hash=digest, consent=incoming.consent, predicted_label=label,
            model_name="datawheel", model_version=str(version), meta=incoming.meta,
            require=self.screen.requirement("interaction"))
        await stored
        self._stored["interaction"].inc()
        return record_id

    def record_exchange(self, incoming: Incoming, answers: list[str], *, model_version: str,
                        record_id: str | None = None) -> str:
        """Store a conversation with the answers it was given, durable before returning; the answers pass the same
        screen as the conversation (a model can repeat personal data it was shown)."""
        screened = [self.screen.clean_text(a, f"answers[{i}]") for i, a in enumerate(answers)]
        data, digest = self.ws.task.encoded(incoming.item)
        record_id, done = self.ws.store.submit_exchange(
            user_id=incoming.user_id, input=data, content_hash=digest,
            answers=screened, consent=incoming.consent, model_name="datawheel", model_version=model_version,
            meta=incoming.meta, record_id=record_id, require=self.screen.requirement("interaction"))
        done.result()
        self._stored["interaction"].inc()
        return record_id
