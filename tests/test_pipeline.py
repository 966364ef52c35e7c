"""`rait run`: the whole pipeline from one YAML on a tiny random model (MCQA world facts, whose
µ sits near 1/4, so both sides of τ = 0.25 are populated): outputs, caching, reuse of the shared
stages, resuming, and bad configs."""

from __future__ import annotations

import json

import pytest
import yaml

from rait.cli import main
from rait.config import build_config
from rait.errors import ConfigError
from rait.pipeline import PipelineConfig, load_pipeline_config, run_pipeline

TINY_TRAIN = {
    "lora_r": 2,
    "lora_alpha": 4,
    "lora_dropout": 0.0,
    "batch_size": 2,
    "effective_batch_size": 2,
    "epochs": 1.0,
    "learning_rate": 5e-3,
    "save_steps": 100,
}


def _config(tmp_path, model_dir, methods, **sections) -> dict:
    config = {
        "run_dir": str(tmp_path / "run"),
        "model": {"name": str(model_dir)},
        "world_facts": {"task": "mcqa", "n_cities": 60},
        "data": {"format": "world_facts", "split": "train", "sample": 16},
        "shots": {"format": "world_facts", "split": "dev"},
        "tests": [
            {
                "name": "wf-id",
                "role": "id",
                "data": {"format": "world_facts", "split": "id_test", "sample": 5},
            },
            {
                "name": "wf-ood",
                "role": "ood",
                "data": {"format": "world_facts", "split": "ood_test", "sample": 5},
            },
        ],
        "methods": methods,
        "probe": {"n_samples": 2, "n_shots": 1, "rtuning_u_samples": 2},
        # MCQA's σ is a negative entropy-like score: -100 lets every question through
        "rehearse": {"min_mu": 0.0, "min_sigma": -100.0, "size": 4, "train": TINY_TRAIN},
        "influence": {
            "tau_mu": 0.25,
            "warmup_min_mu": 0.0,
            "warmup_min_sigma": -100.0,
            "warmup_size": 4,
            "projection_dim": 16,
            "batch_size": 4,
            "train": TINY_TRAIN,
        },
        "build": {"n_van": 4, "n_idk": 2, "tau_mu": 0.25},
        "train": TINY_TRAIN,
        "eval": {"max_new_tokens": 4, "batch_size": 4},
    }
    config.update(sections)
    return config


