"""Benchmark loaders (MMLU, ARC, TriviaQA, NQ-open) from local copies and a faked hub."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rait.data.sources import (
    ALL_FORMATS,
    BENCHMARKS,
    HUB_FORMATS,
    DataSource,
    load_source,
    parse_arc_row,
    parse_mmlu_row,
    parse_nq_open_row,
    parse_triviaqa_row,
    scan_source,
)
from rait.errors import DataError


def _jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _parquet(path: Path, rows) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# --------------------------------------------------------------------------- fixture rows
CAIS_MMLU_ROWS = [
    {
        "question": "Find the degree of Q(sqrt(2)) over Q.",
        "subject": "abstract_algebra",
        "choices": ["0", "2", "4", "6"],
        "answer": 1,
    },
    {
        "question": "Which bone is the longest?",
        "subject": "anatomy",
        "choices": ["Femur", "Tibia", "Ulna", "Radius"],
        "answer": 0,
    },
]
AI2_ARC_ROWS = [
    {
        "id": "Mercury_1",
        "question": "Which is a gas at room temperature?",
        "choices": {"text": ["Iron", "Oxygen", "Salt", "Wood"], "label": ["A", "B", "C", "D"]},
        "answerKey": "B",
    },
    {
        "id": "NYSEDREGENTS_2",
        "question": "Which organ pumps blood?",
        "choices": {"text": ["Lung", "Liver", "Heart", "Skin"], "label": ["1", "2", "3", "4"]},
        "answerKey": "3",
    },
]
OFFICIAL_ARC_ROWS = [
    {
        "id": "Mercury_SC_1",
        "question": {
            "stem": "Which tool measures mass?",
            "choices": [
                {"text": "Ruler", "label": "A"},
                {"text": "Balance", "label": "B"},
                {"text": "Thermometer", "label": "C"},
            ],
        },
        "answerKey": "B",
    },
    {
        "id": "NYSEDREGENTS_7",
        "question": {
            "stem": "Which planet is closest to the Sun?",
            "choices": [
                {"text": "Venus", "label": "1"},
                {"text": "Earth", "label": "2"},
                {"text": "Mercury", "label": "3"},
                {"text": "Mars", "label": "4"},
            ],
        },
        "answerKey": "3",
    },
]
TRIVIA_HUB_ROWS = [
    {
        "question": "Which city is the capital of France?",
        "question_id": "tc_1",
        "answer": {"value": "Paris", "aliases": ["Paris", "Paree", "City of Light"]},
    },
    {
        "question": "Who wrote Hamlet?",
        "question_id": "tc_2",
        "answer": {"value": "William Shakespeare", "aliases": ["Shakespeare", "The Bard"]},
    },
]
TRIVIA_OFFICIAL = {
    "Data": [
        {
            "Question": "Which planet is known as the Red Planet?",
            "QuestionId": "qw_1",
            "Answer": {"Value": "Mars", "Aliases": ["Red Planet", "Mars", "mars"]},
        },
        {
            "Question": "What is the largest ocean?",
            "QuestionId": "qw_2",
            "Answer": {"Value": "<unk>", "Aliases": ["Pacific", "Pacific Ocean"]},
        },
    ],
    "Domain": "Web",
    "Split": "dev",
    "Version": 1.0,
}
NQ_ROWS = [
    {"question": "who sang hey jude", "answer": ["The Beatles", "Beatles"]},
    {"question": "when did ww2 end", "answer": ["1945"]},
]


# --------------------------------------------------------------------------- registry
def test_registry():
    assert set(HUB_FORMATS) == set(BENCHMARKS)
    assert {"auto", "jsonl", "csv", "parquet", "world_facts", *HUB_FORMATS} <= set(ALL_FORMATS)
    assert BENCHMARKS["mmlu"].hub_id == "cais/mmlu"
    assert BENCHMARKS["triviaqa"].split_names["validation"] == "dev"
    assert BENCHMARKS["mmlu"].split_names["validation"] == "val"


def test_describe():
    assert DataSource("mmlu", split="test", subset="all").describe() == (
        "mmlu:hub subset=all split=test"
    )
    assert DataSource("jsonl", path="a.jsonl").describe() == "jsonl:a.jsonl"


# --------------------------------------------------------------------------- row parsers
def test_parse_mmlu_rows():
    parsed = parse_mmlu_row(CAIS_MMLU_ROWS[0], 4, "val")
    assert parsed == {
        "id": "abstract_algebra/val/4",
        "question": CAIS_MMLU_ROWS[0]["question"],
        "choices": ["0", "2", "4", "6"],
        "gold": 1,
        "subject": "abstract algebra",
        "domain": "abstract_algebra",
        "split": "val",
    }
    csv_row = {
        "id": "anatomy/test/3",
        "question": "q",
        "A": "a",
        "B": "b",
        "C": "c",
        "D": "d",
        "target": "C",
    }
    parsed = parse_mmlu_row(csv_row, 0, None)
    assert parsed["choices"] == ["a", "b", "c", "d"]
    assert parsed["gold"] == "C"
    assert parsed["subject"] == "anatomy"
    assert parsed["domain"] == "anatomy"


def test_parse_arc_rows():
    hub = parse_arc_row(AI2_ARC_ROWS[1], 0, "test")
    assert hub["choices"] == ["Lung", "Liver", "Heart", "Skin"]
    assert hub["gold"] == 2
    official = parse_arc_row(OFFICIAL_ARC_ROWS[0], 0, None)
    assert official["question"] == "Which tool measures mass?"
    assert official["choices"] == ["Ruler", "Balance", "Thermometer"]
    assert official["gold"] == 1
    unknown_key = parse_arc_row({**AI2_ARC_ROWS[0], "answerKey": "E"}, 0, None)
    assert "answerKey 'E' is not one of the labels" in unknown_key["gold"]


def test_parse_triviaqa_and_nq_rows():
    hub = parse_triviaqa_row(TRIVIA_HUB_ROWS[0], 0, "dev")
    assert hub["id"] == "tc_1"
    assert hub["answers"] == ["Paris", "Paree", "City of Light"]
    official = parse_triviaqa_row(TRIVIA_OFFICIAL["Data"][1], 5, None)
    assert official["answers"] == ["Pacific", "Pacific Ocean"]
    no_id = parse_triviaqa_row({"question": "q", "answer": {"value": "v"}}, 3, "train")
    assert no_id["id"] == "triviaqa/train/3"
    nq = parse_nq_open_row(NQ_ROWS[0], 2, "dev")
    assert nq == {
        "id": "nq_open/dev/2",
        "question": "who sang hey jude",
        "answers": ["The Beatles", "Beatles"],
        "domain": "nq_open",
        "split": "dev",
    }


# --------------------------------------------------------------------------- MMLU local
def test_mmlu_csv_with_header(tmp_path):
    path = _write(
        tmp_path / "test" / "abstract_algebra_test.csv",
        "id,lang,question,A,B,C,D,target\n"
        'abstract_algebra/test/0,en,"Find the degree of Q(sqrt(2), sqrt(3)) over Q.",0,4,2,6,B\n'
        "abstract_algebra/test/1,en,Is Z a field?,Yes,No,Maybe,Sometimes,b\n",
    )
    records = load_source(DataSource(format="mmlu", path=str(path), split="test"))
    assert [r.id for r in records] == ["abstract_algebra/test/0", "abstract_algebra/test/1"]
    first = records[0]
    assert first.question == "Find the degree of Q(sqrt(2), sqrt(3)) over Q."
    assert first.choices == ("0", "4", "2", "6")
    assert first.gold == 1
    assert records[1].gold == 1
    assert first.subject == "abstract algebra"
    assert first.domain == "abstract_algebra"
    assert first.split == "test"
    assert first.task == "mcqa"
    # the whole folder works too
    folder = load_source(DataSource(format="mmlu", path=str(tmp_path / "test"), split="test"))
    assert folder == records


def test_mmlu_original_headerless_csv_folder(tmp_path):
    folder = tmp_path / "data" / "val"
    _write(folder / "anatomy_val.csv", "What is the femur?,A bone,A muscle,An organ,A nerve,A\n")
    _write(
        folder / "college_physics_val.csv",
        '"Speed of light, in m/s?",3e8,3e6,"3,000",300,A\n'
        "Unit of force?,Joule,Newton,Watt,Pascal,B\n",
    )
    records = load_source(DataSource(format="mmlu", path=str(folder), split="validation"))
    assert [r.id for r in records] == [
        "anatomy/val/0",
        "college_physics/val/0",
        "college_physics/val/1",
    ]
    assert [r.gold for r in records] == [0, 0, 1]
    assert records[1].question == "Speed of light, in m/s?"
    assert records[1].choices == ("3e8", "3e6", "3,000", "300")
    assert [r.subject for r in records] == ["anatomy", "college physics", "college physics"]
    assert [r.domain for r in records] == ["anatomy", "college_physics", "college_physics"]
    assert {r.split for r in records} == {"val"}


def test_mmlu_subject_from_file_name_without_split(tmp_path):
    path = _write(
        tmp_path / "anatomy_test.csv", "What is the femur?,A bone,A muscle,An organ,A nerve,A\n"
    )
    (record,) = load_source(DataSource(format="mmlu", path=str(path)))
    assert record.subject == "anatomy"
    assert record.domain == "anatomy"


def test_mmlu_csv_with_wrong_column_count(tmp_path):
    path = _write(tmp_path / "anatomy_test.csv", "q,a,b,c,d,A\nq2,a,b,c,A\n")
    with pytest.raises(DataError) as info:
        load_source(DataSource(format="mmlu", path=str(path), split="test"))
    assert str(info.value).startswith(f"{path}:2: row has 5 columns, expected 6")


def test_mmlu_csv_bad_target_names_line_and_field(tmp_path):
    path = _write(
        tmp_path / "anatomy_test.csv",
        "id,lang,question,A,B,C,D,target\nanatomy/test/0,en,q,a,b,c,d,F\n",
    )
    with pytest.raises(DataError) as info:
        load_source(DataSource(format="mmlu", path=str(path), split="test"))
    assert str(info.value).startswith(f"{path}:2, record 'anatomy/test/0', field 'gold'")


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_mmlu_hub_rows_as_local_files(tmp_path, suffix):
    path = tmp_path / f"mmlu.{suffix}"
    if suffix == "jsonl":
        _jsonl(path, CAIS_MMLU_ROWS)
    else:
        _parquet(path, CAIS_MMLU_ROWS)
    records = load_source(DataSource(format="mmlu", path=str(path), split="validation"))
    assert [r.id for r in records] == ["abstract_algebra/val/0", "anatomy/val/1"]
    assert [r.gold for r in records] == [1, 0]
    assert records[0].choices == ("0", "2", "4", "6")
    assert records[1].subject == "anatomy"
    assert records[0].split == "val"


# --------------------------------------------------------------------------- ARC local
def test_official_arc_jsonl_with_numeric_labels(tmp_path):
    path = _jsonl(tmp_path / "ARC-Challenge-Test.jsonl", OFFICIAL_ARC_ROWS)
    records = load_source(DataSource(format="arc", path=str(path), split="test"))
    assert [r.id for r in records] == ["Mercury_SC_1", "NYSEDREGENTS_7"]
    assert records[0].choices == ("Ruler", "Balance", "Thermometer")
    assert records[0].gold == 1
    assert records[1].choices == ("Venus", "Earth", "Mercury", "Mars")
    assert records[1].gold == 2
    assert records[1].gold_letter == "C"
    assert {r.subject for r in records} == {"science"}
    assert {r.domain for r in records} == {"arc_challenge"}
    assert {r.split for r in records} == {"test"}


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_ai2_arc_hub_rows(tmp_path, suffix):
    path = tmp_path / f"arc.{suffix}"
    if suffix == "jsonl":
        _jsonl(path, AI2_ARC_ROWS)
    else:
        _parquet(path, AI2_ARC_ROWS)
    records = load_source(DataSource(format="arc", path=str(path), split="validation"))
    assert [(r.id, r.gold) for r in records] == [("Mercury_1", 1), ("NYSEDREGENTS_2", 2)]
    assert records[0].choices == ("Iron", "Oxygen", "Salt", "Wood")
    assert {r.split for r in records} == {"dev"}


def test_arc_answer_key_not_among_labels(tmp_path):
    path = _jsonl(tmp_path / "arc.jsonl", [{**OFFICIAL_ARC_ROWS[0], "answerKey": "E"}])
    with pytest.raises(DataError) as info:
        load_source(DataSource(format="arc", path=str(path)))
    message = str(info.value)
    assert message.startswith(f"{path}:1, record 'Mercury_SC_1', field 'gold'")
    assert "answerKey 'E' is not one of the labels" in message


# --------------------------------------------------------------------------- TriviaQA local
@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_triviaqa_hub_rows(tmp_path, suffix):
    path = tmp_path / f"trivia.{suffix}"
    if suffix == "jsonl":
        _jsonl(path, TRIVIA_HUB_ROWS)
    else:
        _parquet(path, TRIVIA_HUB_ROWS)
    records = load_source(DataSource(format="triviaqa", path=str(path), split="train"))
    assert [r.id for r in records] == ["tc_1", "tc_2"]
    assert records[0].answers == ("Paris", "Paree", "City of Light")
    assert records[1].answers == ("William Shakespeare", "Shakespeare", "The Bard")
    assert records[1].canonical_answer == "William Shakespeare"
    assert {r.domain for r in records} == {"triviaqa"}
    assert {r.split for r in records} == {"train"}
    assert records[0].task == "oeqa"


def test_official_triviaqa_json(tmp_path):
    path = _write(tmp_path / "verified-web-dev.json", json.dumps(TRIVIA_OFFICIAL))
    records = load_source(DataSource(format="triviaqa", path=str(path), split="validation"))
    assert [r.id for r in records] == ["qw_1", "qw_2"]
    assert records[0].answers == ("Mars", "Red Planet", "mars")
    assert records[1].answers == ("Pacific", "Pacific Ocean")
    assert {r.split for r in records} == {"dev"}


def test_triviaqa_row_without_any_answer(tmp_path):
    row = {"question": "q?", "question_id": "t9", "answer": {"value": "<unk>", "aliases": []}}
    path = _jsonl(tmp_path / "trivia.jsonl", [row])
    with pytest.raises(DataError) as info:
        load_source(DataSource(format="triviaqa", path=str(path)))
    assert str(info.value).startswith(f"{path}:1, record 't9', field 'answers': empty list")


def test_triviaqa_parser_on_rows_of_another_format(tmp_path):
    path = _jsonl(tmp_path / "nq.jsonl", NQ_ROWS)
    with pytest.raises(DataError, match=r"nq\.jsonl:1"):
        load_source(DataSource(format="triviaqa", path=str(path)))


# --------------------------------------------------------------------------- NQ-open local
def test_nq_open_jsonl(tmp_path):
    path = _jsonl(tmp_path / "NQ-open.dev.jsonl", NQ_ROWS)
    records = load_source(DataSource(format="nq_open", path=str(path), split="validation"))
    assert [r.id for r in records] == ["nq_open/dev/0", "nq_open/dev/1"]
    assert records[0].answers == ("The Beatles", "Beatles")
    assert records[1].answers == ("1945",)
    assert {r.domain for r in records} == {"nq_open"}
    assert {r.split for r in records} == {"dev"}


def test_nq_open_parquet_without_split(tmp_path):
    path = _parquet(tmp_path / "nq.parquet", NQ_ROWS)
    records = load_source(DataSource(format="nq_open", path=str(path)))
    assert [r.id for r in records] == ["nq_open/unknown/0", "nq_open/unknown/1"]
    assert {r.split for r in records} == {None}


def test_nq_open_empty_answer_list(tmp_path):
    path = _jsonl(tmp_path / "nq.jsonl", [{"question": "q", "answer": []}])
    with pytest.raises(DataError) as info:
        load_source(DataSource(format="nq_open", path=str(path)))
    assert str(info.value).startswith(f"{path}:1, record 'nq_open/unknown/0', field 'answers'")


# --------------------------------------------------------------------------- local errors
def test_benchmark_path_missing_or_empty_folder(tmp_path):
    with pytest.raises(DataError, match="file or folder not found"):
        load_source(DataSource(format="mmlu", path=str(tmp_path / "nope")))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no dataset files in this folder for format 'arc'"):
        load_source(DataSource(format="arc", path=str(empty)))


def test_unknown_format_and_missing_path():
    with pytest.raises(DataError, match="unknown data format 'xml'"):
        load_source(DataSource(format="xml", path="x.xml"))
    with pytest.raises(DataError, match="format 'jsonl' needs a `path`"):
        load_source(DataSource(format="jsonl"))
    with pytest.raises(DataError, match="format 'world_facts' needs `path`"):
        load_source(DataSource(format="world_facts", split="train"))
    with pytest.raises(DataError, match="needs a `split`"):
        load_source(DataSource(format="nq_open"))


def test_generic_file_source_with_field_map(tmp_path):
    path = _jsonl(tmp_path / "foreign.jsonl", [{"key": "a", "prompt": "q?", "answers": ["x"]}])
    records = load_source(DataSource(path=str(path), field_map={"id": "key", "question": "prompt"}))
    assert [(r.id, r.question) for r in records] == [("a", "q?")]


def test_sample_is_seeded_and_keeps_file_order(tmp_path):
    rows = [{"id": f"q{i}", "question": f"q{i}?", "answers": [str(i)]} for i in range(30)]
    path = str(_jsonl(tmp_path / "many.jsonl", rows))
    first = load_source(DataSource(path=path, sample=7, seed=3))
    again = load_source(DataSource(path=path, sample=7, seed=3))
    other = load_source(DataSource(path=path, sample=7, seed=4))
    assert len(first) == 7
    assert first == again
    assert [r.id for r in first] != [r.id for r in other]
    positions = [int(r.id[1:]) for r in first]
    assert positions == sorted(positions)
    assert len(load_source(DataSource(path=path, sample=100))) == 30
    with pytest.raises(DataError, match="sample must be positive"):
        load_source(DataSource(path=path, sample=0))


# --------------------------------------------------------------------------- hub (faked)
@pytest.fixture
def fake_load_dataset(monkeypatch):
    """Replace ``datasets.load_dataset``; returns the list of calls it received."""
    calls: list[tuple] = []
    state: dict = {}

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        if "error" in state:
            raise state["error"]
        return list(state["rows"])

    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        datasets = types.ModuleType("datasets")
        monkeypatch.setitem(sys.modules, "datasets", datasets)
        monkeypatch.setattr(datasets, "load_dataset", load_dataset, raising=False)
    else:
        monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls, state


def test_hub_triviaqa_through_load_dataset(fake_load_dataset):
    calls, state = fake_load_dataset
    state["rows"] = TRIVIA_HUB_ROWS
    records = load_source(DataSource(format="triviaqa", split="validation"))
    assert calls == [("mandarjoshi/trivia_qa", "rc.nocontext", "validation")]
    assert [r.id for r in records] == ["tc_1", "tc_2"]
    assert {r.split for r in records} == {"dev"}
    assert records[0].answers == ("Paris", "Paree", "City of Light")


def test_hub_mmlu_with_subset_and_locations(fake_load_dataset):
    calls, state = fake_load_dataset
    state["rows"] = [*CAIS_MMLU_ROWS, {**CAIS_MMLU_ROWS[0], "answer": 7}]
    result = scan_source(DataSource(format="mmlu", split="test", subset="anatomy"))
    assert calls == [("cais/mmlu", "anatomy", "test")]
    assert [r.id for r in result.records] == ["abstract_algebra/test/0", "anatomy/test/1"]
    (problem,) = result.problems
    assert str(problem).startswith("cais/mmlu, record 'row 2', field 'gold'")


def test_hub_error_becomes_a_data_error(fake_load_dataset):
    _, state = fake_load_dataset
    state["error"] = ConnectionError("Couldn't reach 'mandarjoshi/trivia_qa' on the Hub\nmore")
    with pytest.raises(DataError) as info:
        load_source(DataSource(format="triviaqa", split="validation"))
    message = str(info.value)
    assert message.startswith("mandarjoshi/trivia_qa: cannot load hub dataset")
    assert "'mandarjoshi/trivia_qa'" in message
    assert "config 'rc.nocontext', split 'validation'" in message
    assert "Couldn't reach" in message
    assert "more" not in message
    assert "local copy as `path`" in message
    assert "\n" not in message


def test_hub_error_without_a_message(fake_load_dataset):
    _, state = fake_load_dataset
    state["error"] = ConnectionError()
    with pytest.raises(DataError, match=r"split 'train'\): ConnectionError\. Without network"):
        load_source(DataSource(format="nq_open", split="train"))


def test_mmlu_root_folder_reads_only_the_requested_split(tmp_path):
    header = "id,lang,question,A,B,C,D,target\n"
    for split in ("dev", "val", "test"):
        _write(
            tmp_path / "mmlu" / split / f"anatomy_{split}.csv",
            header + f"anatomy/{split}/0,en,Question from {split}?,w,x,y,z,B\n",
        )
    records = load_source(DataSource(format="mmlu", path=str(tmp_path / "mmlu"), split="val"))
    assert [r.id for r in records] == ["anatomy/val/0"]
    assert records[0].subject == "anatomy" and records[0].split == "val"
    every = load_source(DataSource(format="mmlu", path=str(tmp_path / "mmlu")))
    assert len(every) == 3


def test_row_of_the_wrong_shape_is_one_located_error(tmp_path):
    row = {"id": "x", "question": "Q?", "choices": {"text": 5, "label": 1}, "answerKey": "A"}
    path = _write(tmp_path / "arc.jsonl", json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"arc\.jsonl:1: row does not have the expected shape"):
        load_source(DataSource(format="arc", path=str(path), split="test"))
