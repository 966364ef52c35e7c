"""Results tables in the papers' layout, from metrics.json files, and the `rait table` CLI."""

from __future__ import annotations

import json

import pytest

from rait.cli import main
from rait.errors import DataError
from rait.results import find_metrics, load_results, results_json, results_table


def metric(method, test_set, role, pc, pw, ths, baseline=True):
    return {
        "method": method,
        "test_set": test_set,
        "role": role,
        "n": 100,
        "pc": pc,
        "pw": pw,
        "pr": round(1 - pc - pw, 6),
        "ths": ths,
        "baseline": {"pc0": 0.3, "pw0": 0.7} if baseline else None,
        "ap": 0.5,
        "ece": 0.1,
        "model": "m",
    }


def write(tmp_path, name, data):
    path = tmp_path / name / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def run(tmp_path):
    write(tmp_path, "ood/craft", metric("craft", "arc", "ood", 0.4, 0.2, 0.2857))
    write(tmp_path, "id/basic", metric("init-basic", "mmlu", "id", 0.3, 0.7, 0.0))
    write(tmp_path, "id/craft", metric("craft", "mmlu", "id", 0.35, 0.3, 0.22142))
    write(tmp_path, "id/mine", metric("my-method", "mmlu", "id", 0.2, 0.0, None, baseline=False))
    write(tmp_path, "id/refuse", metric("init-refuse", "mmlu", "id", 0.3, 0.5, 0.0857))
    return tmp_path


def test_rows_follow_the_papers_order_and_columns_put_id_first(run):
    table = results_table(load_results(find_metrics([run])))
    lines = table.splitlines()
    assert lines[0].startswith(
        "| Method | mmlu (ID) Pc↑ | Pw↓ | Pr | THS↑ | Prec.↑ | arc (OOD) Pc↑"
    )
    methods = [line.split("|")[1].strip() for line in lines[2:]]
    assert methods == ["init-basic", "init-refuse", "craft", "my-method"]


def test_cells_are_percent_with_one_decimal_and_gaps_are_marked(run):
    table = results_table(load_results(find_metrics([run])))
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert "| 35.0 | 30.0 | 35.0 | 22.1 | – | 40.0 | 20.0 | 40.0 | 28.6 | – |" in rows["craft"]
    assert "| 30.0 | 70.0 | 0.0 | 0.0 | – | – | – | – | – | – |" in rows["init-basic"]
    assert "| 20.0 | 0.0 | 80.0 | – |" in rows["my-method"]  # no baseline: no THS


def test_undefined_ths_is_shown_as_such(tmp_path):
    write(tmp_path, "a", metric("craft", "wf", "id", 0.5, 0.1, None, baseline=True))
    table = results_table(load_results(find_metrics([tmp_path])), title="T")
    assert table.startswith("**T**")
    assert "| 50.0 | 10.0 | 40.0 | undef. |" in table


def test_json_form_lists_columns_and_rows(run):
    data = results_json(load_results(find_metrics([run])))
    assert data["columns"] == [
        {"test_set": "mmlu", "role": "id"},
        {"test_set": "arc", "role": "ood"},
    ]
    assert [r["method"] for r in data["rows"]][:2] == ["init-basic", "init-refuse"]
    assert all(r["source"].endswith("metrics.json") for r in data["rows"])


def test_a_method_evaluated_twice_on_one_test_set_is_an_error(tmp_path):
    write(tmp_path, "a", metric("craft", "wf", "id", 0.5, 0.1, 0.1))
    write(tmp_path, "b", metric("craft", "wf", "id", 0.4, 0.1, 0.1))
    with pytest.raises(DataError, match="appears twice"):
        load_results(find_metrics([tmp_path]))


