"""rait.train: per-sample weights, TRL/PEFT training on a tiny model, checkpoints, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rait.errors import ConfigError, DataError
from rait.models import ModelConfig, build_tiny_model, load_model, render_prompt
from rait.train import (
    TrainConfig,
    TrainExample,
    build_trainer,
    completion_text,
    read_training_rows,
    run_train,
    tokenize_rows,
    weighted_loss,
)

QUESTIONS = [
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Italy?", "Rome"),
    ("What is the capital of Germany?", "Berlin"),
    ("What is the capital of Spain?", "Madrid"),
    ("Which element has the symbol Fe?", "Iron"),
    ("Which continent is Chile in?", "South America"),
    ("What is the currency of Japan?", "Yen"),
    ("Which country is Lyon in?", "France"),
]


def _rows(weights=None):
    rows = []
    for i, (question, answer) in enumerate(QUESTIONS):
        target = answer if i % 3 else "I don't know"
        rows.append(
            {
                "id": f"q{i}",
                "kind": "van" if i % 3 else "idk",
                "prompt": [{"role": "user", "content": question}],
                "completion": [{"role": "assistant", "content": target}],
                "weight": 1.0 if weights is None else weights[i],
            }
        )
    return rows


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _cfg(tiny_model_dir, data, **overrides):
    base = {
        "model": ModelConfig(name=str(tiny_model_dir)),
        "data": str(data),
        "lora_r": 4,
        "lora_dropout": 0.0,
        "batch_size": 2,
        "effective_batch_size": 4,
        "epochs": 1.0,
        "save_steps": 1,
        "logging_steps": 1,
    }
    base.update(overrides)
    return TrainConfig(**base)


# --------------------------------------------------------------------------- the loss
def test_weighted_loss_sample_reduction_is_weighted_mean_of_token_means():
    log_probs = torch.tensor([[-1.0, -3.0, 0.0], [-2.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    ones = weighted_loss(log_probs, mask, torch.ones(2), "sample", 2)
    assert ones.item() == pytest.approx((2.0 + 2.0) / 2)
    weighted = weighted_loss(log_probs, mask, torch.tensor([3.0, 0.0]), "sample", 2)
    assert weighted.item() == pytest.approx(3.0 * 2.0 / 2)


def test_weighted_loss_token_reduction_is_trl_token_mean_with_ones():
    log_probs = torch.tensor([[-1.0, -3.0, 0.0], [-2.0, 0.0, 0.0]])
    mask = log_probs != 0
    assert weighted_loss(log_probs, mask, torch.ones(2), "token", 3).item() == pytest.approx(2.0)
    doubled = weighted_loss(log_probs, mask, torch.tensor([1.0, 2.0]), "token", 3)
    assert doubled.item() == pytest.approx((1 + 3 + 4) / 3)


def _trainers(tiny_model_dir, tmp_path, rows, reduction):
    data = _write(tmp_path / "set.jsonl", rows)
    cfg = _cfg(tiny_model_dir, data, loss_reduction=reduction, lora_dropout=0.0)
    out = []
    for weighted in (True, False):
        lm = load_model(cfg.model)
        examples = tokenize_rows(
            read_training_rows(str(data)), lm.tokenizer, True, cfg.max_length, str(data)
        )
        trainer = build_trainer(
            cfg, examples, tmp_path / f"ck{weighted}", lm, lm.model, weighted=weighted
        )
        out.append(trainer)
    return out


def _batch(trainer):
    loader = trainer.get_train_dataloader()
    return next(iter(loader))


def test_all_ones_token_reduction_equals_trl_loss_exactly(tiny_model_dir, tmp_path):
    weighted, plain = _trainers(tiny_model_dir, tmp_path, _rows(), "token")
    batch = _batch(weighted)
    assert "weight" in batch
    plain_batch = {k: v.clone() for k, v in batch.items() if k != "weight"}
    torch.manual_seed(0)
    ours = weighted.compute_loss(weighted.model, dict(batch))
    torch.manual_seed(0)
    theirs = plain.compute_loss(plain.model, plain_batch)
    assert ours.item() == theirs.item()  # exactly, not approximately


def test_all_ones_sample_reduction_is_the_mean_of_per_sample_losses(tiny_model_dir, tmp_path):
    """With all-ones weights (explicit, or no weight column) the loss is the plain mean over
    samples of each sample's token-mean cross-entropy on its completion, computed here
    without rait: by Hugging Face's own causal-LM loss on each sample alone (unpadded), and
    by hand in float64 from the padded batch's logits."""
    weighted, _ = _trainers(tiny_model_dir, tmp_path, _rows(), "sample")
    batch = _batch(weighted)
    model = weighted.model
    assert torch.equal(batch["weight"], torch.ones(batch["input_ids"].shape[0]))
    ours = weighted.compute_loss(model, dict(batch)).item()
    no_weights = {k: v for k, v in batch.items() if k != "weight"}
    unweighted = weighted.compute_loss(model, dict(no_weights)).item()
    labels = batch["labels"]
    n_tokens = (labels[:, 1:] != -100).sum(-1)
    assert len(set(n_tokens.tolist())) > 1  # a token-mean over the batch would differ
    with torch.no_grad():
        # oracle 1: HF's loss (mean CE over the shifted labels) of each sample alone
        hf = []
        for ids, keep, target in zip(batch["input_ids"], batch["attention_mask"], labels):
            keep = keep.bool()
            hf.append(model(input_ids=ids[keep][None], labels=target[keep][None]).loss.item())
        # oracle 2: by hand, CE = logsumexp(logits) - logit of the label, in float64
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1].double()
    target = labels[:, 1:]
    mask = target != -100
    label_logit = logits.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    token = (torch.logsumexp(logits, dim=-1) - label_logit) * mask
    by_hand = (token.sum(-1) / mask.sum(-1)).mean().item()
    # float32 tolerance: each logit is a float32 forward pass whose longest reductions have
    # n = max(sequence length, MLP width) terms; reordering (padding, fused vs plain head)
    # moves a logit by at most ~n·eps·max|logit| (Higham's γ_n for a sum of n terms of that
    # size), and a token's CE = logsumexp − logit by at most twice that; a mean of such CEs
    # keeps the bound. (Measured: a few eps·max|logit|.)
    n = max(batch["input_ids"].shape[1], model.config.intermediate_size)
    tol = 2 * n * torch.finfo(torch.float32).eps * logits.abs().max().item()
    for value in (ours, unweighted):
        assert value == pytest.approx(sum(hf) / len(hf), abs=tol, rel=0)
        assert value == pytest.approx(by_hand, abs=tol, rel=0)
    # the oracles are not trivially equal to a batch token-mean (what a wrong reduction gives)
    token_mean = (token.sum() / mask.sum()).item()
    assert abs(token_mean - by_hand) > 10 * tol


