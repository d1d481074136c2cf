"""An upstream OpenAI-compatible model (proxy mode): it answers users until a local model is good enough.

It offers the same ``generate`` as a local :class:`LanguageModel`, so the golden
set scores both the same way and serving calls either. Conversations are sent
as they were stored (after the privacy screen). Failures (down, timeout, an
answer not in OpenAI's shape) are an :class:`UpstreamError` (502) that names
the upstream's status, never the conversation.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence

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

    def _body(self, conversation: Conversation, limit: int, temperature: float, n: int, seed: int) -> dict:
        return {"model": self.cfg.model or "default", "messages": as_messages(conversation), "max_tokens": limit,
                "temperature": temperature, "n": n, "seed": seed}

    def stream(self, conversation: Conversation, *, max_new_tokens: int, temperature: float = 0.0,
               seed: int = 0) -> UpstreamStream:
        """The upstream's answer relayed piece by piece as it arrives.

        The request is sent and its status checked here, before the caller answers its own client, so a
        down or refusing upstream is still a 502 rather than a broken stream.
        """
        body = {**self._body(conversation, max_new_tokens, temperature, 1, seed), "stream": True,
                "stream_options": {"include_usage": True}}
        try:
            response = self._http.send(self._http.build_request("POST", "/chat/completions", json=body),
                                       stream=True)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"the upstream model server did not answer ({type(exc).__name__})") from None
        if response.status_code != 200:
            response.close()
            raise UpstreamError(f"the upstream model server answered {response.status_code}")
        return UpstreamStream(response)

    def _complete(self, conversation: Conversation, limit: int, temperature: float, n: int,
                  seed: int) -> list[Answer]:
        try:
            r = self._http.post("/chat/completions", json=self._body(conversation, limit, temperature, n, seed))
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


class UpstreamStream:
    """The pieces of an upstream's streamed answer; after the last, ``tokens`` and ``finish_reason`` as it said.

    Servers that send no usage leave ``tokens`` at 0, as the non-streamed path does. A server that sends
    its whole answer as one chat completion instead of events (it ignored ``stream``) is relayed too.
    """

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.tokens = 0
        self.finish_reason = "stop"

    def close(self) -> None:
        """Give the connection back when the answer is not read to its end (the client went away first)."""
        self._response.close()

    def __iter__(self) -> Iterator[str]:
        try:
            if not self._response.headers.get("content-type", "").startswith("text/event-stream"):
                yield from self._whole()
                return
            for line in self._response.iter_lines():
                if not line.startswith("data:"):
                    continue  # comments, event names, keep-alives, blank separators
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    break
                yield from self._piece(data)
        except httpx.HTTPError as exc:
            raise UpstreamError(f"the upstream model server broke off its answer ({type(exc).__name__})") from None
        finally:
            self._response.close()

    def _piece(self, data: str) -> Iterator[str]:
        try:
            event = json.loads(data)
            if event.get("usage"):
                self.tokens = int(event["usage"].get("completion_tokens", 0))
            for choice in event.get("choices") or []:
                if choice.get("finish_reason"):
                    self.finish_reason = "length" if choice["finish_reason"] == "length" else "stop"
                content = (choice.get("delta") or {}).get("content")
                if content:
                    yield str(content)
        except (ValueError, TypeError, AttributeError):
            raise UpstreamError("the upstream model server sent an event that is not a chat completion chunk") \
                from None

    def _whole(self) -> Iterator[str]:
        self._response.read()
        try:
            completion = self._response.json()
            choice = completion["choices"][0]
            self.tokens = int((completion.get("usage") or {}).get("completion_tokens", 0))
            self.finish_reason = "length" if choice.get("finish_reason") == "length" else "stop"
            text = str(choice["message"]["content"] or "")
        except (ValueError, KeyError, TypeError, IndexError):
            raise UpstreamError("the upstream model server's answer is not a chat completion") from None
        if text:
            yield text
