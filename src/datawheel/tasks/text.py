"""Text classification in English and Chinese: NFKC text and a fastText-style hashed n-gram model.

NFKC makes full-width and compatibility forms (ＡＢＣ１２３) the same text as
their plain forms, so duplicates are found and features agree. Chinese has no
spaces, so each Han character is a token and character n-grams carry the
words; hashing into a fixed table needs no vocabulary, so a model trained
today accepts tomorrow's words. Feature ids use a stable hash (blake2b), never
Python's per-process salted ``hash()``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from datawheel.errors import ConfigError, InvalidInput
from datawheel.tasks.base import Task

MAX_CHARS = 10_000
MAX_FEATURES = 512
_SPACE = re.compile(r"\s+")
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_HAN}]|[^\W{_HAN}]+", re.UNICODE)
_HAN_RUN = re.compile(rf"[{_HAN}]+")


def _check(text: str, field: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("contains invalid Unicode (a lone surrogate)", field) from None
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()
    if len(text) > MAX_CHARS:
        raise InvalidInput(f"is {len(text)} characters after normalization; at most {MAX_CHARS}", field)
    return text


class TextClassification(Task):
    name = "text-classification"
    models = ("ngram",)

    def __init__(self, n_buckets: int = 2 ** 17, dim: int = 32) -> None:
        self.n_buckets = n_buckets
        self.dim = dim

    def parse(self, payload: Mapping[str, Any]) -> str:
        if set(payload) != {"text"}:
            raise InvalidInput("give exactly one key, 'text'", "input")
        text = payload["text"]
        if not isinstance(text, str):
            raise InvalidInput("must be a string", "input.text")
        return _check(text, "input.text")

    def parse_file(self, path: Path) -> str:
        try:
            return _check(Path(path).read_bytes().decode("utf-8"), str(path))
        except UnicodeDecodeError:
            raise InvalidInput("is not UTF-8 text", str(path)) from None
        except OSError as exc:
            raise InvalidInput(f"cannot read file ({exc.strerror})", str(path)) from None

    def encode(self, item: str) -> bytes:
        return item.encode("utf-8")

    def decode(self, data: bytes) -> str:
        return data.decode("utf-8")

    def is_blank(self, item: str) -> bool:
        return not any(unicodedata.category(ch)[0] in "LN" for ch in item)

    def features(self, text: str) -> list[str]:
        """Words, word bigrams and character 2-4-grams (of bracketed Latin words, and of Han runs)."""
        lowered = text.casefold()
        tokens = _TOKEN.findall(lowered)
        feats = [f"w:{t}" for t in tokens]
        feats += [f"b:{a} {b}" for a, b in zip(tokens, tokens[1:])]
        pieces = [f"<{t}>" for t in tokens if not _HAN_RUN.fullmatch(t)] + _HAN_RUN.findall(lowered)
        for piece in pieces:
            for n in (2, 3, 4):
                feats += [f"c:{piece[i:i + n]}" for i in range(len(piece) - n + 1)]
        return feats[:MAX_FEATURES]

    def _bucket(self, feature: str) -> int:
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        return 1 + int.from_bytes(digest, "little") % self.n_buckets  # 0 is padding

    def featurize(self, items: Sequence[str]) -> torch.Tensor:
        ids = [[self._bucket(f) for f in self.features(t)] for t in items]
        width = max([len(row) for row in ids] + [1])
        out = torch.zeros((len(ids), width), dtype=torch.long)  # [N, L], 0 = padding
        for i, row in enumerate(ids):
            out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def build_model(self, name: str, n_classes: int) -> nn.Module:
        if name == "ngram":
            return NgramClassifier(self.n_buckets + 1, self.dim, n_classes)
        raise ConfigError(f"unknown text model {name!r}; choose one of {', '.join(self.models)}")


class NgramClassifier(nn.Module):
    """Mean of hashed feature embeddings, then a linear layer: fastText's recipe."""

    def __init__(self, n_embeddings: int, dim: int, n_classes: int) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(n_embeddings, dim, mode="mean", padding_idx=0)
        self.out = nn.Linear(dim, n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(ids))  # [N, L] -> [N, dim] -> [N, n_classes]