F32_EPS = torch.finfo(torch.float32).eps


def _assert_same_gradients(got, want, n_terms):
    """``got`` equals ``want`` tensor by tensor, up to float32 rounding.

    The two gradients are the same sums computed over differently shaped batches (another
    batch size, another padding length), so the float32 kernels block and order the sums
    differently. Each gradient entry is a sum over the batch's token positions of per-token
    products (dL/dy_t · x_t), fed by forward/backward reductions over the sequence and the
    hidden sizes; ``n_terms`` (the batch's token positions) is at least every one of these
    reduction lengths. A float32 sum of n terms moves, when reordered, by at most about
    n·eps times the size of its terms (Higham's bound |fl(Σx) − Σx| ≤ γ_n Σ|x|, γ_n ≈ n·eps),
    and the terms are of the size of the tensor's largest gradient entry: the tolerance is
    ``n_terms · eps · max|want|`` per tensor, the same for every entry (an entry near zero
    carries the rounding of its large terms, so an elementwise rtol means nothing there).
    Measured on one machine: at most ~20 eps·max|g|, well inside; a wrongly weighted or
    scaled sample moves the gradient by a fraction of max|g| itself."""
    assert got and got.keys() == want.keys()
    for name, grad in got.items():
        tol = n_terms * F32_EPS * want[name].abs().max().item()
        diff = (grad - want[name]).abs().max().item()
        assert diff <= tol, f"{name}: |Δ| {diff:.3g} > {tol:.3g}"


