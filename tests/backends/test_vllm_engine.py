"""The vLLM backend's glue, against a stand-in `vllm` module (vLLM itself needs a GPU).

Checks what rait asks vLLM for (prefix caching, prompt_logprobs for option letters, n samples
with a seed, temperature, no top-k/top-p, first-line stop) and how answers are read back.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from rait.backends.vllm import VLLMEngine
from rait.models import ModelConfig, build_tiny_tokenizer


@dataclass
class Logprob:
    logprob: float


@dataclass
class Sequence:
    text: str
    token_ids: list
    logprobs: list
    finish_reason: str
    stop_reason: object = None


@dataclass
class RequestOutput:
    prompt_token_ids: list
    prompt_logprobs: list
    outputs: list = field(default_factory=list)


def fake_prompt_logprob(ids, t):
    """The stand-in log-probability of prompt token ``t``: the last token's depends on the
    token only; earlier ones also on their distance to the end."""
    return -0.1 * (ids[t] % 7) - 0.01 * (len(ids) - 1 - t)


class FakeLLM:
    instances: ClassVar[list] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls = []
        self.generate_kwargs = []
        self.llm_engine = types.SimpleNamespace(
            model_config=types.SimpleNamespace(max_model_len=64)
        )
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return build_tiny_tokenizer()

    def generate(self, requests, params, use_tqdm=False, **kwargs):
        self.calls.append((requests, params))
        self.generate_kwargs.append(kwargs)
        outputs = []
        for i, request in enumerate(requests):
            ids = request["prompt_token_ids"]
            p = params[i] if isinstance(params, list) else params
            if p.kwargs.get("prompt_logprobs") == 0:
                # like vLLM: None for the first token, then each prompt token's entry (plus a
                # decoy for another token, which must not be read)
                entries = [None] + [
                    {
                        ids[t]: Logprob(fake_prompt_logprob(ids, t)),
                        ids[t] + 1: Logprob(-99.0),
                    }
                    for t in range(1, len(ids))
                ]
                outputs.append(RequestOutput(ids, entries))
            else:
                seqs = [
                    Sequence(
                        f"answer {k}",
                        [5, 6],
                        [{5: Logprob(-0.5)}, {6: Logprob(-0.25)}],
                        "stop" if k % 2 else "length",
                        "\n" if k % 2 else None,
                    )
                    for k in range(p.kwargs.get("n", 1))
                ]
                outputs.append(RequestOutput(ids, None, seqs))
        return outputs


class FakeSamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class FakeLoRARequest:
    def __init__(self, lora_name, lora_int_id, lora_path):
        self.lora_name = lora_name
        self.lora_int_id = lora_int_id
        self.lora_path = lora_path


@pytest.fixture()
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = FakeSamplingParams
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = FakeLoRARequest
    lora.request = request
    module.lora = lora
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    FakeLLM.instances.clear()
    return module


def test_engine_is_built_with_prefix_caching(fake_vllm, tiny_model_dir):
    engine = VLLMEngine(ModelConfig(name=str(tiny_model_dir)), tensor_parallel_size=2)
    kwargs = FakeLLM.instances[0].kwargs
    assert kwargs["enable_prefix_caching"] is True
    assert kwargs["tensor_parallel_size"] == 2
    assert kwargs["model"] == str(tiny_model_dir)
    assert engine.chat is True


def test_option_letters_are_scored_through_prompt_logprobs(fake_vllm, tiny_model_dir):
    engine = VLLMEngine(ModelConfig(name=str(tiny_model_dir)))
    got = engine.candidate_logprobs(["Question: x Answer:"], ["q"], [[10, 11, 12, 13]])
    requests, params = FakeLLM.instances[0].calls[0]
    assert params.kwargs == {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
    base = engine.encode("Question: x Answer:")
    assert [r["prompt_token_ids"] for r in requests] == [[*base, t] for t in (10, 11, 12, 13)]
    assert got == [[pytest.approx(-0.1 * (t % 7)) for t in (10, 11, 12, 13)]]


def test_sampling_requests_and_answers(fake_vllm, tiny_model_dir):
    engine = VLLMEngine(ModelConfig(name=str(tiny_model_dir)))
    out = engine.sample(["p1", "p2"], ["a", "b"], 3, 1.0, 16, seeds=[[7, 8, 9], [1, 2, 3]])
    _, params = FakeLLM.instances[0].calls[0]
    first = params[0].kwargs
    assert first["n"] == 3 and first["temperature"] == 1.0 and first["seed"] == 7
    assert first["top_p"] == 1.0 and first["top_k"] == 0 and first["stop"] == ["\n"]
    assert params[1].kwargs["seed"] == 1
    assert [c.text for c in out[0]] == ["answer 0", "answer 1", "answer 2"]
    assert out[0][0].token_logprobs == [-0.5, -0.25]
    assert [c.finished_by for c in out[0]] == ["length", "newline", "length"]
    greedy = engine.sample(["p1"], ["a"], 1, 0.0, 16, seeds=[[7]])
    assert FakeLLM.instances[0].calls[1][1][0].kwargs["seed"] is None
    assert len(greedy[0]) == 1


def test_prompt_longer_than_the_context(fake_vllm, tiny_model_dir):
    from rait.errors import ModelError

    engine = VLLMEngine(ModelConfig(name=str(tiny_model_dir)))
    with pytest.raises(ModelError, match="'long'"):
        engine.sample(["capital " * 80], ["long"], 1, 0.0, 4)


def test_continuation_logprobs_sum_the_continuation_entries(fake_vllm, tiny_model_dir):
    from rait.errors import ModelError

    engine = VLLMEngine(ModelConfig(name=str(tiny_model_dir)))
    prompts = ["Question: x Answer: Paris. Are you sure?", "Q: y"]
    continuations = [[" I am sure", " I am unsure", " A"], [" sure"]]
    got = engine.continuation_logprobs(prompts, ["a", "b"], continuations)
    requests, params = FakeLLM.instances[0].calls[0]
    assert params.kwargs == {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
    sent = [r["prompt_token_ids"] for r in requests]
    want_requests, want = [], []
    for prompt, texts in zip(prompts, continuations):
        base = engine.encode(prompt)
        row = []
        for text in texts:
            full = engine.encode(prompt + text)
            assert full[: len(base)] == base
            want_requests.append(full)
            row.append(sum(fake_prompt_logprob(full, t) for t in range(len(base), len(full))))
        want.append(row)
    assert sent == want_requests
    assert len(want_requests[0]) - len(engine.encode(prompts[0])) > 1  # several tokens
    assert len(want_requests[2]) - len(engine.encode(prompts[0])) == 1  # one token
    assert got == [pytest.approx(row, abs=1e-9) for row in want]
    with pytest.raises(ModelError, match="continuation '' has no tokens"):
        engine.continuation_logprobs(["Q: y"], ["c"], [[" A", ""]])


def test_sample_with_score_first_fills_first_token_logprobs(fake_vllm, tiny_model_dir):
    engine = VLLMEngine(ModelConfig(name=str(tiny_model_dir)))
    candidates = [[10, 11, 12, 13], [20, 21]]
    out = engine.sample(["p1", "p2"], ["a", "b"], 2, 1.0, 8, [[1, 2], [3, 4]], True, candidates)
    calls = FakeLLM.instances[0].calls
    assert len(calls) == 2  # the candidate requests, then the samples
    scoring, _ = calls[0]
    assert [r["prompt_token_ids"] for r in scoring] == [
        [*engine.encode(p), t] for p, ids in zip(["p1", "p2"], candidates) for t in ids
    ]
    for ids, group in zip(candidates, out):
        assert len(group) == 2
        for completion in group:
            assert completion.first_token_logprobs == pytest.approx([-0.1 * (t % 7) for t in ids])
    assert group[0].first_token_logprobs is not group[1].first_token_logprobs
    plain = engine.sample(["p1"], ["a"], 1, 0.0, 8)
    assert plain[0][0].first_token_logprobs is None


def test_adapter_enables_lora_in_every_request(fake_vllm, tiny_model_dir, tmp_path):
    import json

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 8, "peft_type": "LORA"}))
    engine = VLLMEngine(ModelConfig(name=str(tiny_model_dir), adapter=str(adapter)))
    llm = FakeLLM.instances[0]
    assert llm.kwargs["enable_lora"] is True
    assert llm.kwargs["max_lora_rank"] == 8
    assert llm.kwargs["model"] == str(tiny_model_dir)
    engine.candidate_logprobs(["Q"], ["a"], [[10]])
    engine.continuation_logprobs(["Q"], ["a"], [[" A"]])
    engine.sample(["Q"], ["a"], 1, 0.0, 4, score_first=[[10]])
    assert len(llm.generate_kwargs) == 4
    for kwargs in llm.generate_kwargs:
        request = kwargs["lora_request"]
        assert isinstance(request, FakeLoRARequest)
        assert request.lora_path == str(adapter)
        assert request.lora_int_id >= 1


def test_no_adapter_no_lora(fake_vllm, tiny_model_dir):
    engine = VLLMEngine(ModelConfig(name=str(tiny_model_dir)))
    llm = FakeLLM.instances[0]
    assert "enable_lora" not in llm.kwargs and "max_lora_rank" not in llm.kwargs
    engine.sample(["Q"], ["a"], 1, 0.0, 4)
    assert llm.generate_kwargs[0].get("lora_request") is None


@pytest.mark.parametrize("content", ["{not json", "[]", '{"r": "eight"}'])
def test_a_broken_adapter_config_is_a_model_error(fake_vllm, tiny_model_dir, tmp_path, content):
    from rait.errors import ModelError

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(content)
    with pytest.raises(ModelError, match="cannot read the adapter's"):
        VLLMEngine(ModelConfig(name=str(tiny_model_dir), adapter=str(adapter)))
