"""The run directory: each stage's outputs with a record of the config and inputs it used.

``RUN/<stage>/stage.json`` holds the stage's *fingerprint* (a hash of its config and of the
content of its input files) and its status:

* ``complete`` with the same fingerprint: the stage is not run again;
* ``running`` with the same fingerprint: the stage was interrupted; it resumes, keeping the
  rows it already wrote (see :class:`ResumableJsonl`);
* a different fingerprint (config or inputs changed): the stage's old outputs are removed
  and it runs from scratch.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rait.errors import ConfigError
from rait.fileio import dumps, file_digest, read_json, stable_hash, write_json

MANIFEST = "stage.json"


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
        try:
            return read_json(self.manifest_path)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

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
        if not resuming and self.path.exists():
            if not self.manifest_path.exists() and any(self.path.iterdir()):
                raise ConfigError(
                    f"{self.path} exists and is not a rait stage folder (no {MANIFEST}); "
                    "refusing to replace it: choose a new or empty output folder"
                )
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
        if stage.is_complete():
            log(f"[{name}] up to date, skipped ({stage.path})")
            return stage
        resuming = stage.begin()
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
