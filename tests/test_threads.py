"""Processes that share a machine share its cores (rait.threads): the split's arithmetic, the
explicit choices, the registry of live rait processes (a killed process's entry does not
count, an unusable registry is one log line), and two real CPU processes side by side."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rait import cli, threads
from rait.errors import ConfigError

OUTER = ("OMP_NUM_THREADS", "RAIT_THREADS", "LOCAL_WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID")
ENV = {k: v for k, v in os.environ.items() if k not in OUTER}
ENV["PYTHONPATH"] = os.pathsep.join(sys.path)

#: a child that (once the file ``go`` exists, if named) takes its share, says so, waits until
#: ``want`` rait processes are registered (or 15 s), takes its share again (a stage boundary)
#: and prints torch's thread count
CHILD = """
import os, sys, time, torch
from rait import threads
while sys.argv[3] != "-" and not os.path.exists(sys.argv[3]):
    time.sleep(0.02)
threads.share_cores()
print("ready", flush=True)
want, deadline = int(sys.argv[1]), time.time() + 15
registry = threads.Registry(threads.registry_dir())
while len(registry.live()) < want and time.time() < deadline:
    time.sleep(0.05)
threads.share_cores()
print("threads", torch.get_num_threads(), flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture(autouse=True)
def private_registry(tmp_path, monkeypatch):
    """Every test its own registry and 6 cores (more than most machines here have, so that no
    count below is torch's own default); this process's threads restored after."""
    before = torch.get_num_threads()
    monkeypatch.setenv("RAIT_THREADS_DIR", str(tmp_path / "registry"))
    monkeypatch.setenv("RAIT_CORES", "6")
    for name in ("RAIT_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    threads.leave()
    yield tmp_path / "registry"
    threads.leave()
    torch.set_num_threads(before)


def _env(registry: Path, **extra: str) -> dict[str, str]:
    return {**ENV, "RAIT_THREADS_DIR": str(registry), "RAIT_CORES": "6", **extra}


def _child(
    registry: Path, want: int = 1, linger: float = 0.0, go: Path | None = None, **extra: str
) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(want), str(linger), str(go or "-")],
        env=_env(registry, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(job: subprocess.Popen) -> list[str]:
    out, _ = job.communicate(timeout=60)
    assert job.returncode == 0, out
    return out.splitlines()


def _threads(lines: list[str]) -> int:
    return int(next(line for line in lines if line.startswith("threads "))[len("threads ") :])


# --------------------------------------------------------------------------- the arithmetic
@given(st.integers(1, 512), st.integers(1, 64))
def test_shares_fill_the_cores_and_give_each_at_least_one(cores, processes):
    got = threads.shares(cores, processes)
    assert len(got) == processes and min(got) >= 1
    assert max(got) - min(got) <= 1
    if processes <= cores:
        assert sum(got) == cores  # every core used, none twice
    else:
        assert got == [1] * processes  # more processes than cores: one thread each


def test_share_examples():
    assert threads.shares(4, 2) == [2, 2]
    assert threads.shares(5, 2) == [3, 2]
    assert threads.shares(16, 3) == [6, 5, 5]
    assert threads.shares(2, 2) == [1, 1]
    assert threads.share(4, 1) == 4


def test_plan_under_a_launcher_uses_the_local_rank():
    ranks = [threads.plan_threads(5, live=1, world=2, rank=r).threads for r in (0, 1)]
    assert ranks == [3, 2]
    # more live processes than the launcher's ranks: they all share, ordered by start
    plan = threads.plan_threads(8, live=4, world=2, rank=0, position=3)
    assert (plan.threads, plan.processes) == (2, 4)
    line = threads.plan_threads(8, live=2, world=4, rank=1).line()
    assert line == "[threads] 2 of 8 cores (2 rait processes on this machine / local world 4)"


def test_local_world_reads_the_launchers_variables():
    assert threads.local_world({}) == (1, 0)
    assert threads.local_world({"LOCAL_WORLD_SIZE": "4", "LOCAL_RANK": "2"}) == (4, 2)
    assert threads.local_world({"LOCAL_WORLD_SIZE": "x"}) == (1, 0)


# --------------------------------------------------------------------------- explicit choices
def test_an_explicit_choice_wins_and_says_so():
    assert threads.explicit_threads({}) is None
    assert threads.explicit_threads({"RAIT_THREADS": "auto"}) is None
    both = {"RAIT_THREADS": "3", "OMP_NUM_THREADS": "2"}
    assert threads.explicit_threads(both) == (3, "RAIT_THREADS=3")
    assert threads.explicit_threads({"OMP_NUM_THREADS": "2"}) == (2, "OMP_NUM_THREADS=2")
    assert threads.explicit_threads({"OMP_NUM_THREADS": "4,2"}) == (4, "OMP_NUM_THREADS=4,2")
    assert threads.explicit_threads({"OMP_NUM_THREADS": "1"}) == (1, "OMP_NUM_THREADS=1")
    # the 1 torchrun gives its ranks when OMP_NUM_THREADS is unset is not a choice
    assert threads.explicit_threads({"OMP_NUM_THREADS": "1", "TORCHELASTIC_RUN_ID": "x"}) is None
    plan = threads.plan_threads(8, live=2, explicit=(3, "RAIT_THREADS=3"))
    assert plan.threads == 3
    assert plan.line() == (
        "[threads] 3 of 8 cores (set by RAIT_THREADS=3; 2 rait processes on this machine / "
        "local world 1)"
    )


@pytest.mark.parametrize("name", ["RAIT_THREADS", "RAIT_CORES"])
@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_bad_count_is_one_config_error(name, value):
    read = threads.explicit_threads if name == "RAIT_THREADS" else threads.available_cores
    with pytest.raises(ConfigError, match=f"{name}: expected a whole number"):
        read({name: value})


def test_the_cores_are_those_this_process_may_use():
    assert threads.available_cores({"RAIT_CORES": "7"}) == 7
    detected = threads.available_cores({})
    assert 1 <= detected <= len(os.sched_getaffinity(0))


def test_the_env_override_sets_torch_threads(private_registry, monkeypatch, capsys):
    monkeypatch.setenv("RAIT_THREADS", "5")
    plan = threads.share_cores()
    assert torch.get_num_threads() == 5 and plan.source == "RAIT_THREADS=5"
    assert "[threads] 5 of 6 cores (set by RAIT_THREADS=5;" in capsys.readouterr().out


# --------------------------------------------------------------------------- the registry
def test_a_stale_entry_does_not_count(private_registry):
    """A file nobody holds locked (a process gone without cleaning up) is removed, not
    counted; a half-made one is litter once old."""
    private_registry.mkdir()
    stale = private_registry / "999999-deadbeef.json"
    stale.write_text(json.dumps({"pid": 999999, "started": 0.0, "cpus": [0]}))
    garbled = private_registry / "5-cafe.json"
    garbled.write_text('{"pid": "five", "started": "yesterday"')
    old, new = private_registry / ".1-aa.partial", private_registry / ".2-bb.partial"
    old.write_text("")
    new.write_text("")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    plan = threads.share_cores(log=None)
    assert (plan.live, plan.threads) == (1, 6)
    assert not stale.exists() and not garbled.exists()
    assert not old.exists() and new.exists()


def test_a_killed_process_entry_does_not_count(private_registry):
    """kill -9 leaves the file behind; its lock goes with the process. (And a waiting parent,
    as ``rait run`` waits for its shards, does not share with its children.)"""
    threads.share_cores(log=None)
    job = _child(private_registry, linger=60)
    first = "[threads] 6 of 6 cores (1 rait process on this machine / local world 1)"
    assert job.stdout.readline().strip() == first  # this process, its parent, not counted
    assert job.stdout.readline().strip() == "ready"
    registry = threads.Registry(private_registry)
    assert sorted(e["pid"] for e in registry.live()) == sorted([os.getpid(), job.pid])
    plan = threads.share_cores(log=None)
    assert (plan.live, plan.threads) == (2, 3)  # while it lives, it counts
    os.kill(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    job.stdout.close()
    assert len(list(private_registry.glob("*.json"))) == 2  # its file is still there
    plan = threads.share_cores(log=None)
    assert (plan.live, plan.threads) == (1, 6)
    assert [e["pid"] for e in registry.live()] == [os.getpid()]


def test_an_unusable_registry_falls_back_to_every_core(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RAIT_THREADS_DIR", str(blocker / "registry"))
    plan = threads.share_cores()
    assert (plan.threads, plan.live) == (6, 1) and torch.get_num_threads() == 6
    line = capsys.readouterr().out.strip()
    assert line.startswith("[threads] 6 of 6 cores (1 rait process on this machine")
    assert f"registry {blocker / 'registry'} unusable" in line
    assert "other rait processes not counted" in line


def test_a_later_split_logs_only_a_change(private_registry, capsys):
    threads.share_cores()
    threads.share_cores()
    assert capsys.readouterr().out.splitlines() == [
        "[threads] 6 of 6 cores (1 rait process on this machine / local world 1)"
    ]
    other = threads.Registry(private_registry)  # a second process, as far as the files go
    other.join({"pid": 1, "started": time.time(), "cpus": sorted(os.sched_getaffinity(0))})
    try:
        assert threads.share_cores().threads == 3 and torch.get_num_threads() == 3
        assert capsys.readouterr().out.splitlines() == [
            "[threads] 3 of 6 cores (2 rait processes on this machine / local world 1)"
        ]
    finally:
        other.leave()


def test_processes_on_other_cores_do_not_count(private_registry):
    other = threads.Registry(private_registry)
    other.join({"pid": 1, "started": time.time(), "cpus": [10_000]})
    try:
        assert threads.share_cores(log=None).live == 1
    finally:
        other.leave()


# --------------------------------------------------------------------------- real processes
def test_two_processes_started_together_share_the_cores(private_registry):
    """Two CPU processes at once on 6 cores: 3 threads each, each saying so."""
    jobs = [_child(private_registry, want=2, linger=1.0) for _ in range(2)]
    outputs = [_finish(job) for job in jobs]
    assert [_threads(lines) for lines in outputs] == [3, 3]
    for lines in outputs:
        assert "[threads] 3 of 6 cores (2 rait processes on this machine / local world 1)" in lines
    assert not list(private_registry.glob("*.json"))  # each left the registry at exit


def test_a_second_run_takes_its_share_and_the_first_gives_cores_up(private_registry, tmp_path):
    """A user's second run: it starts beside the first (``go`` once the first has taken all 6
    cores) and takes 3; the first gives 3 up at its next stage boundary."""
    go = tmp_path / "go"
    first, second = _child(private_registry, 2, 1.0), _child(private_registry, 2, 1.0, go)
    assert first.stdout.readline().strip() == (
        "[threads] 6 of 6 cores (1 rait process on this machine / local world 1)"
    )
    assert first.stdout.readline().strip() == "ready"
    go.write_text("")
    rest, second = _finish(first), _finish(second)
    both = "[threads] 3 of 6 cores (2 rait processes on this machine / local world 1)"
    assert second[0] == both and _threads(second) == 3
    assert rest[0] == both and _threads(rest) == 3


def test_a_launchers_ranks_split_by_local_world(monkeypatch, capsys):
    """torchrun's ranks: cores // W each (the remainder to the first ranks), its default
    OMP_NUM_THREADS=1 replaced, without waiting to see each other in the registry."""
    env = {"LOCAL_WORLD_SIZE": "2", "OMP_NUM_THREADS": "1", "TORCHELASTIC_RUN_ID": "t"}
    for name, value in {**env, "RAIT_CORES": "7"}.items():
        monkeypatch.setenv(name, value)
    got = []
    for rank in (0, 1):
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        threads.leave()
        threads.share_cores()
        got.append(torch.get_num_threads())
    assert got == [4, 3]
    assert capsys.readouterr().out.splitlines() == [
        f"[threads] {n} of 7 cores (1 rait process on this machine / local world 2)" for n in got
    ]


# --------------------------------------------------------------------------- the CLI hook
def test_the_cli_takes_the_share_once_the_config_is_loaded(tmp_path, monkeypatch, capsys):
    seen = []

    def fake_crss(cfg, args):
        seen.append(torch.get_num_threads())
        return "crss done"

    commands = [
        dataclasses.replace(c, run=fake_crss) if c.name == "crss" else c for c in cli.COMMANDS
    ]
    monkeypatch.setattr(cli, "COMMANDS", commands)
    monkeypatch.setenv("RAIT_THREADS", "5")
    knowledge = tmp_path / "k.jsonl"
    knowledge.write_text("")
    assert cli.main(["crss", "--knowledge", str(knowledge)]) == 0
    assert seen == [5]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[threads] 5 of 6 cores (set by RAIT_THREADS=5;")
    assert out[1] == "crss done"
    threads.leave()
    # a bad setting: one error line, and no split
    assert cli.main(["crss", "--knowledge", str(knowledge), "--tau-mu", "2"]) == 2
    captured = capsys.readouterr()
    assert "[threads]" not in captured.out and len(captured.err.strip().splitlines()) == 1
    assert threads.current_plan() is None


def test_loading_a_model_is_a_stage_boundary(private_registry, tiny_model_dir, capsys):
    """Every stage loads its model through ``load_model``: a process started alone gives up
    cores there once another has arrived."""
    from rait.models import ModelConfig, load_model

    threads.share_cores()
    other = threads.Registry(private_registry)
    other.join({"pid": 1, "started": time.time(), "cpus": sorted(os.sched_getaffinity(0))})
    try:
        load_model(ModelConfig(name=str(tiny_model_dir)))
        assert torch.get_num_threads() == 3
    finally:
        other.leave()
    assert capsys.readouterr().out.splitlines() == [
        "[threads] 6 of 6 cores (1 rait process on this machine / local world 1)",
        "[threads] 3 of 6 cores (2 rait processes on this machine / local world 1)",
    ]
