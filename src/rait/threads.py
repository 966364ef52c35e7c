"""Processes that share a machine share its cores.

torch starts with one compute thread per core in every process, so two rait processes on one
machine (probe or eval shards, a launcher's ranks, a user's second run) ask for twice the
cores there are, and their OpenMP threads wait on each other: an evaluation that answers 100
questions in 10 s alone took 2–10 s a question beside another rait process. Here each rait
process takes its share instead:

    threads = ⌊C / n⌋ (+1 for the first C mod n processes),  at least 1,

with C the cores this process may use (the physical cores of its CPU affinity, at most its
cgroup CPU quota; ``RAIT_CORES`` replaces the count) and n the processes sharing them:
``max(live, W)``, where W is the launcher's local world (``LOCAL_WORLD_SIZE`` under torchrun
or accelerate) and ``live`` the rait processes alive on this machine whose cores overlap ours.
The live ones are found in a registry, one file per process in ``RAIT_THREADS_DIR`` (default
``<temp dir>/rait-processes``), each held under an ``flock`` for the life of its process: a file
whose lock is free belongs to a process that has ended (even by ``kill -9``) and is removed, not
counted. A process's own ancestors (a ``rait run`` waiting for the shards it started) are not
counted either. The split is made when a command starts (:func:`share_cores`) and made again
when a stage loads its model (a process started alone gives up cores once another arrives).

An explicit choice wins and is logged as such: ``RAIT_THREADS=N``, else ``OMP_NUM_THREADS``
set by the user (not the ``1`` torchrun sets by default for its ranks). An unusable registry
(an unwritable folder) is one log line: the process then counts only its launcher's ranks.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rait.errors import ConfigError

#: a half-made registry file (created, not yet renamed into place) older than this is litter
_PARTIAL_AGE_S = 60.0


# --------------------------------------------------------------------------- the arithmetic
def share(cores: int, processes: int, index: int = 0) -> int:
    """Process ``index``'s threads when ``processes`` share ``cores``: ⌊C/n⌋, one more for the
    first C mod n, at least 1 (the shares then sum to max(C, n))."""
    cores, processes = max(1, cores), max(1, processes)
    base, extra = divmod(cores, processes)
    return max(1, base + (1 if index % processes < extra else 0))


def shares(cores: int, processes: int) -> list[int]:
    """Every process's :func:`share`."""
    return [share(cores, processes, index) for index in range(max(1, processes))]


# --------------------------------------------------------------------------- the cores
def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def _physical_cores(cpus: set[int]) -> int:
    """How many physical cores the logical CPUs ``cpus`` are on (torch's default uses one
    thread per physical core); their count where the topology is unknown."""
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return len(cpus)
        cores.add((package, core))
    return len(cores) or len(cpus)


def _cgroup_quota() -> int | None:
    """The container's CPU quota in whole CPUs (rounded up), None when there is none."""
    for path, split in (
        ("/sys/fs/cgroup/cpu.max", lambda text: text.split()[:2]),
        (
            "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            lambda text: [text, Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text()],
        ),
    ):
        try:
            quota, period = (part.strip() for part in split(Path(path).read_text()))
            if quota not in ("max", "-1") and int(period) > 0:
                return max(1, math.ceil(int(quota) / int(period)))
        except (OSError, ValueError):
            continue
    return None


def _positive(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name}: expected a whole number of at least 1, got {text!r}")
    return value


def available_cores(env: Mapping[str, str] | None = None) -> int:
    """C: ``RAIT_CORES`` if set, else the physical cores of this process's CPU affinity, at
    most its cgroup CPU quota."""
    env = os.environ if env is None else env
    if env.get("RAIT_CORES", "").strip():
        return _positive("RAIT_CORES", env["RAIT_CORES"].strip())
    cores = _physical_cores(_affinity())
    quota = _cgroup_quota()
    return min(cores, quota) if quota else cores


# --------------------------------------------------------------------------- explicit choices
def explicit_threads(env: Mapping[str, str] | None = None) -> tuple[int, str] | None:
    """The user's own thread count and where it comes from: ``RAIT_THREADS`` (``auto`` or
    unset: none), else ``OMP_NUM_THREADS``, except the ``1`` torchrun gives its ranks when it
    is unset (``TORCHELASTIC_RUN_ID`` marks them; ``RAIT_THREADS=1`` keeps one thread)."""
    env = os.environ if env is None else env
    chosen = env.get("RAIT_THREADS", "").strip()
    if chosen and chosen.lower() != "auto":
        return _positive("RAIT_THREADS", chosen), f"RAIT_THREADS={chosen}"
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if not omp:
        return None
    first = omp.split(",")[0].strip()  # OpenMP accepts a list, one count per nesting level
    if not first.isdigit() or int(first) < 1:
        return None
    if first == "1" and env.get("TORCHELASTIC_RUN_ID"):
        return None  # torchrun's default for its ranks, not a choice
    return int(first), f"OMP_NUM_THREADS={omp}"


