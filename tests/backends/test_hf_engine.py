"""The HF engine: shared-prefix scoring equals full forward passes; sampling and greedy
decoding match plain generation; seeds make samples independent of batching."""

from __future__ import annotations

import pytest
import torch

from oracles import generate
from rait.backends.hf import HFEngine, common_prefix_length
from rait.errors import ModelError
from rait.matching import first_line
from rait.models import build_tiny_model

SHOTS = "Question: What is the capital of France? Answer: Paris\n\n" * 3


@pytest.fixture(scope="module")
def lm():
    return build_tiny_model(seed=2)


def _prompts(lm, questions):
    return [lm.render([{"role": "user", "content": SHOTS + "Question: " + q}]) for q in questions]


EPS = torch.finfo(torch.float32).eps


def logprob_tol(lm, n_tokens, logprobs):
    """How far float32 rounding may move a log-probability of an ``n_tokens`` context when it
    is computed another way (batched, padded, through a cached prefix).

    Each log-probability is a float32 forward pass whose longest reductions (attention over
    the context, the MLP) sum n = max(n_tokens, MLP width) terms; reordering such a sum moves
    it by at most about n·eps times the size of its terms (Higham's γ_n), taken as the
    largest |log p| of the row (the logits' scale). Measured: under 20 eps·max|log p|."""
    n = max(n_tokens, lm.model.config.intermediate_size)
    return n * EPS * float(torch.as_tensor(logprobs).abs().max())


QUESTIONS = ["Capital of Spain?", "Where is Lyon?", "Capital of Peru?", "Symbol Fe?", "Chile?"]


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5], [6]]) == 0


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_scoring_with_shared_prefix_equals_full_forward(lm, batch_size):
    prompts = _prompts(lm, QUESTIONS)
    engine = HFEngine(lm, batch_size=batch_size)
    got = engine.next_token_logprobs(prompts, [str(i) for i in range(len(prompts))])
    for i, prompt in enumerate(prompts):
        ids = lm.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            want = torch.log_softmax(lm.model(ids).logits[0, -1].float(), dim=-1)
        torch.testing.assert_close(got[i], want, atol=logprob_tol(lm, ids.shape[1], want), rtol=0)


def test_explicit_shared_prefix_is_used_and_exact(lm):
    prompts = _prompts(lm, QUESTIONS)
    engine = HFEngine(lm, batch_size=2)
    tokens = [engine.encode(p) for p in prompts]
    engine.set_shared_prefix(tokens[0][: common_prefix_length(tokens) - 3])
    assert engine._prefix is not None
    with_prefix = engine.candidate_logprobs(prompts, list("abcde"), [[10, 11, 12]] * 5)
    plain = HFEngine(lm, batch_size=1)
    plain.set_shared_prefix([])  # shorter than the minimum: no prefix
    assert plain._prefix is None
    rows = plain.next_token_logprobs(prompts, list("abcde"))
    for a, row, ids in zip(with_prefix, rows, tokens):
        b = [float(x) for x in row[[10, 11, 12]]]
        assert a == pytest.approx(b, abs=logprob_tol(lm, len(ids), row), rel=0)


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


# --------------------------------------------------------------------------- score_first
def _full_forward_logprobs(lm, tokens):
    """log_softmax of every position of one unpadded forward pass (no cache, no prefix)."""
    ids = torch.tensor([list(tokens)], dtype=torch.long)
    with torch.no_grad():
        logits = lm.model(input_ids=ids, use_cache=False).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


# prompts of different lengths: the few-shot prefix is shared, the questions are not
SCORE_QUESTIONS = ["Chile?", "Capital of Spain?", "In which country is the city of Lyon? Why?"]
SCORE_CANDIDATES = [[10, 11, 12, 13], [269, 0, 305], [7, 286, 297, 90, 91]]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_score_first_equals_full_forward(lm, batch_size):
    prompts = _prompts(lm, SCORE_QUESTIONS)
    engine = HFEngine(lm, batch_size=batch_size)
    lengths = {len(engine.encode(p)) for p in prompts}
    assert len(lengths) == len(prompts)  # really of different lengths
    out = engine.sample(prompts, list("abc"), 1, 0.0, 3, score_first=SCORE_CANDIDATES)
    # the same numbers as next_token_logprobs, which takes the same path
    scored = engine.candidate_logprobs(prompts, list("abc"), SCORE_CANDIDATES)
    assert [g[0].first_token_logprobs for g in out] == [
        pytest.approx(row, abs=1e-6) for row in scored
    ]
    for prompt, candidates, group in zip(prompts, SCORE_CANDIDATES, out):
        tokens = engine.encode(prompt)
        want = _full_forward_logprobs(lm, tokens)[-1]
        tol = logprob_tol(lm, len(tokens), want)  # the cached path's float32 rounding
        (completion,) = group
        assert completion.first_token_logprobs is not None
        torch.testing.assert_close(
            torch.tensor(completion.first_token_logprobs), want[candidates], atol=tol, rtol=0
        )
        # greedy: the first generated token is the reference's argmax (unless EOS came first)
        if completion.token_ids:
            assert completion.token_ids[0] == int(want.argmax())
            assert completion.token_logprobs[0] == pytest.approx(float(want.max()), abs=tol)


