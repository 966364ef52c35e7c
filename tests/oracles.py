"""Oracles for the tests: plain, slow, obviously correct implementations that rait's fast
paths are checked against (they are not part of the package)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from rait.generation import check_context, context_limit
from rait.models import LoadedModel


def generate(
    lm: LoadedModel,
    items: Sequence[tuple[str, str]],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    seed: int | None = None,
) -> Iterator[list[tuple[str, str]]]:
    """Continue each ``(key, prompt)``; yields one list of ``(key, completion)`` per batch.

    Prompts are sorted by length so batches carry little padding; completions are decoded
    without special tokens. A prompt longer than the model's context raises a ModelError
    naming its key.
    """
    import torch

    tokenizer, model = lm.tokenizer, lm.model
    encoded = [
        (key, tokenizer(prompt, add_special_tokens=False)["input_ids"]) for key, prompt in items
    ]
    limit = context_limit(model)
    for key, ids in encoded:
        check_context(lm.name, key, len(ids), max_new_tokens, limit)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][1]))
    pad_id = tokenizer.pad_token_id
    if seed is not None:
        torch.manual_seed(seed)
    for start in range(0, len(order), batch_size):
        batch = [encoded[i] for i in order[start : start + batch_size]]
        width = max(len(ids) for _, ids in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (_, ids) in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids) :] = 1
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": pad_id}
        if do_sample:
            kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
        with torch.inference_mode():
            output = model.generate(
                input_ids=input_ids.to(model.device),
                attention_mask=attention.to(model.device),
                **kwargs,
            )
        texts = tokenizer.batch_decode(output[:, width:], skip_special_tokens=True)
        yield [(key, text) for (key, _), text in zip(batch, texts)]
