"""Batched text generation with Hugging Face models (left padding, length-sorted batches)."""

from __future__ import annotations

from typing import Any

from rait.errors import ModelError


def context_limit(model: Any) -> int | None:
    """The model's maximum sequence length, if its config states one."""
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_context(
    model_name: str, key: str, n_tokens: int, new_tokens: int, limit: int | None
) -> None:
    """A prompt of ``n_tokens`` plus ``new_tokens`` must fit the model's context ``limit``."""
    if limit is not None and n_tokens + new_tokens > limit:
        raise ModelError(
            f"record {key!r}: prompt of {n_tokens} tokens plus {new_tokens} new token(s) "
            f"exceeds the context of {model_name!r} ({limit} tokens); use fewer shots or a "
            "model with a longer context"
        )
