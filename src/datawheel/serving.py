"""Serving the champion, and swapping it without a restart or a failed request.

The loaded model lives in one attribute. A request reads that attribute once
and uses what it got to the end, so a swap (a plain reference assignment,
atomic in CPython) can happen at any moment: requests in flight finish on the
old model, the next ones see the new one. The new model is fully loaded and
checksum-verified before it is published.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import torch

from datawheel.registry import LoadedModel, Registry
from datawheel.tasks.base import predict_proba
from datawheel.workspace import Workspace


class ModelServer:
    def __init__(self, ws: Workspace, refresh_interval: float = 1.0, runtime: str = "torch") -> None:
        self.ws = ws
        self.registry = Registry(ws)
        self.refresh_interval = refresh_interval
        self.runtime = runtime
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._current: LoadedModel = self._load(self.registry.champion_version())
        #: a candidate predicting beside the champion on live traffic, never answering
        self._shadow: LoadedModel | None = None
        shadow = ws.store.aliases().get("shadow")
        if shadow is not None:
            self._shadow = self._load(shadow)

    def _load(self, version: int) -> LoadedModel:
        if self.runtime == "onnx":
            from datawheel.onnx_export import export, load_onnx, onnx_path

            if not onnx_path(self.ws, version).is_file():
                export(self.ws, version)  # a new champion is exported (and checked) before it serves
            return load_onnx(self.ws, version)
        return self.registry.load(version)

    @property
    def current(self) -> LoadedModel:
        return self._current

    def refresh(self, force: bool = False) -> LoadedModel:
        """Swap to the registry's champion if it changed (another process may have promoted one)."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.refresh_interval:
            return self._current
        with self._lock:
            self._checked_at = now
            version = self.registry.champion_version()
            if version != self._current.version:
                self._current = self._load(version)
            shadow = self.ws.store.aliases().get("shadow")
            if shadow is None:
                self._shadow = None
            elif self._shadow is None or self._shadow.version != shadow:
                self._shadow = self._load(shadow)
        return self._current

    def shadow_predict(self, item: Any) -> tuple[int, str] | None:
        """The shadow's answer for an item the champion just answered, or None when no shadow runs."""
        shadow = self._shadow  # read once: a concurrent refresh may replace it
        if shadow is None:
            return None
        probs = predict_proba(shadow.module, self.ws.task.featurize([item]))[0]
        return shadow.version, self.ws.labels[int(torch.argmax(probs))]

    def predict(self, item: Any) -> tuple[int, str, dict[str, float]]:
        loaded = self.refresh()
        probs = predict_proba(loaded.module, self.ws.task.featurize([item]))[0]  # [n_classes]
        labels = self.ws.labels
        top = int(torch.argmax(probs))
        return loaded.version, labels[top], {lab: round(float(p), 6) for lab, p in zip(labels, probs)}