def test_bad_metrics_files_name_the_file_and_field(tmp_path):
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(DataError, match=r"m\.json:1: not valid JSON"):
        load_results([tmp_path / "m.json"])
    data = metric("craft", "wf", "id", 0.5, 0.1, 0.1)
    del data["pw"]
    (tmp_path / "n.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"n\.json, field 'pw'"):
        load_results([tmp_path / "n.json"])
    (tmp_path / "l.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="expected a JSON object"):
        load_results([tmp_path / "l.json"])
    with pytest.raises(DataError, match="no such file"):
        find_metrics([tmp_path / "nowhere"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"no metrics\.json"):
        find_metrics([empty])


def test_cli_table_prints_and_writes_markdown_and_json(run, tmp_path, capsys):
    out = tmp_path / "results.md"
    assert main(["table", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "init-refuse" in printed
    assert out.read_text().startswith("| Method |")
    assert json.loads((tmp_path / "results.json").read_text())["rows"]


def test_cli_table_error_is_one_line(tmp_path, capsys):
    assert main(["table", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rait: error:")


def _eval_folder(tmp_path, method, verdicts, base=None):
    """An eval folder as `rait eval` writes it: predictions and metrics with intervals."""
    from rait.evaluate import EvalConfig, score

    rows = [
        {"id": f"q{i}", "verdict": v, "confidence": 0.5, "answer_correct": v == "correct"}
        for i, v in enumerate(verdicts)
    ]
    base_rows = (
        None if base is None else [{"id": f"q{i}", "verdict": v} for i, v in enumerate(base)]
    )
    cfg = EvalConfig(method=method, test_set="wf", data={"format": "jsonl", "path": "x.jsonl"})
    metrics = score(rows, cfg, base_rows or rows if method == "init-basic" else base_rows, "base")
    folder = tmp_path / method
    folder.mkdir()
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_cells_carry_their_intervals_and_the_table_says_what_they_are(tmp_path):
    base = ["correct"] * 25 + ["wrong"] * 75
    mine = ["correct"] * 30 + ["wrong"] * 20 + ["refused"] * 50
    _eval_folder(tmp_path, "init-basic", base)
    folder = _eval_folder(tmp_path, "cor-rait", mine, base)
    metrics = json.loads((folder / "metrics.json").read_text())
    ci = metrics["ci"]
    assert ci["pc"]["low"] < 0.30 < ci["pc"]["high"] and ci["n_resamples"] == 10_000
    q = metrics["quadrants"]
    assert q["known_correct"] == 25 and q["unknown_correct"] == 5 and q["unknown_refused"] == 50
    assert q["refusal_precision"] == 1.0 and q["refusal_recall"] == 50 / 75
    table = results_table(load_results(find_metrics([tmp_path])))
    row = next(x for x in table.splitlines() if x.startswith("| cor-rait"))
    pc = f"30.0 [{100 * ci['pc']['low']:.1f}, {100 * ci['pc']['high']:.1f}]"
    assert row.startswith(f"| cor-rait | {pc} | 20.0 [")
    assert "| 100.0 [100.0, 100.0] |" in row  # every refusal on an unknown question
    assert "95 % paired-bootstrap interval" in table


def test_table_against_a_method_pairs_the_same_questions(tmp_path, capsys):
    base = ["correct"] * 25 + ["wrong"] * 75
    _eval_folder(tmp_path, "init-basic", base)
    _eval_folder(tmp_path, "init-refuse", ["correct"] * 25 + ["wrong"] * 75, base)
    _eval_folder(tmp_path, "cor-rait", ["correct"] * 25 + ["refused"] * 60 + ["wrong"] * 15, base)
    out = tmp_path / "t.md"
    assert main(["table", str(tmp_path), "--against", "init-refuse", "--out", str(out)]) == 0
    text = out.read_text()
    assert "**Paired against init-refuse**" in text
    row = next(x for x in text.split("Paired against")[1].splitlines() if "| cor-rait" in x)
    # THS = Pc − Pw·Pc0/Pw0: 0.25 − 0.15/3 = 0.20 against init-refuse's 0.25 − 0.75/3 = 0
    assert row.startswith("| cor-rait | 20.0 [")
    assert " * |" in row  # its interval excludes 0
    data = json.loads((tmp_path / "t.json").read_text())
    pair = next(p for p in data["paired"] if p["method"] == "cor-rait")
    assert pair["ths"]["delta"] == pytest.approx(0.2) and pair["ths"]["p_value"] < 0.001
    assert main(["table", str(tmp_path), "--against", "grait"]) == 2
    assert "no such row" in capsys.readouterr().err


def test_paired_comparison_needs_the_same_questions(tmp_path):
    from rait.results import paired_comparisons

    base = ["correct", "wrong", "wrong"]
    _eval_folder(tmp_path, "init-basic", base)
    _eval_folder(tmp_path, "cor-rait", ["correct", "refused", "wrong"], base)
    folder = _eval_folder(tmp_path, "craft", ["correct", "refused", "refused"], base)
    (folder / "predictions.jsonl").write_text(
        json.dumps({"id": "other", "verdict": "wrong"}) + "\n"
    )
    with pytest.raises(DataError, match="same questions"):
        paired_comparisons(load_results(find_metrics([tmp_path])), "cor-rait")
