"""Tests of rait.rundir: cached, resumable stages and the resumable JSONL writer."""

from __future__ import annotations

import json

import pytest

from rait.errors import ConfigError
from rait.fileio import read_json, write_json
from rait.rundir import MANIFEST, ResumableJsonl, RunDir, Stage, fingerprint


class Recorder:
    """A stage function that records its calls and writes one output file."""

    def __init__(self, text: str = "out", fail: bool = False):
        self.calls: list[bool] = []
        self.text = text
        self.fail = fail

    def __call__(self, stage: Stage, resuming: bool):
        self.calls.append(resuming)
        (stage.path / "out.txt").write_text(self.text, encoding="utf-8")
        if self.fail:
            raise RuntimeError("stage crashed")
        return {"out": "out.txt"}


def quiet(_message: str) -> None:
    pass


# --------------------------------------------------------------------------- fingerprint
def test_fingerprint_depends_on_config_and_input_bytes(tmp_path):
    data = tmp_path / "in.txt"
    data.write_text("a", encoding="utf-8")
    base = fingerprint({"x": 1, "y": 2}, [data])
    assert base == fingerprint({"y": 2, "x": 1}, [str(data)])
    assert base != fingerprint({"x": 2, "y": 2}, [data])
    data.write_text("b", encoding="utf-8")
    assert base != fingerprint({"x": 1, "y": 2}, [data])


def test_fingerprint_missing_input(tmp_path):
    fp = fingerprint({}, [tmp_path / "nope.jsonl"])
    assert fp["inputs"] == {str(tmp_path / "nope.jsonl"): "missing"}


# --------------------------------------------------------------------------- RunDir.run
def test_run_writes_manifest_and_outputs(tmp_path):
    run = RunDir(tmp_path / "run")
    fn = Recorder()
    stage = run.run("probe", {"k": 1}, fn, log=quiet)
    assert fn.calls == [False]
    assert stage.path == tmp_path / "run" / "probe"
    manifest = read_json(stage.path / MANIFEST)
    assert manifest["stage"] == "probe"
    assert manifest["status"] == "complete"
    assert manifest["config"] == {"k": 1}
    assert manifest["outputs"] == {"out": "out.txt"}
    assert manifest["fingerprint"] == fingerprint({"k": 1})
    assert manifest["finished"] >= manifest["started"]
    assert stage.is_complete()


def test_run_skips_complete_stage_with_same_config(tmp_path):
    run = RunDir(tmp_path)
    first = Recorder("first")
    run.run("s", {"k": 1, "m": [1, 2]}, first, log=quiet)
    second = Recorder("second")
    messages: list[str] = []
    stage = run.run("s", {"m": [1, 2], "k": 1}, second, log=messages.append)
    assert second.calls == []
    assert (stage.path / "out.txt").read_text(encoding="utf-8") == "first"
    assert any("up to date" in m for m in messages)


def test_run_reruns_and_clears_outputs_when_config_changes(tmp_path):
    run = RunDir(tmp_path)

    def first(stage: Stage, resuming: bool):
        (stage.path / "old_only.txt").write_text("stale", encoding="utf-8")
        (stage.path / "out.txt").write_text("v1", encoding="utf-8")
        return {}

    run.run("s", {"k": 1}, first, log=quiet)
    second = Recorder("v2")
    stage = run.run("s", {"k": 2}, second, log=quiet)
    assert second.calls == [False]
    assert not (stage.path / "old_only.txt").exists()
    assert (stage.path / "out.txt").read_text(encoding="utf-8") == "v2"
    assert read_json(stage.manifest_path)["config"] == {"k": 2}