def test_score_first_is_shared_by_all_samples_of_a_prompt(lm):
    prompts = _prompts(lm, SCORE_QUESTIONS)
    engine = HFEngine(lm, batch_size=2)
    seeds = [[10 * i + k for k in range(3)] for i in range(len(prompts))]
    out = engine.sample(prompts, list("abc"), 3, 1.0, 4, seeds=seeds, score_first=SCORE_CANDIDATES)
    for prompt, candidates, group in zip(prompts, SCORE_CANDIDATES, out):
        tokens = engine.encode(prompt)
        row = _full_forward_logprobs(lm, tokens)[-1]
        want, tol = row[candidates], logprob_tol(lm, len(tokens), row)
        assert len(group) == 3
        for completion in group:
            torch.testing.assert_close(
                torch.tensor(completion.first_token_logprobs), want, atol=tol, rtol=0
            )
    plain = engine.sample(prompts, list("abc"), 1, 0.0, 2)
    assert all(c.first_token_logprobs is None for group in plain for c in group)


# ------------------------------------------------------------------- continuation_logprobs
def _reference_continuation(lm, engine, prompt, text):
    base = engine.encode(prompt)
    full = engine.encode(prompt + text)
    assert full[: len(base)] == base and len(full) > len(base)
    logp = _full_forward_logprobs(lm, full)
    n = len(full) - len(base)
    score = sum(float(logp[t - 1, full[t]]) for t in range(len(base), len(full)))
    # a sum of n log-probabilities, each within logprob_tol of the engine's
    return score, n, n * logprob_tol(lm, len(full), logp[len(base) - 1 :])


CONTINUATIONS = [" A", " sure", " sure thing", " I am unsure"]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_continuation_logprobs_equal_full_forward(lm, batch_size):
    prompts = _prompts(lm, [*SCORE_QUESTIONS, "Symbol Fe?"])
    engine = HFEngine(lm, batch_size=batch_size)
    tokens = [engine.encode(p) for p in prompts]
    assert common_prefix_length(tokens) >= 40  # the shared-prefix cache path is taken
    assert len({len(t) for t in tokens}) == len(prompts)
    continuations = [CONTINUATIONS, CONTINUATIONS[::-1], [" sure thing", " sure"], [" A"]]
    got = engine.continuation_logprobs(prompts, list("abcd"), continuations)
    n_tokens = set()
    for prompt, texts, scores in zip(prompts, continuations, got):
        assert len(scores) == len(texts)
        for text, score in zip(texts, scores):
            want, n, tol = _reference_continuation(lm, engine, prompt, text)
            n_tokens.add(n)
            assert score == pytest.approx(want, abs=tol, rel=0), (prompt[-30:], text)
    assert 1 in n_tokens and max(n_tokens) >= 4  # one-token and several-token continuations


def test_continuation_logprobs_keep_tokens_out_of_the_shared_prefix(lm):
    """ " sure" and " sure thing" share their first tokens: the shared prefix of that batch
    must stop before the continuations, or their log-probabilities are lost."""
    (prompt,) = _prompts(lm, ["Are you sure?"])
    engine = HFEngine(lm, batch_size=2)
    sure = engine.continuation_tokens(prompt, " sure")
    thing = engine.continuation_tokens(prompt, " sure thing")
    assert thing[: len(sure)] == sure and len(thing) > len(sure)
    got = engine.continuation_logprobs([prompt], ["q"], [[" sure", " sure thing"]])
    refs = [_reference_continuation(lm, engine, prompt, t) for t in (" sure", " sure thing")]
    want, tol = [r[0] for r in refs], max(r[2] for r in refs)
    assert got[0] == pytest.approx(want, abs=tol, rel=0)
    # the same after a long memoised prefix (here: the whole prompt plus " sure")
    engine.set_shared_prefix(engine.encode(prompt) + sure)
    again = engine.continuation_logprobs([prompt], ["q"], [[" sure", " sure thing"]])
    assert again[0] == pytest.approx(want, abs=tol, rel=0)
    # the first token of " sure thing" is scored too: it differs from " sure" alone
    assert got[0][1] < got[0][0]


def test_continuation_tokens_follow_the_joined_tokenisation(lm):
    engine = HFEngine(lm, batch_size=2)
    prompt = "Are you sure you accurately answered the question? I am"
    for text in (" sure", " unsure", " sure thing", "x"):
        base = engine.encode(prompt)
        added = engine.continuation_tokens(prompt, text)
        assert base + added == engine.encode(prompt + text)
        assert lm.tokenizer.decode(added) == text


def test_empty_continuation_is_an_error(lm):
    engine = HFEngine(lm, batch_size=2)
    with pytest.raises(ModelError, match=r"k2: continuation '' has no tokens"):
        engine.continuation_logprobs(["Q: a", "Q: b"], ["k1", "k2"], [[" A"], [" A", ""]])
