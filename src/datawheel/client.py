"""The Python client a product backend uses: one method per route, errors raised with the server's reason.

A refusal raises :class:`ClientError` with the HTTP status, the server's
``error`` code and its ``detail``; no answer at all raises
:class:`ServerUnavailable`. Both are :class:`datawheel.DatawheelError`, so one
``except`` covers the client and the library.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx

from datawheel.errors import ClientError, ServerUnavailable

__all__ = ["Client", "ClientError", "ServerUnavailable"]


def _segment(value: str) -> str:
    return quote(value, safe="")


def _refusal(resp: httpx.Response) -> ClientError:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("detail") is not None:
        return ClientError(resp.status_code, str(body["detail"]), str(body.get("error") or "http_error"))
    # Not the server's error shape (a proxy's page, a crash): the status is all that is certain.
    return ClientError(resp.status_code, resp.reason_phrase or "no detail", "http_error")


def _consent(training: bool | None) -> dict[str, Any]:
    return {} if training is None else {"consent": {"training": training}}


def _given(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class Client:
    def __init__(self, base_url: str, key: str, *, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {key}"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            # The path is left out: it may carry a user id.
            raise ServerUnavailable(f"no answer from {self._http.base_url} ({type(exc).__name__})") from exc
        if resp.status_code >= 400:
            raise _refusal(resp)
        return resp

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    # -- the product's routes (app key) ------------------------------------------

    def predict(self, user_id: str, input: dict, *, consent: bool | None = None,
                metadata: dict | None = None) -> dict:
        body = {"user_id": user_id, "input": input, **_consent(consent), **_given(metadata=metadata)}
        return self._call("POST", "/v1/predict", json=body)

    def log_interaction(self, user_id: str, input: dict, output_label: str, model_name: str, model_version: str,
                        *, consent: bool | None = None, metadata: dict | None = None) -> str:
        body = {"user_id": user_id, "input": input, "output_label": output_label, "model_name": model_name,
                "model_version": model_version, **_consent(consent), **_given(metadata=metadata)}
        return self._call("POST", "/v1/interactions", json=body)["id"]

    def chat(self, user_id: str, messages: list[dict], *, consent: bool | None = None, metadata: dict | None = None,
             **params: Any) -> dict:
        """A text-generation workspace's answer (OpenAI's chat completion; ``id`` is the interaction id).

        ``params`` are OpenAI's (``max_tokens``, ``temperature``, ``n``, ``stop``, ``seed``); for streaming, use
        the ``openai`` package with ``base_url`` pointed at the server.
        """
        body = {"messages": messages, "user": user_id, **params, **_consent(consent), **_given(metadata=metadata)}
        return self._call("POST", "/v1/chat/completions", json=body)

    def feedback(self, interaction_id: str, user_id: str, *, label: str | None = None, rating: int | None = None,
                 comment: str | None = None, correction: str | None = None, chosen: int | None = None) -> str:
        """``label`` for a classifier; ``correction`` (the answer wanted) and ``chosen`` (0 or 1 of an ``n=2``
        request) for text generation; ``rating`` and ``comment`` for either."""
        body = {"interaction_id": interaction_id, "user_id": user_id,
                **_given(label=label, rating=rating, comment=comment, correction=correction, chosen=chosen)}
        return self._call("POST", "/v1/feedback", json=body)["id"]

    def contribute(self, user_id: str, input: dict, label: str, *, consent: bool,
                   metadata: dict | None = None) -> str:
        body = {"user_id": user_id, "input": input, "label": label, **_consent(consent),
                **_given(metadata=metadata)}
        return self._call("POST", "/v1/contributions", json=body)["id"]

    def set_consent(self, user_id: str, training: bool | None = None, analytics: bool | None = None) -> dict:
        return self._call("PUT", f"/v1/users/{_segment(user_id)}/consent",
                          json=_given(training=training, analytics=analytics))

    def user_data(self, user_id: str) -> dict:
        return self._call("GET", f"/v1/users/{_segment(user_id)}/data")

    def erase(self, user_id: str) -> dict:
        return self._call("DELETE", f"/v1/users/{_segment(user_id)}")

    def erasure_receipt(self, receipt_id: str) -> dict:
        """A past erasure's receipt as it stands now (later cycles may have named more model versions)."""
        return self._call("GET", f"/v1/erasures/{_segment(receipt_id)}")

    # -- operators' routes (admin key) --------------------------------------------

    def start_cycle(self, warm_start: bool | None = None) -> str:
        """``warm_start``: from the champion's weights or from scratch; None: as the workspace config says."""
        body = None if warm_start is None else {"warm_start": warm_start}
        return self._call("POST", "/v1/cycles", json=body)["cycle_id"]

    def retrain_without(self, user_id: str) -> str:
        """Start a cycle that replaces the champion with one trained without this (erased) user; its id."""
        return self._call("POST", f"/v1/users/{_segment(user_id)}/retrain-without")["cycle_id"]

    def cycles(self) -> list[dict]:
        return self._call("GET", "/v1/cycles")["cycles"]

    def cycle(self, cycle_id: str) -> dict:
        return self._call("GET", f"/v1/cycles/{_segment(cycle_id)}")

    def wait_cycle(self, cycle_id: str, timeout: float = 600.0, poll: float = 0.2) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            state = self.cycle(cycle_id)
            if state["status"] != "running":
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(f"cycle {cycle_id} still running after {timeout}s")
            time.sleep(poll)

    def models(self) -> list[dict]:
        return self._call("GET", "/v1/models")["models"]

    def promote(self, version: int) -> dict:
        return self._call("POST", f"/v1/models/{version}/promote")

    def rollback(self) -> dict:
        return self._call("POST", "/v1/rollback")

    def start_shadow(self, version: int) -> dict:
        return self._call("POST", f"/v1/models/{version}/shadow")

    def stop_shadow(self) -> dict:
        return self._call("DELETE", "/v1/shadow")

    def shadow_report(self, version: int | None = None) -> dict:
        return self._call("GET", "/v1/shadow", params=_given(version=version))

    def start_canary(self, version: int) -> dict:
        return self._call("POST", f"/v1/models/{version}/canary")

    def stop_canary(self) -> dict:
        return self._call("DELETE", "/v1/canary")

    def canary_report(self) -> dict:
        return self._call("GET", "/v1/canary")

    def audit(self, limit: int = 100) -> dict:
        """The newest ``limit`` audit entries and whether the chain verifies."""
        return self._call("GET", "/v1/audit", params={"limit": limit})

    # -- the annotators' routes (annotator or admin key) ---------------------------

    def annotation_queue(self, limit: int = 20) -> dict:
        return self._call("GET", "/v1/annotation/queue", params={"limit": limit})

    def annotate(self, item_id: str, label: str) -> dict:
        return self._call("POST", f"/v1/annotation/{_segment(item_id)}", json={"label": label})

    # -- no key needed ---------------------------------------------------------------

    def health(self) -> dict:
        return self._call("GET", "/healthz")

    def metrics(self) -> str:
        """Prometheus text, as a scraper would read it."""
        return self._send("GET", "/metrics").text
