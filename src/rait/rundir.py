"""The run directory: each stage's outputs with a record of the config and inputs it used.

``RUN/<stage>/stage.json`` holds the stage's *fingerprint* (a hash of its config and of the
content of its input files) and its status:

* ``complete`` with the same fingerprint: the stage is not run again;
* ``running`` with the same fingerprint: the stage was interrupted; it resumes, keeping the
  rows it already wrote (see :class:`ResumableJsonl`);
* a different fingerprint (config or inputs changed): the stage's old outputs are removed
  and it runs from scratch, but only when the folder is this stage's (its ``stage.json`` names
  the same stage): another stage's folder, a folder that is not rait's, or a folder holding
  one of the stage's own inputs is never deleted; that is a :class:`ConfigError`.

One process at a time writes a stage folder: :meth:`Stage.lock` takes an exclusive lock
(``fcntl.flock``) on ``.<folder>.lock`` beside the folder, holding the writer's pid and
command. A second writer is refused with a message naming the holder; the lock dies with its
process, so a killed run leaves no stale lock behind (its file is simply taken over).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rait.errors import ConfigError, RaitError
from rait.fileio import dumps, file_digest, is_within, read_json, stable_hash, write_json

MANIFEST = "stage.json"

# the locks this process holds: path -> (open file, depth); re-entrant within a process
_HELD: dict[str, list[Any]] = {}


def lock_path(folder: str | os.PathLike[str]) -> Path:
    """The lock file of an output folder (or file): ``.<name>.lock`` beside it, so that
    replacing the folder never removes its lock."""
    folder = Path(folder).absolute()
    return folder.parent / f".{folder.name}.lock"


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike[str], what: str = "") -> Iterator[None]:
    """Hold the write lock of ``folder`` for the duration; a second process is refused with a
    :class:`ConfigError` naming the holder (pid, command, start time)."""
    import fcntl

    path = lock_path(folder)
    key = str(path)
    if key in _HELD:  # this process holds it already (a stage inside a locked run)
        _HELD[key][1] += 1
        try:
            yield
        finally:
            _HELD[key][1] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        try:
            info = json.loads(holder)
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
            who = f"pid {info['pid']}, `{info['command']}`, since {since}"
        except (ValueError, KeyError, TypeError):
            who = "another process"
        raise ConfigError(
            f"{folder} is being written by another rait process ({who}); wait for it to "
            f"finish, or choose another output{' for ' + what if what else ''} "
            f"(lock: {path})"
        ) from None
    handle.seek(0)
    handle.truncate()
    command = " ".join(["rait", *sys.argv[1:]]) if sys.argv else "rait"
    handle.write(dumps({"pid": os.getpid(), "command": command, "started": time.time()}))
    handle.flush()
    _HELD[key] = [handle, 1]
    try:
        yield
    finally:
        del _HELD[key]
        handle.close()  # releases the lock


def fingerprint(config: Mapping[str, Any], inputs: Iterable[str | os.PathLike[str]] = ()) -> dict:
    """What a stage's result depends on: its config and the bytes of its input files."""
    return {
        "config_hash": stable_hash(config),
        "inputs": {str(p): content_digest(p) for p in inputs},
    }


