"""The vLLM backend against a stand-in ``vllm`` module (:mod:`fake_vllm`; vLLM itself needs a
GPU) that behaves as vLLM 0.30-0.33 does where rait depends on it: what rait asks for (prefix
caching, one scoring request per question, a seed per sample, no top-k/top-p) and how answers
are read back (the first non-empty line cut as the HF backend cuts it, EOS dropped)."""

from __future__ import annotations

import json

import fake_vllm
import pytest
from fake_vllm import model_logprob

from rait.backends.hf import HFEngine
from rait.backends.vllm import VLLMEngine, continuation_seed, max_lora_rank
from rait.engine import VllmConfig
from rait.errors import ConfigError, ModelError
from rait.matching import first_line
from rait.models import ModelConfig, build_tiny_model, build_tiny_tokenizer

TOKENIZER = build_tiny_tokenizer()


def ids_of(text):
    return TOKENIZER(text, add_special_tokens=False)["input_ids"]


@pytest.fixture()
def fake_vllm_module(monkeypatch):
    return fake_vllm.install(monkeypatch)


@pytest.fixture()
def engine(fake_vllm_module, tiny_model_dir):
    return VLLMEngine(ModelConfig(name=str(tiny_model_dir)))


def script(monkeypatch, fn):
    """Make the stand-in model produce ``fn(prompt_ids, seed)``."""
    monkeypatch.setattr(fake_vllm.LLM, "model_fn", staticmethod(fn))


def answer(monkeypatch, fn, prompts=("Q",)):
    """Make the stand-in model answer each of ``prompts`` with ``fn(seed)``, as a model does: a
    request whose prompt is one of them plus the first k answer tokens gets the rest."""
    bases = [ids_of(p) for p in prompts]

    def model(prompt_ids, seed):
        base = max((b for b in bases if prompt_ids[: len(b)] == b), key=len)
        return fn(seed)[len(prompt_ids) - len(base) :]

    script(monkeypatch, model)


def llm():
    return fake_vllm.LLM.instances[-1]


def _adapter(tmp_path, config):
    adapter = tmp_path / "adapter"
    adapter.mkdir(exist_ok=True)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    return str(adapter)


# --------------------------------------------------------------------------- the engine
def test_engine_is_built_with_prefix_caching(engine, tiny_model_dir):
    kwargs = llm().kwargs
    assert kwargs["enable_prefix_caching"] is True
    assert kwargs["model"] == str(tiny_model_dir)
    assert kwargs["max_model_len"] is None and engine.limit == fake_vllm.MODEL_LEN
    assert engine.chat is True


def test_vllm_section_reaches_the_engine(fake_vllm_module, tiny_model_dir):
    from rait.backends import load_engine

    cfg = VllmConfig(tensor_parallel_size=2, gpu_memory_utilization=0.5, max_model_len=48)
    engine = load_engine(ModelConfig(name=str(tiny_model_dir)), "vllm", 8, cfg)
    kwargs = llm().kwargs
    assert kwargs["tensor_parallel_size"] == 2 and kwargs["gpu_memory_utilization"] == 0.5
    assert kwargs["max_model_len"] == 48 and engine.limit == 48
    with pytest.raises(ModelError, match="exceeds the context"):
        engine.sample(["capital " * 60], ["long"], 1, 0.0, 4)
    with pytest.raises(ConfigError, match="max_model_len must be >= 1"):
        VllmConfig(max_model_len=0).validate()


def test_prompt_longer_than_the_context(engine):
    with pytest.raises(ModelError, match="'long'"):
        engine.sample(["capital " * 600], ["long"], 1, 0.0, 4)


