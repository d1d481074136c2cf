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
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from itertools import islice, pairwise
from pathlib import Path
from typing import Any

import torch
from torch import nn

from datawheel.errors import ConfigError, InvalidInput
from datawheel.tasks.base import Task, nfkc_text, wordless
from datawheel.tasks.sklearn_model import SklearnModel, to_codepoints
from datawheel.tasks.text_encoders import (
    EmbeddingCache,
    EmbeddingHead,
    FineTunedEncoder,
    dimension,
    embed,
    encoder_id,
    token_ids,
)

MAX_CHARS = 10_000  # after normalization
# As sent, checked before NFKC, which can expand a character 18 times (U+FDFA): 20,000 of those normalize
# to 360,000 characters in 0.12 s and 7 MB, where 600,000 took 3.3 s and 215 MB. Twice MAX_CHARS leaves
# room for whitespace that normalization collapses.
MAX_RAW_CHARS = 2 * MAX_CHARS
MAX_FEATURES = 512  # per text, for the mean-pooled ``ngram`` model
#: features per text for the ``tfidf`` model (enough for a 1,000-character review), and of them the distinct ones
#: kept, words first: 99 % of product reviews have fewer, and a batch tensor is as wide as its longest text
MAX_TFIDF_FEATURES = 8192
MAX_TFIDF_DISTINCT = 1024
_SPACE = re.compile(r"\s+")
# Han ideographs: Extension A, the unified block, compatibility forms, and planes 2-3 (Extensions B-H)
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
_TOKEN = re.compile(rf"[{_HAN}]|[^\W{_HAN}]+", re.UNICODE)
_HAN_RUN = re.compile(rf"[{_HAN}]+")
# What the privacy screen leaves in place of personal data: <EMAIL> or <EMAIL:pseudonym>
_PLACEHOLDER = re.compile(r"<[A-Z_]+(?::[a-z]+)?>")


def _check(text: str, field: str) -> str:
    """Canonical form, so the same sentence typed two ways is one item with one hash."""
    text = _SPACE.sub(" ", nfkc_text(text, field, MAX_RAW_CHARS)).strip()
    if len(text) > MAX_CHARS:
        raise InvalidInput(f"is {len(text)} characters after normalization; at most {MAX_CHARS}", field)
    return text


