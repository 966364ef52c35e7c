"""The knowledge probe on a tiny model: µ/σ definitions, evidence, R-Tuning queries,
caching, resuming after a real kill, and bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import rait.probe as probe_module
from rait.backends.hf import HFEngine
from rait.config import load_config
from rait.data.records import QARecord
from rait.encoders import mean_pairwise_cosine
from rait.errors import ConfigError, DataError, ModelError
from rait.methods.rtuning import rtuning_u_certain
from rait.models import ModelConfig, build_tiny_model, load_model
from rait.probe import (
    ProbeConfig,
    Prober,
    frequency_entropy,
    option_token_ids,
    row_seed,
    run_probe,
    select_shots,
)

CAPITALS = [
    ("France", "Paris"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Japan", "Tokyo"),
    ("Kenya", "Nairobi"),
    ("Egypt", "Cairo"),
]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def mcqa_rows(n, prefix="q", n_choices=4, domain="capital"):
    names = [c for _, c in CAPITALS]
    rows = []
    for i in range(n):
        country, capital = CAPITALS[i % len(CAPITALS)]
        others = [c for c in names if c != capital][: n_choices - 1]
        gold = i % n_choices
        choices = [*others[:gold], capital, *others[gold:]]
        rows.append(
            {
                "id": f"{prefix}{i}",
                "question": f"What is the capital of {country} ({i})?",
                "choices": choices,
                "gold": gold,
                "subject": "geography",
                "domain": domain,
            }
        )
    return rows


def oeqa_rows(n, prefix="q"):
    return [
        {
            "id": f"{prefix}{i}",
            "question": f"What is the capital of {CAPITALS[i % 8][0]} ({i})?",
            "answers": [CAPITALS[i % 8][1]],
            "domain": "capital",
        }
        for i in range(n)
    ]


class FakeEncoder:
    """Deterministic bag-of-characters embeddings (no model download)."""

    def encode(self, texts, convert_to_tensor=True, show_progress_bar=False):
        out = torch.zeros((len(texts), 64))
        for i, text in enumerate(texts):
            for ch in text:
                out[i, ord(ch) % 64] += 1.0
        return out


@pytest.fixture()
def fake_encoder(monkeypatch):
    monkeypatch.setattr(probe_module, "load_encoder", lambda name: FakeEncoder())


def _config(tmp_path, tiny_model_dir, rows, shots, *extra):
    data = _write(tmp_path / "data.jsonl", rows)
    pool = _write(tmp_path / "shots.jsonl", shots)
    return load_config(
        ProbeConfig,
        overrides=[
            f"model.name={tiny_model_dir}",
            f"data.path={data}",
            f"shots.path={pool}",
            "backend=hf",
            "max_new_tokens=6",
            "n_samples=3",
            "batch_size=3",
            *extra,
        ],
    )


def _rows(out):
    return [json.loads(line) for line in (out / "knowledge.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------- MCQA
def test_mcqa_mu_sigma_match_one_pass_per_option(tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir, mcqa_rows(7), mcqa_rows(6, prefix="s"))
    summary = run_probe(cfg, tmp_path / "out", progress=False)
    rows = _rows(tmp_path / "out")
    assert summary["n"] == 7 and summary["task"] == "mcqa"
    lm = load_model(ModelConfig(name=str(tiny_model_dir)))
    prober = Prober(cfg, HFEngine(lm), lm.use_chat_template)
    pool = [QARecord.from_dict(r) for r in mcqa_rows(6, prefix="s")]
    for raw, row in zip(mcqa_rows(7), rows):
        record = QARecord.from_dict(raw)
        prompt = prober.render(record, select_shots(record, pool, 5))
        letters = option_token_ids(prober.engine, prompt, record.option_letters, True)
        base = lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        logps, scale = [], 0.0
        for token in letters:  # the released code's way: one pass per option
            with torch.no_grad():
                logits = lm.model(torch.tensor([[*base, token]])).logits[0, -2]
            row_logp = torch.log_softmax(logits.float(), -1)
            logps.append(float(row_logp[token]))
            scale = max(scale, float(row_logp.abs().max()))
        probs = torch.softmax(torch.tensor(logps, dtype=torch.float64), 0).tolist()
        # the probe scores all options in one batched pass: float32 reductions of up to
        # n = max(prompt length, MLP width) terms, so each option log-probability may move by
        # about n·eps·max|log p| (Higham's γ_n); a softmax moves by at most twice that, and
        # σ = Σ p log p by at most 2|σ| ≤ 2 log 4 times that
        n = max(len(base) + 1, lm.model.config.intermediate_size)
        tol = n * torch.finfo(torch.float32).eps * scale
        assert row["mu"] == pytest.approx(probs[record.gold], abs=2 * tol)
        assert row["option_probs"] == pytest.approx(probs, abs=2 * tol)
        sigma = sum(p * math.log(p) for p in probs)
        assert row["sigma"] == pytest.approx(sigma, abs=2 * math.log(4) * tol)
        assert -math.log(4) - 1e-9 <= row["sigma"] <= 0
        assert sum(row["option_probs"]) == pytest.approx(1.0)
        assert 0 < row["letter_mass"] <= 1
        best = max(range(4), key=lambda i: probs[i])
        assert row["greedy_answer"] == "ABCD"[best]
        assert row["greedy_correct"] == (best == record.gold)


def test_mcqa_with_three_options_and_rtuning_u(tmp_path, tiny_model_dir):
    cfg = _config(
        tmp_path,
        tiny_model_dir,
        mcqa_rows(6, n_choices=3),
        mcqa_rows(5, "s", 3),
        "rtuning_u=true",
        "rtuning_u_samples=8",
    )
    run_probe(cfg, tmp_path / "out", progress=False)
    rows = _rows(tmp_path / "out")
    for row in rows:
        assert len(row["option_probs"]) == 3
        assert row["sigma"] >= -math.log(3) - 1e-9
        assert len(row["rtuning_u_answers"]) == 8 and set(row["rtuning_u_answers"]) <= set("ABC")
        assert row["rtuning_u_entropy"] == pytest.approx(
            frequency_entropy(row["rtuning_u_answers"])
        )
    certain = rtuning_u_certain(rows)
    assert len(certain) == 3
    worst_certain = max(r["rtuning_u_entropy"] for r in rows if r["id"] in certain)
    best_uncertain = min(r["rtuning_u_entropy"] for r in rows if r["id"] not in certain)
    assert worst_certain <= best_uncertain


def test_results_do_not_depend_on_batch_size(tmp_path, tiny_model_dir):
    a = (
        _config(tmp_path / "a", tiny_model_dir, mcqa_rows(7), mcqa_rows(6, "s"), "batch_size=1")
        if (tmp_path / "a").mkdir() is None
        else None
    )
    b = (
        _config(tmp_path / "b", tiny_model_dir, mcqa_rows(7), mcqa_rows(6, "s"), "batch_size=4")
        if (tmp_path / "b").mkdir() is None
        else None
    )
    run_probe(a, tmp_path / "a" / "out", progress=False)
    run_probe(b, tmp_path / "b" / "out", progress=False)
    for x, y in zip(_rows(tmp_path / "a" / "out"), _rows(tmp_path / "b" / "out")):
        assert x["id"] == y["id"]
        assert x["mu"] == pytest.approx(y["mu"], abs=1e-5)


# ------------------------------------------------------------------------- OEQA
# hand-built OEQA samples per question and temperature: T = 1.0 the N knowledge samples,
# T = 0 R-Tuning's greedy answer, T = 0.7 R-Tuning-U's k answers (only the first line counts)
SCRIPT = {
    "p": {
        1.0: ["Paris", "It is paris.\nsecond line", "Lyon", "the city of light"],
        0.0: ["Paris is the answer"],
        0.7: ["Paris", "Paris", "Paris"],
    },
    "r": {1.0: ["Rome"] * 4, 0.0: ["Milan"], 0.7: ["Rome", "Milan", "Turin"]},
    "m": {
        1.0: ["", "Lyon", "Madridista", "no"],
        0.0: ["MADRID"],
        0.7: ["Madrid", "Madrid", "Lyon"],
    },
}
ALIASES = {"p": ["Paris", "City of Light"], "r": ["Rome"], "m": ["Madrid"]}
# the embedding of each first line (a table, so that σ can be worked out by hand)
VECTORS = {
    "Paris": [1.0, 0.0, 0.0],
    "It is paris.": [2.0, 0.0, 0.0],
    "Lyon": [0.0, 1.0, 0.0],
    "the city of light": [1.0, 1.0, 0.0],
    "Rome": [0.0, 0.0, 3.0],
    "": [0.0, 0.0, 1.0],
    "Madridista": [0.0, 1.0, 1.0],
    "no": [1.0, 0.0, 1.0],
}
R2 = math.sqrt(2)
# σ = mean cosine over the 6 pairs of the 4 samples:
# p: (Paris, It is paris.) 1; with Lyon 0, 0; with the city of light 1/√2 three times
# r: four identical answers: 1
# m: ("", Lyon) 0, ("", Madridista) 1/√2, ("", no) 1/√2, (Lyon, Madridista) 1/√2,
#    (Lyon, no) 0, (Madridista, no) 1/2
SIGMA = {"p": (1 + 3 / R2) / 6, "r": 1.0, "m": (3 / R2 + 0.5) / 6}
# u: entropy of the k answers' frequencies
U = {
    "p": 0.0,
    "r": math.log(3),
    "m": -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)),
}
# correctness of each sample and of the greedy answer, worked out by hand per match mode:
# contains = some alias, lower-cased, is a substring of the lower-cased answer; em = equal
# after TriviaQA normalisation (lower case, punctuation and a/an/the dropped)
CORRECT = {
    "contains": {
        "p": ([True, True, False, True], True),
        "r": ([True] * 4, False),
        "m": ([False, False, True, False], True),
    },
    "em": {
        "p": ([True, False, False, True], False),
        "r": ([True] * 4, False),
        "m": ([False] * 4, True),
    },
}


class TableEncoder:
    def encode(self, texts, convert_to_tensor=True, show_progress_bar=False):
        return torch.tensor([VECTORS[t] for t in texts])  # KeyError: not a first line


@pytest.mark.parametrize("mode", ["contains", "em"])
def test_oeqa_rows_hold_samples_correctness_and_certainty(
    tmp_path, tiny_model_dir, monkeypatch, mode
):
    from rait.engine import Completion

    calls = []

    def scripted(self, prompts, keys, n, temperature, max_new_tokens, seeds=None, **kw):
        calls.append((n, temperature))
        out = []
        for key in keys:
            texts = SCRIPT[key][temperature]
            assert len(texts) == n
            out.append([Completion(t) for t in texts])
        return out

    monkeypatch.setattr(HFEngine, "sample", scripted)
    monkeypatch.setattr(probe_module, "load_encoder", lambda name: TableEncoder())
    rows = [{"id": k, "question": f"Capital {k}?", "answers": v} for k, v in ALIASES.items()]
    cfg = _config(
        tmp_path,
        tiny_model_dir,
        rows,
        oeqa_rows(3, "s"),
        "n_samples=4",
        "rtuning_u=true",
        "rtuning_u_samples=3",
        f"match={mode}",
    )
    run_probe(cfg, tmp_path / "out", progress=False)
    assert sorted(set(calls)) == [(1, 0.0), (3, 0.7), (4, 1.0)]
    got = {r["id"]: r for r in _rows(tmp_path / "out")}
    assert got.keys() == SCRIPT.keys()
    for key, row in got.items():
        correct, greedy_correct = CORRECT[mode][key]
        assert row["task"] == "oeqa"
        assert row["answers"] == [t.split("\n")[0] for t in SCRIPT[key][1.0]]
        assert row["correct"] == correct, key
        assert row["mu"] == sum(correct) / 4
        # float32 cosines of 3-dimensional vectors: each within a few eps (1.2e-7) of exact
        assert row["sigma"] == pytest.approx(SIGMA[key], abs=1e-6), key
        assert row["greedy_answer"] == SCRIPT[key][0.0][0]
        assert row["greedy_correct"] is greedy_correct, key
        assert row["rtuning_u_answers"] == SCRIPT[key][0.7]
        assert row["rtuning_u_entropy"] == pytest.approx(U[key], abs=1e-12), key


def test_oeqa_sampling_is_reproducible_and_seeded(tmp_path, tiny_model_dir, fake_encoder):
    runs = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        (tmp_path / name).mkdir()
        cfg = _config(
            tmp_path / name,
            tiny_model_dir,
            oeqa_rows(4),
            oeqa_rows(3, "s"),
            f"seed={seed}",
            "rtuning=false",
        )
        run_probe(cfg, tmp_path / name / "out", progress=False)
        runs.append([r["answers"] for r in _rows(tmp_path / name / "out")])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_em_and_contains_modes_differ(tmp_path, tiny_model_dir, fake_encoder, monkeypatch):
    from rait.engine import Completion

    def fake_sample(self, prompts, keys, n, temperature, max_new_tokens, seeds=None, **kw):
        return [[Completion("The capital is Paris.")] * n for _ in prompts]

    monkeypatch.setattr(HFEngine, "sample", fake_sample)
    rows = [{"id": "p", "question": "Capital of France?", "answers": ["Paris"]}]
    for mode, mu in (("contains", 1.0), ("em", 0.0)):
        (tmp_path / mode).mkdir()
        cfg = _config(tmp_path / mode, tiny_model_dir, rows, oeqa_rows(3, "s"), f"match={mode}")
        run_probe(cfg, tmp_path / mode / "out", progress=False)
        (row,) = _rows(tmp_path / mode / "out")
        assert row["mu"] == mu
        assert row["sigma"] == pytest.approx(1.0)


# ------------------------------------------------------------------------- caching / resuming
def test_unchanged_probe_is_skipped_and_changed_config_reruns(tmp_path, tiny_model_dir, capsys):
    cfg = _config(tmp_path, tiny_model_dir, mcqa_rows(4), mcqa_rows(5, "s"))
    run_probe(cfg, tmp_path / "out", progress=False)
    capsys.readouterr()
    run_probe(cfg, tmp_path / "out", progress=False)
    assert "[probe] up to date" in capsys.readouterr().out
    cfg.rtuning = False
    run_probe(cfg, tmp_path / "out", progress=False)
    assert "[probe] running" in capsys.readouterr().out
    assert "greedy_answer" not in _rows(tmp_path / "out")[0]


def test_killed_probe_resumes_to_the_same_file(tmp_path, tiny_model_dir):
    """Kill a real `rait probe` process mid-run, restart it, compare with a clean run."""
    data = _write(tmp_path / "data.jsonl", mcqa_rows(240))
    shots = _write(tmp_path / "shots.jsonl", mcqa_rows(5, "s"))
    args = [
        sys.executable,
        "-m",
        "rait.cli",
        "probe",
        "--model",
        str(tiny_model_dir),
        "--data",
        data,
        "--shots",
        shots,
        "--backend",
        "hf",
        "--batch-size",
        "2",
        "--set",
        "n_shots=1",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*args, "--out", str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    target = killed / "knowledge.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if target.exists() and target.read_bytes().count(b"\n") >= 20:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = target.read_bytes().count(b"\n")
    assert 0 < written < 240, "the probe was not caught mid-run"
    assert json.loads((killed / "stage.json").read_text())["status"] == "running"
    subprocess.run([*args, "--out", str(killed)], env=env, check=True, capture_output=True)
    clean = tmp_path / "clean"
    subprocess.run([*args, "--out", str(clean)], env=env, check=True, capture_output=True)
    assert target.read_bytes() == (clean / "knowledge.jsonl").read_bytes()


# ------------------------------------------------------------------------- helpers
def test_select_shots_prefers_domain_and_skips_the_question():
    pool = [
        QARecord.from_dict(r) for r in mcqa_rows(3, "a", domain="x") + mcqa_rows(4, "b", domain="y")
    ]
    record = QARecord.from_dict(mcqa_rows(1, "b", domain="y")[0])
    shots = select_shots(record, pool, 5)
    # b0 is the question itself; a0 asks the very same question text: neither is a shot
    assert [s.id for s in shots] == ["b1", "b2", "b3", "a1", "a2"]
    assert select_shots(record, pool, 0) == []


def test_option_tokens_follow_the_prompt_style():
    lm = build_tiny_model(seed=0)
    engine = HFEngine(lm)
    chat = option_token_ids(engine, lm.render([{"role": "user", "content": "Q"}]), "ABCD", True)
    base = option_token_ids(engine, "Question: Q\nAnswer:", "ABCD", False)
    assert len(set(chat)) == 4 == len(set(base))
    assert [lm.tokenizer.decode([t]) for t in chat] == list("ABCD")
    assert [lm.tokenizer.decode([t]) for t in base] == [" A", " B", " C", " D"]


def test_row_seed_is_stable_and_distinct():
    assert row_seed(0, "q1", "knowledge", 3) == row_seed(0, "q1", "knowledge", 3)
    seeds = {
        row_seed(s, i, p, k)
        for s in (0, 1)
        for i in ("a", "b")
        for p in ("x", "y")
        for k in range(3)
    }
    assert len(seeds) == 24
    assert all(0 <= s < 2**63 for s in seeds)


@given(st.lists(st.sampled_from("abcde"), min_size=1, max_size=30))
def test_frequency_entropy_bounds(answers):
    h = frequency_entropy(answers)
    assert -1e-12 <= h <= math.log(len(set(answers))) + 1e-12


@given(st.integers(min_value=2, max_value=6), st.integers(min_value=1, max_value=8))
def test_mean_pairwise_cosine_of_identical_rows_is_one(n, dim):
    row = torch.arange(1, dim + 1, dtype=torch.float32)
    assert mean_pairwise_cosine(row.repeat(n, 1)) == pytest.approx(1.0)


def test_mean_pairwise_cosine_orthogonal_and_too_few():
    assert mean_pairwise_cosine(torch.eye(3)) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        mean_pairwise_cosine(torch.ones((1, 3)))


def test_rtuning_u_certain_needs_entropies():
    with pytest.raises(DataError, match="rtuning_u: true"):
        rtuning_u_certain([{"id": "a", "mu": 1.0}])


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("n_samples=1", "n_samples must be >= 2"),
        ("temperature=0", "temperature must be > 0"),
        ("match=fuzzy", "match must be one of"),
        ("backend=tpu", "backend must be one of"),
        ("n_shots=-1", "n_shots must be >= 0"),
    ],
)
def test_impossible_settings(tmp_path, tiny_model_dir, override, match):
    with pytest.raises(ConfigError, match=match):
        _config(tmp_path, tiny_model_dir, mcqa_rows(2), mcqa_rows(2, "s"), override)


def test_vllm_backend_not_installed_is_a_config_error(tmp_path, tiny_model_dir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "vllm" else real(n))
    with pytest.raises(ConfigError, match="pip install vllm"):
        _config(tmp_path, tiny_model_dir, mcqa_rows(2), mcqa_rows(2, "s"), "backend=vllm")


def test_shots_problems(tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir, mcqa_rows(3), mcqa_rows(3, "s"))
    cfg.shots = None
    with pytest.raises(ConfigError, match="need a `shots` source"):
        run_probe(cfg, tmp_path / "out", progress=False)
    cfg = _config(tmp_path, tiny_model_dir, mcqa_rows(3), mcqa_rows(3))
    with pytest.raises(ConfigError, match="also probed questions"):
        run_probe(cfg, tmp_path / "out", progress=False)
    cfg = _config(tmp_path, tiny_model_dir, mcqa_rows(3), oeqa_rows(3, "s"))
    with pytest.raises(ConfigError, match="shots are oeqa but the data is mcqa"):
        run_probe(cfg, tmp_path / "out", progress=False)
    cfg = _config(tmp_path, tiny_model_dir, mcqa_rows(3), [], "n_shots=0")
    assert run_probe(cfg, tmp_path / "out0", progress=False)["n"] == 3


def test_question_longer_than_context(tmp_path, tiny_model_dir):
    rows = mcqa_rows(2)
    rows[1]["question"] = "capital " * 3000
    cfg = _config(tmp_path, tiny_model_dir, rows, mcqa_rows(2, "s"))
    with pytest.raises(ModelError, match=r"'q1'.*exceeds the context"):
        run_probe(cfg, tmp_path / "out", progress=False)


def test_empty_answer_list_is_a_data_error(tmp_path, tiny_model_dir):
    rows = oeqa_rows(2)
    rows[1]["answers"] = []
    cfg = _config(tmp_path, tiny_model_dir, rows, oeqa_rows(2, "s"))
    with pytest.raises(DataError, match=r"data\.jsonl:2.*'answers'"):
        run_probe(cfg, tmp_path / "out", progress=False)


def test_encoder_that_cannot_be_loaded(tmp_path, tiny_model_dir):
    cfg = _config(
        tmp_path,
        tiny_model_dir,
        oeqa_rows(2),
        oeqa_rows(2, "s"),
        f"encoder={tmp_path / 'no-encoder'}",
    )
    with pytest.raises(ModelError, match="cannot load sentence encoder"):
        run_probe(cfg, tmp_path / "out", progress=False)


def test_required_chat_template_missing(tmp_path):
    lm = build_tiny_model(seed=0, chat=False)
    folder = tmp_path / "base-model"
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    cfg = _config(tmp_path, folder, mcqa_rows(2), mcqa_rows(2, "s"), "model.chat_template=always")
    with pytest.raises(ModelError, match="no chat template"):
        run_probe(cfg, tmp_path / "out", progress=False)
    cfg = _config(tmp_path, folder, mcqa_rows(2), mcqa_rows(2, "s"))
    assert run_probe(cfg, tmp_path / "out2", progress=False)["n"] == 2  # base model: plain text