def content_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, or of every file in a folder (names and bytes); "missing" if absent."""
    p = Path(path)
    if p.is_file():
        return file_digest(p)
    if p.is_dir():
        parts = [
            f"{f.relative_to(p)}:{file_digest(f)}" for f in sorted(p.rglob("*")) if f.is_file()
        ]
        return stable_hash(parts)
    return "missing"


@dataclass
class Stage:
    """One stage's folder in a run directory."""

    path: Path
    name: str
    config: dict[str, Any]
    inputs: list[str] = field(default_factory=list)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def fingerprint(self) -> dict:
        return fingerprint(self.config, self.inputs)

    def manifest(self) -> dict | None:
        """The stage record, or None when there is none or it is not a JSON object."""
        try:
            data = read_json(self.manifest_path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def lock(self, enabled: bool = True) -> contextlib.AbstractContextManager[None]:
        """The folder's write lock (see :func:`exclusive`); a no-op when not ``enabled`` (the
        ranks other than 0 of a distributed stage, which never write its folder)."""
        if not enabled:
            return contextlib.nullcontext()
        return exclusive(self.path, f"the {self.name} stage")

    def is_complete(self) -> bool:
        manifest = self.manifest()
        return bool(
            manifest
            and manifest.get("status") == "complete"
            and manifest.get("fingerprint") == self.fingerprint()
        )

    def begin(self) -> bool:
        """Prepare the folder; returns True when resuming an interrupted run."""
        manifest = self.manifest()
        current = self.fingerprint()
        resuming = bool(
            manifest
            and manifest.get("status") == "running"
            and manifest.get("fingerprint") == current
        )
        self._check_inputs()
        if not resuming and self.path.exists():
            self._check_replaceable(manifest)
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(
            self.manifest_path,
            {
                "stage": self.name,
                "status": "running",
                "fingerprint": current,
                "config": self.config,
                "started": (manifest or {}).get("started") if resuming else time.time(),
            },
        )
        return resuming

    def _check_inputs(self) -> None:
        for source in self.inputs:
            if Path(source).exists() and is_within(source, self.path):
                raise ConfigError(
                    f"the output folder {self.path} holds this stage's own input {source}; "
                    "writing the stage there would delete it: choose another output folder"
                )

    def _check_replaceable(self, manifest: dict | None) -> None:
        """Only this stage's own earlier folder may be replaced."""
        if self.path.is_file():
            raise ConfigError(f"{self.path} is a file; the {self.name} stage needs a folder")
        if not self.manifest_path.exists():
            if any(self.path.iterdir()):
                raise ConfigError(
                    f"{self.path} exists and is not a rait stage folder (no {MANIFEST}); "
                    "refusing to replace it: choose a new or empty output folder"
                )
            return
        if not isinstance(manifest, dict) or "fingerprint" not in manifest:
            raise ConfigError(
                f"{self.manifest_path} is not a rait stage record (no fingerprint); refusing to "
                f"replace {self.path}: choose a new or empty output folder"
            )
        if manifest.get("stage") != self.name:
            raise ConfigError(
                f"{self.path} holds the output of the {manifest.get('stage')!r} stage, not of "
                f"{self.name!r}; refusing to replace it: choose another output folder"
            )

    @contextlib.contextmanager
    def started(self) -> Iterator[bool]:
        """:meth:`begin`, yielding whether it resumes; a :class:`RaitError` (a problem the user
        can fix, found before any result was kept) in a fresh start removes the folder again,
        so no ``running`` record or empty output is left behind. A resumed stage keeps its
        earlier rows."""
        resuming = self.begin()
        try:
            yield resuming
        except RaitError:
            if not resuming:
                shutil.rmtree(self.path, ignore_errors=True)
            raise

    def complete(self, outputs: Mapping[str, Any] | None = None) -> None:
        manifest = self.manifest() or {}
        manifest.update(
            status="complete",
            finished=time.time(),
            outputs=dict(outputs or {}),
        )
        write_json(self.manifest_path, manifest)


class RunDir:
    """A run directory holding one folder per stage."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def stage(
        self, name: str, config: Mapping[str, Any], inputs: Iterable[str | os.PathLike] = ()
    ) -> Stage:
        return Stage(self.root / name, name, dict(config), [str(p) for p in inputs])

    def run(
        self,
        name: str,
        config: Mapping[str, Any],
        fn: Callable[[Stage, bool], Mapping[str, Any] | None],
        inputs: Iterable[str | os.PathLike] = (),
        log: Callable[[str], None] = print,
    ) -> Stage:
        """Run ``fn(stage, resuming)`` unless the stage is complete with this fingerprint."""
        stage = self.stage(name, config, inputs)
        with stage.lock():
            if stage.is_complete():
                log(f"[{name}] up to date, skipped ({stage.path})")
                return stage
            with stage.started() as resuming:
                log(f"[{name}] {'resuming' if resuming else 'running'} -> {stage.path}")
                outputs = fn(stage, resuming)
            stage.complete(outputs)
        return stage


class ResumableJsonl:
    """An append-only JSONL file of rows keyed by ``key``, flushed row by row.

    On open, the rows already written are read back; a last line cut short by a kill is
    dropped (the file is truncated to the last complete line), so a resumed run continues
    exactly where the interrupted one stopped.
    """

    def __init__(self, path: str | os.PathLike[str], key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.rows: dict[str, dict] = {}
        if self.path.exists():
            data = self.path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                with open(self.path, "r+b") as handle:
                    handle.truncate(end)
            for line in data[:end].decode("utf-8").split("\n"):
                if line.strip():
                    row = json.loads(line)
                    self.rows[str(row[key])] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def __contains__(self, key: object) -> bool:
        return str(key) in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def append(self, row: Mapping[str, Any]) -> None:
        self._handle.write(dumps(dict(row)) + "\n")
        self._handle.flush()
        self.rows[str(row[self.key])] = dict(row)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ResumableJsonl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