def _write(tmp_path, config, name="run.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _run(path, *overrides):
    return run_pipeline(load_pipeline_config(str(path), list(overrides)), log=print)


ALL_KINDS = ["cor-rait", "rtuning-u", "craft", "grait"]


def test_run_every_stage_then_rerun_does_nothing(tmp_path, tiny_model_dir, capsys):
    path = _write(tmp_path, _config(tmp_path, tiny_model_dir, ALL_KINDS))
    results = _run(path)
    run = tmp_path / "run"
    assert (run / "rehearse" / "knowledge_after.jsonl").is_file()
    for folder in ("data", "probe", "representations", "rehearse/train", "influence/scores"):
        assert json.loads((run / folder / "stage.json").read_text())["status"] == "complete"
    rows = [(r["method"], r["test_set"]) for r in results["rows"]]
    expected_methods = ["init-basic", "init-refuse", *ALL_KINDS]
    assert sorted(rows) == sorted((m, t) for m in expected_methods for t in ("wf-id", "wf-ood"))
    for method in ALL_KINDS:
        built = [
            json.loads(x) for x in (run / "build" / f"{method}.jsonl").read_text().splitlines()
        ]
        assert built and all(r["method"] == method for r in built)
        assert (run / "train" / method / "adapter" / "adapter_config.json").is_file()
        for test in ("wf-id", "wf-ood"):
            metrics = json.loads((run / "eval" / test / method / "metrics.json").read_text())
            assert metrics["n"] == 5 and metrics["method"] == method
            assert metrics["adapter"].endswith(f"train/{method}/adapter")
    padding = json.loads((run / "eval" / "wf-id" / "rtuning-u" / "stage.json").read_text())
    assert padding["config"]["confidence"] == "padding"
    grait_rows = [json.loads(x) for x in (run / "build" / "grait.jsonl").read_text().splitlines()]
    assert all("i_ref" in r for r in grait_rows)
    probed = [json.loads(x) for x in (run / "probe" / "knowledge.jsonl").read_text().splitlines()]
    assert len(probed) == 16 and all("rtuning_u_entropy" in r for r in probed)
    assert json.loads((run / "results.json").read_text())["rows"] == results["rows"]
    table = (run / "results.md").read_text()
    assert "| grait |" in table and "wf-ood (OOD) Pc↑" in table
    capsys.readouterr()

    again = _run(path)
    out = capsys.readouterr().out
    assert "running" not in out and "[probe] up to date" in out
    for method in ALL_KINDS:
        assert f"[train] up to date, skipped ({run / 'train' / method})" in out
    assert again["rows"] == results["rows"]


def test_a_vacuous_draw_is_repeated_by_the_run(tmp_path, tiny_model_dir, capsys):
    """Van-Tuning asked for N_van + N_idk = 16 of a 16-question D_src draws all of it: the run
    logs the build's warning, repeats it under the results table and keeps it in results.json
    (issue 18)."""
    config = _config(tmp_path, tiny_model_dir, ["van-tuning"], representations=None)
    config["build"] = {"n_van": 12, "n_idk": 4}
    results = _run(_write(tmp_path, config))
    (warning,) = results["warnings"]
    assert warning.startswith("build van-tuning: van-tuning N_van+N_idk: the random draw is")
    out = capsys.readouterr().out
    assert f"[run] warning: {warning}" in out
    assert out.index("Warnings:") > out.index("| van-tuning |")  # repeated after the table
    assert f"- {warning}" in (tmp_path / "run" / "results.md").read_text()


def test_run_check_counts_d_src_and_warns_before_the_probe(tmp_path, tiny_model_dir, capsys):
    """``rait run --check`` builds every stage's config, counts local data and warns when
    D_src is no larger than the set drawn from it; it runs and writes nothing."""
    questions = tmp_path / "train.jsonl"
    rows = [{"id": f"q{i}", "question": f"Q{i}?", "answers": [f"a{i}"]} for i in range(30)]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = _config(tmp_path, tiny_model_dir, ["cor-rait", "van-tuning"])
    config["data"] = {"format": "jsonl", "path": str(questions)}
    config["shots"] = {"format": "jsonl", "path": str(questions)}
    path = _write(tmp_path, config)
    assert main(["run", str(path), "--check", "--set", "build.n_van=20"]) == 0
    out = capsys.readouterr().out
    assert f"D_src: jsonl ({questions}): 30 questions, every one probed" in out
    assert "N_van 20 + N_idk 2 = 22" in out and "warning" not in out
    assert "test wf-id (id): world_facts id_test" in out and out.rstrip().endswith("config OK")
    assert main(["run", str(path), "--check", "--set", "build.n_van=28"]) == 0
    out = capsys.readouterr().out
    assert "warning: D_src has 30 questions, no more than the 30 = N_van + N_idk" in out
    assert out.rstrip().endswith("config OK, 1 warning(s)")
    assert not (tmp_path / "run").exists()  # nothing run, nothing written
    assert main(["run", str(path), "--check", "--set", "build.n_van=-1"]) == 2


def test_representations_null_skips_the_stage(tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir, [], representations=None)
    config["baselines"] = ["init-basic"]
    results = _run(_write(tmp_path, config))
    assert "representations" not in results["seconds"]
    assert not (tmp_path / "run" / "representations").exists()


def test_a_new_method_reuses_the_probe_and_the_shared_stages(tmp_path, tiny_model_dir, capsys):
    path = _write(tmp_path, _config(tmp_path, tiny_model_dir, ["cor-rait"]))
    _run(path)
    capsys.readouterr()
    results = _run(path, "methods=[cor-rait, van-tuning]")
    out = capsys.readouterr().out
    run = tmp_path / "run"
    assert "[probe] up to date" in out
    assert f"[train] up to date, skipped ({run / 'train' / 'cor-rait'})" in out
    assert "[eval] running van-tuning" in out and "[eval] running cor-rait" not in out
    assert {r["method"] for r in results["rows"]} == {
        "init-basic",
        "init-refuse",
        "cor-rait",
        "van-tuning",
    }


def test_a_killed_run_resumes_at_the_stage_it_was_in(tmp_path, tiny_model_dir, monkeypatch, capsys):
    import rait.pipeline

    path = _write(tmp_path, _config(tmp_path, tiny_model_dir, ["cor-rait", "van-tuning"]))
    original = rait.pipeline.run_train
    calls = {"n": 0}

    def dying(cfg, out, log=print):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(cfg, out, log=log)

    monkeypatch.setattr(rait.pipeline, "run_train", dying)
    with pytest.raises(KeyboardInterrupt):
        _run(path)
    monkeypatch.setattr(rait.pipeline, "run_train", original)
    capsys.readouterr()
    _run(path)
    out = capsys.readouterr().out
    assert "[probe] up to date" in out
    assert "[train] up to date" in out  # cor-rait, finished before the kill
    assert (tmp_path / "run" / "train" / "van-tuning" / "adapter").is_dir()


def test_cli_run_with_overrides(tmp_path, tiny_model_dir, capsys):
    path = _write(tmp_path, _config(tmp_path, tiny_model_dir, ["cor-rait"]))
    other = tmp_path / "other"
    assert main(["run", str(path), "--run-dir", str(other), "--methods", "van-tuning"]) == 0
    assert (other / "train" / "van-tuning" / "adapter").is_dir()
    assert not (other / "train" / "cor-rait").exists()
    assert "| van-tuning |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"methods": ["cor-rait", "no-such"]}, "unknown method 'no-such'"),
        ({"methods": [], "baselines": []}, "nothing to run"),
        ({"baselines": ["init-basic", "van"]}, "baselines: unknown 'van'"),
        ({"methods": ["cor-rait", "cor-rait"]}, "listed twice"),
        ({"tests": []}, "at least one test set"),
        ({"probe": {"data": {"path": "x"}}}, "probe.data is set by the pipeline"),
        ({"train": {"model": {"name": "x"}}}, "train.model is set by the pipeline"),
        ({"eval": {"method": "x"}}, "eval.method is set by the pipeline"),
        ({"representations": {"model": {"name": "x"}}}, "representations.model is set by"),
        ({"representations": {"batch_size": 0}}, "representations: batch_size must be positive"),
        ({"build": {"knowledge": "k.jsonl"}}, "build.knowledge is set by the pipeline"),
        ({"probe": {"n_sample": 3}}, "unknown key.*probe.n_sample"),
        ({"train": {"epochs": "many"}}, "train.epochs: expected a number"),
        ({"build": {"tau_mu": 2.0}}, "tau_mu must be in"),
        ({"world_facts": None}, "world_facts data source has no path"),
        ({"bogus": 1}, "unknown key.*bogus"),
        ({"against": ["grait"]}, "against: 'grait' is not a row of this run"),
        ({"eval": {"bootstrap": {"n_resamples": 5}}}, "bootstrap.n_resamples must be"),
    ],
)
def test_bad_configs_are_one_clear_error_before_anything_runs(
    tmp_path, tiny_model_dir, change, match
):
    config = _config(tmp_path, tiny_model_dir, ["cor-rait"])
    config.update(change)
    path = _write(tmp_path, config)
    with pytest.raises(ConfigError, match=match):
        _run(path)
    assert not (tmp_path / "run").exists()


