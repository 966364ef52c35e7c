"""`rait data inspect` / `rait data convert`: the report and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rait.cli import main
from rait.data.files import read_records, scan_file
from rait.data.inspect import format_inspection

OE_ROWS = [
    {
        "id": f"q{i}",
        "question": f"Question {i}?",
        "answers": [f"ans{i}", f"alias{i}"],
        "split": "train",
        "domain": "geo" if i % 2 else "chem",
    }
    for i in range(6)
]
MC_ROWS = [
    {"id": "m1", "question": "2+2?", "choices": ["3", "4", "5", "6"], "gold": 1, "subject": "math"},
    {
        "id": "m2",
        "question": "Red planet?",
        "choices": ["Venus", "Mars", "Earth"],
        "gold": "C",
        "subject": "astronomy",
    },
]


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    # main() setdefaults these; setting them here keeps the process environment unchanged
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the report
def test_format_inspection_oeqa(tmp_path):
    path = _jsonl(tmp_path / "oe.jsonl", OE_ROWS)
    report = format_inspection(scan_file(path), n_examples=2)
    lines = report.splitlines()
    assert lines[0] == f"source: {path}"
    assert lines[1] == "rows: 6   valid records: 6   problems: 0"
    assert "task: open-ended (OEQA) 6" in report
    assert "splits: train 6" in report
    assert "domains: chem 3, geo 3" in report or "domains: geo 3, chem 3" in report
    assert "aliases per question: mean 2.00, max 2" in report
    assert "examples:" in report
    examples = [line for line in lines if line.startswith("  [")]
    assert len(examples) == 2
    assert "  [q0] Question 0?" in report
    assert "     answers: ans0 | alias0" in report
    assert lines[-1] == "no problems found"


def test_format_inspection_mcqa_marks_gold(tmp_path):
    path = _jsonl(tmp_path / "mc.jsonl", MC_ROWS)
    report = format_inspection(scan_file(path))
    assert "task: multiple choice (MCQA) 2" in report
    assert "subjects: math 1, astronomy 1" in report
    assert "options per question: 4 1, 3 1" in report
    assert "gold letters: B 1, C 1" in report
    assert "     *B. 4" in report
    assert "      A. 3" in report
    assert "     *C. Earth" in report


def test_format_inspection_lists_every_problem(tmp_path):
    rows = [
        OE_ROWS[0],
        {"id": "bad1", "question": "", "answers": ["x"]},
        {"id": "bad2", "question": "q", "answers": []},
        OE_ROWS[0],
        MC_ROWS[0],
    ]
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    result = scan_file(path)
    report = format_inspection(result)
    assert "rows: 5   valid records: 3   problems: 4" in report
    assert "task: " in report and "(OEQA) 2" in report and "(MCQA) 1" in report
    assert "problems:" in report
    assert "no problems found" not in report
    assert len(result.problems) == 4
    for problem in result.problems:
        assert f"  {problem}" in report
    assert f"{path}:2, record 'bad1', field 'question'" in report
    assert f"{path}:3, record 'bad2', field 'answers'" in report
    assert f"{path}:4, field 'id': duplicate id 'q0' (first used at line 1)" in report
    assert "mixes multiple-choice and open-ended records" in report


def test_format_inspection_of_an_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    report = format_inspection(scan_file(path), n_examples=0)
    assert "rows: 0   valid records: 0   problems: 1" in report
    assert "examples:" not in report
    assert "the dataset is empty" in report


def test_format_inspection_counts_are_capped(tmp_path):
    rows = [
        {"id": str(i), "question": "q", "answers": ["a"], "domain": f"d{i:02d}"} for i in range(15)
    ]
    report = format_inspection(scan_file(_jsonl(tmp_path / "many.jsonl", rows)), n_examples=5)
    assert "... (3 more)" in report
    assert len([line for line in report.splitlines() if line.startswith("  [")]) == 5


# --------------------------------------------------------------------------- CLI inspect
def test_cli_inspect_clean_file_returns_0(tmp_path, capsys):
    path = _jsonl(tmp_path / "oe.jsonl", OE_ROWS)
    assert main(["data", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "valid records: 6" in out
    assert "no problems found" in out


def test_cli_inspect_with_problems_returns_1(tmp_path, capsys):
    path = _jsonl(tmp_path / "bad.jsonl", [OE_ROWS[0], {"id": "b", "question": "q"}])
    assert main(["data", "inspect", str(path), "--examples", "1"]) == 1
    captured = capsys.readouterr()
    assert f"{path}:2, record 'b', field 'answers'" in captured.out
    assert captured.err == ""


def test_cli_inspect_benchmark_and_field_map(tmp_path, capsys):
    nq = _jsonl(tmp_path / "nq.jsonl", [{"question": "who?", "answer": ["me"]}])
    assert main(["data", "inspect", str(nq), "--format", "nq_open", "--split", "validation"]) == 0
    assert "splits: dev 1" in capsys.readouterr().out
    foreign = _jsonl(tmp_path / "foreign.jsonl", [{"key": "a", "prompt": "q?", "gold": ["x"]}])
    code = main(
        [
            "data",
            "inspect",
            str(foreign),
            "--map",
            "id=key",
            "--map",
            "question=prompt",
            "--map",
            "answers=gold",
        ]
    )
    assert code == 0
    assert "[a] q?" in capsys.readouterr().out


def test_cli_inspect_missing_file_returns_2(tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    assert main(["data", "inspect", str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"rait: error: {missing}: file not found\n"


# --------------------------------------------------------------------------- CLI convert
def test_cli_convert_writes_canonical_jsonl(tmp_path, capsys):
    source = tmp_path / "foreign.csv"
    source.write_text(
        "key,prompt,A,B,C,D,target,topic\n"
        "r1,2+2?,3,4,5,6,B,math\n"
        "r2,Red planet?,Venus,Mars,Earth,Jupiter,B,space\n",
        encoding="utf-8",
    )
    out = tmp_path / "out" / "canonical.jsonl"
    code = main(
        [
            "data",
            "convert",
            str(source),
            "--out",
            str(out),
            "--map",
            "id=key",
            "--map",
            "question=prompt",
            "--map",
            "choices=A,B,C,D",
            "--map",
            "gold=target",
        ]
    )
    assert code == 0
    assert capsys.readouterr().out.strip() == f"wrote 2 records (mcqa) to {out}"
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {
            "id": "r1",
            "question": "2+2?",
            "choices": ["3", "4", "5", "6"],
            "gold": 1,
            "meta": {"topic": "math"},
        },
        {
            "id": "r2",
            "question": "Red planet?",
            "choices": ["Venus", "Mars", "Earth", "Jupiter"],
            "gold": 1,
            "meta": {"topic": "space"},
        },
    ]
    assert [r.id for r in read_records(out)] == ["r1", "r2"]


def test_cli_convert_benchmark_with_sample(tmp_path, capsys):
    rows = [{"question": f"q{i}?", "answer": [f"a{i}"]} for i in range(10)]
    source = _jsonl(tmp_path / "nq.jsonl", rows)
    out = tmp_path / "nq_canonical.jsonl"
    code = main(
        [
            "data",
            "convert",
            str(source),
            "--format",
            "nq_open",
            "--split",
            "train",
            "--sample",
            "4",
            "--seed",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "wrote 4 records (oeqa)" in capsys.readouterr().out
    records = read_records(out)
    assert len(records) == 4
    assert all(r.id.startswith("nq_open/train/") and r.split == "train" for r in records)


def test_cli_convert_data_error_is_one_line_without_traceback(tmp_path, capsys):
    source = _jsonl(
        tmp_path / "bad.jsonl",
        [{"id": "a", "question": "", "answers": ["x"]}, {"id": "b", "question": "q"}],
    )
    out = tmp_path / "never.jsonl"
    assert main(["data", "convert", str(source), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err_lines = captured.err.splitlines()
    assert len(err_lines) == 1
    assert err_lines[0].startswith(f"rait: error: {source}:1, record 'a', field 'question'")
    assert "and 1 more problem" in err_lines[0]
    assert "Traceback" not in captured.err
    assert not out.exists()


def test_cli_bad_map_is_a_config_error(tmp_path, capsys):
    source = _jsonl(tmp_path / "oe.jsonl", OE_ROWS)
    code = main(
        ["data", "convert", str(source), "--out", str(tmp_path / "o.jsonl"), "--map", "question"]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("rait: error: --map 'question' must look like canonical=column")
    assert main(["data", "inspect", str(source), "--map", "question= "]) == 2
    assert "has an empty side" in capsys.readouterr().err


def test_cli_hub_error_through_main(tmp_path, capsys, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    code = main(
        [
            "data",
            "convert",
            "hub",
            "--format",
            "triviaqa",
            "--split",
            "validation",
            "--out",
            str(tmp_path / "t.jsonl"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("rait: error: mandarjoshi/trivia_qa: cannot load hub dataset")
    assert "pass the local copy as `path`" in err