def _grads(trainer, batches, step_samples):
    model = trainer.model
    model.zero_grad()
    trainer._step_samples = step_samples
    for batch in batches:
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def test_weighted_gradient_is_the_same_at_any_batch_size(tiny_model_dir, tmp_path):
    """One step over 4 samples: one batch of 4 == four accumulated batches of 1."""
    weights = [0.2, 3.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    weighted, _ = _trainers(tiny_model_dir, tmp_path, _rows(weights), "sample")
    collate = weighted.data_collator
    dataset = weighted.train_dataset
    examples = [dataset[i] for i in range(4)]
    batch = collate(examples)
    full = _grads(weighted, [batch], 4)
    split = _grads(weighted, [collate([e]) for e in examples], 4)
    assert any(g.abs().max() > 0 for g in full.values())
    _assert_same_gradients(full, split, batch["input_ids"].numel())


def test_zero_weight_removes_a_sample_from_the_gradient(tiny_model_dir, tmp_path):
    weights = [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    weighted, _ = _trainers(tiny_model_dir, tmp_path, _rows(weights), "sample")
    collate = weighted.data_collator
    dataset = weighted.train_dataset
    by_id_weight = [dataset[i] for i in range(3)]
    zero = [e for e in by_id_weight if e["weight"] == 0.0]
    others = [e for e in by_id_weight if e["weight"] != 0.0]
    assert len(zero) == 1
    batch = collate(by_id_weight)
    with_zero = _grads(weighted, [batch], 3)
    without = _grads(weighted, [collate(others)], 3)
    assert any(g.abs().max() > 0 for g in without.values())
    _assert_same_gradients(with_zero, without, batch["input_ids"].numel())


# --------------------------------------------------------------------------- prompts
def test_training_prompt_is_exactly_the_inference_prompt(tiny_model_dir, tmp_path):
    data = _write(tmp_path / "set.jsonl", _rows())
    lm = load_model(ModelConfig(name=str(tiny_model_dir)))
    rows = read_training_rows(str(data))
    (example,) = tokenize_rows(rows[:1], lm.tokenizer, True, 2048, str(data))
    prompt = render_prompt(lm.tokenizer, rows[0]["prompt"], chat=True)
    assert example.prompt_ids == lm.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    target = completion_text(lm.tokenizer, rows[0]["prompt"], rows[0]["completion"], True)
    assert target == "I don't know<|im_end|>\n"
    features = example.features()
    assert features["completion_mask"].count(1) == len(example.completion_ids)


def test_plain_text_model_gets_space_answer_and_eos(tiny_model_dir):
    lm = build_tiny_model(chat=False)
    messages = [{"role": "user", "content": "Q?"}]
    text = completion_text(lm.tokenizer, messages, [{"role": "assistant", "content": "A"}], False)
    assert text == " A" + lm.tokenizer.eos_token


# --------------------------------------------------------------------------- end to end
def test_run_train_writes_a_loadable_adapter_and_is_cached(tiny_model_dir, tmp_path):
    data = _write(tmp_path / "set.jsonl", _rows([1.0, 2.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]))
    cfg = _cfg(tiny_model_dir, data, epochs=2.0)
    summary = run_train(cfg, tmp_path / "out", log=lambda _: None)
    assert summary["steps"] == 4  # 8 samples / 4 per step × 2 epochs
    assert summary["n_samples"] == 8 and summary["n_idk"] == 3
    assert not summary["weights"]["all_one"]
    adapter = tmp_path / "out" / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    # plain peft use
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = PeftModel.from_pretrained(base, adapter)
    assert any("lora_A" in n for n, _ in peft_model.named_parameters())
    # rait's loader merges it
    merged = load_model(ModelConfig(name=str(tiny_model_dir), adapter=str(adapter)))
    fresh = load_model(ModelConfig(name=str(tiny_model_dir)))
    changed = [
        n
        for (n, p), (_, q) in zip(
            merged.model.named_parameters(), fresh.model.named_parameters(), strict=True
        )
        if not torch.equal(p, q)
    ]
    assert changed
    messages = []
    again = run_train(cfg, tmp_path / "out", log=messages.append)
    assert again["steps"] == 4 and "up to date" in messages[0]


def test_interrupted_training_resumes_to_the_same_adapter(tiny_model_dir, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    import rait.train as train_module

    data = _write(tmp_path / "set.jsonl", _rows())
    cfg = _cfg(tiny_model_dir, data, epochs=2.0, lora_dropout=0.1)
    run_train(cfg, tmp_path / "straight", log=lambda _: None)

    class Kill(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt

    original = train_module.build_trainer

    def killing(*args, **kwargs):
        trainer = original(*args, **kwargs)
        trainer.add_callback(Kill())
        return trainer

    monkeypatch.setattr(train_module, "build_trainer", killing)
    with pytest.raises(KeyboardInterrupt):
        run_train(cfg, tmp_path / "killed", log=lambda _: None)
    monkeypatch.setattr(train_module, "build_trainer", original)
    messages = []
    summary = run_train(cfg, tmp_path / "killed", log=messages.append)
    assert "resuming from" in messages[0] and summary["resumed_from"].endswith("checkpoint-2")
    # the mean loss of the whole run, not of the resumed steps only (the same float32 losses
    # summed in float64 in another grouping: equal to far below 1e-9 relative)
    straight = json.loads((tmp_path / "straight" / "train_summary.json").read_text())
    assert summary["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-9)
    a = load_file(tmp_path / "straight" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "killed" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_full_finetuning_saves_a_plain_model(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    data = _write(tmp_path / "set.jsonl", _rows())
    cfg = _cfg(tiny_model_dir, data, finetuning="full", learning_rate=1e-3)
    summary = run_train(cfg, tmp_path / "full", log=lambda _: None)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "full" / "model")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert summary["finetuning"] == "full"
    assert not torch.equal(model.model.embed_tokens.weight, base.model.embed_tokens.weight)


def test_plain_text_prompt_completion_rows_train(tiny_model_dir, tmp_path):
    rows = [{"prompt": f"Question: {q}\nAnswer:", "completion": f" {a}"} for q, a in QUESTIONS]
    data = _write(tmp_path / "plain.jsonl", rows)
    summary = run_train(_cfg(tiny_model_dir, data), tmp_path / "o", log=lambda _: None)
    assert summary["n_samples"] == 8 and math.isfinite(summary["train_loss"])


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("mutate", "field", "needle"),
    [
        (lambda r: r.pop("completion"), "completion", "missing field"),
        (
            lambda r: r.update(completion=[{"role": "assistant", "content": " "}]),
            "completion",
            "empty",
        ),
        (lambda r: r.update(completion=[]), "completion", "non-empty list"),
        (lambda r: r.update(prompt=[{"role": "assistant", "content": "x"}]), "prompt", "'user'"),
        (lambda r: r.update(prompt=[{"role": "user"}]), "prompt", "content"),
        (lambda r: r.update(weight=float("nan")), "weight", "finite"),
        (lambda r: r.update(weight=-1), "weight", ">= 0"),
        (lambda r: r.update(weight="2"), "weight", "number"),
        (lambda r: r.update(weight=True), "weight", "number"),
        (lambda r: r.update(prompt="plain text"), "prompt", "mixes"),
        (lambda r: r.update(id="q0"), "id", "duplicate"),
    ],
)
def test_bad_training_rows_name_file_line_and_field(tmp_path, mutate, field, needle):
    rows = _rows()
    mutate(rows[2])
    data = _write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        read_training_rows(str(data))
    message = str(info.value)
    assert "bad.jsonl:3" in message and f"field '{field}'" in message and needle in message


def test_too_long_sample_is_an_error_not_a_silent_truncation(tiny_model_dir, tmp_path):
    data = _write(tmp_path / "set.jsonl", _rows())
    lm = load_model(ModelConfig(name=str(tiny_model_dir)))
    rows = read_training_rows(str(data))
    with pytest.raises(DataError, match=r"set.jsonl:1, field 'prompt'.*max_length 5"):
        tokenize_rows(rows, lm.tokenizer, True, 5, str(data))


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"finetuning": "qlora"}, "finetuning"),
        ({"loss_reduction": "batch"}, "loss_reduction"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"epochs": 0.0}, "epochs"),
        ({"lora_dropout": 1.0}, "lora_dropout"),
        ({"batch_size": 3, "effective_batch_size": 16}, "multiple"),
    ],
)
def test_impossible_settings_are_config_errors(tiny_model_dir, tmp_path, overrides, needle):
    data = _write(tmp_path / "set.jsonl", _rows())
    with pytest.raises(ConfigError, match=needle):
        run_train(_cfg(tiny_model_dir, data, **overrides), tmp_path / "o", log=lambda _: None)
    assert not (tmp_path / "o").exists()


