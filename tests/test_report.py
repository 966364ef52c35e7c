"""`rait report`: the HTML and Markdown report of a run (tiny pipeline run, MCQA world facts),
its figures, the answers that turned into refusals, and bad run folders."""

from __future__ import annotations

import json
import shutil

import pytest

from rait.cli import main
from rait.config import build_config
from rait.errors import ConfigError, DataError
from rait.pipeline import PipelineConfig, run_pipeline
from rait.report import (
    ReportConfig,
    changed_answers,
    format_changed_answers,
    knowledge_map,
    run_report,
    table_rows,
)
from test_pipeline import _config


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):
    base = tmp_path_factory.mktemp("report-run")
    cfg = build_config(PipelineConfig, _config(base, tiny_model_dir, ["cor-rait", "craft"]))
    run_pipeline(cfg, log=lambda *_: None)
    return base / "run"


def test_report_has_the_table_every_figure_and_the_examples(run, tmp_path):
    paths = run_report(ReportConfig(run_dir=str(run), out=str(tmp_path / "r")))
    page = (tmp_path / "r" / "report.html").read_text()
    assert paths["html"].endswith("report.html") and page.startswith("<!DOCTYPE html>")
    assert page.count("data:image/png;base64,") == 3  # plane, knowledge map, reliability
    for heading in ("The Pc–Pw plane", "The knowledge map", "Reliability", "turned into refusals"):
        assert heading in page
    for method in ("init-basic", "init-refuse", "cor-rait", "craft"):
        assert f"<td>{method}</td>" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    markdown = (tmp_path / "r" / "report.md").read_text()
    for png in ("pc_pw_plane.png", "knowledge_map.png", "reliability.png"):
        assert f"]({png})" in markdown
        assert (tmp_path / "r" / png).read_bytes().startswith(b"\x89PNG")
    assert "| craft |" in markdown and "wf-ood (OOD) Pc↑" in markdown


def test_knowledge_map_uses_the_knowledge_flow_and_each_methods_choices(run):
    data = knowledge_map(run, ["cor-rait", "craft", "init-basic"])
    assert data["after"] is not None and set(data["after"]) == set(data["knowledge"])
    assert set(data["kinds"]) == {"cor-rait", "craft"}
    built = [json.loads(x) for x in (run / "build" / "craft.jsonl").read_text().splitlines()]
    assert data["kinds"]["craft"] == {r["id"]: r["kind"] for r in built}


def test_table_rows_show_every_metric_per_test_set(run):
    from rait.report import load_run

    header, body = table_rows(load_run(run)["metrics"])
    assert header[:3] == ["method", "wf-id (ID) Pc↑", "Pw↓"] and len(header) == 1 + 2 * 6
    assert [r[0] for r in body][:2] == ["init-basic", "init-refuse"]
    assert all(len(r) == len(header) for r in body)


def test_a_moved_run_directory_still_reports(run, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    results = json.loads((moved / "results.json").read_text())
    for row in results["rows"]:
        row["source"] = "/nowhere/" + row["source"].rsplit("/eval/", 1)[1]
    (moved / "results.json").write_text(json.dumps(results))
    assert run_report(ReportConfig(run_dir=str(moved)))["html"] == str(
        moved / "report" / "report.html"
    )


def _metrics(tmp_path, method, verdicts):
    folder = tmp_path / method
    folder.mkdir()
    rows = [
        {"id": k, "answer": f"{method} says {k}", "gold": [f"gold {k}"], "verdict": v}
        for k, v in verdicts.items()
    ]
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"method": method, "test_set": "t", "role": "id", "_dir": folder}


def test_changed_answers_count_wrong_and_correct_turned_refused(tmp_path):
    metrics = [
        _metrics(tmp_path, "init-basic", {"q1": "wrong", "q2": "wrong", "q3": "correct"}),
        _metrics(tmp_path, "init-refuse", {"q1": "wrong", "q2": "correct", "q3": "wrong"}),
        _metrics(tmp_path, "cor-rait", {"q1": "refused", "q2": "refused", "q3": "wrong"}),
        _metrics(tmp_path, "craft", {"q1": "refused", "q2": "correct", "q3": "refused"}),
    ]
    changed = changed_answers(metrics, n_examples=5)
    assert changed["base"] == "init-refuse" and changed["methods"] == ["cor-rait", "craft"]
    assert changed["counts"] == {"wrong": 3, "correct": 1}
    assert changed["questions"] == {"wrong": 2, "correct": 1}
    (example,) = changed["examples"]["correct"]
    assert example == {
        "id": "q2",
        "method": "cor-rait",
        "methods": ["cor-rait"],
        "before": "init-refuse says q2",
        "after": "cor-rait says q2",
        "gold": "gold q2",
    }
    q1 = next(e for e in changed["examples"]["wrong"] if e["id"] == "q1")
    assert q1["methods"] == ["cor-rait", "craft"]  # one example per question
    text = format_changed_answers(changed)
    assert "t, wrong → refused: 3 answers of 2 methods, 2 questions" in text
    assert "q2: base 'init-refuse says q2' → 'cor-rait says q2' (cor-rait); gold 'gold q2'" in text
    assert changed_answers(metrics[:2], 5) is None  # no trained model
    assert format_changed_answers(None) == ""


def test_not_a_run_directory(tmp_path):
    with pytest.raises(ConfigError, match=r"has no results\.json"):
        run_report(ReportConfig(run_dir=str(tmp_path)))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "results.json:1: not valid JSON"),
        ('{"rows": []}', "field 'rows': no rows"),
        ('{"rows": [{"method": "x"}]}', r"field 'rows\[0\].source': missing"),
        (
            '{"rows": [{"source": "/no/metrics.json", "method": "m", "test_set": "t"}]}',
            r"cannot read the metrics file /no/metrics\.json",
        ),
    ],
)
def test_bad_results_file(tmp_path, text, match):
    (tmp_path / "results.json").write_text(text)
    with pytest.raises(DataError, match=match):
        run_report(ReportConfig(run_dir=str(tmp_path)))


def test_cli_report(run, tmp_path, capsys):
    assert main(["report", str(run), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "r" / "report.html") in out
    assert main(["report", str(tmp_path / "empty")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no results.json" in err[0]
