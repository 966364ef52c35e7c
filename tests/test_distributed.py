"""Several processes (rait.distributed): shards of the probe and the evaluation with their merge
step, and torchrun with 2 CPU processes (gloo) for probe, eval and DDP training, each checked
against the single-process result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from rait.config import build_config, config_to_dict
from rait.data.world_facts import WorldFactsConfig, write_world_facts
from rait.distributed import Processes, Shard, shard_file
from rait.errors import ConfigError, DataError
from rait.evaluate import EvalConfig, run_eval
from rait.probe import ProbeConfig, run_probe
from rait.rundir import Stage
from rait.train import TrainConfig, run_train

ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(sys.path))


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("facts")
    write_world_facts(WorldFactsConfig(task="mcqa", n_cities=60), folder)
    return str(folder)


def _probe_cfg(model_dir, facts, **extra) -> ProbeConfig:
    data = {
        "model": {"name": str(model_dir)},
        "data": {"format": "world_facts", "path": facts, "split": "train", "sample": 11},
        "shots": {"format": "world_facts", "path": facts, "split": "dev"},
        "n_samples": 2,
        "n_shots": 1,
        "batch_size": 2,
    }
    return build_config(ProbeConfig, data | extra)


def _eval_cfg(model_dir, facts) -> EvalConfig:
    data = {
        "model": {"name": str(model_dir)},
        "data": {"format": "world_facts", "path": facts, "split": "id_test", "sample": 9},
        "max_new_tokens": 4,
        "batch_size": 2,
    }
    return build_config(EvalConfig, data)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _by_id(path):
    return {r["id"]: r for r in _rows(path)}


def _torchrun(*args, nproc=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    cmd += ["--standalone", "-m", "rait", *map(str, args)]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


# --------------------------------------------------------------------------- shards
@pytest.mark.parametrize(("text", "shard"), [("0/1", Shard(0, 1)), ("3/4", Shard(3, 4))])
def test_shard_parse(text, shard):
    assert Shard.parse(text) == shard and str(shard) == text


@pytest.mark.parametrize("text", ["2/2", "-1/2", "0/0", "1", "a/b", "1/2/3", ""])
def test_bad_shard_is_a_config_error(text):
    with pytest.raises(ConfigError, match="shard"):
        Shard.parse(text)


def test_shards_partition_the_batches():
    items = list(range(11))
    parts = [Shard(k, 3).take(items) for k in range(3)]
    assert sorted(x for p in parts for x in p) == items
    assert parts[1] == [1, 4, 7, 10]


def test_processes_default_to_one(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    procs = Processes.from_env()
    assert (procs.rank, procs.world, procs.main) == (0, 1, True)


def test_probe_shards_then_merge_equal_one_process(tiny_model_dir, facts, tmp_path):
    cfg = _probe_cfg(tiny_model_dir, facts)
    run_probe(cfg, tmp_path / "one", progress=False)
    out = tmp_path / "sharded"
    counts = []
    for k in range(2):
        summary = run_probe(cfg, out, progress=False, shard=Shard(k, 2))
        assert summary["shard"] == f"{k}/2"
        counts.append(summary["n"])
    assert sum(counts) == 11 and min(counts) > 0
    assert not out.exists()  # a shard writes only its own file
    merged = run_probe(cfg, out, progress=False)
    assert merged["n"] == 11
    assert _by_id(out / "knowledge.jsonl") == _by_id(tmp_path / "one" / "knowledge.jsonl")
    assert not (tmp_path / "sharded.shards").exists()  # merged shards are removed
    assert json.loads((out / "stage.json").read_text())["status"] == "complete"


def test_merge_answers_what_unfinished_shards_left(tiny_model_dir, facts, tmp_path):
    cfg = _probe_cfg(tiny_model_dir, facts)
    run_probe(cfg, tmp_path / "one", progress=False)
    out = tmp_path / "sharded"
    run_probe(cfg, out, progress=False, shard=Shard(1, 3))  # shards 0 and 2 never ran
    run_probe(cfg, out, progress=False)
    assert _by_id(out / "knowledge.jsonl") == _by_id(tmp_path / "one" / "knowledge.jsonl")


def test_shards_of_another_configuration_are_not_merged(tiny_model_dir, facts, tmp_path):
    out = tmp_path / "sharded"
    run_probe(
        _probe_cfg(tiny_model_dir, facts, n_samples=3), out, progress=False, shard=Shard(0, 2)
    )
    run_probe(
        _probe_cfg(tiny_model_dir, facts, n_samples=3), out, progress=False, shard=Shard(1, 2)
    )
    cfg = _probe_cfg(tiny_model_dir, facts)
    run_probe(cfg, out, progress=False)
    run_probe(cfg, tmp_path / "one", progress=False)
    assert _by_id(out / "knowledge.jsonl") == _by_id(tmp_path / "one" / "knowledge.jsonl")


def _damaged_shard(cfg, out, text):
    stage = Stage(
        out, "probe", config_to_dict(cfg) | {"backend": "hf"}, [cfg.data.path, cfg.shots.path]
    )
    path = shard_file(out, stage.fingerprint(), Shard(0, 2))
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"id": "x"}\n{bad\n', r"0-of-2\.jsonl:2.*not valid JSON"),
        ("[1, 2]\n", r"0-of-2\.jsonl:1.*`id`"),
        ('{"id": "not-a-question"}\n', r"0-of-2\.jsonl:1.*not in the stage's data"),
    ],
)
def test_damaged_shard_files_name_the_file_and_line(tiny_model_dir, facts, tmp_path, text, match):
    cfg = _probe_cfg(tiny_model_dir, facts)
    out = tmp_path / "sharded"
    # "x" stands for a real question, so that the second line is the one reported
    _damaged_shard(cfg, out, text.replace('"x"', json.dumps(_first_id(cfg))))
    with pytest.raises(DataError, match=match):
        run_probe(cfg, out, progress=False)


def _first_id(cfg):
    from rait.data.sources import load_source

    return load_source(cfg.data)[0].id


def test_eval_shards_then_merge_equal_one_process(tiny_model_dir, facts, tmp_path):
    cfg = _eval_cfg(tiny_model_dir, facts)
    one = run_eval(cfg, tmp_path / "one", progress=False)
    out = tmp_path / "sharded"
    for k in range(3):
        assert run_eval(cfg, out, progress=False, shard=Shard(k, 3))["shard"] == f"{k}/3"
    merged = run_eval(cfg, out, progress=False)
    assert _by_id(out / "predictions.jsonl") == _by_id(tmp_path / "one" / "predictions.jsonl")
    for key in ("n", "pc", "pw", "pr"):
        assert merged[key] == one[key]


def test_cli_shard_flag(tiny_model_dir, facts, tmp_path, capsys):
    from rait.cli import main

    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(_eval_cfg(tiny_model_dir, facts))))
    out = tmp_path / "e"
    assert main(["eval", "--config", str(config), "--out", str(out), "--shard", "0/2"]) == 0
    assert "without --shard to merge" in capsys.readouterr().out
    assert main(["eval", "--config", str(config), "--out", str(out), "--shard", "1/2"]) == 0
    assert main(["eval", "--config", str(config), "--out", str(out)]) == 0
    assert len(_rows(out / "predictions.jsonl")) == 9
    assert main(["eval", "--config", str(config), "--out", str(out), "--shard", "2/2"]) == 2
    assert "shard" in capsys.readouterr().err


# --------------------------------------------------------------------------- torchrun
def test_torchrun_probe_and_eval_shard_over_ranks_and_merge(tiny_model_dir, facts, tmp_path):
    probe_cfg = _probe_cfg(tiny_model_dir, facts)
    eval_cfg = _eval_cfg(tiny_model_dir, facts)
    run_probe(probe_cfg, tmp_path / "probe-one", progress=False)
    run_eval(eval_cfg, tmp_path / "eval-one", progress=False)
    for name, cfg in (("probe", probe_cfg), ("eval", eval_cfg)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config_to_dict(cfg)))
        printed = _torchrun(name, "--config", path, "--out", tmp_path / f"{name}-two")
        # rank 0 reports; rank 1's output is silenced
        assert printed.count("knowledge.jsonl, summary" if name == "probe" else "metrics in") == 1
    assert _by_id(tmp_path / "probe-two" / "knowledge.jsonl") == _by_id(
        tmp_path / "probe-one" / "knowledge.jsonl"
    )
    assert _by_id(tmp_path / "eval-two" / "predictions.jsonl") == _by_id(
        tmp_path / "eval-one" / "predictions.jsonl"
    )
    assert not (tmp_path / "probe-two.shards").exists()


ACCELERATE = [
    "accelerate.commands.launch",
    "--multi_gpu",  # accelerate's multi-process launcher; on a CPU machine the ranks use gloo
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_ddp_training_equals_one_process(tmp_path, tiny_model_dir, launcher):
    """2 CPU processes (gloo), 1 sample each per step, against 1 process accumulating 2: the
    same optimizer steps on the same samples, with per-sample weights, give the same LoRA;
    under torchrun and under accelerate launch."""
    from safetensors.torch import load_file

    rows = [
        {
            "id": f"q{i}",
            "prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
            "completion": [
                {"role": "assistant", "content": str(2 * i) if i % 3 else "I don't know."}
            ],
            "weight": 0.5 + 0.25 * (i % 4),
        }
        for i in range(8)
    ]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    settings = {
        "model": {"name": str(tiny_model_dir)},
        "data": str(data),
        "lora_r": 2,
        "lora_alpha": 4,
        "lora_dropout": 0.0,
        "batch_size": 1,
        "effective_batch_size": 2,
        "epochs": 1.0,
        "learning_rate": 5e-3,
        "logging_steps": 1,
    }
    one = run_train(build_config(TrainConfig, settings), tmp_path / "one", log=lambda _: None)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(settings))
    if launcher == "torchrun":
        _torchrun("train", "--config", config, "--out", tmp_path / "two")
    else:
        cmd = [sys.executable, "-m", *ACCELERATE, "-m", "rait", "train"]
        cmd += ["--config", str(config), "--out", str(tmp_path / "two")]
        done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-4000:]
    two = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    assert (two["processes"], two["distributed"]) == (2, "MULTI_CPU")
    assert (one["processes"], one["distributed"]) == (1, "NO")
    assert two["steps"] == one["steps"] == 4
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
    a = load_file(tmp_path / "one" / "adapter" / "adapter_model.safetensors")
    b = load_file(tmp_path / "two" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=1e-4)