def test_weights_can_be_ignored(tmp_path):
    data = _write(tmp_path / "set.jsonl", _rows([5.0] * 8))
    assert {r["weight"] for r in read_training_rows(str(data), use_weights=False)} == {1.0}


def test_train_example_features():
    example = TrainExample("x", [1, 2], [3], 0.5)
    assert example.features() == {
        "input_ids": [1, 2, 3],
        "completion_mask": [0, 0, 1],
        "weight": 0.5,
    }


# --------------------------------------------------------------------------- command line
def test_cli_train_and_its_errors(tiny_model_dir, tmp_path, capsys):
    from rait.cli import main

    data = _write(tmp_path / "set.jsonl", _rows())
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(data), "--out"]
    argv += [str(tmp_path / "o"), "--lora-r", "4", "--batch-size", "4", "--epochs", "1"]
    argv += ["--effective-batch-size", "8", "--set", "save_steps=1000"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "trained on 8 samples (1 steps" in out and "adapter" in out
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": "Q", "completion": ""}])
    argv = ["train", "--model", str(tiny_model_dir), "--data", str(bad), "--out"]
    assert main([*argv, str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rait: error:") and "bad.jsonl:1" in err[0]
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "c"), "--epochs", "0"]) == 2
    assert "epochs must be positive" in capsys.readouterr().err