def local_world(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(W, this process's local rank) under torchrun / accelerate; (1, 0) otherwise."""
    env = os.environ if env is None else env
    try:
        size = max(1, int(env.get("LOCAL_WORLD_SIZE", "1") or 1))
        rank = max(0, int(env.get("LOCAL_RANK", "0") or 0))
    except ValueError:
        return 1, 0
    return size, min(rank, size - 1)


# --------------------------------------------------------------------------- the registry
def default_registry_dir() -> Path:
    return Path(tempfile.gettempdir()) / "rait-processes"


def registry_dir(env: Mapping[str, str] | None = None) -> Path:
    """``RAIT_THREADS_DIR``, else one folder in the temp dir for every user of the machine."""
    env = os.environ if env is None else env
    folder = env.get("RAIT_THREADS_DIR", "").strip()
    return Path(folder) if folder else default_registry_dir()


def _ancestors() -> set[int]:
    """The pids of this process's parent, its parent, … (Linux: from /proc; else the parent)."""
    found: set[int] = set()
    pid = os.getppid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return found


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process
    return True


def _start_order(entry: dict) -> tuple[float, int]:
    started, pid = entry.get("started"), entry.get("pid")
    return (
        float(started) if isinstance(started, (int, float)) else 0.0,
        pid if isinstance(pid, int) else 0,
    )


def _locked(handle: Any, entry: dict) -> bool:
    """Whether the file open as ``handle`` is locked by its process (which then lives)."""
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no locks on this file system: whether the pid lives
        pid = entry.get("pid")
        return _pid_alive(pid) if isinstance(pid, int) else True
    return False  # nobody holds it: its process has ended


class Registry:
    """One file per live rait process in ``folder``, each locked by its process (``flock``):
    a file whose lock can be taken is a dead process's, removed and not counted."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path: Path | None = None
        self._handle: Any = None

    def join(self, info: dict) -> Path:
        """Add this process (its ``info`` written as JSON); raises OSError if it cannot."""
        import fcntl

        self._make_folder()
        name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        partial = self.folder / f".{name}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        handle = os.fdopen(fd, "w", encoding="utf-8")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # before the file can be seen: never taken for dead
            handle.write(json.dumps(info) + "\n")
            handle.flush()
            os.replace(partial, self.folder / f"{name}.json")
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        self.path, self._handle = self.folder / f"{name}.json", handle
        return self.path

    def _make_folder(self) -> None:
        """The folder; the default one, when this makes it, shared by every user of the machine
        (sticky, as /tmp is: each may remove only their own files)."""
        try:
            self.folder.mkdir(parents=True)
        except FileExistsError:
            if not self.folder.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(self.folder)) from None
            return
        if self.folder == default_registry_dir():
            with contextlib.suppress(OSError):
                os.chmod(self.folder, 0o1777)

    def leave(self) -> None:
        if self._handle is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self._handle.close()
        self.path, self._handle = None, None

    def live(self) -> list[dict]:
        """The entries of live processes, this one's included (each with its file's ``name``),
        oldest first; dead processes' files are removed."""
        entries = []
        try:
            names = sorted(os.listdir(self.folder))
        except OSError:
            return []
        for name in names:
            path = self.folder / name
            if name.startswith("."):
                self._remove_partial(path)
            elif name.endswith(".json"):
                entry = self._read_if_live(path)
                if entry is not None:
                    entries.append({**entry, "name": name})
        return sorted(entries, key=_start_order)

    def _read_if_live(self, path: Path) -> dict | None:
        """The entry of ``path`` if its process lives; else None (and the file removed)."""
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError:
            return None  # removed meanwhile, or unreadable
        with handle:
            text = handle.read()
            try:
                entry = json.loads(text) if text.strip() else {}
            except ValueError:
                entry = {}
            entry = entry if isinstance(entry, dict) else {}
            if path == self.path or _locked(handle, entry):
                return entry
        with contextlib.suppress(OSError):
            os.unlink(path)
        return None

    def _remove_partial(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > _PARTIAL_AGE_S:
                os.unlink(path)


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Plan:
    """The threads of this process and why: ``cores`` C shared by ``processes`` n =
    max(live rait processes, local world W), or the user's ``source`` when set."""

    threads: int
    cores: int
    live: int
    world: int
    source: str = ""
    note: str = ""

    @property
    def processes(self) -> int:
        return max(self.live, self.world)

    def line(self) -> str:
        s = "" if self.live == 1 else "es"
        why = f"{self.live} rait process{s} on this machine / local world {self.world}"
        if self.source:
            why = f"set by {self.source}; {why}"
        if self.note:
            why += f"; {self.note}"
        return f"[threads] {self.threads} of {self.cores} cores ({why})"


def plan_threads(
    cores: int,
    live: int,
    world: int = 1,
    rank: int = 0,
    position: int = 0,
    explicit: tuple[int, str] | None = None,
    note: str = "",
) -> Plan:
    """This process's share of ``cores`` among max(``live``, ``world``) processes: its
    local ``rank`` orders it among a launcher's ranks, else its ``position`` (by start) among
    the live ones; an ``explicit`` (threads, source) wins."""
    live = max(1, live)
    if explicit is not None:
        return Plan(explicit[0], cores, live, world, explicit[1], note)
    index = rank if live <= world else position
    return Plan(share(cores, max(live, world), index), cores, live, world, "", note)


# --------------------------------------------------------------------------- this process
@dataclass
class _State:
    pid: int = -1
    registry: Registry | None = None
    problem: str = ""
    plan: Plan | None = None
    interop_tried: bool = False


_STATE = _State()


def _cpus_overlap(entry: dict, cpus: set[int]) -> bool:
    """Whether an entry's process may use some of our cores (an entry that does not say: yes)."""
    theirs = entry.get("cpus")
    theirs = {c for c in theirs if isinstance(c, int)} if isinstance(theirs, list) else set()
    return not theirs or bool(cpus & theirs)


def _command() -> str:
    """This process's command line, for whoever reads the registry (``rait …`` for the CLI)."""
    argv = sys.argv or [""]
    program = Path(argv[0]).name
    return " ".join(["rait" if program in ("rait", "__main__.py") else program, *argv[1:]])


def _join(env: Mapping[str, str]) -> None:
    """Register this process once (a forked child registers anew)."""
    if _STATE.pid == os.getpid():
        return
    if _STATE.registry is not None and _STATE.registry._handle is not None:
        _STATE.registry._handle.close()  # a forked child's copy: the parent's entry stays its
    _STATE.pid, _STATE.registry, _STATE.problem, _STATE.plan = os.getpid(), None, "", None
    _STATE.interop_tried = False
    registry = Registry(registry_dir(env))
    info = {
        "pid": os.getpid(),
        "started": time.time(),
        "cpus": sorted(_affinity()),
        "command": _command(),
    }
    try:
        registry.join(info)
    except (OSError, ImportError) as exc:  # an unwritable folder; no fcntl (Windows)
        reason = getattr(exc, "strerror", None) or str(exc)
        _STATE.problem = (
            f"registry {registry.folder} unusable ({reason}): other rait processes not counted"
        )
        return
    _STATE.registry = registry
    atexit.register(_leave, os.getpid())


def _leave(pid: int) -> None:
    if _STATE.registry is not None and os.getpid() == pid:
        _STATE.registry.leave()


def _current_plan(env: Mapping[str, str]) -> Plan:
    cpus = _affinity()
    world, rank = local_world(env)
    live, position = 1, 0
    if _STATE.registry is not None:
        ancestors = _ancestors()
        entries = [
            e
            for e in _STATE.registry.live()
            if e.get("pid") not in ancestors and _cpus_overlap(e, cpus)
        ]
        names = [e["name"] for e in entries]
        own = _STATE.registry.path.name if _STATE.registry.path else None
        live = max(1, len(entries) + (own not in names))
        position = names.index(own) if own in names else len(names)
    explicit = explicit_threads(env)
    return plan_threads(available_cores(env), live, world, rank, position, explicit, _STATE.problem)


def _apply(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if not _STATE.interop_tried:  # settable once, before any inter-op work: else it stays
        _STATE.interop_tried = True
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(threads)


def _print(line: str) -> None:
    print(line, flush=True)


def share_cores(
    log: Callable[[str], None] | None = _print, env: Mapping[str, str] | None = None
) -> Plan:
    """Take this process's share of the machine's cores (``torch.set_num_threads``) and log
    it (stdout, with the stages' other lines). The first call registers the process; each later
    one (a stage boundary) splits again and logs only a change."""
    env = os.environ if env is None else env
    _join(env)
    plan = _current_plan(env)
    previous = _STATE.plan
    _apply(plan.threads)
    _STATE.plan = plan
    if log is not None and (previous is None or previous.threads != plan.threads):
        log(plan.line())
    return plan


def current_plan() -> Plan | None:
    """The last split of this process (None before :func:`share_cores`)."""
    return _STATE.plan if _STATE.pid == os.getpid() else None


def leave() -> None:
    """Leave the registry now (it is left at exit anyway) and forget this process's split."""
    _leave(os.getpid())
    _STATE.pid, _STATE.registry, _STATE.plan, _STATE.problem = -1, None, None, ""