class TextClassification(Task):
    """Items are normalized ``str``; ``n_buckets`` and ``dim`` fix the model's size and must not
    change under a saved model, since feature ids and the embedding table depend on them."""

    name = "text-classification"
    models = ("tfidf", "ngram", "minilm-head", "minilm-finetune", "sklearn")

    # 2**17 x 32 is a 16 MB table: room for a product's vocabulary without making each CPU step slow.
    def __init__(self, n_buckets: int = 2 ** 17, dim: int = 32, *, encoder: str = "",
                 cache_dir: Path | None = None, tfidf_buckets: int = 2 ** 20) -> None:
        self.n_buckets = n_buckets
        # 2**20 x n_classes weights (8 MB for two classes): few collisions among a corpus's n-grams
        self.tfidf_buckets = tfidf_buckets
        self.dim = dim
        self.encoder = encoder  # sentence-transformers name or path for the MiniLM models ("" = bundled)
        self.cache_dir = cache_dir
        self._cache: EmbeddingCache | None = None

    @property
    def cache(self) -> EmbeddingCache:
        if self._cache is None:
            path = None if self.cache_dir is None else self.cache_dir / f"embeddings-{encoder_id(self.encoder)}.sqlite"
            self._cache = EmbeddingCache(path)
        return self._cache

    def drop_cached(self, content_hashes: set[str]) -> None:
        for cache in self._caches():
            cache.forget(content_hashes)

    def keep_cached(self, content_hashes: set[str]) -> int:
        return sum(cache.retain(content_hashes) for cache in self._caches())

    def _caches(self) -> list[EmbeddingCache]:
        """Every encoder's cache on disk, not only the configured one's: an old encoder's entries are data too."""
        if self.cache_dir is None:
            return [self.cache] if self._cache is not None else []
        return [EmbeddingCache(p) for p in sorted(self.cache_dir.glob("embeddings-*.sqlite"))]

    def variable_dims(self, model: str = "") -> tuple[int, ...]:
        return (0,) if model == "minilm-head" else (0, 1)  # embeddings have a fixed width; ids a padded length

    def parse(self, payload: Mapping[str, Any]) -> str:
        if not isinstance(payload, Mapping):
            raise InvalidInput("must be an object with one key, 'text'", "input")
        if "text" not in payload:
            raise InvalidInput("is required", "input.text")
        if len(payload) > 1:  # extra keys are counted, not echoed: they are the client's data
            raise InvalidInput(f"only 'text' is allowed; got {len(payload) - 1} other key(s)", "input")
        text = payload["text"]
        if not isinstance(text, str):
            raise InvalidInput("must be a string", "input.text")
        return _check(text, "input.text")

    def encode(self, item: str) -> bytes:
        return item.encode("utf-8")

    def decode(self, data: bytes) -> str:
        return data.decode("utf-8")

    def quality_issue(self, item: str) -> str | None:
        if wordless(item):
            return "blank_input"
        if wordless(_PLACEHOLDER.sub("", item)):
            return "only_placeholders"  # nothing left but what redaction put there
        return None

    def near_duplicate_clusters(self, items: Sequence[str]) -> list[int]:
        from datawheel.curation.near_dup import text_clusters  # datasketch and SciPy: curation only

        return text_clusters(items)

    def vectorize(self, items: Sequence[str]) -> Any:
        """The same word and character n-grams, hashed into a sparse, L2-normalized bag."""
        from sklearn.feature_extraction.text import HashingVectorizer  # curation only: `init` never loads it

        vec = HashingVectorizer(analyzer=self.features, n_features=2 ** 18, alternate_sign=False)
        return vec.transform(items)

    def show(self, item: str) -> dict:
        return {"text": item}

    def features(self, text: str) -> list[str]:
        """Words, word bigrams, then character 2-4-grams (of bracketed Latin words and of Han runs).

        Han runs get plain character n-grams because a Chinese word is a run of characters with
        no separator to bracket. Words come first so the cap keeps them on long texts; the
        generator stops at the cap, so a 10,000-character text costs no more than a short one.
        """
        lowered = text.casefold()
        tokens = _TOKEN.findall(lowered)

        def all_features() -> Iterator[str]:
            yield from (f"w:{t}" for t in tokens)
            yield from (f"b:{a} {b}" for a, b in pairwise(tokens))
            pieces = [f"<{t}>" for t in tokens if not _HAN_RUN.fullmatch(t)] + _HAN_RUN.findall(lowered)
            for piece in pieces:
                for n in (2, 3, 4):
                    yield from (f"c:{piece[i:i + n]}" for i in range(len(piece) - n + 1))

        return list(islice(all_features(), MAX_FEATURES))

    def tfidf_features(self, text: str) -> list[str]:
        """Words (``w:``) and word bigrams (``b:``), then character 2-5-grams of each space-separated
        chunk padded with spaces (``c:``); a text with Han characters gets character 1-3-grams of the
        whole text (``h:``) instead.

        What scikit-learn's word 1-2-gram plus ``char_wb`` 2-5-gram TF-IDF sees, and for Chinese its
        character 1-3-grams (the usual recipe for unsegmented text): those run across punctuation and
        across the boundary between a Han character and a Latin word, where much of a review's tone is.
        Words come first so the cap keeps them on long texts.
        """
        lowered = text.casefold()

        def all_features() -> Iterator[str]:
            if _HAN_RUN.search(lowered) is not None:
                for n in (1, 2, 3):
                    yield from (f"h:{lowered[i:i + n]}" for i in range(len(lowered) - n + 1))
                return
            tokens = _TOKEN.findall(lowered)
            yield from (f"w:{t}" for t in tokens)
            yield from (f"b:{a} {b}" for a, b in pairwise(tokens))
            for chunk in lowered.split():
                piece = f" {chunk} "
                for n in (2, 3, 4, 5):
                    yield from (f"c:{piece[i:i + n]}" for i in range(len(piece) - n + 1))

        return list(islice(all_features(), MAX_TFIDF_FEATURES))

    def _tfidf_bucket(self, feature: str) -> int:
        """Words and word bigrams hash into the first half of the table, character n-grams into the second."""
        half = self.tfidf_buckets // 2
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        return 1 + int.from_bytes(digest, "little") % half + (0 if feature[0] in "wb" else half)

    def _bucket(self, feature: str) -> int:
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        return 1 + int.from_bytes(digest, "little") % self.n_buckets  # 0 is padding

    def featurize(self, items: Sequence[str], model: str = "", *, cache: bool = False) -> torch.Tensor:
        """Hashed feature ids and their counts [N, L, 2] for ``tfidf``; hashed n-gram ids [N, L] for ``ngram``
        (and for "", as before ``tfidf`` became the default, so callers without a model name keep their shapes);
        MiniLM embeddings [N, 384] for ``minilm-head``;
        MiniLM token ids [N, L] for ``minilm-finetune``; the texts' code points [N, L] for ``sklearn``, whose
        pipeline takes the strings themselves."""
        if model == "sklearn":
            return to_codepoints(list(items))
        if model == "minilm-head":
            return embed(self.encoder, self.cache if cache else None, items)
        if model == "minilm-finetune":
            return token_ids(self.encoder, items)
        if model == "tfidf":
            return self._counts(items)
        ids = [[self._bucket(f) for f in self.features(t)] for t in items]
        width = max([len(row) for row in ids] + [1])
        out = torch.zeros((len(ids), width), dtype=torch.long)  # [N, L], 0 = padding
        for i, row in enumerate(ids):
            out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def _counts(self, items: Sequence[str]) -> torch.Tensor:
        """Each text's distinct feature ids with how often each occurs, [N, L, 2]; (0, 0) pads."""
        counted = (Counter(self._tfidf_bucket(f) for f in self.tfidf_features(t)) for t in items)
        rows = [sorted(islice(c.items(), MAX_TFIDF_DISTINCT)) for c in counted]
        out = torch.zeros((len(rows), max([len(r) for r in rows] + [1]), 2), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return out

    def build_model(self, name: str, n_classes: int) -> nn.Module:
        if name == "tfidf":
            return TfidfLinear(self.tfidf_buckets + 1, n_classes)
        if name == "ngram":
            return NgramClassifier(self.n_buckets + 1, self.dim, n_classes)
        if name == "minilm-head":
            return EmbeddingHead(dimension(self.encoder), n_classes)
        if name == "minilm-finetune":
            return FineTunedEncoder(self.encoder, n_classes)
        if name == "sklearn":
            return SklearnModel("text", n_classes)
        raise ConfigError(f"unknown text model {name!r}; choose one of {', '.join(self.models)}")


class NgramClassifier(nn.Module):
    """Mean of hashed feature embeddings, then a linear layer: fastText's recipe."""

    def __init__(self, n_embeddings: int, dim: int, n_classes: int) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(n_embeddings, dim, mode="mean", padding_idx=0)
        self.out = nn.Linear(dim, n_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.embed(ids))  # [N, L] -> [N, dim] -> [N, n_classes]


class TfidfLinear(nn.Module):
    """Logistic regression on hashed TF-IDF features: one weight per (feature bucket, class), no bottleneck.

    A text's weights are sublinear term frequency (1 + log tf) times inverse document frequency,
    L2-normalized per text and per block (words, character n-grams), as scikit-learn's
    ``TfidfVectorizer(sublinear_tf=True)`` computes them. Document frequencies are counted from the
    training batches themselves (every epoch sees every training text once, so the ratio settles after
    the first) into buffers of the state dict: a saved, reloaded or ONNX-exported model weighs features
    exactly as it did when it was trained, and evaluation and serving never change them.
    """

    df: torch.Tensor
    docs: torch.Tensor

    def __init__(self, n_embeddings: int, n_classes: int) -> None:
        super().__init__()
        # padding_idx: the padding (id 0) is skipped, not summed with weight 0, which keeps the backward pass fast
        self.weight = nn.EmbeddingBag(n_embeddings, n_classes, mode="sum", padding_idx=0)
        nn.init.zeros_(self.weight.weight)  # a convex model: the same optimum from anywhere, so start at 0
        self.bias = nn.Parameter(torch.zeros(n_classes))
        self.n_word_ids = (n_embeddings - 1) // 2  # ids 1..n_word_ids: words and word bigrams; above: characters
        self.register_buffer("df", torch.zeros(n_embeddings))  # training texts containing each bucket
        self.register_buffer("docs", torch.zeros(()))  # training texts seen

    def param_groups(self, cfg: Any) -> list[dict]:
        """A sparse linear model wants a far larger step than a deep net (``linear_lr``); early stopping
        on the validation split regularizes it, as a large C does scikit-learn's."""
        return [{"params": [self.weight.weight, self.bias], "lr": cfg.linear_lr, "weight_decay": 0.0}]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, counts = x[..., 0], x[..., 1].to(torch.float32)  # [N, L] each
        if self.training and len(ids) > 0:  # rows are padded at the end: drop columns no text here reaches
            width = max(int((counts > 0).sum(1).max()), 1)
            ids, counts = ids[:, :width], counts[:, :width]
        present = (counts > 0).to(torch.float32)  # [N, L]
        if self.training:
            with torch.no_grad():
                self.df.index_add_(0, ids.reshape(-1), present.reshape(-1))
                self.docs += ids.shape[0]
        idf = torch.log((1.0 + self.docs) / (1.0 + self.df[ids])) + 1.0  # [N, L]
        w = (1.0 + torch.log(counts.clamp(min=1.0))) * idf * present  # [N, L]
        # words and character n-grams are normalized each on its own, like two TfidfVectorizers side by side
        words = (ids <= self.n_word_ids).to(torch.float32)  # [N, L]
        w_words, w_chars = w * words, w * (1.0 - words)
        w = (w_words / w_words.norm(dim=1, keepdim=True).clamp(min=1e-12)
             + w_chars / w_chars.norm(dim=1, keepdim=True).clamp(min=1e-12))
        return self.weight(ids, per_sample_weights=w) + self.bias  # [N, n_classes]
