"""The canonical QA record: validation, gold parsing, dict round-trips (rait.data.records)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rait.data.records import (
    LETTERS,
    QARecord,
    dataset_problems,
    duplicate_options,
    parse_gold,
    parse_record,
    task_of,
)
from rait.errors import DataError, Location, RaitError

WHERE = Location("data.jsonl", 7)


def _problems(raw, where=WHERE):
    record, problems = parse_record(raw, where)
    assert record is None
    assert problems
    return problems


# --------------------------------------------------------------------------- errors
def test_location_and_data_error_message():
    where = Location("file.jsonl", 3, "q1", "gold")
    assert str(where) == "file.jsonl:3, record 'q1', field 'gold'"
    assert str(Location(line=4)) == "line 4"
    assert str(Location()) == ""
    err = DataError("bad value", where)
    assert str(err) == "file.jsonl:3, record 'q1', field 'gold': bad value"
    assert err.problem == "bad value"
    assert err.where == where
    assert isinstance(err, RaitError)
    assert err.exit_code == 2
    assert str(DataError("no location")) == "no location"


# --------------------------------------------------------------------------- valid records
def test_mcqa_record_properties():
    record = QARecord.from_dict(
        {
            "id": " q1 ",
            "question": "  What is 2+2? ",
            "choices": ["3", "4", "5", "6"],
            "gold": "B",
            "subject": " math ",
            "domain": "arith",
            "split": "test",
            "source_row": 12,
        },
        WHERE,
    )
    assert record.id == "q1"
    assert record.question == "What is 2+2?"
    assert record.choices == ("3", "4", "5", "6")
    assert record.gold == 1
    assert record.task == "mcqa"
    assert record.gold_letter == "B"
    assert record.option_letters == ("A", "B", "C", "D")
    assert record.canonical_answer == "B"
    assert record.subject == "math"
    assert record.domain == "arith"
    assert record.split == "test"
    assert record.meta == {"source_row": 12}
    assert record.answers is None


def test_oeqa_record_properties_keep_alias_order_and_drop_duplicates():
    record = QARecord.from_dict(
        {"id": 5, "question": "Capital of France?", "answers": [" Paris", "paris", "Paris"]}
    )
    assert record.id == "5"
    assert record.task == "oeqa"
    assert record.answers == ("Paris", "paris")
    assert record.canonical_answer == "Paris"
    with pytest.raises(ValueError):
        _ = record.gold_letter
    with pytest.raises(ValueError):
        _ = record.option_letters


def test_single_string_answer_and_numeric_answers_are_text():
    assert QARecord.from_dict({"id": "a", "question": "q", "answers": "Paris"}).answers == (
        "Paris",
    )
    record = QARecord.from_dict({"id": "a", "question": "q", "answers": [1945, 3.0, 2.5]})
    assert record.answers == ("1945", "3", "2.5")


def test_line_breaks_and_tabs_are_fine_in_a_question():
    question = "Line one\r\nline two\tcolumn\x85line three"
    record = QARecord.from_dict({"id": "a", "question": question, "answers": ["x\ty"]})
    assert record.question == question
    assert record.answers == ("x\ty",)


def test_choices_that_differ_only_by_case_are_distinct_options():
    record = QARecord.from_dict({"id": "a", "question": "q", "choices": ["CO", "Co"], "gold": 1})
    assert record.choices == ("CO", "Co")


def test_meta_object_and_extra_fields_are_merged():
    record = QARecord.from_dict(
        {"id": "a", "question": "q", "answers": ["x"], "meta": {"k": 1}, "extra": "e"}
    )
    assert record.meta == {"k": 1, "extra": "e"}


def test_to_dict_leaves_unset_optional_fields_out():
    record = QARecord(id="a", question="q", answers=("x",))
    assert record.to_dict() == {"id": "a", "question": "q", "answers": ["x"]}
    mc = QARecord(id="b", question="q", choices=("x", "y"), gold=0, split="dev", meta={"m": 1})
    assert mc.to_dict() == {
        "id": "b",
        "question": "q",
        "choices": ["x", "y"],
        "gold": 0,
        "split": "dev",
        "meta": {"m": 1},
    }


# --------------------------------------------------------------------------- invalid records
@pytest.mark.parametrize(
    ("raw", "field", "needle"),
    [
        ({"question": "q", "answers": ["x"]}, "id", "missing or empty"),
        ({"id": " ", "question": "q", "answers": ["x"]}, "id", "missing or empty"),
        ({"id": True, "question": "q", "answers": ["x"]}, "id", "must be a string"),
        ({"id": "a", "answers": ["x"]}, "question", "missing or empty"),
        ({"id": "a", "question": "  ", "answers": ["x"]}, "question", "missing or empty"),
        ({"id": "a", "question": 3, "answers": ["x"]}, "question", "must be a string"),
        ({"id": "a", "question": "q", "answers": []}, "answers", "empty list"),
        ({"id": "a", "question": "q", "answers": ["x", ""]}, "answers", "empty"),
        ({"id": "a", "question": "q", "answers": ["x", None]}, "answers", "empty or non-text"),
        ({"id": "a", "question": "q", "answers": {"x": 1}}, "answers", "must be a list"),
        ({"id": "a", "question": "q"}, "answers", "missing"),
        ({"id": "a", "question": "q", "choices": ["x", "y"]}, "gold", "missing"),
        ({"id": "a", "question": "q", "choices": ["x", "y"], "gold": " "}, "gold", "missing"),
        ({"id": "a", "question": "q", "choices": ["x", "y"], "gold": 2}, "gold", "out of range"),
        ({"id": "a", "question": "q", "choices": ["x", "y"], "gold": -1}, "gold", "out of range"),
        ({"id": "a", "question": "q", "choices": ["x", "y"], "gold": "C"}, "gold", "out of range"),
        ({"id": "a", "question": "q", "choices": ["x", "y"], "gold": "AB"}, "gold", "letter"),
        ({"id": "a", "question": "q", "choices": ["x", "y"], "gold": True}, "gold", "letter"),
        ({"id": "a", "question": "q", "choices": ["x", ""], "gold": 0}, "choices", "option(s): B"),
        ({"id": "a", "question": "q", "choices": ["only"], "gold": 0}, "choices", "at least 2"),
        ({"id": "a", "question": "q", "choices": "x,y", "gold": 0}, "choices", "must be a list"),
        (
            {"id": "a", "question": "q", "choices": [str(i) for i in range(27)], "gold": 0},
            "choices",
            "at most 26",
        ),
        (
            {"id": "a", "question": "q", "choices": ["x", "y"], "gold": 0, "answers": ["x"]},
            "choices",
            "either",
        ),
        ({"id": "a", "question": "q", "answers": ["x"], "subject": 3}, "subject", "string"),
        ({"id": "a", "question": "q", "answers": ["x"], "meta": [1]}, "meta", "object"),
        # invisible-only text is empty too
        ({"id": "a", "question": "\u200b \ufeff", "answers": ["x"]}, "question", "empty"),
        ({"id": "a", "question": "q", "answers": ["\u200b"]}, "answers", "alias 1: empty"),
        # NUL (an escaped \u0000 in a JSON file) and lone surrogates
        ({"id": "a", "question": "Q\x00?", "answers": ["x"]}, "question", "U+0000 at character 2"),
        ({"id": "a", "question": "\x00", "answers": ["x"]}, "question", "NUL character"),
        ({"id": "a", "question": "q\ud800", "answers": ["x"]}, "question", "lone surrogate"),
        ({"id": "a", "question": "q", "answers": ["x", "y\x00"]}, "answers", "alias 2: contains"),
        (
            {"id": "a", "question": "q", "choices": ["x", "y\x00"], "gold": 0},
            "choices",
            "option B contains a NUL character U+0000",
        ),
        # answers: numbers are text, but not booleans nor JSON NaN/Infinity
        ({"id": "a", "question": "q", "answers": [True]}, "answers", "true is a boolean"),
        ({"id": "a", "question": "q", "answers": [float("nan")]}, "answers", "nan is not a finite"),
        ({"id": "a", "question": "q", "answers": ["x", float("inf")]}, "answers", "alias 2: inf"),
        ({"id": "a", "question": "q", "answers": [["x"]]}, "answers", "a list is not text"),
        (
            {"id": "a", "question": "q", "answers": [None, 3, {}, True, "", "x", " "]},
            "answers",
            "(alias 1: null is not text; alias 3: a dict is not text; alias 4: true is a "
            "boolean; and 2 more)",
        ),
    ],
)
def test_invalid_records_name_file_line_record_and_field(raw, field, needle):
    problems = _problems(raw)
    matching = [p for p in problems if p.where.field == field]
    assert matching, [str(p) for p in problems]
    text = str(matching[0])
    assert needle in text
    assert text.startswith("data.jsonl:7")
    assert f"field '{field}'" in text
    if isinstance(raw.get("id"), str) and raw["id"].strip():
        assert f"record '{raw['id']}'" in text
    with pytest.raises(DataError) as info:
        QARecord.from_dict(raw, WHERE)
    assert str(info.value) == str(problems[0])


def test_nul_character_in_the_id():
    (problem,) = _problems({"id": "a\x00b", "question": "q", "answers": ["x"]})
    assert str(problem) == (
        "data.jsonl:7, field 'id': contains a NUL character U+0000 at character 2"
    )


def test_every_problem_of_a_record_is_collected():
    problems = _problems({"question": " ", "choices": ["x"]})
    fields = {p.where.field for p in problems}
    assert {"id", "question", "choices", "gold"} <= fields


def test_non_mapping_row_is_a_problem():
    problems = _problems(["not", "an", "object"])
    assert "expected an object, got list" in str(problems[0])


# --------------------------------------------------------------------------- gold
def test_parse_gold_forms():
    assert parse_gold(2, 4) == 2
    assert parse_gold(2.0, 4) == 2
    assert parse_gold("C", 4) == 2
    assert parse_gold(" c ", 4) == 2
    assert parse_gold("2", 4) == 2
    for bad in (True, None, 1.5, "AB", "", "x1", [1]):
        with pytest.raises(ValueError):
            parse_gold(bad, 4)
    with pytest.raises(
        ValueError, match=r"out of range for 4 choices \(indices 0-3, letters A-D\)"
    ):
        parse_gold("E", 4)
    with pytest.raises(ValueError, match="out of range"):
        parse_gold("-1", 4)
    with pytest.raises(ValueError, match="letters none"):
        parse_gold(0, 0)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=26).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n - 1))
    )
)
def test_parse_gold_accepts_every_valid_index_and_letter(case):
    n, index = case
    assert parse_gold(index, n) == index
    assert parse_gold(float(index), n) == index
    assert parse_gold(LETTERS[index], n) == index
    assert parse_gold(LETTERS[index].lower(), n) == index
    if index < 10:
        assert parse_gold(str(index), n) == index


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=26), st.integers(min_value=-1000, max_value=1000))
def test_parse_gold_rejects_out_of_range(n, index):
    if 0 <= index < n:
        return
    with pytest.raises(ValueError, match="out of range"):
        parse_gold(index, n)
    if 0 <= index < 26:
        with pytest.raises(ValueError, match="out of range"):
            parse_gold(LETTERS[index], n)


# --------------------------------------------------------------------------- round trip
# printable text: control characters, lone surrogates and invisible format characters are
# refused by the record (tested below)
_text = (
    st.text(st.characters(exclude_categories=("Cc", "Cs", "Cf")), min_size=1, max_size=30)
    .map(str.strip)
    .filter(bool)
)
_optional_text = st.none() | _text
_json_scalar = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=10)
_meta = st.dictionaries(
    st.text(string.ascii_letters, min_size=1, max_size=8),
    _json_scalar | st.lists(_json_scalar, max_size=3),
    max_size=3,
)


@st.composite
def _records(draw):
    common = {
        "id": draw(_text),
        "question": draw(_text),
        "subject": draw(_optional_text),
        "domain": draw(_optional_text),
        "split": draw(_optional_text),
        "meta": draw(_meta),
    }
    if draw(st.booleans()):
        choices = draw(st.lists(_text, min_size=2, max_size=8, unique=True))
        gold = draw(st.integers(0, len(choices) - 1))
        return QARecord(choices=tuple(choices), gold=gold, **common)
    answers = draw(st.lists(_text, min_size=1, max_size=5, unique=True))
    return QARecord(answers=tuple(answers), **common)


@settings(max_examples=150, deadline=None)
@given(_records())
def test_to_dict_from_dict_round_trip(record):
    again = QARecord.from_dict(record.to_dict())
    assert again == record
    assert dict(again.meta) == dict(record.meta)
    assert again.task == record.task
    assert again.canonical_answer == record.canonical_answer
    assert again.to_dict() == record.to_dict()


# --------------------------------------------------------------------------- dataset level
def _mc(rid):
    return QARecord(id=rid, question="q", choices=("a", "b"), gold=0)


def _oe(rid):
    return QARecord(id=rid, question="q", answers=("a",))


def test_dataset_problems_empty_duplicates_and_mixed():
    assert "empty" in str(dataset_problems([], "f.jsonl", [])[0])
    records = [_oe("a"), _oe("b"), _oe("a")]
    where = [Location("f.jsonl", i) for i in (1, 2, 5)]
    (dup,) = dataset_problems(records, "f.jsonl", where)
    assert "duplicate id 'a' (first used at line 1)" in str(dup)
    assert str(dup).startswith("f.jsonl:5")
    mixed = dataset_problems(
        [_mc("a"), _oe("b")], "f.jsonl", [Location("f.jsonl", 1), Location("f.jsonl", 2)]
    )
    assert len(mixed) == 1
    assert "f.jsonl:1" in str(mixed[0]) and "f.jsonl:2" in str(mixed[0])
    with pytest.raises(DataError, match="duplicate"):
        check_dataset(records, "f.jsonl", where)
    check_dataset(records[:2], "f.jsonl", where[:2])


def test_task_of():
    assert task_of([_mc("a"), _mc("b")]) == "mcqa"
    assert task_of([_oe("a")]) == "oeqa"
    with pytest.raises(ValueError):
        task_of([_mc("a"), _oe("b")])
    with pytest.raises(ValueError):
        task_of([])


# --------------------------------------------------------------------------- kept, but reported
@pytest.mark.parametrize(
    ("choices", "expected"),
    [
        (["x", "y", " x"], "C repeats A 'x'"),
        (["1", 1, "2", 2.0], "B repeats A '1'; D repeats C '2'"),
        (["CO", "Co", "co2"], None),  # case matters: different options
    ],
)
def test_duplicate_options_are_kept_and_reported(choices, expected):
    # MMLU's test split has 9 such questions (e.g. public_relations/test/85, D repeats C):
    # refusing them would refuse MMLU, so they load and are named by duplicate_options
    record, problems = parse_record(
        {"id": "a", "question": "q", "choices": choices, "gold": 0}, WHERE
    )
    assert problems == [] and record is not None
    assert duplicate_options(record) == expected


def test_control_characters_of_real_benchmarks_are_text():
    # MMLU's test split holds U+0080, U+0089 and U+009D (Windows-1252 quotes gone wrong), ARC's
    # dev split a U+0002 (NYSEDREGENTS_2014_8_20): they load; only NUL and lone surrogates,
    # which no tokenizer or file can carry faithfully, are refused
    question = "The court\x80\x99s ruling\x9d was \x89 final\x02?"
    record, problems = parse_record({"id": "a", "question": question, "answers": ["x"]}, WHERE)
    assert problems == [] and record.question == question
    for bad in ("\x00", "\ud800"):
        assert _problems({"id": "a", "question": f"q{bad}", "answers": ["x"]})


def check_dataset(records, source, where_of) -> None:
    """The first dataset-level problem raised, as the loaders do."""
    problems = dataset_problems(records, source, where_of)
    if problems:
        raise problems[0]
