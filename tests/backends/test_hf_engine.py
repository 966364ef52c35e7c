"""The HF engine: shared-prefix scoring equals full forward passes; sampling and greedy
decoding match plain generation; seeds make samples independent of batching."""

from __future__ import annotations

import pytest
import torch

from rait.backends.hf import HFEngine, _common_prefix_length
from rait.errors import ModelError
from rait.generation import generate
from rait.matching import first_line
from rait.models import build_tiny_model

SHOTS = "Question: What is the capital of France? Answer: Paris\n\n" * 3


@pytest.fixture(scope="module")
def lm():
    return build_tiny_model(seed=2)


def _prompts(lm, questions):
    return [lm.render([{"role": "user", "content": SHOTS + "Question: " + q}]) for q in questions]


QUESTIONS = ["Capital of Spain?", "Where is Lyon?", "Capital of Peru?", "Symbol Fe?", "Chile?"]


def test_common_prefix_length():
    assert _common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert _common_prefix_length([[5], [6]]) == 0


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_scoring_with_shared_prefix_equals_full_forward(lm, batch_size):
    prompts = _prompts(lm, QUESTIONS)
    engine = HFEngine(lm, batch_size=batch_size)
    got = engine.next_token_logprobs(prompts, [str(i) for i in range(len(prompts))])
    for i, prompt in enumerate(prompts):
        ids = lm.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            want = torch.log_softmax(lm.model(ids).logits[0, -1].float(), dim=-1)
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=1e-5)


def test_explicit_shared_prefix_is_used_and_exact(lm):
    prompts = _prompts(lm, QUESTIONS)
    engine = HFEngine(lm, batch_size=2)
    tokens = [engine.encode(p) for p in prompts]
    engine.set_shared_prefix(tokens[0][: _common_prefix_length(tokens) - 3])
    assert engine._prefix is not None
    with_prefix = engine.candidate_logprobs(prompts, list("abcde"), [[10, 11, 12]] * 5)
    plain = HFEngine(lm, batch_size=1)
    plain.set_shared_prefix([])  # shorter than the minimum: no prefix
    assert plain._prefix is None
    without = [
        [float(x) for x in row]
        for row in plain.next_token_logprobs(prompts, list("abcde"))[:, [10, 11, 12]]
    ]
    for a, b in zip(with_prefix, without):
        assert a == pytest.approx(b, abs=1e-5, rel=1e-5)


def test_greedy_equals_plain_generate(lm):
    prompts = _prompts(lm, QUESTIONS)
    keys = [str(i) for i in range(len(prompts))]
    engine = HFEngine(lm, batch_size=3)
    ours = engine.sample(prompts, keys, 1, 0.0, 12)
    reference = dict(kv for batch in generate(lm, list(zip(keys, prompts)), 12, 1) for kv in batch)
    for key, completions in zip(keys, ours):
        assert first_line(completions[0].text) == first_line(reference[key])
        assert len(completions[0].token_logprobs) == len(completions[0].token_ids)
        assert all(lp <= 0 for lp in completions[0].token_logprobs)


def test_seeded_samples_do_not_depend_on_batching(lm):
    prompts = _prompts(lm, QUESTIONS)
    keys = [str(i) for i in range(len(prompts))]
    seeds = [[100 * i + k for k in range(3)] for i in range(len(prompts))]
    one = HFEngine(lm, batch_size=1).sample(prompts, keys, 3, 1.0, 10, seeds)
    many = HFEngine(lm, batch_size=5).sample(prompts[::-1], keys[::-1], 3, 1.0, 10, seeds[::-1])
    assert [[c.text for c in group] for group in one] == [
        [c.text for c in group] for group in many[::-1]
    ]
    other = HFEngine(lm, batch_size=5).sample(
        prompts, keys, 3, 1.0, 10, [[s + 1 for s in r] for r in seeds]
    )
    assert [[c.text for c in g] for g in other] != [[c.text for c in g] for g in one]


def test_rows_stop_after_their_first_line(lm):
    engine = HFEngine(lm, batch_size=4)
    newline = [t for t in range(len(lm.tokenizer)) if "\n" in lm.tokenizer.decode([t])]
    assert newline
    completions = engine.sample(
        _prompts(lm, QUESTIONS),
        list("abcde"),
        4,
        5.0,
        40,
        [[i * 7 + k for k in range(4)] for i in range(5)],
    )
    for group in completions:
        for c in group:
            assert c.finished_by in ("eos", "newline", "length")
            if c.finished_by == "newline":
                assert c.text.lstrip().count("\n") == 1 and c.text.endswith(c.text.lstrip()[-1:])


def test_bad_arguments_and_context(lm):
    engine = HFEngine(lm, batch_size=2)
    with pytest.raises(ModelError, match="number of samples"):
        engine.sample(["x"], ["k"], 0, 1.0, 4)
    with pytest.raises(ModelError, match="temperature"):
        engine.sample(["x"], ["k"], 1, -1.0, 4)
    with pytest.raises(ModelError, match="batch_size"):
        HFEngine(lm, batch_size=0)
    engine.limit = 20
    with pytest.raises(ModelError, match=r"'long'.*exceeds the context"):
        engine.next_token_logprobs(["capital " * 30], ["long"])
