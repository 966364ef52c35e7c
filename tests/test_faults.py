"""Faults that must not lose work or corrupt a run: a second writer, a kill or a full disk while
a checkpoint is written, a full or read-only output, an output that is another stage's folder
or the command's own input, a closed pipe, an unreachable hub (see docs/faults.md)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from rait.cli import main
from rait.config import config_to_dict
from rait.data.sources import DataSource
from rait.errors import ConfigError, ModelError
from rait.evaluate import EvalConfig, run_eval
from rait.models import ModelConfig
from rait.rundir import Stage, exclusive, lock_path
from rait.train import TrainConfig, run_train

REPO = Path(__file__).resolve().parents[1]
OE_ROWS = [
    {"id": "a", "question": "Capital of France?", "answers": ["Paris"]},
    {"id": "b", "question": "Capital of Italy?", "answers": ["Rome"]},
    {"id": "c", "question": "Capital of Spain?", "answers": ["Madrid"]},
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class Parrot:
    """A stand-in engine answering every question with the first alias (no model)."""

    name = "parrot"
    chat = True

    def __init__(self):
        from rait.models import build_tiny_tokenizer

        self.tokenizer = build_tiny_tokenizer()

    def encode(self, text):
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def sample(self, prompts, keys, n, temperature, max_new_tokens, seeds=None, **kw):
        from rait.engine import Completion

        answers = {r["id"]: r["answers"][0] for r in OE_ROWS}
        return [
            [Completion(answers[k], ids, [-0.1] * len(ids), "eos", None)]
            for k in keys
            for ids in [self.encode(answers[k])]
        ]


@pytest.fixture
def parrot(monkeypatch):
    import rait.backends

    monkeypatch.setattr(rait.backends, "load_engine", lambda *a, **k: Parrot())


def eval_cfg(data: Path, **kw) -> EvalConfig:
    return EvalConfig(data=DataSource(path=str(data)), backend="hf", **kw)


def run_cli(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


# --------------------------------------------------------------------------- one writer
HOLDER = textwrap.dedent(
    """
    import sys, time
    from rait.rundir import exclusive
    with exclusive(sys.argv[1]):
        print("held", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture
def holder():
    """``hold(folder)``: another process that holds ``folder``'s write lock until killed."""
    procs = []

    def hold(folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_evaluation_on_the_same_folder_is_refused_naming_the_first(
    tmp_path, parrot, holder
):
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    out = tmp_path / "out"
    first = holder(out)
    with pytest.raises(ConfigError, match=rf"another rait process \(pid {first.pid}"):
        run_eval(eval_cfg(data, method="init-refuse"), out)
    assert not out.exists()  # the refused writer wrote nothing
    first.kill()
    first.wait()
    # the lock died with its process: its file is taken over, nothing stale blocks the folder
    assert lock_path(out).exists()
    result = run_eval(eval_cfg(data, method="init-refuse"), out)
    assert result["n"] == 3


def test_a_second_rait_run_on_the_same_run_dir_is_refused_before_any_work(
    tmp_path, tiny_model_dir, holder, capsys
):
    run_dir = tmp_path / "run"
    config = {
        "run_dir": str(run_dir),
        "model": {"name": str(tiny_model_dir)},
        "world_facts": {"task": "mcqa", "n_cities": 60},
        "data": {"format": "world_facts", "split": "train", "sample": 8},
        "shots": {"format": "world_facts", "split": "dev"},
        "tests": [{"name": "t", "data": {"format": "world_facts", "split": "id_test"}}],
        "methods": ["cor-rait"],
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    first = holder(run_dir)
    code, err = run_cli(["run", path], capsys)
    assert code == 2 and f"pid {first.pid}" in err and "rait run" in err
    assert not (run_dir / "data").exists()


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with exclusive(tmp_path / "x"), exclusive(tmp_path / "x"):
        pass
    with exclusive(tmp_path / "x"):  # released by the outer exit
        pass


# --------------------------------------------------------------------------- replacing folders
def test_an_evaluation_never_deletes_a_trained_model_folder(tmp_path, parrot):
    trained = tmp_path / "train"
    stage = Stage(trained, "train", {"lr": 1})
    stage.begin()
    (trained / "adapter").mkdir()
    (trained / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    stage.complete()
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    with pytest.raises(ConfigError, match="holds the output of the 'train' stage"):
        run_eval(eval_cfg(data), trained)
    assert (trained / "adapter" / "adapter_model.safetensors").read_bytes() == b"weights"


def test_a_stage_folder_holding_its_own_input_is_not_replaced(tmp_path, parrot):
    out = tmp_path / "out"
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    run_eval(eval_cfg(data), out)
    inside = write_jsonl(out / "test.jsonl", OE_ROWS)
    with pytest.raises(ConfigError, match="holds this stage's own input"):
        run_eval(eval_cfg(inside, max_new_tokens=7), out)
    assert inside.is_file()


def test_build_and_convert_refuse_to_overwrite_their_own_input(tmp_path, capsys):
    knowledge = tmp_path / "kk.jsonl"
    knowledge.write_text('{"id": "a", "mu": 1.0}\n', encoding="utf-8")
    before = knowledge.read_bytes()
    argv = ["build", "--method", "cor-rait", "--knowledge", knowledge, "--out", knowledge]
    code, err = run_cli(argv, capsys)
    assert code == 2 and "overwrite the input" in err
    questions = write_jsonl(tmp_path / "qq.jsonl", OE_ROWS)
    code, err = run_cli(["data", "convert", questions, "--out", questions], capsys)
    assert code == 2 and "overwrite the input" in err
    assert knowledge.read_bytes() == before and questions.read_text().count("\n") == 3


def test_table_refuses_to_write_its_json_over_a_metrics_file(tmp_path, parrot, capsys):
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    run_eval(eval_cfg(data), tmp_path / "run" / "eval")
    metrics = tmp_path / "run" / "eval" / "metrics.json"
    before = metrics.read_bytes()
    code, err = run_cli(["table", tmp_path / "run", "--out", metrics.with_suffix(".md")], capsys)
    assert code == 2 and "overwrite the input" in err
    assert metrics.read_bytes() == before


def test_a_failed_fresh_start_leaves_no_running_record(tmp_path, monkeypatch):
    import rait.backends

    def broken(*args, **kwargs):
        raise ModelError("cannot load model 'nope'")

    monkeypatch.setattr(rait.backends, "load_engine", broken)
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    with pytest.raises(ModelError):
        run_eval(eval_cfg(data), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # no `running` stage.json, no empty predictions


def test_a_training_that_fails_validation_leaves_no_running_record(tiny_model_dir, tmp_path):
    from rait.errors import DataError

    cfg = _train_cfg(tiny_model_dir, tmp_path)
    cfg.max_length = 5  # every sample is too long: found after the model loaded
    with pytest.raises(DataError, match="max_length 5"):
        run_train(cfg, tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- checkpoints
QUESTIONS = [("Capital of France?", "Paris"), ("Capital of Italy?", "Rome")] * 4


def _train_cfg(model_dir: Path, tmp_path: Path) -> TrainConfig:
    rows = [
        {
            "id": f"q{i}",
            "prompt": [{"role": "user", "content": q}],
            "completion": [{"role": "assistant", "content": a}],
        }
        for i, (q, a) in enumerate(QUESTIONS)
    ]
    data = write_jsonl(tmp_path / "set.jsonl", rows)
    return TrainConfig(
        model=ModelConfig(name=str(model_dir)),
        data=str(data),
        lora_r=4,
        lora_dropout=0.0,
        batch_size=2,
        effective_batch_size=2,
        epochs=1.0,
        save_steps=1,
        logging_steps=3,  # checkpoints fall between logging steps: the pending loss counts
    )


DYING = textwrap.dedent(
    """
    import os, signal, sys
    from transformers.trainer_callback import TrainerState
    from rait.config import load_config
    from rait.train import TrainConfig, run_train

    mode = sys.argv[3]
    original = TrainerState.save_to_json

    def dying(self, path):
        if self.global_step == 3:
            if mode == "cut":  # killed while trainer_state.json is being written
                with open(path, "w") as handle:
                    handle.write('{"global_step": 3, "log_hist')
            os.kill(os.getpid(), signal.SIGKILL)  # "missing": before it is written
        original(self, path)

    TrainerState.save_to_json = dying
    run_train(load_config(TrainConfig, sys.argv[1]), sys.argv[2], log=lambda _: None)
    """
)


def _adapter(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter" / "adapter_model.safetensors")


@pytest.mark.parametrize("mode", ["cut", "missing"])
def test_a_kill_while_a_checkpoint_is_written_resumes_from_the_last_complete_one(
    tiny_model_dir, tmp_path, mode
):
    import torch

    cfg = _train_cfg(tiny_model_dir, tmp_path)
    straight = run_train(cfg, tmp_path / "straight", log=lambda _: None)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(config_to_dict(cfg)))
    out = tmp_path / "killed"
    job = subprocess.run(
        [sys.executable, "-c", DYING, str(config), str(out), mode], capture_output=True, text=True
    )
    assert job.returncode == -signal.SIGKILL, job.stderr[-2000:]
    assert (out / "checkpoints" / "checkpoint-3").is_dir()  # the half-written checkpoint
    messages: list[str] = []
    summary = run_train(cfg, out, log=messages.append)
    assert any("incomplete checkpoint checkpoint-3" in m for m in messages), messages
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert summary["steps"] == straight["steps"] == 4
    # the same steps in the same order: equal up to float32 rounding of identical arithmetic
    assert summary["train_loss"] == pytest.approx(straight["train_loss"], rel=1e-9)
    a, b = _adapter(tmp_path / "straight"), _adapter(out)
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=1e-6), key


def test_a_full_disk_while_a_checkpoint_is_written_is_resumable(
    tiny_model_dir, tmp_path, monkeypatch
):
    from transformers.trainer_callback import TrainerState

    cfg = _train_cfg(tiny_model_dir, tmp_path)
    original = TrainerState.save_to_json

    def full(self, path):
        if self.global_step == 2:
            with open(path, "w") as handle:
                handle.write('{"glo')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        original(self, path)

    monkeypatch.setattr(TrainerState, "save_to_json", full)
    with pytest.raises(OSError, match="No space left"):
        run_train(cfg, tmp_path / "out", log=lambda _: None)
    monkeypatch.setattr(TrainerState, "save_to_json", original)
    messages: list[str] = []
    summary = run_train(cfg, tmp_path / "out", log=messages.append)
    assert summary["resumed_from"].endswith("checkpoint-1") and summary["steps"] == 4
    assert any("incomplete checkpoint checkpoint-2" in m for m in messages)


# --------------------------------------------------------------------------- small disks
@pytest.fixture
def small_fs(tmp_path):
    """``mount(size, readonly)``: a tmpfs of that size (skipped where none can be mounted)."""
    mounted: list[Path] = []

    def mount(size: str, readonly: bool = False) -> Path:
        path = tmp_path / f"fs{len(mounted)}"
        path.mkdir()
        options = f"size={size}" + (",ro" if readonly else "")
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        job = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if job.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {job.stderr.strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_world_facts_on_a_full_disk_writes_nothing(small_fs, capsys):
    disk = small_fs("640k")  # room for train.jsonl and dev.jsonl, not for the rest
    code, err = run_cli(["data", "world-facts", "--out", disk / "wf"], capsys)
    assert code == 2 and "No space left on device" in err
    assert err.count("\n") == 1
    assert list(disk.iterdir()) == []  # no folder without ood_test.jsonl or manifest.json


OUT_COMMANDS = {
    "world-facts": ["data", "world-facts", "--out", "{out}"],
    "convert": ["data", "convert", "{data}", "--out", "{out}.jsonl"],
    "probe": ["probe", "--data", "{data}", "--out", "{out}"],
    "eval": ["eval", "--data", "{data}", "--out", "{out}"],
    "train": ["train", "--data", "{data}", "--out", "{out}"],
    "build": ["build", "--method", "cor-rait", "--knowledge", "{data}", "--out", "{out}.jsonl"],
    "rehearse": ["rehearse", "--probe", "{data}", "--out", "{out}"],
    "influence": ["influence", "--probe", "{data}", "--out", "{out}"],
    "table": ["table", "{data}", "--out", "{out}.md"],
    "crss": ["crss", "--knowledge", "{data}", "--out", "{out}.json"],
    "compare": ["compare", "{data}", "{data}", "--out", "{out}"],
    "report": ["report", "{data}", "--out", "{out}"],
}


def _argv(name: str, out: Path, data: Path) -> list[str]:
    return [a.format(out=out, data=data) for a in OUT_COMMANDS[name]]


@pytest.mark.parametrize("name", sorted(OUT_COMMANDS))
def test_a_read_only_output_is_one_clear_error_before_any_work(name, small_fs, tmp_path, capsys):
    readonly = small_fs("1m", readonly=True)
    data = write_jsonl(tmp_path / "q.jsonl", OE_ROWS)
    code, err = run_cli(_argv(name, readonly / "out", data), capsys)
    assert code == 2 and "Read-only file system" in err and err.count("\n") == 1, err


def test_a_read_only_run_dir_is_one_clear_error(small_fs, tmp_path, capsys):
    readonly = small_fs("1m", readonly=True)
    config = tmp_path / "run.yaml"
    config.write_text((REPO / "configs" / "demo.yaml").read_text(encoding="utf-8"))
    code, err = run_cli(["run", config, "--run-dir", readonly / "run"], capsys)
    assert code == 2 and "run_dir" in err and "Read-only file system" in err


@pytest.mark.parametrize("name", sorted(OUT_COMMANDS))
def test_an_output_of_the_wrong_kind_is_one_clear_error(name, tmp_path, capsys):
    data = write_jsonl(tmp_path / "q.jsonl", OE_ROWS)
    target = tmp_path / "target"
    file_output = OUT_COMMANDS[name][-1] != "{out}"
    if file_output:  # a folder where a file is wanted
        Path(_argv(name, target, data)[-1]).mkdir()
        needle = "is a folder"
    else:  # a file where a folder is wanted
        target.write_text("mine")
        needle = "is a file"
    code, err = run_cli(_argv(name, target, data), capsys)
    assert code == 2 and needle in err, err
    if not file_output:
        assert target.read_text() == "mine"


def test_a_file_in_the_way_of_the_output_folder_is_named(tmp_path, capsys):
    (tmp_path / "blocker").write_text("x")
    code, err = run_cli(["data", "world-facts", "--out", tmp_path / "blocker" / "wf"], capsys)
    assert code == 2 and "blocker is a file" in err


# --------------------------------------------------------------------------- pipes and hubs
def test_a_closed_pipe_ends_quietly(tmp_path):
    rows = [{"id": f"q{i}", "question": f"Question {i}?", "answers": ["x"]} for i in range(3000)]
    data = write_jsonl(tmp_path / "big.jsonl", rows)
    rait = Path(sys.executable).with_name("rait")
    job = subprocess.run(
        f"'{rait}' data inspect --examples 100000 '{data}' | head -1",
        shell=True,
        capture_output=True,
        text=True,
    )
    assert job.stdout.count("\n") == 1
    assert job.stderr == ""  # no traceback, and no error line either: a closed pipe is no error


def test_an_unreachable_hub_is_not_retried(monkeypatch):
    import socket

    import transformers

    from rait.models import hub_reachable, load_tokenizer

    with socket.socket() as free:  # a local port nobody listens on: refused at once
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert hub_reachable() is False
    seen = {}

    def from_pretrained(source, **kwargs):
        seen.update(kwargs)
        raise OSError("not in the cache")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    with pytest.raises(ModelError, match="cannot load model 'someorg/missing'"):
        load_tokenizer(ModelConfig(name="someorg/missing"))
    assert seen.get("local_files_only") is True
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() is False
