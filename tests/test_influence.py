"""rait.influence: the fast batched path against the plain per-sample reference loop (one
sample at a time: backward, flatten, project), in every mode; the stage; sharding; resuming;
bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rait.artifacts import (
    FEATURES_FILE,
    INFLUENCE_FILE,
    INFLUENCE_SUMMARY_FILE,
    influence_path,
    resolve_influence_file,
)
from rait.data.records import QARecord
from rait.errors import ConfigError, DataError
from rait.gradients import AdamPreconditioner, PerSampleGradients, collate, sample_losses
from rait.influence import (
    InfluenceConfig,
    InfluenceSettings,
    Processes,
    compute_influence,
    gradient_examples,
    run_influence,
)
from rait.models import build_tiny_model
from rait.projection import RademacherProjector
from rait.train import TrainConfig


# --------------------------------------------------------------------------- fixtures
def _records(n: int = 10) -> list[QARecord]:
    cities = ["Lyon", "Chile", "Paris", "Oslo", "Lima", "Rome", "Kyiv", "Bern", "Doha", "Baku"]
    return [
        QARecord(
            id=f"q{i}",
            question=f"In which country is the city of {cities[i % len(cities)]}?",
            answers=("France" if i % 2 else "Chile",),
        )
        for i in range(n)
    ]


def _mu(n: int = 10) -> dict[str, float]:
    return {f"q{i}": [0.0, 0.9, 0.2, 1.0, 0.4, 0.6, 0.1, 0.5, 0.3, 0.8][i % 10] for i in range(n)}


@pytest.fixture(scope="module")
def warm_model():
    """The tiny Llama with a LoRA whose B is not zero (a warmed-up adapter)."""
    from peft import LoraConfig, get_peft_model

    lm = build_tiny_model(seed=1)
    model = get_peft_model(
        lm.model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.1)
    )
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)
    model.eval()
    return lm, model


def _examples(lm, ik_target="refusal", n=10):
    return gradient_examples(_records(n), _mu(n), lm.tokenizer, True, 0.5, None, ik_target)


# --------------------------------------------------------------------------- reference
def hf_loss(model, batch):
    """The loss as LESS takes it: the model's own causal-LM loss over the answer labels
    (full logits; the token mean for a batch of one)."""
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    return model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels
    ).loss


def reference_gradients(model, examples, pad_id, preconditioner=None):
    """One sample at a time: forward, backward, flatten the LoRA gradients."""
    rows = []
    for ex in examples:
        model.zero_grad(set_to_none=True)
        hf_loss(model, collate([ex.features], pad_id, "cpu")).backward()
        flat = torch.cat(
            [p.grad.detach().flatten() for _, p in model.named_parameters() if p.requires_grad]
        )
        rows.append(flat if preconditioner is None else preconditioner(flat[None])[0])
    model.zero_grad(set_to_none=True)
    return torch.stack(rows).double()


def reference_influence(model, examples, pad_id, projection, k, normalize, seed, precond=None):
    grads = reference_gradients(model, examples, pad_id, precond)
    if projection == "rademacher":
        projector = RademacherProjector(grads.shape[1], k, seed)
        feats = torch.stack([projector.project(g[None].float())[0] for g in grads]).double()
    else:
        feats = grads
    if normalize:
        feats = feats / feats.norm(dim=1, keepdim=True)
    in_idk = [e.scored and e.split == "idk" for e in examples]
    ik_kind = "answer" if any(not e.scored for e in examples) else "refusal"
    in_ik = [e.split == "ik" and e.target == ik_kind for e in examples]
    mean_idk = feats[torch.tensor(in_idk)].mean(0)
    mean_ik = feats[torch.tensor(in_ik)].mean(0)
    scored = [i for i, e in enumerate(examples) if e.scored]
    i_ref = torch.stack([feats[i] @ mean_idk for i in scored])
    i_sta = torch.stack([feats[i] @ (mean_idk - mean_ik) for i in scored])
    return i_ref, i_sta


def gib_for_rows(rows, dim, k=0):
    """``chunk_memory_gb`` that holds exactly ``rows`` per-sample rows of ``dim`` floats (and,
    dense one-pass, their ``k``-dimensional projections)."""
    return rows * 4 * (dim + k) / 2**30


def _assert_close(fast, ref, rtol=1e-5):
    fast, ref = fast.double(), ref.double()
    scale = ref.abs().max()
    assert float((fast - ref).abs().max() / scale) <= rtol, (fast, ref)


# --------------------------------------------------------------------------- exactness
def test_per_sample_gradients_equal_one_backward_per_sample(warm_model):
    lm, model = warm_model
    examples = _examples(lm)
    engine = PerSampleGradients(model)
    fast = engine(collate([e.features for e in examples], lm.tokenizer.pad_token_id, "cpu"))
    ref = reference_gradients(model, examples, lm.tokenizer.pad_token_id)
    assert fast.shape == ref.shape and fast.shape[1] == engine.dim
    assert float(ref.norm(dim=1).min()) > 0
    _assert_close(fast, ref, 1e-5)


class _NoLogitsToKeep(torch.nn.Module):
    """A causal LM whose forward has no ``logits_to_keep`` (older or custom models)."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    def forward(self, input_ids, attention_mask):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