def test_close_shuts_the_engine_down_once(engine):
    core = llm().llm_engine.engine_core
    engine.close()
    assert core.shutdowns == 1 and fake_vllm.CLEANUPS == [False] and engine.llm is None
    engine.close()
    assert core.shutdowns == 1
    with pytest.raises(ModelError, match="closed"):
        engine.sample(["Q"], ["a"], 1, 0.0, 4)
    with VLLMEngine(ModelConfig(name=engine.model_name)) as other:
        other.sample(["Q"], ["a"], 1, 0.0, 4)
    assert llm().llm_engine.engine_core.shutdowns == 1


# --------------------------------------------------------------------------- scoring
def test_option_letters_are_one_request_per_question(engine):
    prompts = ["Question: what is the capital of Peru? Answer:", "Q: y"]
    letters = [[10, 11, 12, 13], [20, 21]]
    got = engine.candidate_logprobs(prompts, ["a", "b"], letters)
    requests, params = llm().calls[0]
    assert len(requests) == 2 and len(llm().calls) == 1
    for p, ids in zip(params, letters):
        assert p.kwargs == {"max_tokens": 1, "temperature": 0.0, "logprob_token_ids": ids}
        assert p.prompt_logprobs is None and not p.skip_reading_prefix_cache
    want = [[model_logprob(engine.encode(p), t) for t in ids] for p, ids in zip(prompts, letters)]
    assert got == [pytest.approx(row) for row in want]


def test_scoring_an_mcqa_question_prefills_its_prompt_once(engine):
    """Prompt log-probabilities skip the prefix cache: four options scored as prompt tokens
    would compute the prompt four times."""
    prompt = "Question: What is the capital of France? Answer: Paris\n" * 3 + "Answer:"
    n_prompt = len(engine.encode(prompt))
    engine.candidate_logprobs([prompt], ["q"], [[10, 11, 12, 13]])
    assert llm().prefilled == n_prompt
    engine.candidate_logprobs([prompt + " A"], ["q"], [[10, 11, 12, 13]])  # a cached prefix
    assert llm().prefilled < n_prompt + fake_vllm.BLOCK_SIZE + 2


