"""The demo's stages on a tiny local model: outputs, caching, resuming, bad settings."""

from __future__ import annotations

import json

import pytest

from rait.cli import main
from rait.config import load_config
from rait.demo import DemoConfig, run_demo
from rait.errors import ConfigError


def _config(tmp_path, tiny_model_dir, *extra):
    return load_config(
        DemoConfig,
        overrides=[
            f"run_dir={tmp_path / 'run'}",
            f"model.name={tiny_model_dir}",
            "n_questions=6",
            "max_new_tokens=4",
            "world_facts.n_cities=60",
            "probe_questions=4",
            "n_samples=2",
            *extra,
        ],
    )


def _predictions(run, split="id_test", method="init-refuse"):
    path = run / "eval" / split / method / "predictions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_demo_writes_probe_baselines_and_results_table(tmp_path, tiny_model_dir, capsys):
    results = run_demo(_config(tmp_path, tiny_model_dir))
    run = tmp_path / "run"
    for split in ("id_test", "ood_test"):
        for method in ("init-basic", "init-refuse"):
            rows = _predictions(run, split, method)
            assert len(rows) == 6
            assert {"id", "response", "answer", "verdict", "confidence"} <= set(rows[0])
            manifest = json.loads((run / "eval" / split / method / "stage.json").read_text())
            assert manifest["status"] == "complete"
    assert [(r["method"], r["test_set"]) for r in results["rows"]] == [
        ("init-basic", "world-facts id_test"),
        ("init-basic", "world-facts ood_test"),
        ("init-refuse", "world-facts id_test"),
        ("init-refuse", "world-facts ood_test"),
    ]
    basic_id = results["rows"][0]
    assert basic_id["ths"] in (0.0, None)  # Init-Basic is its own base line
    assert (run / "results.md").read_text().startswith("**")
    assert json.loads((run / "results.json").read_text()) == results
    probed = (run / "probe" / "knowledge.jsonl").read_text().splitlines()
    assert len(probed) == 4 and all(json.loads(r)["task"] == "oeqa" for r in probed)
    out = capsys.readouterr().out
    assert "Knowledge probe of 4 training questions" in out
    assert "| init-refuse |" in out and "world-facts ood_test (OOD) Pc↑" in out


def test_demo_rerun_is_skipped_and_changed_config_reruns(tmp_path, tiny_model_dir, capsys):
    run_demo(_config(tmp_path, tiny_model_dir))
    capsys.readouterr()
    run_demo(_config(tmp_path, tiny_model_dir))
    out = capsys.readouterr().out
    assert "[data] up to date" in out and "[probe] up to date" in out
    assert out.count("predictions up to date") == 4 and "running" not in out
    run_demo(_config(tmp_path, tiny_model_dir, "n_questions=4"))
    out = capsys.readouterr().out
    assert "[data] up to date" in out and "[eval] running init-basic" in out
    assert len(_predictions(tmp_path / "run")) == 4


def test_demo_resumes_an_interrupted_evaluation(tmp_path, tiny_model_dir, capsys):
    cfg = _config(tmp_path, tiny_model_dir, "batch_size=2")
    run_demo(cfg)
    stage = tmp_path / "run" / "eval" / "id_test" / "init-refuse"
    predictions = stage / "predictions.jsonl"
    complete = predictions.read_bytes()
    # simulate a kill after two rows and half of the third
    lines = complete.splitlines(keepends=True)
    predictions.write_bytes(b"".join(lines[:2]) + lines[2][:7])
    manifest = json.loads((stage / "stage.json").read_text())
    manifest["status"] = "running"
    (stage / "stage.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    run_demo(cfg)
    out = capsys.readouterr().out
    assert "[eval] resuming init-refuse" in out
    assert sorted(predictions.read_bytes().splitlines()) == sorted(complete.splitlines())


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("n_examples=-1", "n_examples must be >= 0"),
        ("n_questions=0", "n_questions must be positive"),
        ("match=fuzzy", "match must be one of"),
        ("world_facts.task=mcqa", "world_facts.task must be oeqa"),
        ("n_questions=many", "n_questions: expected an integer"),
        ("no_such_key=1", "unknown key"),
    ],
)
def test_demo_bad_settings(tmp_path, tiny_model_dir, override, match):
    with pytest.raises(ConfigError, match=match):
        _config(tmp_path, tiny_model_dir, override)


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
