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


class FakeLLM:
    instances: ClassVar[list] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls = []
        self.llm_engine = types.SimpleNamespace(
            model_config=types.SimpleNamespace(max_model_len=64)
        )
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return build_tiny_tokenizer()

    def generate(self, requests, params, use_tqdm=False):
        self.calls.append((requests, params))
        outputs = []
        for i, request in enumerate(requests):
            ids = request["prompt_token_ids"]
            p = params[i] if isinstance(params, list) else params
            if p.kwargs.get("prompt_logprobs") == 0:
                last = {ids[-1]: Logprob(-0.1 * (ids[-1] % 7))}
                outputs.append(RequestOutput(ids, [None] * (len(ids) - 1) + [last]))
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


@pytest.fixture()
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
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