def test_continuation_logprobs_sum_the_continuation_tokens(engine):
    prompts = ["Question: x Answer: Paris. Are you sure?", "Q: y"]
    continuations = [[" I am sure", " I am unsure", " A"], [" sure"]]
    got = engine.continuation_logprobs(prompts, ["a", "b"], continuations)
    want, lengths = [], []
    for prompt, texts in zip(prompts, continuations):
        base = engine.encode(prompt)
        row = []
        for text in texts:
            full = engine.encode(prompt + text)
            assert full[: len(base)] == base
            lengths.append(len(full) - len(base))
            row.append(sum(model_logprob(full[:t], full[t]) for t in range(len(base), len(full))))
        want.append(row)
    assert len(engine.encode(prompts[0] + " I am sure")) - len(engine.encode(prompts[0])) > 1
    assert got == [pytest.approx(row, abs=1e-9) for row in want]
    singles, multis = llm().calls
    assert all(p.logprob_token_ids and p.prompt_logprobs is None for p in singles[1])
    assert multis[1].kwargs == {"max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
    # only the multi-token continuations use prompt_logprobs
    assert len(singles[0]) == 1 and len(multis[0]) == sum(n > 1 for n in lengths) == 3
    with pytest.raises(ModelError, match="continuation '' has no tokens"):
        engine.continuation_logprobs(["Q: y"], ["c"], [[" A", ""]])


# --------------------------------------------------------------------------- sampling
def test_sampling_requests_one_seeded_request_per_sample(engine):
    seeds = [[7, 8, 90], [1, 2, 3]]
    out = engine.sample(["p1", "p2"], ["a", "b"], 3, 1.0, 16, seeds=seeds)
    _, params = llm().calls[0]
    assert len(params) == 6
    for p, seed in zip(params, [s for row in seeds for s in row]):
        assert p.n == 1 and p.seed == seed and p.temperature == 1.0
        assert p.top_p == 1.0 and p.top_k == 0 and p.stop == ["\n"] and p.logprobs == 0
    # each sample is the model's draw for its own seed (vLLM's n > 1 would use seed + k)
    assert [c.text for c in out[0]] == [" answer s7\n", " answer s8\n", " answer s90\n"]
    assert [first_line(c.text) for c in out[1]] == ["answer s1", "answer s2", "answer s3"]
    prompt = engine.encode("p1")
    for c in out[0]:
        assert c.finished_by == "newline" and c.text == TOKENIZER.decode(c.token_ids)
        want = [model_logprob(prompt + c.token_ids[:j], t) for j, t in enumerate(c.token_ids)]
        assert c.token_logprobs == pytest.approx(want)


def test_greedy_ignores_seeds_and_repeats_its_one_answer(engine):
    out = engine.sample(["p1"], ["a"], 3, 0.0, 16, seeds=[[7, 8, 9]])
    ((_, params),) = llm().calls
    assert len(params) == 1 and params[0].seed is None and params[0].temperature == 0.0
    assert [c.text for c in out[0]] == [" answer greedy\n"] * 3
    assert out[0][0].token_ids is not out[0][1].token_ids


def test_bad_sampling_arguments_fail_before_vllm_runs(engine):
    for n, temperature, match in [(1, 2.5, r"temperature must be in \[0, 2\]"), (0, 1.0, "number")]:
        with pytest.raises(ModelError, match=match):
            engine.sample(["p"], ["a"], n, temperature, 8, seeds=[[1]])
    with pytest.raises(ModelError, match="max_new_tokens"):
        engine.sample(["p"], ["a"], 1, 1.0, 0)
    with pytest.raises(ModelError, match="1 seeds for 2 samples"):
        engine.sample(["p"], ["a"], 2, 1.0, 8, seeds=[[1]])
    assert llm().calls == []
    engine.sample(["p"], ["a"], 1, 2.0, 8, seeds=[[1]])  # the largest temperature vLLM takes


def test_vllm_errors_are_one_line_model_errors(engine):
    with pytest.raises(ModelError, match=r"out-of-vocab token ids\. Vocabulary size: 320$"):
        engine.candidate_logprobs(["Q"], ["a"], [[10, 5000]])
    with pytest.raises(ModelError, match="at most 128"):
        engine.candidate_logprobs(["Q"], ["a"], [list(range(130))])


def test_a_leading_newline_is_not_the_answer(engine, monkeypatch):
    """With ``stop=["\\n"]`` vLLM would end at the leading newline with empty text; the answer
    is the first non-empty line, with its tokens and their log-probabilities."""
    tokens = ids_of("\n\n Paris\n")
    answer(monkeypatch, lambda seed: [*tokens, *ids_of("Question: next")], ["Q: capital? A:"])
    ((c,),) = engine.sample(["Q: capital? A:"], ["a"], 1, 0.0, 16)
    assert c.text == "\n\n Paris\n" and first_line(c.text) == "Paris"
    assert c.token_ids == tokens and c.finished_by == "newline"
    prompt = engine.encode("Q: capital? A:")
    want = [model_logprob(prompt + tokens[:j], t) for j, t in enumerate(tokens)]
    assert c.token_logprobs == pytest.approx(want)
    (first, _), (second, [again]) = llm().calls
    assert first[0]["prompt_token_ids"] == prompt
    assert again.stop == [] and again.max_tokens == 16 - 1
    assert second[0]["prompt_token_ids"] == prompt + tokens[:1]


def test_a_continued_sample_has_its_own_derived_seed(engine, monkeypatch):
    answer(monkeypatch, lambda seed: ids_of("\nParis\n" if seed == 5 else f"\n{seed % 1000}\n"))
    ((c,),) = engine.sample(["Q"], ["a"], 1, 1.0, 16, seeds=[[5]])
    assert c.text == f"\n{continuation_seed(5) % 1000}\n" and c.finished_by == "newline"
    assert 0 <= continuation_seed(5) < 2**63 and continuation_seed(5) != 5
    assert llm().calls[1][1][0].seed == continuation_seed(5)


@pytest.mark.parametrize(
    ("tokens", "budget", "text", "finished_by"),
    [
        ("\n\n", 2, "\n\n", "length"),  # blank lines fill the budget
        ("\n Paris and", len(ids_of("\n Paris and")), "\n Paris and", "length"),
        ("\nParis<|im_end|>", 16, "\nParis", "eos"),
        ("Paris", 16, "Paris", "eos"),
    ],
)
def test_first_lines_that_do_not_end(engine, monkeypatch, tokens, budget, text, finished_by):
    answer(monkeypatch, lambda seed: ids_of(tokens))
    ((c,),) = engine.sample(["Q"], ["a"], 1, 0.0, budget)
    assert (c.text, c.finished_by) == (text, finished_by)
    assert TOKENIZER.decode(c.token_ids) == text and len(c.token_logprobs) == len(c.token_ids)


@pytest.mark.parametrize("eos", ["<|im_end|>", "<|endoftext|>"])
def test_eos_ends_the_answer_and_is_dropped(engine, monkeypatch, eos):
    """The tokenizer's EOS comes back with ``stop_reason=None``, the generation config's other
    EOS with ``stop_reason`` = its id; both stay in vLLM's token ids."""
    answer(monkeypatch, lambda seed: ids_of("Paris" + eos))
    for stop in (True, False):
        ((c,),) = engine.sample(["Q"], ["a"], 1, 0.0, 16, stop_at_first_line=stop)
        assert c.finished_by == "eos" and c.text == "Paris"
        assert c.token_ids == ids_of("Paris") and len(c.token_logprobs) == len(c.token_ids)


def test_without_first_line_the_sample_runs_on(engine, monkeypatch):
    answer(monkeypatch, lambda seed: ids_of("\nParis\nRome\n"))
    ((c,),) = engine.sample(["Q"], ["a"], 1, 0.0, 16, stop_at_first_line=False)
    assert c.text == "\nParis\nRome\n" and c.finished_by == "eos"
    assert llm().calls[0][1][0].stop == []


def test_score_first_rides_on_the_sampling_request(engine, monkeypatch):
    answer(monkeypatch, lambda seed: ids_of("\n B\n"), ["p1", "p2"])
    candidates = [[10, 11, 12, 13], [20, 21]]
    out = engine.sample(["p1", "p2"], ["a", "b"], 2, 1.0, 8, [[1, 2], [3, 4]], True, candidates)
    first, params = llm().calls[0]
    assert len(first) == 4 and [p.logprob_token_ids for p in params] == [
        ids for ids in candidates for _ in range(2)
    ]
    assert all(p.logprobs is None and p.prompt_logprobs is None for p in params)
    for prompt, ids, group in zip(["p1", "p2"], candidates, out):
        want = [model_logprob(engine.encode(prompt), t) for t in ids]
        for c in group:
            assert c.first_token_logprobs == pytest.approx(want) and c.text == "\n B\n"
    assert out[0][0].first_token_logprobs is not out[0][1].first_token_logprobs
    assert engine.sample(["p1"], ["a"], 1, 0.0, 8)[0][0].first_token_logprobs is None


# --------------------------------------------------------------------------- as the HF engine
def test_vllm_cuts_samples_as_the_hf_engine_does(fake_vllm_module, tiny_model_dir, monkeypatch):
    """The HF engine samples a tiny model (newline and EOS made likely); the stand-in vLLM model
    then produces the same tokens (and junk after a finished line): both backends must return
    the same text, token ids and finish."""
    lm = build_tiny_model(seed=2)
    newline = ids_of("\n")[0]
    eos = lm.tokenizer.eos_token_id

    def bias(module, args, output):
        output.logits[..., newline] += 6.0
        output.logits[..., eos] += 2.0
        return output

    lm.model.register_forward_hook(bias)
    hf = HFEngine(lm, batch_size=4)
    prompts = [lm.render([{"role": "user", "content": f"Question: capital of {c}?"}]) for c in "AB"]
    seeds = [[100 * i + k for k in range(48)] for i in range(2)]
    want = hf.sample(prompts, ["a", "b"], 48, 2.0, 10, seeds)

    scripts = {}
    for prompt, row, group in zip(prompts, seeds, want):
        for seed, c in zip(row, group):
            tail = {"eos": [eos], "newline": ids_of("junk\nmore"), "length": []}[c.finished_by]
            scripts[seed] = (hf.encode(prompt), [*c.token_ids, *tail])
    continued = {continuation_seed(s): s for s in scripts}

    def model(prompt_ids, seed):
        base, tokens = scripts[continued.get(seed, seed)]
        assert prompt_ids[: len(base)] == base
        return tokens[len(prompt_ids) - len(base) :]

    script(monkeypatch, model)
    got = VLLMEngine(ModelConfig(name=str(tiny_model_dir))).sample(
        prompts, ["a", "b"], 48, 2.0, 10, seeds
    )
    pairs = [(g, w) for gs, ws in zip(got, want) for g, w in zip(gs, ws)]
    for g, w in pairs:
        assert (g.text, g.token_ids, g.finished_by) == (w.text, w.token_ids, w.finished_by)
        assert len(g.token_logprobs) == len(g.token_ids)
    blank_first = [w for _, w in pairs if w.finished_by == "newline" and w.text.startswith("\n")]
    assert blank_first and {"eos", "length"} <= {w.finished_by for _, w in pairs}


# --------------------------------------------------------------------------- LoRA
@pytest.mark.parametrize(("rank", "served"), [(1, 1), (4, 8), (8, 8), (12, 16), (300, 320)])
def test_adapter_ranks_round_up_to_ones_vllm_serves(
    fake_vllm_module, tiny_model_dir, tmp_path, rank, served
):
    adapter = _adapter(tmp_path, {"r": rank, "peft_type": "LORA"})
    engine = VLLMEngine(ModelConfig(name=str(tiny_model_dir), adapter=adapter))
    assert llm().kwargs["enable_lora"] is True and llm().kwargs["max_lora_rank"] == served
    engine.sample(["Q"], ["a"], 1, 0.0, 4)


def test_rank_pattern_and_too_large_ranks(fake_vllm_module, tiny_model_dir, tmp_path):
    adapter = _adapter(tmp_path, {"r": 8, "rank_pattern": {"q_proj": 64}})
    engine = VLLMEngine(ModelConfig(name=str(tiny_model_dir), adapter=adapter))
    assert llm().kwargs["max_lora_rank"] == 64
    engine.sample(["Q"], ["a"], 1, 0.0, 4)
    adapter = _adapter(tmp_path, {"r": 1024})
    with pytest.raises(ModelError, match="rank 1024; vLLM serves ranks up to 512"):
        VLLMEngine(ModelConfig(name=str(tiny_model_dir), adapter=adapter))
    assert max_lora_rank(320) == 320 and max_lora_rank(321) == 512


def test_adapter_enables_lora_in_every_request(fake_vllm_module, tiny_model_dir, tmp_path):
    adapter = _adapter(tmp_path, {"r": 8, "peft_type": "LORA"})
    engine = VLLMEngine(ModelConfig(name=str(tiny_model_dir), adapter=adapter))
    engine.candidate_logprobs(["Q"], ["a"], [[10]])
    engine.continuation_logprobs(["Q"], ["a"], [[" A", " I am sure"]])
    engine.sample(["Q"], ["a"], 1, 0.0, 4, score_first=[[10]])
    kwargs = llm().generate_kwargs
    assert len(kwargs) == 4
    for call in kwargs:
        request = call["lora_request"]
        assert isinstance(request, fake_vllm.LoRARequest)
        assert request.lora_path == adapter and request.lora_int_id >= 1


def test_no_adapter_no_lora(engine):
    assert llm().kwargs["enable_lora"] is False
    engine.sample(["Q"], ["a"], 1, 0.0, 4)
    assert llm().generate_kwargs[0].get("lora_request") is None


@pytest.mark.parametrize("content", ["{not json", "[]", '{"r": "eight"}', '{"r": 0}'])
def test_a_broken_adapter_config_is_a_model_error(
    fake_vllm_module, tiny_model_dir, tmp_path, content
):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(content)
    with pytest.raises(ModelError, match="adapter's"):
        VLLMEngine(ModelConfig(name=str(tiny_model_dir), adapter=str(adapter)))


# --------------------------------------------------------------------------- the stages
def _rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


OE_ROWS = [
    {"id": f"q{i}", "question": f"What is the capital of {c}?", "answers": [a]}
    for i, (c, a) in enumerate([("France", "Paris"), ("Peru", "Lima"), ("Japan", "Tokyo")])
]
MC_ROWS = [
    {"id": f"m{i}", "question": f"Capital of {c}?", "choices": ["Paris", "Lima"], "gold": i}
    for i, c in enumerate(["France", "Peru"])
]


def test_eval_closes_the_engine_even_when_it_fails(
    fake_vllm_module, tiny_model_dir, tmp_path, monkeypatch
):
    from rait.data.sources import DataSource
    from rait.evaluate import EvalConfig, run_eval

    def cfg():
        return EvalConfig(
            model=ModelConfig(name=str(tiny_model_dir)),
            data=DataSource(path=_rows(tmp_path / "test.jsonl", OE_ROWS)),
            backend="vllm",
        )

    run_eval(cfg(), tmp_path / "eval", progress=False)
    assert llm().llm_engine.engine_core.shutdowns == 1

    def broken(prompt_ids, seed):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\n(details)")

    script(monkeypatch, broken)
    with pytest.raises(ModelError, match=r"illegal memory access was encountered$"):
        run_eval(cfg(), tmp_path / "eval2", progress=False)
    assert llm().llm_engine.engine_core.shutdowns == 1


def test_probe_closes_the_engine(fake_vllm_module, tiny_model_dir, tmp_path):
    from rait.config import load_config
    from rait.probe import ProbeConfig, run_probe

    cfg = load_config(
        ProbeConfig,
        overrides=[
            f"model.name={tiny_model_dir}",
            f"data.path={_rows(tmp_path / 'data.jsonl', MC_ROWS)}",
            "n_shots=0",
            "backend=vllm",
            "max_new_tokens=4",
            "n_samples=2",
        ],
    )
    summary = run_probe(cfg, tmp_path / "probe", progress=False)
    assert summary["n"] == 2 and summary["backend"] == "vllm"
    assert len(fake_vllm.LLM.instances) == 1
    assert llm().llm_engine.engine_core.shutdowns == 1
    assert fake_vllm.CLEANUPS == [False]


@pytest.mark.parametrize("name", ["temperature", "rtuning_u_temperature"])
def test_probe_refuses_a_temperature_vllm_rejects_before_loading(
    fake_vllm_module, tiny_model_dir, tmp_path, name
):
    from rait.config import load_config
    from rait.errors import ConfigError
    from rait.probe import ProbeConfig

    base = [f"model.name={tiny_model_dir}", f"data.path={_rows(tmp_path / 'd.jsonl', MC_ROWS)}"]
    with pytest.raises(ConfigError, match=f"{name} must be <= 2 with the vLLM backend"):
        load_config(ProbeConfig, overrides=[*base, "backend=vllm", f"{name}=2.5"])
    assert not fake_vllm.LLM.instances  # refused before any engine was built
    load_config(ProbeConfig, overrides=[*base, "backend=hf", f"{name}=2.5"])  # HF has no limit
