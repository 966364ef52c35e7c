"""Local dataset files: formats, field mapping, and every kind of bad input (rait.data.files)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rait.data.files import (
    ScanResult,
    apply_field_map,
    detect_format,
    iter_raw_rows,
    read_records,
    scan_file,
    write_records,
)
from rait.data.records import QARecord
from rait.errors import DataError, Location
from rait.fileio import dumps

OE_ROWS = [
    {"id": "q1", "question": "Capital of France?", "answers": ["Paris", "paris"]},
    {"id": "q2", "question": "Capital of Italy?", "answers": ["Rome"], "domain": "geo"},
]
MC_ROWS = [
    {"id": "m1", "question": "2+2?", "choices": ["3", "4", "5", "6"], "gold": 1},
    {"id": "m2", "question": "3+3?", "choices": ["6", "7", "8", "9"], "gold": "A"},
]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _parquet(path: Path, rows) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _data_error(path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_records(path, **kwargs)
    return str(info.value)


# --------------------------------------------------------------------------- formats
def test_detect_format():
    assert detect_format("a.jsonl") == "jsonl"
    assert detect_format("a.NDJSON") == "jsonl"
    assert detect_format("dir/a.json") == "json"
    assert detect_format("a.csv") == "csv"
    assert detect_format("a.TSV") == "tsv"
    assert detect_format("a.parquet") == "parquet"
    assert detect_format("a.pq") == "parquet"
    with pytest.raises(DataError, match=r"a\.txt: unknown file format '\.txt'"):
        detect_format("a.txt")
    with pytest.raises(DataError, match="no extension"):
        detect_format("README")


def test_jsonl_oeqa_with_blank_lines_and_bom(tmp_path):
    path = tmp_path / "oe.jsonl"
    text = "\n".join(json.dumps(r) for r in OE_ROWS)
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\n\n  \n").encode() + b"\n")
    records = read_records(path)
    assert [r.id for r in records] == ["q1", "q2"]
    assert records[0].answers == ("Paris", "paris")
    assert records[1].domain == "geo"
    result = scan_file(path)
    assert result.rows == 2
    assert [loc.line for loc in result.locations] == [1, 4]


def test_jsonl_mcqa(tmp_path):
    records = read_records(_jsonl(tmp_path / "mc.jsonl", MC_ROWS))
    assert [(r.id, r.gold, r.task) for r in records] == [("m1", 1, "mcqa"), ("m2", 0, "mcqa")]


def test_json_list_and_object_holding_one_list(tmp_path):
    listed = _write(tmp_path / "list.json", json.dumps(OE_ROWS))
    assert [r.id for r in read_records(listed)] == ["q1", "q2"]
    wrapped = _write(tmp_path / "obj.json", json.dumps({"version": 2, "data": OE_ROWS}))
    assert [r.id for r in read_records(wrapped)] == ["q1", "q2"]
    locations = [where.record for where, _ in iter_raw_rows(wrapped)]
    assert locations == ["#0", "#1"]


def test_json_with_no_or_several_lists_or_a_scalar(tmp_path):
    two = _write(tmp_path / "two.json", json.dumps({"a": OE_ROWS, "b": OE_ROWS}))
    assert "exactly one list of records (found several: a, b)" in _data_error(two)
    none = _write(tmp_path / "none.json", json.dumps({"a": 1}))
    assert "holds one JSON object, not a list of records" in _data_error(none)
    scalar = _write(tmp_path / "scalar.json", "3")
    assert _data_error(scalar) == (
        f"{scalar}: expected a JSON array of records (or an object holding one list of "
        "records), got a number"
    )


def test_json_file_holding_one_record_says_what_a_json_file_holds(tmp_path):
    # the record's one list (answers) used to be taken for the list of records:
    # "expected an object, got str"
    path = _write(tmp_path / "one.json", json.dumps(OE_ROWS[0]))
    message = _data_error(path)
    assert message.startswith(f"{path}: holds one JSON object, not a list of records")
    assert "a .json file must hold a JSON array of records" in message
    assert ".jsonl" in message and "got str" not in message
    mc = _write(tmp_path / "mc.json", json.dumps(MC_ROWS[0]))
    assert "holds one JSON object, not a list of records" in _data_error(mc)


def test_json_object_with_an_empty_list_beside_the_records(tmp_path):
    path = _write(tmp_path / "obj.json", json.dumps({"Data": OE_ROWS, "Skipped": []}))
    assert [r.id for r in read_records(path)] == ["q1", "q2"]


def test_jsonl_in_a_json_file_says_it_looks_like_jsonl(tmp_path):
    path = _jsonl(tmp_path / "lines.json", OE_ROWS)
    message = _data_error(path)
    assert message.startswith(f"{path}:2: invalid JSON (Extra data at column 1)")
    assert "looks like JSONL" in message and "--format jsonl" in message


@pytest.mark.parametrize(
    "text",
    [json.dumps(OE_ROWS) + "\n", json.dumps(OE_ROWS, indent=2) + "\n", "[1, 2]\n"],
    ids=["one-line", "pretty", "numbers"],
)
def test_json_array_in_a_jsonl_file_says_so(tmp_path, text):
    path = _write(tmp_path / "array.jsonl", text)
    assert _data_error(path) == (
        f"{path}:1: this looks like a JSON array, not JSONL (one JSON object per line): rename "
        "the file to .json or use --format json (`format: json` in a config)"
    )
    if "q1" in text:  # the advice works
        assert [r.id for r in read_records(path, fmt="json")] == ["q1", "q2"]


def test_pretty_printed_object_in_a_jsonl_file(tmp_path):
    path = _write(tmp_path / "pretty.jsonl", json.dumps(OE_ROWS[0], indent=2) + "\n")
    message = _data_error(path)
    assert message.startswith(f"{path}:1: this file holds one JSON object spread over several")
    assert "write each record on one line" in message


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_json_read_as_csv_says_it_looks_like_json(tmp_path, fmt):
    jsonl = _jsonl(tmp_path / "rows.jsonl", OE_ROWS)
    assert _data_error(jsonl, fmt=fmt) == (
        f"{jsonl}:1: this looks like JSONL (one JSON object per line), not {fmt.upper()}: use "
        "--format jsonl (`format: jsonl` in a config)"
    )
    one = _jsonl(tmp_path / "one.jsonl", OE_ROWS[:1])  # was "the dataset is empty"
    assert "looks like JSONL" in _data_error(one, fmt=fmt)
    array = _write(tmp_path / "rows.json", json.dumps(OE_ROWS, indent=2))
    assert _data_error(array, fmt=fmt) == (
        f"{array}:1: this looks like JSON, not {fmt.upper()}: use --format json (`format: "
        "json` in a config)"
    )


def test_csv_whose_header_merely_starts_with_a_bracket_is_csv(tmp_path):
    path = _write(tmp_path / "b.csv", "[id],question,answers\nq1,Q?,x\n")
    assert "field 'id'" in _data_error(path)  # read as CSV: no 'id' column


def test_invalid_json_file_names_the_line(tmp_path):
    path = _write(tmp_path / "bad.json", '[\n{"id": "a",\n  oops}\n]')
    message = _data_error(path)
    assert message.startswith(f"{path}:3: invalid JSON")


def test_csv_and_tsv_with_json_list_cells(tmp_path):
    csv_path = _write(
        tmp_path / "oe.csv",
        'id,question,answers,note\nq1,Capital of France?,"[""Paris"", ""paris""]",n1\n'
        "q2,Capital of Italy?,Rome,n2\n",
    )
    records = read_records(csv_path)
    assert records[0].answers == ("Paris", "paris")
    assert records[1].answers == ("Rome",)
    assert records[0].meta == {"note": "n1"}
    tsv_path = _write(tmp_path / "mc.tsv", "id\tquestion\tchoices\tgold\nm1\t2+2?\t[3, 4, 5]\t1\n")
    (record,) = read_records(tsv_path)
    assert record.choices == ("3", "4", "5")
    assert record.gold == 1


def test_csv_cell_that_is_not_a_json_list_stays_text(tmp_path):
    path = _write(tmp_path / "oe.csv", "id,question,answers\nq1,What?,[not json]\n")
    (record,) = read_records(path)
    assert record.answers == ("[not json]",)


def test_csv_line_numbers_follow_multiline_cells(tmp_path):
    path = _write(
        tmp_path / "oe.csv",
        'id,question,answers\nq1,"two\nlines",x\nq2,,y\n',
    )
    message = _data_error(path)
    assert message.startswith(f"{path}:4, record 'q2', field 'question'")


def test_parquet(tmp_path):
    rows = [
        {"id": "m1", "question": "2+2?", "choices": ["3", "4", "5", "6"], "gold": 1},
        {"id": "m2", "question": "3+3?", "choices": ["6", "7", "8", "9"], "gold": 0},
    ]
    path = _parquet(tmp_path / "mc.parquet", rows)
    records = read_records(path)
    assert [(r.id, r.choices, r.gold) for r in records] == [
        ("m1", ("3", "4", "5", "6"), 1),
        ("m2", ("6", "7", "8", "9"), 0),
    ]
    bad_row = _parquet(tmp_path / "bad.parquet", [{"id": "x", "question": "", "answers": ["a"]}])
    assert _data_error(bad_row).startswith(f"{bad_row}, record 'row 0', field 'question'")


def test_unreadable_parquet(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    assert "cannot read Parquet" in _data_error(path)


def test_explicit_format_overrides_the_extension(tmp_path):
    path = _jsonl(tmp_path / "data.txt", OE_ROWS)
    assert len(read_records(path, fmt="jsonl")) == 2
    with pytest.raises(DataError, match="unknown format 'xml'"):
        read_records(path, fmt="xml")


# --------------------------------------------------------------------------- field mapping
def test_field_map_rename_gather_and_dotted_path(tmp_path):
    rows = [
        {
            "key": "r1",
            "q": {"text": "2+2?", "lang": "en"},
            "A": "3",
            "B": "4",
            "C": "5",
            "D": "6",
            "target": "B",
            "topic": "math",
        },
    ]
    path = _jsonl(tmp_path / "foreign.jsonl", rows)
    field_map = {"id": "key", "question": "q.text", "choices": "A, B,C,D", "gold": "target"}
    (record,) = read_records(path, field_map=field_map)
    assert record.id == "r1"
    assert record.question == "2+2?"
    assert record.choices == ("3", "4", "5", "6")
    assert record.gold == 1
    assert record.meta == {"topic": "math"}


def test_field_map_on_csv(tmp_path):
    path = _write(
        tmp_path / "foreign.csv",
        "uid,prompt,accepted,src\n"
        '7,Who wrote Hamlet?,"[""Shakespeare"", ""William Shakespeare""]",w\n',
    )
    (record,) = read_records(
        path, field_map={"id": "uid", "question": "prompt", "answers": "accepted"}
    )
    assert record.id == "7"
    assert record.answers == ("Shakespeare", "William Shakespeare")
    assert record.meta == {"src": "w"}


def test_field_map_missing_column_names_it(tmp_path):
    path = _jsonl(tmp_path / "foreign.jsonl", [{"id": "a", "prompt": "q", "answers": ["x"]}])
    message = _data_error(path, field_map={"question": "text"})
    assert message.startswith(f"{path}:1, field 'text'")
    assert "column 'text' (mapped to 'question') is missing" in message
    assert "available: id, prompt, answers" in message
    message = _data_error(path, field_map={"choices": "A,B", "gold": "id"})
    assert "column 'A' (mapped to 'choices')" in message


def test_field_map_unknown_canonical_field():
    with pytest.raises(DataError, match=r"unknown canonical field\(s\) \['prompt'\]"):
        apply_field_map({"a": 1}, {"prompt": "a"}, Location("f.jsonl", 1))


def test_apply_field_map_without_map_and_on_non_objects():
    assert apply_field_map({"a": 1}, None, Location()) == {"a": 1}
    with pytest.raises(DataError, match=r"f\.jsonl:2: expected an object, got list"):
        apply_field_map([1], {"id": "a"}, Location("f.jsonl", 2))


def test_numeric_answer_aliases_in_a_file_are_read_as_text(tmp_path):
    path = _jsonl(tmp_path / "n.jsonl", [{"id": "a", "question": "6 x 7?", "answers": [42]}])
    assert read_records(path)[0].answers == ("42",)


def test_non_object_jsonl_row(tmp_path):
    # (an array on the first line is taken for a JSON array file: see above)
    path = _write(tmp_path / "rows.jsonl", json.dumps(OE_ROWS[0]) + "\n[1, 2]\n")
    assert _data_error(path) == f"{path}:2: expected an object, got list"


# --------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    assert _data_error(path) == f"{path}: file not found"


def test_directory_given(tmp_path):
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    assert _data_error(folder) == f"{folder}: is a directory, expected a file"


def test_unknown_extension(tmp_path):
    path = _write(tmp_path / "data.xml", "<x/>")
    message = _data_error(path)
    assert message.startswith(f"{path}: unknown file format '.xml'")
    assert ".jsonl" in message


def test_invalid_json_line(tmp_path):
    path = _write(tmp_path / "bad.jsonl", json.dumps(OE_ROWS[0]) + '\n\n{"id": "b",\n')
    message = _data_error(path)
    assert message.startswith(f"{path}:3: invalid JSON")
    assert "column" in message


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(
        (json.dumps(OE_ROWS[0]) + "\n").encode()
        + '{"id": "b", "question": "Caf\xe9?", "answers": ["x"]}\n'.encode("latin-1")
    )
    message = _data_error(path)
    assert message.startswith(f"{path}:2: not valid UTF-8 (byte 0xe9 at column 29)")
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes("id,question,answers\na,Caf\xe9,x\n".encode("latin-1"))
    assert _data_error(csv_path).startswith(f"{csv_path}:2: not valid UTF-8")


@pytest.mark.parametrize(
    ("row", "field", "needle"),
    [
        ({"id": "b", "answers": ["x"]}, "question", "missing or empty"),
        ({"id": "b", "question": " ", "answers": ["x"]}, "question", "missing or empty"),
        ({"id": "b", "question": "q", "answers": []}, "answers", "empty list"),
        ({"id": "b", "question": "q", "answers": ["x", ""]}, "answers", "empty or non-text"),
        ({"id": "b", "question": "q"}, "answers", "missing"),
        # json.dumps writes "\u0000": an escaped NUL in the file
        ({"id": "b", "question": "Q\x00?", "answers": ["x"]}, "question", "NUL character"),
        ({"id": "b", "question": "\t \n", "answers": ["x"]}, "question", "missing or empty"),
        ({"id": "b", "question": "q", "answers": [float("nan")]}, "answers", "not a finite"),
        ({"id": "b", "question": "q", "answers": [False]}, "answers", "false is a boolean"),
    ],
)
def test_bad_oeqa_row_names_file_line_record_field(tmp_path, row, field, needle):
    path = _jsonl(tmp_path / "oe.jsonl", [OE_ROWS[0], row])
    message = _data_error(path)
    assert message.startswith(f"{path}:2, record 'b', field '{field}': ")
    assert needle in message


@pytest.mark.parametrize(
    ("row", "field", "needle"),
    [
        (
            {"id": "b", "question": "q", "choices": ["x", "y", "z"], "gold": 3},
            "gold",
            "out of range for 3 choices",
        ),
        ({"id": "b", "question": "q", "choices": ["x", "y", "z"]}, "gold", "missing"),
        (
            {"id": "b", "question": "q", "choices": ["x", "y", "z"], "gold": "Q"},
            "gold",
            "out of range",
        ),
        (
            {"id": "b", "question": "q", "choices": ["x", "y", "z"], "gold": "yes"},
            "gold",
            "must be an option index or letter, got 'yes'",
        ),
        (
            {"id": "b", "question": "q", "choices": ["x", "", "z"], "gold": 0},
            "choices",
            "empty or non-text option(s): B",
        ),
        (
            {"id": "b", "question": "q", "choices": ["x"], "gold": 0},
            "choices",
            "at least 2 options, got 1",
        ),
    ],
)
def test_bad_mcqa_row_names_file_line_record_field(tmp_path, row, field, needle):
    path = _jsonl(tmp_path / "mc.jsonl", [MC_ROWS[0], row])
    message = _data_error(path)
    assert message.startswith(f"{path}:2, record 'b', field '{field}': ")
    assert needle in message


def test_bad_row_in_json_names_the_record_index(tmp_path):
    path = _write(tmp_path / "oe.json", json.dumps([OE_ROWS[0], {"id": "b", "question": "q"}]))
    assert _data_error(path).startswith(f"{path}, record '#1', field 'answers'")


def test_bad_row_in_csv_names_the_line(tmp_path):
    path = _write(tmp_path / "mc.csv", 'id,question,choices,gold\na,q,"[1, 2]",5\n')
    assert _data_error(path).startswith(f"{path}:2, record 'a', field 'gold'")


def test_duplicate_ids_mention_both_lines(tmp_path):
    path = _jsonl(tmp_path / "dup.jsonl", [OE_ROWS[0], OE_ROWS[1], OE_ROWS[0]])
    message = _data_error(path)
    assert message.startswith(f"{path}:3, field 'id': duplicate id 'q1'")
    assert "first used at line 1" in message


def test_mixed_mcqa_and_oeqa(tmp_path):
    path = _jsonl(tmp_path / "mixed.jsonl", [OE_ROWS[0], MC_ROWS[0]])
    message = _data_error(path)
    assert message.startswith(f"{path}: mixes multiple-choice and open-ended records")
    assert f"first MCQA at {path}:2" in message
    assert f"first OEQA at {path}:1" in message


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.csv", "empty.json", "blank.jsonl"])
def test_empty_file(tmp_path, name):
    content = {"empty.json": "[]", "blank.jsonl": "\n  \n"}.get(name, "")
    path = _write(tmp_path / name, content)
    assert _data_error(path) == f"{path}: the dataset is empty (no records)"


def test_csv_header_only_is_empty(tmp_path):
    path = _write(tmp_path / "header.csv", "id,question,answers\n")
    assert "empty" in _data_error(path)


def test_csv_row_with_too_many_columns(tmp_path):
    path = _write(tmp_path / "wide.csv", "id,question,answers\na,q,x\nb,q,x,extra,more\n")
    message = _data_error(path)
    assert message == f"{path}:3: row has 5 columns, the header has 3"


def test_csv_row_with_too_few_columns_is_a_missing_field(tmp_path):
    path = _write(tmp_path / "narrow.csv", "id,question,answers\na,q\n")
    assert _data_error(path).startswith(f"{path}:2, record 'a', field 'answers'")


# --------------------------------------------------------------------------- one error / all
def _many_problems_file(tmp_path) -> Path:
    return _jsonl(
        tmp_path / "many.jsonl",
        [
            {"id": "a", "question": "", "answers": ["x"]},  # line 1: question
            {"id": "b", "question": "q", "answers": []},  # line 2: answers
            {"id": "c", "question": "q", "answers": ["x"]},  # line 3: fine
            {"id": "c", "question": "q", "answers": ["y"]},  # line 4: duplicate id
            {"id": "d", "question": "q", "choices": ["x", "y"], "gold": 9},  # line 5: gold
        ],
    )


def test_read_records_raises_one_error_counting_the_others(tmp_path):
    path = _many_problems_file(tmp_path)
    message = _data_error(path)
    assert message.count("\n") == 0
    assert message.startswith(f"{path}:1, record 'a', field 'question': missing or empty")
    assert "(and 3 more problems; run `rait data inspect" in message
    assert str(path) in message


def test_read_records_mentions_one_more_problem_in_singular(tmp_path):
    path = _jsonl(tmp_path / "two.jsonl", [{"id": "a", "question": ""}])
    message = _data_error(path)
    assert "(and 1 more problem;" in message


def test_scan_file_collects_every_problem(tmp_path):
    path = _many_problems_file(tmp_path)
    result = scan_file(path)
    assert isinstance(result, ScanResult)
    assert result.source == str(path)
    assert result.rows == 5
    assert [r.id for r in result.records] == ["c", "c"]
    texts = [str(p) for p in result.problems]
    assert len(texts) == 4
    assert texts[0].startswith(f"{path}:1, record 'a', field 'question'")
    assert texts[1].startswith(f"{path}:2, record 'b', field 'answers'")
    assert texts[2].startswith(f"{path}:5, record 'd', field 'gold'")
    assert re.match(
        rf"{re.escape(str(path))}:4, field 'id': duplicate id 'c' "
        r"\(first used at line 3\)",
        texts[3],
    )
    with pytest.raises(DataError, match="and 3 more problems"):
        result.raise_first()


def test_scan_file_still_raises_file_level_problems(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        scan_file(tmp_path / "missing.csv")
    path = _write(tmp_path / "bad.jsonl", "{\n")
    with pytest.raises(DataError, match=":1: invalid JSON"):
        scan_file(path)


def test_raise_first_without_problems_is_silent():
    ScanResult("x").raise_first()


# --------------------------------------------------------------------------- writing
def test_write_records_and_dumps_record(tmp_path):
    records = read_records(_jsonl(tmp_path / "in.jsonl", OE_ROWS))
    out = tmp_path / "sub" / "out.jsonl"
    assert write_records(out, records) == 2
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == [dumps_record(r) for r in records]
    assert json.loads(lines[1]) == {
        "id": "q2",
        "question": "Capital of Italy?",
        "answers": ["Rome"],
        "domain": "geo",
    }
    assert read_records(out) == records
    unicode_record = QARecord(id="é", question="Où est Zürich?", answers=("Suisse",))
    assert "Zürich" in dumps_record(unicode_record)


_safe_text = (
    st.text(
        # control and invisible format characters are refused by the record (test_records)
        st.characters(exclude_categories=("Cs", "Cc", "Cf"), exclude_characters="\u2028\u2029"),
        min_size=1,
        max_size=20,
    )
    .map(str.strip)
    .filter(bool)
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(_safe_text, st.lists(_safe_text, min_size=1, max_size=3, unique=True)),
        min_size=1,
        max_size=4,
    )
)
def test_write_then_read_round_trip(tmp_path, rows):
    records = [
        QARecord(id=f"r{i}", question=question, answers=tuple(answers))
        for i, (question, answers) in enumerate(rows)
    ]
    path = tmp_path / "round.jsonl"
    write_records(path, records)
    assert read_records(path) == records


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85"])
def test_write_then_read_text_with_unicode_line_separators(tmp_path, char):
    # write_records keeps these characters raw (ensure_ascii=False); JSONL lines are split on
    # "\n" only, so they must survive the round trip
    record = QARecord(id="a", question=f"first{char}second", answers=("x",))
    path = tmp_path / "sep.jsonl"
    write_records(path, [record])
    assert read_records(path) == [record]
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"id": "b", "question": ""}\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:2, record 'b'"):
        read_records(path)


def test_duplicate_options_load_with_one_warning_and_are_listed_by_inspect(tmp_path, caplog):
    from rait.data.inspect import format_inspection
    from rait.data.sources import DataSource, load_source, scan_source

    twin = {"id": "b", "question": "q", "choices": ["x", "y", "x"], "gold": 0}
    path = _jsonl(tmp_path / "mc.jsonl", [MC_ROWS[0], twin])
    with caplog.at_level("WARNING", logger="rait.data"):
        records = load_source(DataSource(path=str(path)))
    assert len(records) == 2
    assert "1 MCQA record(s) have duplicate options" in caplog.text and "C repeats A" in caplog.text
    report = format_inspection(scan_source(DataSource(path=str(path))))
    assert "record 'b': C repeats A 'x'" in report and "no problems found" in report


def dumps_record(record) -> str:
    """One canonical JSONL line, as write_records writes it."""
    return dumps(record.to_dict())
