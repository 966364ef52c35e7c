"""`rait report`: the HTML and Markdown report of a run (tiny pipeline run, MCQA world facts),
its figures, the answers that turned into refusals, and bad run folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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
    representation_map,
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
    # the plane, the quadrants, the knowledge map, the t-SNE, reliability
    assert page.count("data:image/png;base64,") == 5
    for heading in (
        "The Pc–Pw plane",
        "Knowledge quadrants",
        "Paired against init-refuse",
        "Paired against cor-rait",
        "The knowledge map",
        "Question representations (t-SNE) and CRSS",
        "Reliability",
        "turned into refusals",
    ):
        assert heading in page
    for method in ("init-basic", "init-refuse", "cor-rait", "craft"):
        assert f"<td>{method}</td>" in page
    assert "http://" not in page and "https://" not in page  # self-contained
    markdown = (tmp_path / "r" / "report.md").read_text()
    for png in (
        "pc_pw_plane.png",
        "quadrants.png",
        "knowledge_map.png",
        "representations_tsne.png",
        "reliability.png",
    ):
        assert f"]({png})" in markdown
        assert (tmp_path / "r" / png).read_bytes().startswith(b"\x89PNG")
    assert "| craft |" in markdown and "wf-ood (OOD) Pc↑" in markdown
    # every rate with its interval, from metrics.json
    metrics = json.loads((run / "eval" / "wf-id" / "craft" / "metrics.json").read_text())
    ci = metrics["ci"]["pc"]
    cell = f"{100 * metrics['pc']:.1f} [{100 * ci['low']:.1f}, {100 * ci['high']:.1f}]"
    assert f"<td>{cell}</td>" in page and f"| {cell} |" in markdown
    assert "paired-bootstrap interval" in page
    # the paired comparison: craft against cor-rait, its ΔTHS from the two predictions
    from rait.results import find_metrics, load_results, paired_comparisons

    pairs = paired_comparisons(load_results(find_metrics([run / "eval"])), "cor-rait")
    d = next(c for c in pairs if c["method"] == "craft" and c["test_set"] == "wf-id")["ths"]
    assert f"{100 * d['delta']:.1f} [{100 * d['interval']['low']:.1f}" in markdown


def test_knowledge_map_uses_the_knowledge_flow_and_each_methods_choices(run):
    data = knowledge_map(run, ["cor-rait", "craft", "init-basic"])
    assert data["after"] is not None and set(data["after"]) == set(data["knowledge"])
    assert set(data["kinds"]) == {"cor-rait", "craft"}
    built = [json.loads(x) for x in (run / "build" / "craft.jsonl").read_text().splitlines()]
    assert data["kinds"]["craft"] == {r["id"]: r["kind"] for r in built}


def test_representation_map_crss_matches_rait_crss_on_each_built_set(run, tiny_model_dir):
    """The report's CRSS of a method equals `rait crss` on its built set (same model, same
    representations); the t-SNE places every probed question."""
    from rait.representations import CrssConfig, run_crss

    data = representation_map(run, ["cor-rait", "craft"], tau_sim=0.5, max_points=2000)
    ids = json.loads((run / "representations" / "ids.json").read_text())
    assert data["ids"] == ids and data["xy"].shape == (len(ids), 2)
    cfg = build_config(PipelineConfig, _config(run.parent, tiny_model_dir, ["cor-rait", "craft"]))
    stage = cfg.stage_configs(run)["representations"]
    for method in ("cor-rait", "craft"):
        info = data["methods"][method]
        expected = run_crss(
            CrssConfig(
                model=stage.model,
                data=stage.data,
                built=str(run / "build" / f"{method}.jsonl"),
                tau_sim=0.5,
            )
        )
        assert info["crss"] == pytest.approx(expected["crss"])
        assert (info["n_van"], info["n_idk"]) == (expected["n_van"], expected["n_idk"])


def test_representation_map_samples_at_most_max_points(run):
    data = representation_map(run, ["cor-rait"], tau_sim=0.97, max_points=8, seed=3)
    assert len(data["ids"]) == 8 and data["n_questions"] == 16
    again = representation_map(run, ["cor-rait"], tau_sim=0.97, max_points=8, seed=3)
    assert again["ids"] == data["ids"]


def test_report_without_representations_leaves_the_tsne_out(run, tmp_path):
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    shutil.rmtree(moved / "representations")
    run_report(ReportConfig(run_dir=str(moved), out=str(tmp_path / "r")))
    page = (tmp_path / "r" / "report.html").read_text()
    assert "t-SNE" not in page and page.count("data:image/png;base64,") == 4


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda d: (d / "ids.json").write_text("[1, 2]"), "list of question ids"),
        (lambda d: (d / "ids.json").write_text("{"), "not valid JSON"),
        (lambda d: (d / "ids.json").write_text('["a"]'), r"expected \[1, hidden\]"),
        (lambda d: (d / "representations.npy").write_bytes(b"junk"), "not a NumPy array"),
    ],
)
def test_damaged_representations_name_the_file(run, tmp_path, damage, match):
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    damage(moved / "representations")
    with pytest.raises(DataError, match=match) as err:
        run_report(ReportConfig(run_dir=str(moved), out=str(tmp_path / "r")))
    assert "representations" in str(err.value)


def test_table_rows_show_every_metric_per_test_set(run):
    from rait.report import load_run

    header, body = table_rows(load_run(run)["metrics"])
    assert header[:3] == ["method", "wf-id (ID) Pc↑", "Pw↓"] and len(header) == 1 + 2 * 7
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


# --------------------------------------------------------------------------- rendering
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _pixels_of(image, colour: str) -> int:
    import numpy as np

    rgb = np.array([int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int(np.all(np.abs(image[..., :3] - rgb) < 0.04, axis=-1).sum())


@pytest.mark.skipif(
    _chromium() is None, reason="no headless Chromium (scripts/install-browser.sh installs it)"
)
def test_report_renders_in_headless_chromium(run, tmp_path):
    """A screenshot of report.html in headless Chromium shows the page and its figures: the
    kept-green and refusal-orange markers exist only inside the embedded PNGs, so they appear
    only if the browser decoded the base64 images and laid them out."""
    import subprocess

    from matplotlib.image import imread

    from rait.report import KIND_COLOURS, QUADRANT_STYLE

    paths = run_report(ReportConfig(run_dir=str(run), out=str(tmp_path / "r")))
    shot = tmp_path / "shot.png"
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1100,4200",
        f"--screenshot={shot}",
        (tmp_path / "r" / "report.html").resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), done.stderr[-2000:]
    image = imread(shot)
    assert image.shape[:2] == (4200, 1100)
    assert (image[..., :3].mean(-1) < 0.3).mean() > 0.002  # text and table lines
    assert _pixels_of(image, KIND_COLOURS["van"]) > 20
    assert _pixels_of(image, KIND_COLOURS["idk"]) > 20
    # the knowledge-quadrant bars: known → correct appears only in that figure
    assert _pixels_of(image, QUADRANT_STYLE["known_correct"][1]) > 20
    # the same page with its images cut off shows neither colour: the check can fail
    broken = tmp_path / "r" / "broken.html"
    broken.write_text(Path(paths["html"]).read_text().replace("base64,", "base64,AAAA"))
    cmd[-2], cmd[-1] = f"--screenshot={tmp_path / 'broken.png'}", broken.resolve().as_uri()
    subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert _pixels_of(imread(tmp_path / "broken.png"), KIND_COLOURS["idk"]) == 0


def test_a_named_against_row_the_run_lacks_is_an_error(run, tmp_path):
    with pytest.raises(ConfigError, match="grait: not a row of this run"):
        run_report(ReportConfig(run_dir=str(run), out=str(tmp_path / "r"), against=["grait"]))
