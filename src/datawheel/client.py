"""The Python client a product backend uses: one method per route, errors raised with the server's reason."""

from __future__ import annotations

import time
from typing import Any

import httpx


class ClientError(Exception):
    """The server refused a request; ``status`` and ``detail`` say why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


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

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self._http.request(method, path, **kwargs)
        if resp.status_code >= 400:
            try:
                detail = resp.json().get("detail", resp.text)
            except ValueError:
                detail = resp.text
            raise ClientError(resp.status_code, str(detail))
        return resp.json()

    # the product's routes
    def predict(self, user_id: str, input: dict, *, consent: bool | None = None,
                metadata: dict | None = None) -> dict:
        body: dict[str, Any] = {"user_id": user_id, "input": input}
        if consent is not None:
            body["consent"] = {"training": consent}
        if metadata is not None:
            body["metadata"] = metadata
        return self._call("POST", "/v1/predict", json=body)

    def log_interaction(self, user_id: str, input: dict, output_label: str, model_name: str, model_version: str,
                        *, consent: bool | None = None) -> str:
        body: dict[str, Any] = {"user_id": user_id, "input": input, "output_label": output_label,
                                "model_name": model_name, "model_version": model_version}
        if consent is not None:
            body["consent"] = {"training": consent}
        return self._call("POST", "/v1/interactions", json=body)["id"]

    def feedback(self, interaction_id: str, user_id: str, *, label: str | None = None, rating: int | None = None,
                 comment: str | None = None) -> str:
        body = {"interaction_id": interaction_id, "user_id": user_id, "label": label, "rating": rating,
                "comment": comment}
        return self._call("POST", "/v1/feedback", json={k: v for k, v in body.items() if v is not None})["id"]

    def contribute(self, user_id: str, input: dict, label: str, *, consent: bool) -> str:
        return self._call("POST", "/v1/contributions",
                          json={"user_id": user_id, "input": input, "label": label,
                                "consent": {"training": consent}})["id"]

    def set_consent(self, user_id: str, training: bool | None = None, analytics: bool | None = None) -> dict:
        body = {k: v for k, v in (("training", training), ("analytics", analytics)) if v is not None}
        return self._call("PUT", f"/v1/users/{user_id}/consent", json=body)

    def user_data(self, user_id: str) -> dict:
        return self._call("GET", f"/v1/users/{user_id}/data")

    def erase(self, user_id: str) -> dict:
        return self._call("DELETE", f"/v1/users/{user_id}")

    # operators' routes (admin key)
    def start_cycle(self, warm_start: bool | None = None) -> str:
        """``warm_start``: from the champion's weights or from scratch; None: as the workspace config says."""
        body = None if warm_start is None else {"warm_start": warm_start}
        return self._call("POST", "/v1/cycles", json=body)["cycle_id"]

    def cycle(self, cycle_id: str) -> dict:
        return self._call("GET", f"/v1/cycles/{cycle_id}")

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
        return self._call("GET", "/v1/shadow", params={} if version is None else {"version": version})

    def start_canary(self, version: int) -> dict:
        return self._call("POST", f"/v1/models/{version}/canary")

    def stop_canary(self) -> dict:
        return self._call("DELETE", "/v1/canary")

    def canary_report(self) -> dict:
        return self._call("GET", "/v1/canary")

    # the annotators' routes

    def annotation_queue(self, limit: int = 20) -> dict:
        return self._call("GET", "/v1/annotation/queue", params={"limit": limit})

    def annotate(self, item_id: str, label: str) -> dict:
        return self._call("POST", f"/v1/annotation/{item_id}", json={"label": label})
