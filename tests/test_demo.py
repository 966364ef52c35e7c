"""`rait demo`: the pipeline on the built-in config, its printed summary, and the CLI, on a tiny
local model (the full-size run is timed in the README)."""

from __future__ import annotations

import json

import pytest

from rait.cli import main
from rait.config import build_config
from rait.demo import (
    demo_config_path,
    format_probe_report,
    load_demo_config,
    run_demo,
)
from rait.errors import ConfigError
from rait.methods import METHODS, method_names
from rait.pipeline import PipelineConfig
from test_pipeline import _config


def test_the_built_in_demo_runs_the_headline_methods_within_the_sizes_of_a_cpu():
    cfg = load_demo_config()
    assert cfg.methods == ["van-tuning", "cor-rait", "craft", "grait"]
    assert cfg.baselines == ["init-basic", "init-refuse"]
    assert cfg.model.name == "smollm2-135m-instruct" and cfg.world_facts is not None
    assert cfg.data.sample == 200 and [t.data.sample for t in cfg.tests] == [None, 100]
    assert cfg.build["n_van"] == cfg.build["n_idk"] == 45
    assert cfg.against == ["init-refuse", "cor-rait"]


def test_demo_all_runs_every_method_in_the_same_run_directory():
    cfg = load_demo_config(all_methods=True)
    assert cfg.methods == method_names(aliases=False)  # every rule once, in the papers' order
    assert set(cfg.methods) | {"craft-no-flow"} == set(METHODS)  # no-flow is CorCer-RAIT
    focused = load_demo_config()
    assert cfg.run_dir == focused.run_dir  # one run directory: unchanged stages are reused
    assert (cfg.train, cfg.build, cfg.tests) == (focused.train, focused.build, focused.tests)
    with pytest.raises(ConfigError, match="leave out --methods"):
        load_demo_config(overrides=["methods=[craft]"], all_methods=True)


def _tiny_demo(tmp_path, model_dir, methods=("cor-rait", "van-tuning")):
    return build_config(PipelineConfig, _config(tmp_path, model_dir, list(methods)))


def test_demo_runs_the_pipeline_and_prints_the_summary(tmp_path, tiny_model_dir, capsys):
    cfg = _tiny_demo(tmp_path, tiny_model_dir)
    results = run_demo(cfg)
    run = tmp_path / "run"
    assert {r["method"] for r in results["rows"]} == {
        "init-basic",
        "init-refuse",
        "cor-rait",
        "van-tuning",
    }
    out = capsys.readouterr().out
    assert "Knowledge probe of 16 training questions (MCQA" in out
    assert "| cor-rait |" in out and "wf-ood (OOD) Pc↑" in out
    assert "wf-id, wrong → refused: " in out and "wf-id, correct → refused: " in out
    assert f"Run directory: {run}" in out
    assert f"Report: {run / 'report' / 'report.html'}" in out
    assert (run / "report" / "report.md").is_file()
    run_demo(cfg)
    again = capsys.readouterr().out
    assert "running" not in again and "[probe] up to date" in again


def test_probe_report_histogram_and_extremes(tmp_path):
    rows = [
        {"id": f"q{i}", "task": "oeqa", "mu": mu, "sigma": 0.5, "answers": ["a", "b"]}
        for i, mu in enumerate([0.0, 0.05, 0.5, 1.0])
    ]
    path = tmp_path / "knowledge.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = format_probe_report(path)
    assert "Knowledge probe of 4 training questions (OEQA, 2 samples each)" in text
    assert "mean µ 0.39, known (µ ≥ 0.5) 50%" in text
    assert "µ histogram (0-0.1 ... 0.9-1): 2 0 0 0 0 1 0 0 0 1" in text
    assert "most known: q3" in text and "least known: q0" in text


def test_cli_demo_overrides_reach_the_config(tmp_path, monkeypatch):
    seen = {}

    def fake_run(cfg, n_examples=6):
        seen["cfg"] = cfg
        return {}

    monkeypatch.setattr("rait.cli.run_demo", fake_run)  # where the CLI calls it
    argv = ["demo", "--run-dir", str(tmp_path / "r"), "--n-questions", "7"]
    argv += ["--methods", "craft", "grait", "--set", "build.n_van=8"]
    assert main(argv) == 0
    cfg = seen["cfg"]
    assert cfg.run_dir == str(tmp_path / "r") and cfg.methods == ["craft", "grait"]
    assert [t.data.sample for t in cfg.tests] == [7, 7] and cfg.build["n_van"] == 8


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n-questions", "0"], "--n-questions must be positive"),
        (["--methods", "craft", "crafty"], "unknown method 'crafty'"),
        (["--set", "train.epochs=many"], "train.epochs: expected a number"),
    ],
)
def test_cli_demo_bad_settings_are_one_error_line(tmp_path, capsys, argv, message):
    assert main(["demo", "--run-dir", str(tmp_path / "run"), *argv]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "run").exists()


def test_cli_demo_bad_model_is_one_error_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code = main(
        [
            "demo",
            "--run-dir",
            str(tmp_path / "run"),
            "--model",
            "no-such-org/no-model",
            "--set",
            "world_facts.n_cities=30",
            "--n-questions",
            "2",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rait: error: cannot load model 'no-such-org/no-model'")
    assert "Traceback" not in err


def test_the_demo_config_is_the_shipped_file():
    from rait.config import load_yaml

    path = demo_config_path()
    assert path.name == "demo.yaml" and path.parent.name == "configs"
    data = load_yaml(path)
    assert data["methods"] == ["van-tuning", "cor-rait", "craft", "grait"]
    assert load_demo_config().methods == data["methods"]
