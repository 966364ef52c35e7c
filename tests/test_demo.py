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


def _rows(run):
    path = run / "answers" / "answers.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_demo_writes_answers_and_summary(tmp_path, tiny_model_dir, capsys):
    summary = run_demo(_config(tmp_path, tiny_model_dir))
    run = tmp_path / "run"
    rows = _rows(run)
    assert len(rows) == 6 == summary["n"]
    assert {"id", "question", "gold", "response", "answer", "correct"} <= set(rows[0])
    assert json.loads((run / "answers" / "summary.json").read_text())["n"] == 6
    for stage in ("data", "answers"):
        assert json.loads((run / stage / "stage.json").read_text())["status"] == "complete"
    probed = (run / "probe" / "knowledge.jsonl").read_text().splitlines()
    assert len(probed) == 4 and all(json.loads(r)["task"] == "oeqa" for r in probed)
    out = capsys.readouterr().out
    assert "world-facts questions" in out and "Knowledge probe of 4 training questions" in out


def test_demo_rerun_is_skipped_and_changed_config_reruns(tmp_path, tiny_model_dir, capsys):
    run_demo(_config(tmp_path, tiny_model_dir))
    capsys.readouterr()
    run_demo(_config(tmp_path, tiny_model_dir))
    out = capsys.readouterr().out
    assert "[data] up to date" in out and "[answers] up to date" in out
    assert "[probe] up to date" in out
    run_demo(_config(tmp_path, tiny_model_dir, "n_questions=4"))
    out = capsys.readouterr().out
    assert "[data] up to date" in out and "[answers] running" in out
    assert len(_rows(tmp_path / "run")) == 4


def test_demo_resumes_an_interrupted_answer_stage(tmp_path, tiny_model_dir, capsys):
    cfg = _config(tmp_path, tiny_model_dir, "batch_size=2")
    run_demo(cfg)
    answers = tmp_path / "run" / "answers" / "answers.jsonl"
    complete = answers.read_bytes()
    # simulate a kill after two rows and half of the third
    lines = complete.splitlines(keepends=True)
    answers.write_bytes(b"".join(lines[:2]) + lines[2][:7])
    manifest_path = tmp_path / "run" / "answers" / "stage.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["status"] = "running"
    manifest_path.write_text(json.dumps(manifest))
    capsys.readouterr()
    run_demo(cfg)
    out = capsys.readouterr().out
    assert "[answers] resuming" in out and "2 answers already written, 4 to go" in out
    assert sorted(answers.read_bytes().splitlines()) == sorted(complete.splitlines())


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("split=validation", "split must be one of"),
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
