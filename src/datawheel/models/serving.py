"""Serving the champion, and swapping it without a restart or a failed request.

The loaded model lives in one attribute. A request reads that attribute once
and uses what it got to the end, so a swap (a plain reference assignment,
atomic in CPython) can happen at any moment: requests in flight finish on the
old model, the next ones see the new one. The new model is fully loaded and
checksum-verified before it is published.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from typing import Any

import torch
from scipy.stats import fisher_exact

from datawheel.errors import Conflict
from datawheel.models.registry import LoadedModel, Registry
from datawheel.stages.release import TRIALS
from datawheel.tasks.base import predict_proba
from datawheel.workspace import Workspace

#: the most requests one forward pass answers
MAX_INFERENCE_BATCH = 64
#: (model version, label, scores per label)
Answer = tuple[int, str, dict[str, float]]


class ModelServer:
    def __init__(self, ws: Workspace, refresh_interval: float = 1.0, runtime: str = "torch") -> None:
        self.ws = ws
        #: the batch each event loop is filling (see :meth:`predict_batched`)
        self._pending: dict[asyncio.AbstractEventLoop, list[tuple[Any, str | None, asyncio.Future]]] = {}
        self.registry = Registry(ws)
        self.refresh_interval = refresh_interval
        self.runtime = runtime
        self._lock = threading.Lock()
        self._checked_at = 0.0
        aliases = ws.store.aliases()
        self._current: LoadedModel = self._load(self.registry.champion_version(aliases))
        #: a candidate predicting beside the champion on live traffic, never answering
        self._shadow: LoadedModel | None = None
        #: a candidate answering a stable share of users
        self._canary: LoadedModel | None = None
        self._sync_trials(aliases)

    def _sync_trials(self, aliases: dict[str, int]) -> None:
        for name in TRIALS:
            version, held = aliases.get(name), getattr(self, f"_{name}")
            if version is None:
                setattr(self, f"_{name}", None)
            elif held is None or held.version != version:
                setattr(self, f"_{name}", self._load(version))

    def _load(self, version: int) -> LoadedModel:
        if self.runtime == "onnx":
            from datawheel.models.onnx_export import export, load_onnx, onnx_path

            if not onnx_path(self.ws, version).is_file() or self.ws.store.get_export(version, "onnx") is None:
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
            aliases = self.ws.store.aliases()  # one read per check: champion and trials agree
            version = self.registry.champion_version(aliases)
            if version != self._current.version:
                self._current = self._load(version)
            self._sync_trials(aliases)
        return self._current

    def in_canary(self, user_id: str) -> bool:
        """Stable per user: the same user always gets the same model while the canary runs."""
        digest = hashlib.sha256(f"canary:{user_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2 ** 64 < self.ws.config.release.canary_share

    def check_canary(self) -> dict | None:
        """Roll the canary back if users' feedback says it is worse than the champion by the margin."""
        canary = self._canary
        if canary is None:
            return None
        cfg = self.ws.config.release
        n, right = self.ws.store.live_accuracy(canary.version)
        if n < cfg.canary_min_feedback:
            return None
        champ_n, champ_right = self.ws.store.live_accuracy(self._current.version)
        canary_acc, champ_acc = right / n, (champ_right / champ_n if champ_n else 1.0)
        if canary_acc >= champ_acc - cfg.canary_margin:
            return None
        # Worse by the margin, and not by the luck of which users and items each model drew.
        p = fisher_exact([[right, n - right], [champ_right, champ_n - champ_right]], alternative="less").pvalue \
            if champ_n else 0.0
        if p >= cfg.canary_alpha:
            return None
        reason = (f"live accuracy {canary_acc:.3f} on {n} answers vs champion {champ_acc:.3f} on {champ_n}: "
                  f"below by more than {cfg.canary_margin} (Fisher exact p={p:.3g})")
        try:
            aliases = self.registry.trial("canary", None, actor="canary-monitor", reason=reason,
                                          only_if=canary.version)
        except Conflict:  # another request's check, or an operator, changed the canary first
            return None
        finally:
            self.refresh(force=True)
        return {"rolled_back": canary.version, "reason": reason, "aliases": aliases}

    @property
    def has_shadow(self) -> bool:
        """Whether a shadow runs now, so a caller can skip the shadow step (and its thread) when none does."""
        return self._shadow is not None

    def shadow_predict(self, item: Any) -> tuple[int, str] | None:
        """The shadow's answer for an item the champion just answered, or None when no shadow runs."""
        shadow = self._shadow  # read once: a concurrent refresh may replace it
        if shadow is None:
            return None
        probs = predict_proba(shadow.module, self.ws.task.featurize([item], shadow.model_name))[0]
        return shadow.version, self.ws.labels[int(torch.argmax(probs))]

    def _model_for(self, loaded: LoadedModel, canary: LoadedModel | None, user_id: str | None) -> LoadedModel:
        return canary if canary is not None and user_id is not None and self.in_canary(user_id) else loaded

    def _answers(self, model: LoadedModel, items: list[Any]) -> list[Answer]:
        """One forward pass for all ``items``: (version, label, scores) each."""
        probs = predict_proba(model.module, self.ws.task.featurize(items, model.model_name))  # [n, n_classes]
        labels = self.ws.labels
        tops = torch.argmax(probs, dim=1).tolist()
        return [(model.version, labels[top], {lab: round(p, 6) for lab, p in zip(labels, row)})
                for top, row in zip(tops, probs.tolist())]

    def predict(self, item: Any, user_id: str | None = None) -> Answer:
        """The answer for one item, computed now on the caller's thread (see :meth:`predict_batched`)."""
        loaded = self._model_for(self.refresh(), self._canary, user_id)
        return self._answers(loaded, [item])[0]

    async def predict_batched(self, item: Any, user_id: str | None = None) -> Answer:
        """The answer from a forward pass shared with the requests that reached this point in the same turn of
        the event loop (at most ``MAX_INFERENCE_BATCH``).

        No thread and no timer: the first request of a batch schedules the pass with ``call_soon``, so it runs
        as soon as the requests already runnable have queued theirs. A lone request waits that one turn and
        nothing else; under load, every turn of the loop answers all the requests parsed in it with one pass.
        The turn is not skipped for a request that looks alone: the requests that arrived with it are parsed
        only in that turn (answering at once served one worker's requests strictly one by one under load).
        Every item in a batch is answered by the models read once for that batch, so a swap never splits a
        request.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._flush, loop, pending)
        pending.append((item, user_id, future))
        if len(pending) >= MAX_INFERENCE_BATCH:
            del self._pending[loop]  # full: the next request starts another batch
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop, pending: list[tuple[Any, str | None, asyncio.Future]]) -> None:
        if self._pending.get(loop) is pending:
            del self._pending[loop]
        live = [(item, user_id, future) for item, user_id, future in pending if not future.cancelled()]
        for (_, _, future), answer in zip(live, self.answer_all([(item, user_id) for item, user_id, _ in live])):
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    def answer_all(self, jobs: list[tuple[Any, str | None]]) -> list[Answer | Exception]:
        """Answers for (item, user id) pairs: one forward pass per model serving them (the champion, and the
        canary for its users). If a pass fails its items are retried alone, so a bad item fails by itself."""
        loaded, canary = self.refresh(), self._canary
        groups: dict[int, tuple[LoadedModel, list[int]]] = {}
        for n, (_, user_id) in enumerate(jobs):
            model = self._model_for(loaded, canary, user_id)
            groups.setdefault(id(model), (model, []))[1].append(n)
        out: list[Answer | Exception] = [RuntimeError("not answered")] * len(jobs)
        for model, members in groups.values():
            try:
                for n, answer in zip(members, self._answers(model, [jobs[n][0] for n in members])):
                    out[n] = answer
            except Exception:  # noqa: BLE001 - retried one by one below
                for n in members:
                    try:
                        out[n] = self._answers(model, [jobs[n][0]])[0]
                    except Exception as exc:  # noqa: BLE001 - handed to its own caller
                        out[n] = exc
        return out