def test_sample_losses_are_the_models_own_loss_per_sample(warm_model):
    lm, model = warm_model
    examples = _examples(lm)
    pad = lm.tokenizer.pad_token_id
    batch = collate([ex.features for ex in examples], pad, "cpu")
    expected = torch.stack(
        [hf_loss(model, collate([ex.features], pad, "cpu")) for ex in examples]
    ).detach()
    with torch.no_grad():
        sliced = sample_losses(model, batch)  # logits only where some answer token is
        full = sample_losses(_NoLogitsToKeep(model), batch)  # every position
    torch.testing.assert_close(sliced, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(full, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("projection", ["rademacher", "none"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("batch_size", [3, 16])
def test_fast_path_agrees_with_the_reference_loop(warm_model, projection, normalize, batch_size):
    lm, model = warm_model
    examples = _examples(lm)
    settings = InfluenceSettings(projection, 64, normalize, seed=7, batch_size=batch_size)
    result = compute_influence(
        PerSampleGradients(model), examples, settings, lm.tokenizer.pad_token_id, log=print
    )
    i_ref, i_sta = reference_influence(
        model, examples, lm.tokenizer.pad_token_id, projection, 64, normalize, 7
    )
    assert result.ids == [e.id for e in examples]
    _assert_close(result.i_ref, i_ref)
    _assert_close(result.i_sta, i_sta)
    assert result.passes == (1 if projection == "rademacher" and normalize else 2)


def test_eq9_variant_uses_the_ik_answers_for_the_ik_mean(warm_model):
    lm, model = warm_model
    examples = _examples(lm, ik_target="answer")
    assert sum(not e.scored for e in examples) == sum(v >= 0.5 for v in _mu().values())
    settings = InfluenceSettings("rademacher", 64, True, seed=3, batch_size=4)
    result = compute_influence(
        PerSampleGradients(model), examples, settings, lm.tokenizer.pad_token_id
    )
    i_ref, i_sta = reference_influence(
        model, examples, lm.tokenizer.pad_token_id, "rademacher", 64, True, 3
    )
    _assert_close(result.i_ref, i_ref)
    _assert_close(result.i_sta, i_sta)
    default = compute_influence(
        PerSampleGradients(model), _examples(lm), settings, lm.tokenizer.pad_token_id
    )
    _assert_close(default.i_ref, result.i_ref)  # I_ref does not involve D_ik
    assert not torch.allclose(default.i_sta, result.i_sta)


def test_chunks_smaller_than_the_data_give_the_same_numbers(warm_model):
    lm, model = warm_model
    examples = _examples(lm)
    engine = PerSampleGradients(model)
    one = InfluenceSettings("rademacher", 32, True, batch_size=2)
    two_rows = gib_for_rows(2, engine.dim, 32)
    tiny = InfluenceSettings("rademacher", 32, True, batch_size=2, chunk_memory_gb=two_rows)
    a = compute_influence(engine, examples, one, lm.tokenizer.pad_token_id)
    b = compute_influence(engine, examples, tiny, lm.tokenizer.pad_token_id)
    _assert_close(a.i_ref, b.i_ref, 1e-6)
    _assert_close(a.i_sta, b.i_sta, 1e-6)
    assert torch.allclose(a.features.norm(dim=1), torch.ones(len(examples)), atol=1e-5)


def test_adam_preconditioned_gradients(warm_model):
    lm, model = warm_model
    examples = _examples(lm)
    engine = PerSampleGradients(model)
    gen = torch.Generator().manual_seed(5)
    m = torch.randn(engine.dim, generator=gen) * 1e-3
    v = torch.rand(engine.dim, generator=gen) * 1e-4
    engine.preconditioner = AdamPreconditioner(m, v, 0.9, 0.999, 1e-8)
    settings = InfluenceSettings("rademacher", 64, True, seed=1, batch_size=4)
    result = compute_influence(engine, examples, settings, lm.tokenizer.pad_token_id)
    i_ref, i_sta = reference_influence(
        model,
        examples,
        lm.tokenizer.pad_token_id,
        "rademacher",
        64,
        True,
        1,
        engine.preconditioner,
    )
    _assert_close(result.i_ref, i_ref)
    _assert_close(result.i_sta, i_sta)


def test_a_fresh_lora_has_zero_a_gradients():
    """Why a warm-up is needed: at B = 0 every lora_A gradient vanishes."""
    from peft import LoraConfig, get_peft_model

    lm = build_tiny_model(seed=2)
    model = get_peft_model(lm.model, LoraConfig(r=4, target_modules="all-linear"))
    model.eval()
    engine = PerSampleGradients(model)
    grads = engine(collate([e.features for e in _examples(lm)], lm.tokenizer.pad_token_id, "cpu"))
    for s in engine.slices:
        block = grads[:, s.offset : s.offset + s.size]
        if "lora_A" in s.name:
            assert float(block.abs().max()) == 0.0
    assert float(grads.abs().max()) > 0  # the B gradients are not


def test_sample_without_answer_tokens_is_a_clear_error(warm_model):
    lm, model = warm_model
    ex = _examples(lm)[0]
    bad = dict(ex.features, completion_mask=[0] * len(ex.features["input_ids"]))
    with pytest.raises(DataError, match="q9 has no answer tokens"):
        PerSampleGradients(model)(
            collate([ex.features, bad], lm.tokenizer.pad_token_id, "cpu"), ["q0", "q9"]
        )


def test_empty_splits_are_errors(warm_model):
    lm, model = warm_model
    records = _records(4)
    settings = InfluenceSettings("none", 8, False)
    engine = PerSampleGradients(model)
    known = gradient_examples(records, {r.id: 1.0 for r in records}, lm.tokenizer, True)
    with pytest.raises(DataError, match="D_idk is empty"):
        compute_influence(engine, known, settings, lm.tokenizer.pad_token_id)
    unknown = gradient_examples(records, {r.id: 0.0 for r in records}, lm.tokenizer, True)
    with pytest.raises(DataError, match="D_ik is empty"):
        compute_influence(engine, unknown, settings, lm.tokenizer.pad_token_id)


def test_gradients_fill_the_given_rows_and_refuse_a_wrong_buffer(warm_model):
    lm, model = warm_model
    examples = _examples(lm)[:3]
    engine = PerSampleGradients(model)
    batch = collate([e.features for e in examples], lm.tokenizer.pad_token_id, "cpu")
    buffer = torch.full((5, engine.dim), float("nan"))
    returned = engine(batch, out=buffer[1:4])
    assert returned.data_ptr() == buffer[1].data_ptr()
    torch.testing.assert_close(buffer[1:4], engine(batch))
    assert bool(buffer[0].isnan().all()) and bool(buffer[4].isnan().all())
    with pytest.raises(ValueError, match="expected"):
        engine(batch, out=torch.empty(2, engine.dim))


def test_non_linear_trainable_parameter_is_refused():
    lm = build_tiny_model(seed=3)
    for p in lm.model.parameters():
        p.requires_grad_(False)
    lm.model.model.norm.weight.requires_grad_(True)
    with pytest.raises(ConfigError, match="not a linear layer"):
        PerSampleGradients(lm.model)


# --------------------------------------------------------------------------- resume
def test_work_files_let_a_killed_run_resume(warm_model, tmp_path, monkeypatch):
    lm, model = warm_model
    examples = _examples(lm)
    engine = PerSampleGradients(model)
    two_rows = gib_for_rows(2, engine.dim, 32)
    settings = InfluenceSettings("rademacher", 32, True, batch_size=2, chunk_memory_gb=two_rows)
    full = compute_influence(engine, examples, settings, lm.tokenizer.pad_token_id)
    calls = {"n": 0}
    original = PerSampleGradients.__call__

    def dying(self, batch, ids=None, out=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, batch, ids, out)

    monkeypatch.setattr(PerSampleGradients, "__call__", dying)
    with pytest.raises(KeyboardInterrupt):
        compute_influence(
            engine, examples, settings, lm.tokenizer.pad_token_id, work_dir=tmp_path / "w"
        )
    assert len(list((tmp_path / "w").glob("features.chunk*.pt"))) == 2
    calls["n"] = -100
    resumed = compute_influence(
        engine, examples, settings, lm.tokenizer.pad_token_id, work_dir=tmp_path / "w"
    )
    assert calls["n"] == -100 + 3  # only the three unfinished chunks were computed
    assert torch.equal(resumed.i_ref, full.i_ref) and torch.equal(resumed.i_sta, full.i_sta)


# --------------------------------------------------------------------------- the stage
@pytest.fixture()
def probed(tmp_path, tiny_model_dir):
    from rait.probe import run_probe
    from test_probe import _config, mcqa_rows

    cfg = _config(tmp_path, tiny_model_dir, mcqa_rows(12), mcqa_rows(6, "s"))
    run_probe(cfg, tmp_path / "probe", progress=False)
    return tmp_path / "probe"


def _warmup_train():
    return TrainConfig(
        lora_r=4,
        lora_dropout=0.0,
        batch_size=2,
        effective_batch_size=4,
        epochs=1.0,
        learning_rate=5e-3,
        save_steps=100,
    )


def _stage_cfg(probe_dir, **overrides):
    base = {
        "probe": str(probe_dir),
        "warmup_min_mu": 0.0,
        "warmup_size": 6,
        "train": _warmup_train(),
        "projection_dim": 32,
        "batch_size": 4,
        # the tiny random model's µ sits near 1/4: split where both sides are non-empty
        "tau_mu": 0.25,
    }
    base.update(overrides)
    return InfluenceConfig(**base)


def _read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def test_run_influence_trains_the_warmup_scores_and_is_cached(probed, tmp_path, capsys):
    out = tmp_path / "influence"
    summary = run_influence(_stage_cfg(probed), out, log=print)
    rows = _read(influence_path(out))
    knowledge = {r["id"]: r for r in _read(probed / "knowledge.jsonl")}
    assert sorted(r["id"] for r in rows) == sorted(knowledge)
    for row in rows:
        assert row["split"] == ("ik" if knowledge[row["id"]]["mu"] >= 0.25 else "idk")
        assert np.isfinite([row["i_ref"], row["i_sta"], row["grad_norm"]]).all()
    assert summary["n"] == 12 and summary["n_ik"] + summary["n_idk"] == 12
    assert summary["warmup"].endswith("checkpoint-2")  # 6 samples, batch 4, one epoch
    assert summary["warmup_train"]["steps"] == 2
    features = np.load(out / "scores" / FEATURES_FILE)
    assert features.shape == (12, 32)
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    # I_ref is the inner product with the D_idk mean of the saved features
    idk = [r["split"] == "idk" for r in rows]
    mean_idk = features[idk].mean(0)
    assert np.allclose([r["i_ref"] for r in rows], features @ mean_idk, atol=1e-5)
    assert not (out / "scores" / "work").exists()
    capsys.readouterr()
    again = run_influence(_stage_cfg(probed), out, log=print)
    assert "up to date" in capsys.readouterr().out
    assert again == json.loads((out / "scores" / INFLUENCE_SUMMARY_FILE).read_text())


def test_given_warmup_checkpoint_and_adam(probed, tmp_path):
    first = tmp_path / "first"
    run_influence(_stage_cfg(probed), first, log=lambda _: None)
    checkpoint = next((first / "warmup" / "checkpoints").glob("checkpoint-*"))
    cfg = _stage_cfg(probed, warmup=str(checkpoint), gradient="adam")
    summary = run_influence(cfg, tmp_path / "adam", log=lambda _: None)
    sgd = {r["id"]: r for r in _read(influence_path(first))}
    adam = {r["id"]: r for r in _read(influence_path(tmp_path / "adam"))}
    assert summary["gradient"] == "adam" and not (tmp_path / "adam" / "warmup").exists()
    assert any(abs(adam[k]["i_ref"] - sgd[k]["i_ref"]) > 1e-4 for k in sgd)


def test_adam_preconditioner_reads_the_trainer_checkpoint(probed, tmp_path):
    from rait.influence import load_warmup_model
    from rait.probe import probe_config_of

    run_influence(_stage_cfg(probed), tmp_path / "a", log=lambda _: None)
    checkpoint = next((tmp_path / "a" / "warmup" / "checkpoints").glob("checkpoint-*"))
    model_cfg = probe_config_of(probed).model
    _, model, engine = load_warmup_model(model_cfg, str(checkpoint), "adam")
    saved = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    # the Trainer's first group holds every LoRA weight in named_parameters order
    first = saved["param_groups"][0]["params"]
    assert len(first) == len(names)
    expected = torch.cat([saved["state"][i]["exp_avg"].flatten() for i in first])
    assert torch.equal(engine.preconditioner.exp_avg, expected)
    assert engine.preconditioner.beta1 == saved["param_groups"][0]["betas"][0]


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"probe": None}, "probe"),
        ({"projection": "gaussian"}, "projection must be one of"),
        ({"gradient": "adagrad"}, "gradient must be one of"),
        ({"ik_target": "gold"}, "ik_target must be one of"),
        ({"projection_dim": 0}, "projection_dim must be positive"),
        ({"tau_mu": 0.0}, "tau_mu must be in"),
        ({"batch_size": 0}, "batch_size must be positive"),
        ({"chunk_memory_gb": 0}, "chunk_memory_gb must be positive"),
        ({"seed": -1}, r"seed must be in \[0, 2\*\*63\)"),
        ({"seed": 2**63}, "seed must be in"),
        ({"refusal": "  "}, "refusal is empty"),
        ({"warmup": "/nonexistent"}, "not a LoRA adapter"),
    ],
)
def test_impossible_settings(probed, tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        run_influence(_stage_cfg(probed, **override), tmp_path / "x", log=lambda _: None)


def test_adam_without_optimizer_state_is_a_config_error(probed, tmp_path):
    run_influence(_stage_cfg(probed), tmp_path / "a", log=lambda _: None)
    adapter = tmp_path / "a" / "warmup" / "adapter"
    with pytest.raises(ConfigError, match=r"optimizer\.pt"):
        run_influence(
            _stage_cfg(probed, warmup=str(adapter), gradient="adam"), tmp_path / "b", log=print
        )


def test_not_a_probe_folder(tmp_path):
    with pytest.raises(ConfigError, match="not a probe folder"):
        run_influence(_stage_cfg(tmp_path), tmp_path / "x", log=lambda _: None)


def test_warmup_of_another_model_is_a_config_error(probed, tmp_path):
    from peft import LoraConfig, get_peft_model

    other = build_tiny_model(seed=0, hidden_size=16)
    peft = get_peft_model(other.model, LoraConfig(r=2, target_modules="all-linear"))
    peft.save_pretrained(tmp_path / "other")
    with pytest.raises(ConfigError, match="cannot load warm-up"):
        run_influence(_stage_cfg(probed, warmup=str(tmp_path / "other")), tmp_path / "x", log=print)


# --------------------------------------------------------------------------- processes
def test_two_processes_give_the_single_process_numbers(probed, tmp_path):
    """torchrun with 2 CPU processes (gloo): each takes every other batch; the merged file
    equals the single-process one."""
    single = tmp_path / "single"
    run_influence(_stage_cfg(probed), single, log=lambda _: None)
    checkpoint = next((single / "warmup" / "checkpoints").glob("checkpoint-*"))
    sharded = tmp_path / "sharded"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))
    for mode in (["--no-normalize"], [], ["--projection", "factorized", "--factor-dim", "8"]):
        for out in (tmp_path / "single-given", sharded):
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                "2" if out == sharded else "1",
                "--standalone",
                "-m",
                "rait",
                "influence",
                "--out",
                str(out),
                "--probe",
                str(probed),
                "--warmup",
                str(checkpoint),
                "--projection-dim",
                "32",
                "--gradient-batch-size",
                "3",
                "--tau-c",
                "0.25",
                *mode,
            ]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
        one = _read(influence_path(tmp_path / "single-given"))
        two = _read(influence_path(sharded))
        assert [r["id"] for r in one] == [r["id"] for r in two]
        for key in ("i_ref", "i_sta"):
            _assert_close(torch.tensor([r[key] for r in two]), torch.tensor([r[key] for r in one]))
        summary = json.loads((sharded / "scores" / INFLUENCE_SUMMARY_FILE).read_text())
        assert summary["processes"] == 2


