"""Serving a text-generation champion: the same hot swap as classifiers, with a language model inside.

The champion (the base model, or the base with an adapter merged in) is loaded
and checked completely before the one attribute requests read is reassigned,
so requests in flight finish on the old model and a promotion never fails one.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from torch import nn

from datawheel.batching import BatchWorker
from datawheel.errors import Conflict
from datawheel.models.adapters import AdapterRegistry
from datawheel.models.registry import LoadedModel
from datawheel.models.serving import ModelServer
from datawheel.tasks.chat import Conversation
from datawheel.tasks.language_model import Answer, Generator, LanguageModel
from datawheel.workspace import Workspace


@dataclass(frozen=True)
class LoadedLanguageModel(LoadedModel):
    #: a local language model, or the upstream server a proxy-mode workspace forwards to
    lm: Generator | None = None


#: the most conversations one batched generation answers
MAX_GENERATION_BATCH = 16


class ChatServer(ModelServer):
    """A :class:`ModelServer` whose models are language models; ``champion_lm()`` is the champion's generator.

    Greedy single answers (the common request) go through one worker that answers everything queued while it
    was busy in one batched ``generate``: concurrent users share forward passes instead of queueing for the
    model one by one. A lone request runs at once.
    """

    def __init__(self, ws: Workspace, refresh_interval: float = 1.0) -> None:
        self.adapters = AdapterRegistry(ws)
        self._generator: BatchWorker[tuple[LanguageModel, Conversation, int]] = BatchWorker(
            self._generate_batch, name="datawheel-generate", max_batch=MAX_GENERATION_BATCH)
        #: sizes of the batches answered so far (telemetry and tests read it)
        self.batch_sizes: list[int] = []
        super().__init__(ws, refresh_interval=refresh_interval)

    def greedy(self, lm: LanguageModel, conversation: Conversation, max_new_tokens: int) -> Answer:
        """One greedy answer, generated in a batch with whatever other requests are waiting."""
        return self._generator.submit((lm, conversation, max_new_tokens)).result()

    def _generate_batch(self, jobs: list[tuple[tuple[LanguageModel, Conversation, int], Future]]) -> None:
        by_model: dict[int, list[tuple[tuple[LanguageModel, Conversation, int], Future]]] = {}
        for job in jobs:  # a swap between two requests: each is answered by the model it was given
            by_model.setdefault(id(job[0][0]), []).append(job)
        for group in by_model.values():
            lm = group[0][0][0]
            try:
                answers = lm.generate([c for (_, c, _), _ in group], max_new_tokens=[m for (_, _, m), _ in group])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request, which re-raises it
                for _, future in group:
                    future.set_exception(exc)
                continue
            self.batch_sizes.append(len(group))
            for (_, future), answer in zip(group, answers):
                future.set_result(answer[0])

    def _load(self, version: int) -> LoadedModel:
        gen = self.adapters.load_generator(version)
        # An upstream has no local network; the classifier paths that would use one refuse generation workspaces.
        network = gen.model if isinstance(gen, LanguageModel) else nn.Identity()
        return LoadedLanguageModel(version, self.adapters.store.get_model(version)["model_name"], network,
                                   network, gen)

    def _answers(self, model: LoadedModel, items: list[Any]) -> list[Any]:
        raise Conflict("this workspace serves text generation: use /v1/chat/completions, not /v1/predict")

    def shadow_predict(self, item: Any) -> tuple[int, str] | None:
        return None  # a shadow language model is judged on the golden set, not on live classifier answers

    def champion_lm(self) -> tuple[int, Generator]:
        """The champion's version and model (or upstream), re-read from the registry at most every
        ``refresh_interval``."""
        current = self.refresh()
        assert isinstance(current, LoadedLanguageModel) and current.lm is not None
        return current.version, current.lm