def test_accumulated_micro_batches_train_like_one_batch(tiny_model_dir, tmp_path):
    """Through the real trainer loop: batch 4 × accumulation 1 and batch 1 × accumulation 4
    give the same adapter after each step, with non-uniform weights."""
    from safetensors.torch import load_file

    data = _write(tmp_path / "set.jsonl", _rows([0.2, 3.0, 1.0, 0.5, 2.0, 1.0, 0.1, 1.5]))
    adapters = []
    for batch in (4, 1):
        # plain SGD without clipping: the update is proportional to the gradient, so a wrong
        # scale (e.g. dividing by the accumulation steps twice) shows (AdamW would hide it)
        cfg = _cfg(
            tiny_model_dir,
            data,
            batch_size=batch,
            effective_batch_size=4,
            epochs=1.0,
            optim="sgd",
            learning_rate=0.1,
            max_grad_norm=1e9,
            warmup_ratio=0.0,
            lr_scheduler="constant",
        )
        summary = run_train(cfg, tmp_path / f"b{batch}", log=lambda _: None)
        assert summary["steps"] == 2
        adapters.append(load_file(tmp_path / f"b{batch}" / "adapter" / "adapter_model.safetensors"))
    for key, value in adapters[0].items():
        assert torch.allclose(value, adapters[1][key], rtol=1e-3, atol=1e-4), key
    # LoRA B starts at zero: a non-zero B means the steps did move the adapter
    assert any(v.abs().sum() > 0 for k, v in adapters[0].items() if "lora_B" in k)