def test_processes_default_to_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    procs = Processes.from_env()
    assert (procs.rank, procs.world, procs.main) == (0, 1, True)
    assert procs.gather([1, 2]) == [1, 2]


def test_influence_file_name():
    assert influence_path("x") == Path("x") / "scores" / INFLUENCE_FILE


def test_build_accepts_the_influence_folder(tmp_path):

    scores = influence_path(tmp_path / "run")
    scores.parent.mkdir(parents=True)
    scores.write_text("")
    assert resolve_influence_file(tmp_path / "run") == scores
    assert resolve_influence_file(scores.parent) == scores
    assert resolve_influence_file(scores) == scores
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"holds no influence\.jsonl"):
        resolve_influence_file(tmp_path / "empty")


def test_cli_influence_then_build_grait(probed, tmp_path, capsys):
    from rait.cli import main
    from rait.probe import probe_config_of

    out = tmp_path / "inf"
    args = ["influence", "--out", str(out), "--probe", str(probed), "--tau-c", "0.25"]
    args += ["--set", "warmup_min_mu=0.0", "--warmup-size", "6", "--lora-r", "4", "--epochs", "1"]
    args += ["--batch-size", "2", "--effective-batch-size", "4", "--projection-dim", "16"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "influence of 12 questions" in printed and "<idk,ik>" in printed
    summary = json.loads((out / "scores" / INFLUENCE_SUMMARY_FILE).read_text())
    assert summary["projection_dim"] == 16 and summary["warmup_train"]["n_samples"] == 6
    data = probe_config_of(probed).data.path
    built = tmp_path / "grait.jsonl"
    build = ["build", "--method", "grait", "--data", data, "--knowledge"]
    build += [str(probed / "knowledge.jsonl"), "--influence", str(out), "--tau-mu", "0.25"]
    assert main([*build, "--n-van", "2", "--n-idk", "2", "--out", str(built)]) == 0
    rows = _read(built)
    assert {r["kind"] for r in rows} == {"van", "idk"}
    scores = {r["id"]: r for r in _read(influence_path(out))}
    idk = [r for r in rows if r["kind"] == "idk"]
    best = sorted((r for r in scores.values() if r["split"] == "idk"), key=lambda r: -r["i_ref"])[
        :2
    ]
    assert {r["id"] for r in idk} == {r["id"] for r in best}
    assert sum(r["weight"] for r in idk) / len(idk) == pytest.approx(1.0)


def test_cli_influence_bad_setting_is_one_error_line(probed, tmp_path, capsys):
    from rait.cli import main

    code = main(["influence", "--out", str(tmp_path / "x"), "--probe", str(probed),
                 "--projection-dim", "0"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("rait: error:")
    assert "projection_dim" in err[0]
