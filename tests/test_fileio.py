"""Tests of rait.fileio: atomic writes, JSON/JSONL helpers and stable hashing."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from rait.errors import DataError
from rait.fileio import (
    atomic_open,
    dumps,
    file_digest,
    read_json,
    read_jsonl_by_id,
    row_number,
    stable_hash,
    write_json,
    write_jsonl,
)


class Boom(Exception):
    pass


def test_atomic_open_writes_on_success(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_open(target) as handle:
        handle.write("hello ✓\n")
        # nothing at the target until the block ends
        assert not target.exists()
    assert target.read_text(encoding="utf-8") == "hello ✓\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_open_creates_parent_folders(tmp_path):
    target = tmp_path / "a" / "b" / "c.txt"
    with atomic_open(target) as handle:
        handle.write("x")
    assert target.read_text(encoding="utf-8") == "x"


def test_atomic_open_binary_mode(tmp_path):
    target = tmp_path / "blob.bin"
    with atomic_open(target, "wb") as handle:
        handle.write(b"\x00\xff\x10")
    assert target.read_bytes() == b"\x00\xff\x10"


def test_atomic_open_failure_leaves_no_file_and_no_temp(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(Boom), atomic_open(target) as handle:
        handle.write("partial")
        raise Boom
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_open_failure_keeps_old_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(Boom), atomic_open(target) as handle:
        handle.write("new but unfinished")
        raise Boom
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_open_keyboard_interrupt_cleans_up(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(KeyboardInterrupt), atomic_open(target) as handle:
        handle.write("x")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_atomic_open_replaces_existing_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old content that is longer", encoding="utf-8")
    old_inode = os.stat(target).st_ino
    with atomic_open(target) as handle:
        handle.write("new")
        # while writing, the old file is still intact
        assert target.read_text(encoding="utf-8") == "old content that is longer"
    assert target.read_text(encoding="utf-8") == "new"
    # replaced by rename (a new inode), not rewritten in place
    assert os.stat(target).st_ino != old_inode
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_open_temp_file_is_a_hidden_sibling(tmp_path):
    target = tmp_path / "out.txt"
    with atomic_open(target) as handle:
        siblings = [p.name for p in tmp_path.iterdir()]
        assert len(siblings) == 1
        assert siblings[0].startswith(".out.txt.") and siblings[0].endswith(".tmp")
        handle.write("x")


def test_atomic_open_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x", encoding="utf-8")
        atomic = tmp_path / "atomic.txt"
        with atomic_open(atomic) as handle:
            handle.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(atomic).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)


ROWS = [
    {"id": "1", "question": "Où est Zürich?", "answers": ["Schweiz", "Suisse"]},
    {"id": "2", "question": "日本の首都は?", "answers": ["東京"], "n": 3},
    {"id": "3", "text": "emoji 🎉, quotes \" ' ’ and a\nnewline", "score": 0.5, "ok": None},
]


def test_write_jsonl_round_trip_unicode(tmp_path):
    path = tmp_path / "rows.jsonl"
    assert write_jsonl(path, ROWS) == 3
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    # real UTF-8 characters, not \\u escapes; one row per line, newline-terminated
    assert "Zürich" in text and "東京" in text and "🎉" in text
    assert text.endswith("\n")
    lines = text.split("\n")[:-1]
    assert len(lines) == 3
    assert [json.loads(line) for line in lines] == ROWS


def test_write_jsonl_keeps_key_order(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"z": 1, "a": 2}])
    assert path.read_text(encoding="utf-8") == '{"z": 1, "a": 2}\n'


def test_write_jsonl_from_generator_and_empty(tmp_path):
    path = tmp_path / "gen.jsonl"
    assert write_jsonl(path, ({"i": i} for i in range(4))) == 4
    assert path.read_text(encoding="utf-8").splitlines() == [f'{{"i": {i}}}' for i in range(4)]
    empty = tmp_path / "empty.jsonl"
    assert write_jsonl(empty, []) == 0
    assert empty.read_bytes() == b""


def test_write_jsonl_failure_midway_leaves_old_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, ROWS)
    before = path.read_bytes()

    def rows():
        yield {"id": "x"}
        raise Boom

    with pytest.raises(Boom):
        write_jsonl(path, rows())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_write_json_read_json_round_trip(tmp_path):
    obj = {"b": [1, 2, {"ä": "ö"}], "a": None, "c": 1.5}
    path = tmp_path / "x.json"
    write_json(path, obj)
    assert read_json(path) == obj
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and "ä" in text
    assert list(json.loads(text)) == ["b", "a", "c"]  # key order kept


def test_dumps_is_compact_utf8():
    assert dumps({"a": "é", "b": [1, 2]}) == '{"a": "é", "b": [1, 2]}'


def test_stable_hash_independent_of_key_order():
    a = {"x": 1, "y": {"p": [1, 2], "q": "é"}, "z": None}
    b = {"z": None, "y": {"q": "é", "p": [1, 2]}, "x": 1}
    assert stable_hash(a) == stable_hash(b)
    assert len(stable_hash(a)) == 64
    int(stable_hash(a), 16)  # hex


def test_stable_hash_sensitive_to_values_and_list_order():
    base = {"x": 1, "l": [1, 2]}
    assert stable_hash(base) != stable_hash({"x": 2, "l": [1, 2]})
    assert stable_hash(base) != stable_hash({"x": 1, "l": [2, 1]})
    assert stable_hash(base) != stable_hash({"x": 1, "l": [1, 2], "extra": None})


def test_stable_hash_known_value():
    payload = json.dumps({"a": 1, "b": 2}, sort_keys=True, ensure_ascii=False)
    expected = hashlib.sha256(payload.encode("utf-8")).hexdigest()
    assert stable_hash({"b": 2, "a": 1}) == expected


def test_stable_hash_non_json_values_via_str(tmp_path):
    # Paths and other objects are hashed through str()
    assert stable_hash({"p": tmp_path}) == stable_hash({"p": str(tmp_path)})


def test_file_digest(tmp_path):
    data = os.urandom(3000) + "é".encode()
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert file_digest(path) == expected
    # chunked reading gives the same digest
    assert file_digest(path, chunk=7) == expected
    assert file_digest(str(path)) == expected


def test_file_digest_empty_and_changes(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"")
    assert file_digest(path) == hashlib.sha256(b"").hexdigest()
    path.write_bytes(b"a")
    first = file_digest(path)
    path.write_bytes(b"b")
    assert file_digest(path) != first


def test_file_digest_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        file_digest(tmp_path / "missing")


def test_read_jsonl_by_id_names_both_lines_of_a_repeated_id(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a", "x": 1}\n\n{"id": "b", "x": 2}\n{"id": "a", "x": 3}\n')
    with pytest.raises(DataError, match=r"rows.jsonl:4, field 'id'.*first on line 1"):
        read_jsonl_by_id(path)
    path.write_text('{"id": "a", "x": 1}\n{"id": 2, "x": 2}\n')
    rows = read_jsonl_by_id(path, ("x",))
    assert list(rows) == ["a", "2"] and rows["2"]["_line"] == 2
    path.write_text('{"x": 1}\n')
    with pytest.raises(DataError, match=":1, field 'id'"):
        read_jsonl_by_id(path)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (True, "expected a number"),
        ("0.5", "expected a number"),
        (None, "expected a number"),
        (float("nan"), "not a finite number"),
        (1.5, r"outside \[0.0, 1.0\]"),
        (-0.1, r"outside \[0.0, 1.0\]"),
    ],
)
def test_row_number_rejects_with_file_line_and_field(value, match):
    row = {"_line": 7, "mu": value}
    with pytest.raises(DataError, match=match) as caught:
        row_number(row, "mu", "k.jsonl", 0.0, 1.0)
    assert "k.jsonl:7, field 'mu'" in str(caught.value)


def test_row_number_accepts_ints_and_bounds():
    assert row_number({"_line": 1, "mu": 1}, "mu", "k.jsonl", 0.0, 1.0) == 1.0
    assert row_number({"_line": 1, "s": 3.5}, "s", "k.jsonl", 0.0) == 3.5