def test_run_reruns_when_input_content_changes(tmp_path):
    run = RunDir(tmp_path / "run")
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": 1}\n', encoding="utf-8")

    def fn(stage: Stage, resuming: bool):
        calls.append(resuming)
        (stage.path / f"out{len(calls)}.txt").write_text("x", encoding="utf-8")
        return {}

    calls: list[bool] = []
    run.run("s", {"k": 1}, fn, inputs=[data], log=quiet)
    run.run("s", {"k": 1}, fn, inputs=[data], log=quiet)
    assert calls == [False]  # same bytes: skipped
    # same size, different bytes
    data.write_text('{"id": 2}\n', encoding="utf-8")
    stage = run.run("s", {"k": 1}, fn, inputs=[data], log=quiet)
    assert calls == [False, False]
    assert not (stage.path / "out1.txt").exists()
    assert (stage.path / "out2.txt").exists()


def test_run_reruns_when_input_appears(tmp_path):
    run = RunDir(tmp_path / "run")
    data = tmp_path / "later.jsonl"
    fn = Recorder()
    run.run("s", {}, fn, inputs=[data], log=quiet)
    data.write_text("now here\n", encoding="utf-8")
    run.run("s", {}, fn, inputs=[data], log=quiet)
    assert fn.calls == [False, False]


def test_run_skip_ignores_input_mtime(tmp_path):
    run = RunDir(tmp_path / "run")
    data = tmp_path / "data.txt"
    data.write_text("same", encoding="utf-8")
    fn = Recorder()
    run.run("s", {}, fn, inputs=[data], log=quiet)
    data.write_text("same", encoding="utf-8")  # rewritten, same bytes
    run.run("s", {}, fn, inputs=[data], log=quiet)
    assert fn.calls == [False]


def test_run_resumes_interrupted_stage_keeping_files(tmp_path):
    run = RunDir(tmp_path)
    crashing = Recorder("partial", fail=True)
    with pytest.raises(RuntimeError):
        run.run("s", {"k": 1}, crashing, log=quiet)
    stage_dir = tmp_path / "s"
    manifest = read_json(stage_dir / MANIFEST)
    assert manifest["status"] == "running"
    started = manifest["started"]

    seen: list[str] = []

    def resume(stage: Stage, resuming: bool):
        seen.append((stage.path / "out.txt").read_text(encoding="utf-8"))
        assert resuming is True
        return {"n": 1}

    messages: list[str] = []
    stage = run.run("s", {"k": 1}, resume, log=messages.append)
    assert seen == ["partial"]
    assert any("resuming" in m for m in messages)
    manifest = read_json(stage.manifest_path)
    assert manifest["status"] == "complete"
    assert manifest["started"] == started  # the original start time is kept
    assert manifest["outputs"] == {"n": 1}