def test_bad_test_sets(tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir, ["cor-rait"])
    config["tests"][1]["name"] = "wf-id"
    with pytest.raises(ConfigError, match="same name"):
        _run(_write(tmp_path, config))
    config["tests"][1] = {"name": "x", "role": "far", "data": {"format": "world_facts"}}
    with pytest.raises(ConfigError, match="role must be id or ood"):
        _run(_write(tmp_path, config))


def test_cli_bad_config_is_one_error_line(tmp_path, tiny_model_dir, capsys):
    config = _config(tmp_path, tiny_model_dir, ["no-such"])
    assert main(["run", str(_write(tmp_path, config))]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown method 'no-such'" in err[0]


def _tensorboard_scalars(folder) -> dict[str, list[float]]:
    """Every scalar of the TensorBoard event files under ``folder`` (TFRecord frames of
    tensorboardX's Event protos)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[float]] = {}
    for path in sorted(folder.rglob("events.out.tfevents.*")):
        data = path.read_bytes()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at : at + 8])
            event = Event.FromString(data[at + 12 : at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


@pytest.mark.parametrize("logger", ["tensorboard", "wandb"])
def test_report_to_logs_each_training_through_rait_run(
    tmp_path, tiny_model_dir, monkeypatch, logger
):
    """`train.report_to` reaches the trainer: TensorBoard event files with the training loss
    next to each method's checkpoints; an offline W&B run with the loss in its history."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    train = TINY_TRAIN | {"report_to": logger, "logging_steps": 1}
    config = _config(tmp_path, tiny_model_dir, ["cor-rait"], train=train, representations=None)
    summary = _run(_write(tmp_path, config))
    trained = json.loads(
        (tmp_path / "run" / "train" / "cor-rait" / "train_summary.json").read_text()
    )
    losses = [e["loss"] for e in trained["log_history"] if "loss" in e]
    assert losses and summary["rows"]
    if logger == "tensorboard":
        scalars = _tensorboard_scalars(tmp_path / "run" / "train" / "cor-rait")
        assert scalars["train/loss"] == pytest.approx(losses, rel=1e-5)
    else:
        runs = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(runs) == 1 and b"train/loss" in runs[0].read_bytes()


@pytest.mark.parametrize(
    ("report_to", "match"),
    [
        ("tensorbord", "unknown logger 'tensorbord'"),
        (" , ", "report_to is empty"),
    ],
)
def test_bad_report_to_is_one_clear_error(tmp_path, tiny_model_dir, report_to, match):
    config = _config(
        tmp_path, tiny_model_dir, ["cor-rait"], train=TINY_TRAIN | {"report_to": report_to}
    )
    with pytest.raises(ConfigError, match=match):
        build_config(PipelineConfig, config)


def test_report_to_a_logger_that_is_not_installed(tmp_path, tiny_model_dir, monkeypatch):
    import transformers.integrations.integration_utils as hf

    monkeypatch.setattr(hf, "get_available_reporting_integrations", lambda: [])
    config = _config(
        tmp_path, tiny_model_dir, ["cor-rait"], train=TINY_TRAIN | {"report_to": "wandb"}
    )
    with pytest.raises(ConfigError, match=r"wandb is not installed: pip install wandb"):
        build_config(PipelineConfig, config)


def _answers(run):
    out = {}
    for path in sorted(run.glob("eval/*/*/predictions.jsonl")):
        out[str(path.relative_to(run))] = sorted(path.read_text().splitlines())
    return out


def test_parallel_shards_and_train_launcher_give_the_single_process_run(
    tmp_path, tiny_model_dir, capfd
):
    """`parallel`: the probe and every evaluation as 2 shard processes then merged, the
    training under torchrun with 2 CPU processes: the same knowledge, answers and adapter."""
    import sys

    from safetensors.torch import load_file

    train = TINY_TRAIN | {"batch_size": 1}  # 1 sample per process and step, 2 per step
    single = _config(
        tmp_path / "one", tiny_model_dir, ["cor-rait"], representations=None, train=train
    )
    _run(_write(tmp_path, single, "one.yaml"))
    launcher = f"{sys.executable} -m torch.distributed.run --nproc_per_node 2 --standalone"
    parallel = _config(
        tmp_path / "two",
        tiny_model_dir,
        ["cor-rait"],
        representations=None,
        train=train,
        parallel={"shards": 2, "train_launcher": launcher},
    )
    capfd.readouterr()
    results = _run(_write(tmp_path, parallel, "two.yaml"))
    out = capfd.readouterr().out
    assert "[probe] merged 16 rows from the shards" in out
    assert out.count("answers from the shards") == 6  # 3 rows × 2 test sets
    one, two = tmp_path / "one" / "run", tmp_path / "two" / "run"
    assert sorted((two / "probe" / "knowledge.jsonl").read_text().splitlines()) == sorted(
        (one / "probe" / "knowledge.jsonl").read_text().splitlines()
    )
    assert _answers(two) == _answers(one)
    trained = json.loads((two / "train" / "cor-rait" / "train_summary.json").read_text())
    assert trained["processes"] == 2
    a = load_file(one / "train" / "cor-rait" / "adapter" / "adapter_model.safetensors")
    b = load_file(two / "train" / "cor-rait" / "adapter" / "adapter_model.safetensors")
    for key in a:
        assert (a[key] - b[key]).abs().max() < 1e-5
    assert (two / "launch" / "probe.shard1of2.log").is_file()
    assert len(results["rows"]) == 6


def test_a_failed_launched_process_is_one_error_with_its_log(tmp_path, tiny_model_dir):
    import sys

    from rait.errors import LaunchError

    launcher = f"{sys.executable} -m torch.distributed.run --nproc_per_node 2 --standalone"
    config = _config(tmp_path, tiny_model_dir, ["cor-rait"], parallel={"train_launcher": launcher})
    # TINY_TRAIN's one step of 2 samples cannot be split over 2 processes of batch 2
    with pytest.raises(LaunchError, match=r"rait: error: effective_batch_size 2 is not a multiple"):
        _run(_write(tmp_path, config))

    config = _config(tmp_path, tiny_model_dir, ["cor-rait"], parallel={"train_launcher": "false"})
    with pytest.raises(LaunchError, match=r"exited with 1: false -m rait train.*train-cor-rait"):
        _run(_write(tmp_path, config))


@pytest.mark.parametrize(
    ("parallel", "match"),
    [
        ({"shards": 0}, "parallel.shards must be >= 1"),
        ({"shards": 2, "devices": ["0"]}, "1 device sets for 2 shard"),
        ({"train_launcher": "  "}, "parallel.train_launcher is empty"),
        ({"train_launcher": "no-such-launcher-xyz"}, "cannot start the launcher"),
    ],
)
def test_bad_parallel_settings(tmp_path, tiny_model_dir, parallel, match):
    from rait.errors import RaitError

    config = _config(tmp_path, tiny_model_dir, ["cor-rait"], parallel=parallel)
    with pytest.raises(RaitError, match=match):
        _run(_write(tmp_path, config))


def test_devices_with_one_shard_run_probe_and_eval_in_their_own_process(
    tmp_path, tiny_model_dir, capfd
):
    config = _config(tmp_path, tiny_model_dir, [], representations=None, parallel={"devices": [""]})
    config["baselines"] = ["init-basic"]
    _run(_write(tmp_path, config))
    out = capfd.readouterr().out
    assert "[probe] 1 shard process(es) running" in out and "[probe] up to date, skipped" in out
    run = tmp_path / "run"
    assert (run / "launch" / "probe.shard0of1.log").is_file()
    assert "[probe] running" in (run / "launch" / "probe.shard0of1.log").read_text()
    assert len((run / "probe" / "knowledge.jsonl").read_text().splitlines()) == 16


def test_devices_run_rehearse_and_influence_in_their_own_process(tmp_path, tiny_model_dir, capfd):
    """With `parallel.devices`, CRaFT's rehearsal and GRAIT's influence run as their own
    `python -m rait` process first (the in-process call then only reads their results): the
    same knowledge flow and influence scores as in-process, and a rerun starts nothing."""
    methods = ["craft", "grait"]
    single = _config(tmp_path / "one", tiny_model_dir, methods, representations=None)
    single["baselines"] = ["init-basic"]
    _run(_write(tmp_path, single, "one.yaml"))
    config = _config(
        tmp_path / "two", tiny_model_dir, methods, representations=None, parallel={"devices": [""]}
    )
    config["baselines"] = ["init-basic"]
    path = _write(tmp_path, config, "two.yaml")
    capfd.readouterr()
    _run(path)
    out = capfd.readouterr().out
    assert "-m rait rehearse --config" in out and "-m rait influence --config" in out
    one, two = tmp_path / "one" / "run", tmp_path / "two" / "run"
    for name in ("rehearse/knowledge_after.jsonl", "influence/scores/influence.jsonl"):
        assert (two / name).read_text() == (one / name).read_text()
    assert "[rehearse]" in (two / "launch" / "rehearse.log").read_text()
    _run(path)
    again = capfd.readouterr().out
    assert "-m rait rehearse" not in again and "-m rait influence" not in again
