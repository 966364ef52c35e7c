"""Several processes on one stage: ``torchrun`` / ``accelerate launch`` ranks, and shards of a
probe or an evaluation with a merge step.

**Ranks.** Under ``torchrun --nproc_per_node N -m rait ...`` (or ``accelerate launch -m rait``)
:class:`Processes` joins the launcher's process group (NCCL on GPUs, gloo on CPUs; each rank on
GPU ``LOCAL_RANK``). Training runs DDP through the trainer (``rait.train``); the gradient
extraction splits its batches (``rait.influence``); the probe and the evaluation split theirs
into one shard per rank, and rank 0 merges them.

**Launching.** ``rait run`` with a ``parallel`` section starts these processes itself
(:func:`run_shards`, :func:`run_launched`): N shards side by side, each with its own
``CUDA_VISIBLE_DEVICES``, then the merge in its own process; each training under a launcher
(``torchrun …`` or ``accelerate launch …``). Every launched command writes its output to
``RUN/launch/NAME.log``.

**Shards.** ``rait probe|eval ... --shard K/N`` answers only shard K of N (every N-th batch,
from K) into ``OUT.shards/<fingerprint>/K-of-N.jsonl``, and writes nothing else: N such
commands run side by side as independent processes, e.g. one vLLM engine per GPU
(``CUDA_VISIBLE_DEVICES=K``). The same command without ``--shard`` is the merge step: it
takes every finished row of the shards of the same configuration (the fingerprint: same model,
data and settings), answers whatever is still missing itself, and writes the stage as one
process would. A killed shard resumes from its file; shards of another configuration are
never merged.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from rait.config import config_to_dict
from rait.errors import ConfigError, DataError, LaunchError, Location
from rait.fileio import atomic_open, read_json, stable_hash
from rait.rundir import ResumableJsonl

T = TypeVar("T")

#: a rank may wait this long for the others (a long shard of a probe): not the default 30 min
BARRIER_TIMEOUT = timedelta(hours=24)


@dataclass
class Processes:
    """This process's rank among ``world`` (1 when not launched by torchrun/accelerate)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> Processes:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            if torch.cuda.is_available():
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(
                "nccl" if torch.cuda.is_available() else "gloo", timeout=BARRIER_TIMEOUT
            )
        return cls(dist.get_rank(), dist.get_world_size())

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, tensor: Any) -> Any:
        """The sum over processes, in place. NCCL (the backend on GPUs) reduces CUDA tensors
        only: a CPU tensor is reduced through a copy on this process's GPU."""
        if self.world == 1:
            return tensor
        import torch
        import torch.distributed as dist

        if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
            on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
            dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
            return tensor.copy_(on_gpu.cpu())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather(self, items: list) -> list:
        if self.world == 1:
            return items
        import torch.distributed as dist

        parts: list[Any] = [None] * self.world
        dist.all_gather_object(parts, items)
        return [item for part in parts for item in part]

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based): every ``count``-th batch from ``index``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ConfigError(
                f"shard: need 0 <= K < N in K/N, got {self.index}/{self.count} (K counts from 0)"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"K/N"`` (e.g. ``0/4`` … ``3/4``)."""
        parts = str(text).split("/")
        try:
            index, count = (int(p) for p in parts)
        except ValueError:
            raise ConfigError(f"shard: expected K/N such as 0/4, got {text!r}") from None
        return cls(index, count)

    @classmethod
    def of(cls, procs: Processes) -> Shard:
        return cls(procs.rank, procs.world)

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def take(self, items: Sequence[T]) -> list[T]:
        return list(items[self.index :: self.count])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shards_folder(out_dir: Path, fingerprint: dict) -> Path:
    """Where the shards of the stage ``out_dir`` with this fingerprint write their rows."""

    return out_dir.parent / f"{out_dir.name}.shards" / stable_hash(fingerprint)[:16]


def shard_file(out_dir: Path, fingerprint: dict, shard: Shard) -> Path:
    return shards_folder(out_dir, fingerprint) / f"{shard.index}-of-{shard.count}.jsonl"


def merge_shards(out_dir: Path, fingerprint: dict, out: Any, wanted: set[str]) -> int:
    """Append to ``out`` (a :class:`rait.rundir.ResumableJsonl`) every row of this
    fingerprint's shard files that it lacks; returns how many. A row of another question, or a
    line that is not a JSON object with an ``id``, is an error naming the file and line (a
    last line cut short by a kill is skipped)."""
    folder = shards_folder(out_dir, fingerprint)
    added = 0
    for path in sorted(folder.glob("*-of-*.jsonl")) if folder.is_dir() else []:
        data = path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1].decode("utf-8", errors="replace")
        for number, line in enumerate(complete.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                where = Location(str(path), number)
                raise DataError(f"not valid JSON ({exc.msg})", where) from None
            if not isinstance(row, dict) or "id" not in row:
                raise DataError("not a row with an `id`", Location(str(path), number, field="id"))
            if str(row["id"]) not in wanted:
                raise DataError(
                    "this question is not in the stage's data (a shard of other data?)",
                    Location(str(path), number, record=str(row["id"]), field="id"),
                )
            if row["id"] not in out:
                out.append(row)
                added += 1
    return added


def run_shard(
    name: str,
    stage: Any,
    shard: Shard,
    procs: Processes,
    work: Callable[[Any], None],
    merged_result: Path,
) -> dict | None:
    """``work(rows)`` for ``shard`` of ``stage`` into its shard file (a
    :class:`rait.rundir.ResumableJsonl`). Returns what the stage returns: this shard's count
    for an independent shard process, the merged stage's result (``merged_result``) on a
    torchrun rank other than 0 once rank 0 has merged; None on rank 0, which goes on to merge."""

    path = shard_file(stage.path, stage.fingerprint(), shard)
    print(f"[{name}] shard {shard} -> {path}")
    with ResumableJsonl(path) as rows:
        work(rows)
        done = len(rows)
    if procs.world == 1:
        return {"shard": str(shard), "n": done, "file": str(path)}
    procs.barrier()  # every shard is written
    if not procs.main:
        procs.barrier()  # rank 0 has merged them
        return read_json(merged_result)
    return None


def remove_shards(out_dir: Path) -> None:
    """Drop the shard files once the merged stage is complete."""
    shutil.rmtree(out_dir.parent / f"{out_dir.name}.shards", ignore_errors=True)


# --------------------------------------------------------------------------- launching
def write_stage_config(cfg: Any, path: Path) -> Path:
    """A stage's dataclass config as the YAML its ``rait COMMAND --config`` reads back."""
    import yaml

    with atomic_open(path) as handle:
        yaml.safe_dump(config_to_dict(cfg), handle, sort_keys=False, allow_unicode=True)
    return path


def _tail(path: Path, lines: int = 15) -> str:
    """rait's own error lines when the log has them (once each), else its last lines."""
    text = path.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
    errors = list(dict.fromkeys(line for line in text if line.startswith("rait: error")))
    return "\n".join("    " + line for line in (errors or text[-lines:]))


def _wait(jobs: list[tuple[list[str], subprocess.Popen, Path]]) -> None:
    failed = [(cmd, job.wait(), log) for cmd, job, log in jobs]
    failed = [(cmd, code, log) for cmd, code, log in failed if code != 0]
    if failed:
        cmd, code, log = failed[0]
        raise LaunchError(
            f"{len(failed)} of {len(jobs)} launched process(es) failed; the first exited with "
            f"{code}: {shlex.join(cmd)}\nits log, {log}, ends with:\n{_tail(log)}"
        )


def run_shards(
    command: str,
    cfg: Any,
    out_dir: Path,
    shards: int,
    devices: Sequence[str] | None,
    launch_dir: Path,
    name: str,
    log=print,
) -> None:
    """``rait COMMAND --config C --out OUT --shard K/N`` for K = 0..N-1 side by side (shard K
    with ``CUDA_VISIBLE_DEVICES=devices[K]`` when given); returns when all are done. The merge
    is the caller's: the same stage run in-process without a shard."""
    config = write_stage_config(cfg, launch_dir / f"{name}.yaml")
    jobs = []
    for index in range(shards):
        cmd = [sys.executable, "-m", "rait", command, "--config", str(config)]
        cmd += ["--out", str(out_dir), "--shard", f"{index}/{shards}"]
        env = dict(os.environ)
        if devices:
            env["CUDA_VISIBLE_DEVICES"] = str(devices[index])
        log_path = launch_dir / f"{name}.shard{index}of{shards}.log"
        with open(log_path, "w", encoding="utf-8") as handle:
            job = subprocess.Popen(cmd, env=env, stdout=handle, stderr=subprocess.STDOUT)
        jobs.append((cmd, job, log_path))
    log(f"[{name}] {shards} shard process(es) running (logs in {launch_dir})")
    _wait(jobs)


def run_launched(
    launcher: str,
    command: str,
    cfg: Any,
    out_dir: Path,
    launch_dir: Path,
    name: str,
    log=print,
    env: dict[str, str] | None = None,
) -> None:
    """``LAUNCHER -m rait COMMAND --config C --out OUT`` (e.g. ``torchrun --nproc_per_node 8``,
    ``accelerate launch --config_file configs/accelerate/ddp.yaml``, or the Python executable
    itself for one process), with ``env`` added to the environment."""
    config = write_stage_config(cfg, launch_dir / f"{name}.yaml")
    cmd = [*shlex.split(launcher), "-m", "rait", command, "--config", str(config)]
    cmd += ["--out", str(out_dir)]
    log_path = launch_dir / f"{name}.log"
    log(f"[{name}] {shlex.join(cmd)} (log in {log_path})")
    with open(log_path, "w", encoding="utf-8") as handle:
        try:
            job = subprocess.Popen(
                cmd, env={**os.environ, **(env or {})}, stdout=handle, stderr=subprocess.STDOUT
            )
        except OSError as exc:
            raise LaunchError(f"cannot start the launcher {shlex.join(cmd)}: {exc}") from None
    _wait([(cmd, job, log_path)])
