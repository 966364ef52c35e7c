"""Batched generation: left padding must not change greedy outputs; context limits."""

from __future__ import annotations

import pytest

from oracles import generate
from rait.errors import ModelError
from rait.models import build_tiny_model


def _items(lm, questions):
    return [(str(i), lm.render([{"role": "user", "content": q}])) for i, q in enumerate(questions)]


def test_batched_greedy_equals_one_by_one():
    lm = build_tiny_model(seed=1)
    items = _items(lm, ["What is the capital of France?", "Hi", "In which country is Lyon? A B"])
    batched = dict(kv for batch in generate(lm, items, 10, batch_size=3) for kv in batch)
    single = dict(kv for batch in generate(lm, items, 10, batch_size=1) for kv in batch)
    assert batched == single
    assert len(set(batched.values())) > 1  # the tiny model does not emit one constant string


def test_sampling_is_reproducible_with_a_seed():
    lm = build_tiny_model(seed=1)
    items = _items(lm, ["What is the capital of France?", "Hi"])
    runs = [
        dict(kv for b in generate(lm, items, 8, batch_size=2, do_sample=True, seed=7) for kv in b)
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_prompt_longer_than_context_names_the_record():
    lm = build_tiny_model(seed=1)
    lm.model.config.max_position_embeddings = 16
    items = [("short", "Hi"), ("too-long", "capital of France " * 20)]
    with pytest.raises(ModelError, match=r"'too-long'.*exceeds the context"):
        list(generate(lm, items, 4))