def test_interrupted_stage_with_new_config_starts_over(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(RuntimeError):
        run.run("s", {"k": 1}, Recorder("partial", fail=True), log=quiet)
    seen: list[tuple[bool, bool]] = []

    def fn(stage: Stage, resuming: bool):
        seen.append((resuming, (stage.path / "out.txt").exists()))
        return {}

    run.run("s", {"k": 2}, fn, log=quiet)
    assert seen == [(False, False)]


@pytest.mark.parametrize("text", ["{not json", "{}", "[1, 2]", '{"stage": "s"}'])
def test_a_manifest_rait_did_not_write_keeps_the_folder(tmp_path, text):
    # rait writes stage.json atomically, so one that is cut short, empty or without a
    # fingerprint is not rait's: the folder (and the user's files in it) is kept, with an error
    run = RunDir(tmp_path)
    fn = Recorder()
    run.run("s", {}, fn, log=quiet)
    (tmp_path / "s" / MANIFEST).write_text(text, encoding="utf-8")
    (tmp_path / "s" / "mine.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a rait stage record"):
        run.run("s", {}, fn, log=quiet)
    assert fn.calls == [False]
    assert (tmp_path / "s" / "mine.txt").read_text(encoding="utf-8") == "keep me"


def test_complete_manifest_with_other_fingerprint_is_not_complete(tmp_path):
    run = RunDir(tmp_path)
    run.run("s", {"k": 1}, Recorder(), log=quiet)
    stage = run.stage("s", {"k": 1})
    assert stage.is_complete()
    manifest = read_json(stage.manifest_path)
    manifest["fingerprint"]["config_hash"] = "0" * 64
    write_json(stage.manifest_path, manifest)
    assert not stage.is_complete()


def test_stages_are_independent(tmp_path):
    run = RunDir(tmp_path)
    a, b = Recorder("a"), Recorder("b")
    run.run("a", {"k": 1}, a, log=quiet)
    run.run("b", {"k": 1}, b, log=quiet)
    run.run("a", {"k": 2}, a, log=quiet)
    assert (tmp_path / "b" / "out.txt").read_text(encoding="utf-8") == "b"
    assert run.stage("b", {"k": 1}).is_complete()


# --------------------------------------------------------------------------- ResumableJsonl
def rows(n: int, start: int = 0) -> list[dict]:
    return [
        {"id": f"q{i}", "answer": f"réponse {i} — 東京", "correct": i % 2 == 0, "p": i / 7}
        for i in range(start, start + n)
    ]


def test_resumable_jsonl_appends_and_reads_back(tmp_path):
    path = tmp_path / "sub" / "answers.jsonl"
    with ResumableJsonl(path) as out:
        assert len(out) == 0
        for row in rows(3):
            out.append(row)
        assert len(out) == 3 and "q1" in out and "q9" not in out
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows(3)

    with ResumableJsonl(path) as again:
        assert len(again) == 3
        assert again.rows == {r["id"]: r for r in rows(3)}
        again.append(rows(1, start=3)[0])
    assert len(path.read_text(encoding="utf-8").splitlines()) == 4


def test_resumable_jsonl_rows_flushed_immediately(tmp_path):
    path = tmp_path / "a.jsonl"
    out = ResumableJsonl(path)
    try:
        out.append({"id": 1, "x": "y"})
        # visible to another reader before close (flushed row by row)
        assert path.read_text(encoding="utf-8") == '{"id": 1, "x": "y"}\n'
        assert 1 in out and "1" in out  # keys compared as text
    finally:
        out.close()


def test_resumable_jsonl_custom_key(tmp_path):
    path = tmp_path / "a.jsonl"
    with ResumableJsonl(path, key="qid") as out:
        out.append({"qid": 7, "v": 1})
    with ResumableJsonl(path, key="qid") as out:
        assert "7" in out and out.rows["7"] == {"qid": 7, "v": 1}


def test_resumable_jsonl_drops_truncated_last_line(tmp_path):
    path = tmp_path / "a.jsonl"
    with ResumableJsonl(path) as out:
        for row in rows(2):
            out.append(row)
    complete = path.read_bytes()
    # a kill in the middle of writing the third row (cut inside a multi-byte character)
    partial = (json.dumps(rows(1, start=2)[0], ensure_ascii=False) + "\n").encode("utf-8")
    cut = partial.index("東".encode()) + 1
    with open(path, "ab") as handle:
        handle.write(partial[:cut])

    with ResumableJsonl(path) as out:
        assert len(out) == 2 and "q2" not in out
        # the file was truncated back to the last complete line
        assert path.read_bytes() == complete
        out.append(rows(1, start=2)[0])
    with ResumableJsonl(path) as out:
        assert list(out.rows) == ["q0", "q1", "q2"]


def test_resumable_jsonl_partial_first_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"id": "q0", "ans')
    with ResumableJsonl(path) as out:
        assert len(out) == 0
        assert path.read_bytes() == b""
        out.append({"id": "q0"})
    assert path.read_text(encoding="utf-8") == '{"id": "q0"}\n'


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    all_rows = rows(6)

    straight = tmp_path / "straight.jsonl"
    with ResumableJsonl(straight) as out:
        for row in all_rows:
            out.append(row)

    resumed = tmp_path / "resumed.jsonl"
    with ResumableJsonl(resumed) as out:  # session 1: three rows, then killed mid-row
        for row in all_rows[:3]:
            out.append(row)
    with open(resumed, "ab") as handle:
        handle.write(b'{"id": "q3", "answer": "r\xc3')  # half of a row and of a character
    with ResumableJsonl(resumed) as out:  # session 2: skip what is done, write the rest
        todo = [row for row in all_rows if row["id"] not in out]
        assert [row["id"] for row in todo] == ["q3", "q4", "q5"]
        for row in todo:
            out.append(row)

    assert resumed.read_bytes() == straight.read_bytes()


def test_demo_style_resume_inside_run_dir(tmp_path):
    """RunDir + ResumableJsonl together, as the stages use them."""
    run = RunDir(tmp_path)
    all_rows = rows(5)
    written: list[list[str]] = []

    def make(crash_after: int | None):
        def fn(stage: Stage, resuming: bool):
            with ResumableJsonl(stage.path / "answers.jsonl") as out:
                done_now = []
                for row in all_rows:
                    if row["id"] in out:
                        continue
                    if crash_after is not None and len(out) >= crash_after:
                        raise KeyboardInterrupt
                    out.append(row)
                    done_now.append(row["id"])
                written.append(done_now)
            return {"answers": "answers.jsonl"}

        return fn

    with pytest.raises(KeyboardInterrupt):
        run.run("answers", {"n": 5}, make(crash_after=2), log=quiet)
    stage = run.run("answers", {"n": 5}, make(crash_after=None), log=quiet)
    assert written == [["q2", "q3", "q4"]]  # only the rows missing after the crash
    lines = (stage.path / "answers.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == all_rows


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_resumable_jsonl_reopens_rows_with_unicode_line_separators(tmp_path, separator):
    path = tmp_path / "a.jsonl"
    row = {"id": "q0", "response": f"first{separator}second"}
    with ResumableJsonl(path) as out:
        out.append(row)
    with ResumableJsonl(path) as out:
        assert out.rows == {"q0": row}


# --------------------------------------------------------------------------- foreign folders
def test_begin_refuses_to_replace_a_folder_that_is_not_a_stage(tmp_path):
    from rait.errors import ConfigError

    folder = tmp_path / "results"
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.tex").write_text("months of work", encoding="utf-8")
    (folder / "sub" / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    stage = Stage(folder, "probe", {"k": 1})
    with pytest.raises(ConfigError, match=r"not a rait stage folder \(no stage\.json\)"):
        stage.begin()
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before
    assert (folder / "thesis.tex").read_text(encoding="utf-8") == "months of work"
    assert (folder / "sub" / "data.csv").read_text(encoding="utf-8") == "a,b\n1,2\n"
    assert not (folder / MANIFEST).exists()
    # through RunDir.run too: the stage function is never called
    fn = Recorder()
    with pytest.raises(ConfigError, match="refusing to replace it"):
        RunDir(tmp_path).run("results", {"k": 1}, fn, log=quiet)
    assert fn.calls == []
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before


def test_begin_accepts_an_existing_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    stage = Stage(folder, "probe", {"k": 1})
    assert stage.begin() is False
    manifest = read_json(folder / MANIFEST)
    assert manifest["status"] == "running" and manifest["stage"] == "probe"
    fn = Recorder()
    (tmp_path / "also-empty").mkdir()
    RunDir(tmp_path).run("also-empty", {}, fn, log=quiet)
    assert fn.calls == [False]
    assert read_json(tmp_path / "also-empty" / MANIFEST)["status"] == "complete"


def test_begin_still_replaces_a_stage_folder_with_another_fingerprint(tmp_path):
    folder = tmp_path / "s"
    RunDir(tmp_path).run("s", {"k": 1}, Recorder(), log=quiet)
    (folder / "stale.txt").write_text("old", encoding="utf-8")
    assert Stage(folder, "s", {"k": 2}).begin() is False
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST]
