"""Text generation: the item is a conversation (the messages before the assistant's answer).

A product's users chat with an assistant; what the wheel learns from is the
conversation that asked (the item) and the answers users accepted, corrected or
preferred (the targets, which curation chooses). The item is stored in one
canonical form, NFKC with line breaks unified, as a JSON list of
``{"role", "content"}`` messages, so the same question asked twice is one item
with one hash. The classifier-only members of the contract (features, models
with a fixed number of classes) do not apply: a language model is trained by
``stages/train_lora.py`` and served by ``models/chat_serving.py``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from datawheel.curation.near_dup import text_clusters
from datawheel.errors import ConfigError, InvalidInput
from datawheel.tasks.base import Task, nfkc_text, wordless

#: a conversation, oldest message first; the last one is the user's turn the assistant answers
Conversation = tuple[tuple[str, str], ...]

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 64
MAX_CHARS = 20_000  # the whole conversation after normalization
MAX_RAW_CHARS = 2 * MAX_CHARS
_PLACEHOLDER = re.compile(r"<[A-Z_]+(?::[a-z]+)?>")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")
_SPACE = re.compile(r"\s+")
_DIGITS = re.compile(r"\d+")
_TRAILING = re.compile(r"[\s.。!！?？,，;；:：]+$")


def normalize_text(text: Any, field: str) -> str:
    """NFKC, one kind of line break, no trailing blanks: the form stored, hashed, trained on and compared."""
    if not isinstance(text, str):
        raise InvalidInput("must be a string", field)
    text = nfkc_text(text, field, MAX_RAW_CHARS).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def normalize_answer(text: str) -> str:
    """NFKC, case folded, whitespace collapsed, trailing punctuation dropped: "Paris." equals "paris".

    Exact-match scoring and curation's vote counting compare answers in this form.
    """
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()
    return _TRAILING.sub("", text)


def parse_messages(raw: Any, field: str) -> Conversation:
    """A list of ``{"role", "content"}`` objects ending with a user message, as OpenAI's chat API sends it."""
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("must be a non-empty list of {role, content} messages", field)
    if len(raw) > MAX_MESSAGES:
        raise InvalidInput(f"has {len(raw)} messages; at most {MAX_MESSAGES}", field)
    out: list[tuple[str, str]] = []
    for i, msg in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(msg, Mapping):
            raise InvalidInput("must be an object with role and content", where)
        role = msg.get("role")
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}", f"{where}.role")
        out.append((str(role), normalize_text(msg.get("content"), f"{where}.content")))
    if out[-1][0] != "user":
        raise InvalidInput("the last message must be the user's (the turn to answer)", field)
    if sum(len(c) for _, c in out) > MAX_CHARS:
        raise InvalidInput(f"is longer than {MAX_CHARS} characters in all", field)
    return tuple(out)


def as_messages(conversation: Conversation) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in conversation]


def prompt_text(conversation: Conversation) -> str:
    """The user's last turn: what near-duplicate merging and language checks look at."""
    return conversation[-1][1]


def script(text: str) -> str:
    """``zh``, ``latin`` or ``other``: the letters a text is mostly written in (enough to spot a switched language)."""
    han, latin = len(_HAN.findall(text)), len(_LATIN.findall(text))
    if han == latin == 0:
        return "other"
    return "zh" if han >= latin else "latin"


def _no_words(text: str) -> bool:
    return wordless(_PLACEHOLDER.sub("", text))


def answer_issue(prompt: str, answer: str, max_chars: int) -> str | None:
    """Why an answer must not be trained on as a target, or None: the quality filters with their reason codes."""
    if not answer.strip():
        return "empty_answer"
    if len(answer) > max_chars:
        return "over_long"
    if _no_words(answer):
        return "only_placeholders"
    asked, answered = script(prompt), script(answer)
    if "other" not in (asked, answered) and asked != answered:
        return "language_mismatch"
    return None


class TextGeneration(Task):
    """Items are :data:`Conversation` tuples; there are no labels and no classifier models."""

    name = "text-generation"
    models = ("lora",)

    def parse(self, payload: Mapping[str, Any]) -> Conversation:
        if not isinstance(payload, Mapping):
            raise InvalidInput("must be an object with messages or prompt", "input")
        if "messages" in payload:
            return parse_messages(payload["messages"], "input.messages")
        if "prompt" in payload:
            return (("user", normalize_text(payload["prompt"], "input.prompt")),)
        raise InvalidInput("give messages (a list of {role, content}) or prompt (a string)", "input")

    def encode(self, item: Conversation) -> bytes:
        return json.dumps([[r, c] for r, c in item], ensure_ascii=False, separators=(",", ":")).encode()

    def decode(self, data: bytes) -> Conversation:
        return tuple((str(r), str(c)) for r, c in json.loads(data))

    def quality_issue(self, item: Conversation) -> str | None:
        text = prompt_text(item)
        if wordless(text):
            return "blank_input"
        if _no_words(text):
            return "only_placeholders"
        return None

    def near_duplicate_clusters(self, items: Sequence[Conversation]) -> list[int]:
        """MinHash over the whole conversation: a prompt asked again with a typo pools its feedback.

        Only prompts with the same numbers merge: "3 May" and "4 May" differ in one character and are
        different questions with different right answers.
        """
        texts = ["\n".join(c for _, c in item) for item in items]
        keys: dict[tuple[int, tuple[str, ...]], int] = {}
        return [keys.setdefault((cluster, tuple(_DIGITS.findall(text))), len(keys))
                for cluster, text in zip(text_clusters(texts), texts)]

    def show(self, item: Conversation) -> dict:
        return {"messages": as_messages(item)}

    def featurize(self, items: Sequence[Any], model: str = "", *, cache: bool = False) -> torch.Tensor:
        raise ConfigError("text-generation has no classifier features: its models are language models "
                          "(stages/train_lora.py trains them)")

    def vectorize(self, items: Sequence[Any]) -> Any:
        raise ConfigError("text-generation has no classifier features: curation ranks answers, not labels")

    def build_model(self, name: str, n_classes: int) -> nn.Module:
        raise ConfigError("text-generation models are a base language model plus a LoRA adapter "
                          "(tasks/language_model.py loads them)")