# --------------------------------------------------------------------------- precision
def test_bf16_autocast_learns_the_same_loss_curve_as_fp32(tiny_model_dir, tmp_path):
    """bf16 autocast (fp32 master weights, bf16 matrix products) against fp32 on a tiny model,
    the same samples, order and seed. bf16 keeps 8 significant bits: each rounding of a
    product's inputs is off by at most u = 2^-8 (0.39 %) relative, accumulation stays fp32.
    The tiny model's loss passes through 4 rounded products on its longest path (2 layers ×
    attention and MLP), each input pair off by ≤ 2u, so a logged loss may move by about
    8u = 3.1 % relative; the trajectories may drift apart by that much again over 24 steps.
    Asserted: every logged loss within 2 · 8u = 6.3 %, and the mean within 8u."""
    rows = [dict(r, id=f"{r['id']}-{k}") for k in range(4) for r in _rows()]
    data = _write(tmp_path / "set.jsonl", rows)
    losses = {}
    for precision in ("fp32", "bf16"):
        cfg = _cfg(
            tiny_model_dir,
            data,
            precision=precision,
            epochs=3.0,
            learning_rate=1e-3,
            save_steps=100,
        )
        summary = run_train(cfg, tmp_path / precision, log=lambda _: None)
        assert summary["precision"] == precision
        losses[precision] = [e["loss"] for e in summary["log_history"] if "loss" in e]
    fp32, bf16 = losses["fp32"], losses["bf16"]
    assert len(fp32) == len(bf16) == 24
    u = 2.0**-8
    for a, b in zip(fp32, bf16, strict=True):
        assert abs(a - b) <= 2 * 8 * u * a
    assert abs(sum(fp32) - sum(bf16)) <= 8 * u * sum(fp32)
    assert fp32 != bf16  # bf16 really ran: the rounding shows in the losses


def test_auto_precision_takes_bf16_only_where_the_cpu_computes_it(monkeypatch):
    from rait import train as T

    cfg = TrainConfig(data="x.jsonl")
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda: False)
    assert T.training_bf16(cfg, "cpu") is False  # emulated bf16 is ~30× slower: fp32
    assert T.training_bf16(TrainConfig(data="x", precision="bf16"), "cpu") is True
    monkeypatch.setattr(T, "cpu_has_native_bf16", lambda: True)
    assert T.training_bf16(cfg, "cpu") is True
    assert T.training_bf16(TrainConfig(data="x", precision="fp32"), "cpu") is False
    with pytest.raises(ConfigError, match="precision must be one of"):
        TrainConfig(data="x", precision="fp16").validate()


def test_cpu_bf16_detection_reads_the_cpu_flags(monkeypatch, tmp_path):
    import builtins

    from rait.models import cpu_has_native_bf16

    real_open = builtins.open

    def fake(flags):
        def opener(path, *args, **kwargs):
            if path == "/proc/cpuinfo":
                info = tmp_path / "cpuinfo"
                info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
                return real_open(info, *args, **kwargs)
            return real_open(path, *args, **kwargs)

        return opener

    monkeypatch.setattr(builtins, "open", fake("fpu sse avx2 avx512f avx512_bf16"))
    assert cpu_has_native_bf16()
    monkeypatch.setattr(builtins, "open", fake("fpu sse avx2 amx_bf16 amx_tile"))
    assert cpu_has_native_bf16()
    monkeypatch.setattr(builtins, "open", fake("fpu sse avx2 avx512f avx512bw"))
    assert not cpu_has_native_bf16()
