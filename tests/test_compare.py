"""`rait compare`: several runs in one table and one Pc–Pw plane, labelled per run."""

from __future__ import annotations

import json
import shutil

import pytest

from rait.cli import main
from rait.compare import CompareConfig, compare_metrics, run_compare
from rait.config import build_config
from rait.errors import ConfigError
from rait.pipeline import PipelineConfig, run_pipeline
from test_pipeline import _config


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir):
    base = tmp_path_factory.mktemp("compare-runs")
    config = _config(base, tiny_model_dir, ["cor-rait"], representations=None)
    config["baselines"] = ["init-basic"]
    run_pipeline(build_config(PipelineConfig, config), log=lambda *_: None)
    first = base / "run"
    second = base / "seed1"
    shutil.copytree(first, second)  # a second run: the same rows, another folder
    return first, second


def test_rows_of_every_run_labelled_with_their_own_ths(runs):
    first, second = runs
    metrics = compare_metrics(CompareConfig(runs=[str(first), str(second)]))
    labels = [m["method"] for m in metrics if m["test_set"] == "wf-id"]
    assert labels == [
        "run · init-basic",
        "run · cor-rait",
        "seed1 · init-basic",
        "seed1 · cor-rait",
    ]
    own = json.loads((first / "eval" / "wf-id" / "cor-rait" / "metrics.json").read_text())
    row = next(m for m in metrics if m["method"] == "run · cor-rait" and m["test_set"] == "wf-id")
    assert row["ths"] == own["ths"] and row["run"] == "run" and row["base_method"] == "cor-rait"


def test_compare_writes_table_plane_and_json(runs, tmp_path):
    first, second = runs
    paths = run_compare(
        CompareConfig(runs=[str(first), str(second)], names=["A", "B"], out=str(tmp_path / "c"))
    )
    markdown = (tmp_path / "c" / "compare.md").read_text()
    assert "| A · cor-rait |" in markdown and "| B · init-basic |" in markdown
    assert "](pc_pw_plane.png)" in markdown
    page = (tmp_path / "c" / "compare.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and "<td>B · cor-rait</td>" in page
    data = json.loads((tmp_path / "c" / "compare.json").read_text())
    assert [r["name"] for r in data["runs"]] == ["A", "B"]
    assert {(r["run"], r["method"]) for r in data["rows"]} == {
        (run, method) for run in "AB" for method in ("init-basic", "cor-rait")
    }
    assert paths["html"].endswith("compare.html")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"runs": ["x"]}, "at least two run directories"),
        ({"runs": ["a", "b"], "names": ["only-one"]}, "1 names for 2 runs"),
        ({"runs": ["a/run", "b/run"]}, "two runs are named run: tell them apart with --names"),
        ({"runs": ["a", "b"], "names": ["x", " "]}, "a run name is empty"),
    ],
)
def test_bad_compare_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CompareConfig(**kwargs).validate()


def test_a_folder_that_is_not_a_run_is_one_clear_error(runs, tmp_path):
    with pytest.raises(ConfigError, match=r"has no results\.json"):
        compare_metrics(CompareConfig(runs=[str(runs[0]), str(tmp_path)]))


def test_cli_compare(runs, tmp_path, capsys):
    first, second = runs
    out = tmp_path / "c"
    assert main(["compare", str(first), str(second), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| seed1 · cor-rait |" in printed and "compare.html" in printed
    assert main(["compare", str(first)]) == 2
    assert "at least two run directories" in capsys.readouterr().err


def test_one_run_against_one_of_its_methods(runs, tmp_path, capsys):
    """`rait compare RUN --against METHOD`: every other row of the run against it, paired."""
    first, _ = runs
    out = tmp_path / "c"
    assert main(["compare", str(first), "--against", "init-basic", "--out", str(out)]) == 0
    markdown = (out / "compare.md").read_text()
    assert "**Paired against run · init-basic**" in markdown
    assert "| run · cor-rait |" in markdown.split("Paired against")[1]
    data = json.loads((out / "compare.json").read_text())
    (pair, *_) = [p for p in data["paired"] if p["test_set"] == "wf-id"]
    own = json.loads((first / "eval" / "wf-id" / "cor-rait" / "metrics.json").read_text())
    assert pair["ths"]["delta"] == pytest.approx(own["ths"])  # Init-Basic's THS is 0
    assert "<h3>Paired against run · init-basic</h3>" in (out / "compare.html").read_text()
    assert main(["compare", str(first), "--against", "grait", "--out", str(out)]) == 2
    assert "no run has a row 'grait'" in capsys.readouterr().err


def test_compare_puts_a_papers_rows_in_the_table_not_on_the_plane(runs, tmp_path, monkeypatch):
    """A run whose test sets are the papers' gets their printed rows beside its own."""
    from rait import compare as C
    from rait.references import reference_rows

    first, _ = runs
    fake = [
        r | {"test_set": "wf-id", "role": "id"}
        for r in reference_rows("grait-table2", ["mmlu-val"], "x")[:3]
    ]
    monkeypatch.setattr(C, "rows_beside", lambda names, results: fake)
    plotted = []
    real_plot = C.plot_pc_pw_plane
    monkeypatch.setattr(C, "plot_pc_pw_plane", lambda m, p: plotted.append(m) or real_plot(m, p))
    out = tmp_path / "c"
    run_compare(CompareConfig(runs=[str(first)], reference=["grait-table2"], out=str(out)))
    markdown = (out / "compare.md").read_text()
    assert "| grait-table2 · LLaMA2-7B-Chat · init-basic |" in markdown
    assert "printed in Zhu et al." in markdown
    assert not any("reference" in m for m in plotted[0])
    data = json.loads((out / "compare.json").read_text())
    assert len(data["references"]) == 3 and data["references"][0]["reference"]["name"]
