"""Near-duplicate clustering: perceptual hashes for images, MinHash/LSH for text.

Exact duplicates already share a content hash; these catch the same drawing
re-uploaded with a little noise or a shifted brightness, and the same sentence
with a changed word or two. Each returns a cluster id per item (the index of
the cluster's first member), so the caller can pool the cluster's votes onto
one representative.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from PIL import Image

#: DCT perceptual hash size: 16x16 = 256 bits. The default 8x8 is too coarse for 28x28
#: digits (30 of sklearn's 1,797 distinct digits share an 8x8 hash; at 16x16 one pair is
#: within 10 bits, while a JPEG or brightness re-encoding of the same drawing is within 8 bits
#: at the 95th percentile).
HASH_SIZE = 16
#: images whose perceptual hashes differ in at most this many bits are one cluster
IMAGE_MAX_BITS = 10
#: texts whose estimated Jaccard similarity of character 5-shingles (punctuation and case
#: ignored) reaches this are one cluster; one changed word in a 12-word sentence stays above it
TEXT_THRESHOLD = 0.7
SHINGLE = 5
PERMUTATIONS = 128


_PUNCT = re.compile(r"[^\w\s]+")


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def clusters(self) -> list[int]:
        return [self.find(i) for i in range(len(self.parent))]


def image_hashes(images: Sequence[np.ndarray]) -> np.ndarray:
    """DCT perceptual hash (imagehash.phash) of each uint8 grayscale image, packed: [n, HASH_SIZE**2 / 8]."""
    import imagehash  # imported where used, as datasketch below: both load SciPy, which `init` never needs

    out = np.zeros((len(images), HASH_SIZE * HASH_SIZE // 8), dtype=np.uint8)
    for i, img in enumerate(images):
        bits = imagehash.phash(Image.fromarray(np.asarray(img, dtype=np.uint8)), hash_size=HASH_SIZE).hash
        out[i] = np.packbits(bits.flatten())
    return out


def image_clusters(images: Sequence[np.ndarray], max_bits: int = IMAGE_MAX_BITS) -> list[int]:
    hashes = image_hashes(images)
    uf = _UnionFind(len(hashes))
    # Vectorized Hamming distances, one row at a time: O(n^2) byte operations, memory O(n).
    for i in range(len(hashes) - 1):
        dist = np.bitwise_count(np.bitwise_xor(hashes[i + 1:], hashes[i])).sum(axis=1)
        for j in np.flatnonzero(dist <= max_bits):
            uf.union(i, i + 1 + int(j))
    return uf.clusters()


def _shingles(text: str) -> set[bytes]:
    norm = " ".join(_PUNCT.sub(" ", text.casefold()).split())
    if len(norm) <= SHINGLE:
        return {norm.encode("utf-8")}
    return {norm[i:i + SHINGLE].encode("utf-8") for i in range(len(norm) - SHINGLE + 1)}


def text_clusters(texts: Sequence[str], threshold: float = TEXT_THRESHOLD) -> list[int]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=PERMUTATIONS)
    hashes = []
    for i, text in enumerate(texts):
        mh = MinHash(num_perm=PERMUTATIONS, seed=1)
        mh.update_batch(list(_shingles(text)))
        hashes.append(mh)
        lsh.insert(i, mh)
    uf = _UnionFind(len(texts))
    for i, mh in enumerate(hashes):
        for j in lsh.query(mh):
            # LSH proposes candidates; confirm on the estimated similarity itself.
            if j != i and mh.jaccard(hashes[j]) >= threshold:
                uf.union(i, j)
    return uf.clusters()
