"""An upstream OpenAI-compatible model (proxy mode): it answers users until a local model is good enough.

It offers the same ``generate`` as a local :class:`LanguageModel`, so the golden
set scores both the same way and serving calls either. Conversations are sent
as they were stored (after the privacy screen). Failures (down, timeout, an
answer not in OpenAI's shape) are an :class:`UpstreamError` (502) that names
the upstream's status, never the conversation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import httpx

from datawheel.config import UpstreamSection
from datawheel.errors import UpstreamError
from datawheel.tasks.chat import Conversation, as_messages
from datawheel.tasks.language_model import Answer


class Upstream:
    def __init__(self, cfg: UpstreamSection, transport: httpx.BaseTransport | None = None) -> None:
        self.cfg = cfg
        key = os.environ.get(cfg.key_env, "")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=cfg.url.rstrip("/"), headers=headers, timeout=cfg.timeout,
                                  transport=transport)

    @property
    def identity(self) -> str:
        """What a registry row records for it: which server and model, not the key."""
        return hashlib.sha256(f"{self.cfg.url}\n{self.cfg.model}".encode()).hexdigest()

    def generate(self, conversations: Sequence[Conversation], *, max_new_tokens: int | Sequence[int],
                 temperature: float = 0.0, n: int = 1, seed: int = 0) -> list[list[Answer]]:
        limits = ([max_new_tokens] * len(conversations) if isinstance(max_new_tokens, int)
                  else list(max_new_tokens))
        return [self._complete(c, limit, temperature, n, seed) for c, limit in zip(conversations, limits)]

    def _complete(self, conversation: Conversation, limit: int, temperature: float, n: int,
                  seed: int) -> list[Answer]:
        body = {"model": self.cfg.model or "default", "messages": as_messages(conversation), "max_tokens": limit,
                "temperature": temperature, "n": n, "seed": seed}
        try:
            r = self._http.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"the upstream model server did not answer ({type(exc).__name__})") from None
        if r.status_code != 200:
            raise UpstreamError(f"the upstream model server answered {r.status_code}")
        try:
            choices = r.json()["choices"]
            usage = r.json().get("usage") or {}
            answers = [Answer(str(c["message"]["content"] or "").strip(), 0,
                              "length" if c.get("finish_reason") == "length" else "stop") for c in choices]
        except (ValueError, KeyError, TypeError):
            raise UpstreamError("the upstream model server's answer is not a chat completion") from None
        if not answers:
            raise UpstreamError("the upstream model server sent no choices")
        tokens = int(usage.get("completion_tokens", 0)) // len(answers)
        return [Answer(a.text, tokens, a.finish_reason) for a in answers[:n]]
