"""``rait run CONFIG.yaml``: the whole pipeline from one config, one method or many, from one
shared probe (docs/methods.md §1–§7).

data → probe → (rehearse, influence) → build → train → eval → results, in one run directory
(its paths: :class:`rait.artifacts.RunLayout`).

Every stage is cached by its own fingerprint (its config and the bytes of its inputs, see
:mod:`rait.rundir`): rerunning an unchanged config does nothing; adding or changing a method
reuses the probe, the rehearsal and the influence; a killed run resumes at the stage it was
in (the probe and the evaluation keep their finished rows, the trainer its checkpoints).

The config's stage sections (``probe``, ``rehearse``, ``influence``, ``build``, ``train``,
``eval``) hold the stage configs' own keys (``rait probe --config`` etc.), except those the
pipeline fills in: the model, the data, and the paths between stages. They are checked when the
config is loaded, before anything runs.
"""

from __future__ import annotations

import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rait.artifacts import (
    INFLUENCE_SCORES_DIR,
    KNOWLEDGE_FIELD_PROBE_SETTING,
    REHEARSE_SUMMARY_FILE,
    RunLayout,
    trained_model,
)
from rait.build import BuildConfig, run_build
from rait.cliargs import option
from rait.config import build_config, config_to_dict, load_config
from rait.data.sources import BENCHMARKS, DataSource, load_source
from rait.data.world_facts import WorldFactsConfig, write_world_facts
from rait.distributed import run_launched, run_shards
from rait.errors import ConfigError, RaitError, VacuousSelectionWarning
from rait.evaluate import EvalConfig, eval_stage, run_eval
from rait.fileio import atomic_open, check_output_dir, read_json, stable_hash, write_json
from rait.influence import InfluenceConfig, run_influence
from rait.influence import stage_key as influence_stage_key
from rait.methods import BASELINES, METHODS, MethodSpec, get_method, method_names
from rait.methods.base import PRESTAGE_BUILD_FIELD
from rait.models import ModelConfig
from rait.probe import ProbeConfig, load_probe_inputs, probe_stage, run_probe
from rait.rehearse import RehearseConfig, run_rehearse
from rait.representations import RepresentationsConfig, run_representations
from rait.results import (
    DEFAULT_AGAINST,
    by_against,
    load_results,
    paired_comparisons,
    paired_table,
    results_json,
    results_table,
)
from rait.rundir import RunDir, exclusive
from rait.train import TrainConfig, run_train, train_stage


@dataclass(frozen=True)
class PreStage:
    """A stage between the probe and the build that some methods need
    (``MethodSpec.prestages``): its config (the run config's section of the same name, with
    ``probe`` filled in), its run function, the file ``rait build`` reads (through the field
    :data:`rait.methods.base.PRESTAGE_BUILD_FIELD` names) and whether its folder already holds
    the result of a config. Its name is also its CLI command (``python -m rait NAME``)."""

    config: type
    run: Callable[..., dict[str, Any]]
    output: Callable[[RunLayout], Path]
    done: Callable[[Path, Any], bool]


def _rehearse_done(out: Path, stage_cfg: Any) -> bool:
    return _same(_summary_config(out / REHEARSE_SUMMARY_FILE), stage_cfg)


def _influence_done(out: Path, stage_cfg: Any) -> bool:
    manifest = RunDir(out).stage(INFLUENCE_SCORES_DIR, {}).manifest() or {}
    recorded = manifest.get("config")
    return (
        manifest.get("status") == "complete"
        and recorded is not None
        and stable_hash(recorded) == stable_hash(influence_stage_key(stage_cfg))
    )


#: how the pipeline runs each pre-stage, in run order
PRESTAGES: dict[str, PreStage] = {
    "rehearse": PreStage(
        RehearseConfig, run_rehearse, lambda layout: layout.knowledge_after, _rehearse_done
    ),
    "influence": PreStage(
        InfluenceConfig, run_influence, lambda layout: layout.influence_scores, _influence_done
    ),
}

#: the keys the pipeline sets in each stage section (a config that sets them is refused)
FILLED = {
    "probe": ("model", "data", "shots"),
    "representations": ("model", "data"),
    "rehearse": ("probe",),
    "influence": ("probe",),
    "build": ("method", "data", "knowledge", "knowledge_after", "influence"),
    "train": ("model", "data"),
    "eval": ("model", "data", "method", "test_set", "role", "baseline", "confidence"),
}
HINT = {
    "model": "the top-level `model`",
    "data": "the top-level `data` (training questions) or `tests` (test sets)",
    "shots": "the top-level `shots`",
    "method": "`methods` and `baselines`",
    "test_set": "`tests[].name`",
    "role": "`tests[].role`",
}


@dataclass
class TestSet:
    """One test set: its column in the results table (``name``, ``role`` id or ood) and its
    questions (``data``; ``data.sample`` draws a sample)."""

    name: str = ""
    role: str = "id"
    data: DataSource = field(default_factory=DataSource)

    def validate(self) -> None:
        if not self.name.strip():
            raise ConfigError("tests: every test set needs a `name`")
        if self.role not in ("id", "ood"):
            raise ConfigError(f"tests: role must be id or ood, got {self.role!r}")


@dataclass
class ParallelConfig:
    """How ``rait run`` spreads its heavy stages over processes (see :mod:`rait.distributed`).

    ``shards``: the probe and every evaluation run as this many processes side by side
    (``rait probe|eval --shard K/N``, e.g. one vLLM engine per GPU), then merged; ``devices``:
    each shard's ``CUDA_VISIBLE_DEVICES`` (``["0", "1"]``, or ``["0,1", "2,3"]`` for
    tensor-parallel pairs with ``vllm: {tensor_parallel_size: 2}``); with ``devices`` set, even
    with one shard, the probe, the evaluations, the rehearsal and the influence run in
    processes of their own, so that their engines give the GPU memory back before the
    trainings; ``train_launcher``: every
    training runs under this command, e.g. ``torchrun --nproc_per_node 8`` or
    ``accelerate launch --config_file configs/accelerate/deepspeed-zero3.yaml``.
    """

    shards: int = 1
    devices: list[str] | None = None
    train_launcher: str | None = None

    def validate(self) -> None:
        if self.shards < 1:
            raise ConfigError(f"parallel.shards must be >= 1, got {self.shards}")
        if self.devices is not None and len(self.devices) != self.shards:
            raise ConfigError(
                f"parallel.devices names {len(self.devices)} device sets for "
                f"{self.shards} shard(s): give one per shard"
            )
        if self.train_launcher is not None and not shlex.split(self.train_launcher):
            raise ConfigError("parallel.train_launcher is empty: e.g. torchrun --nproc_per_node 8")


@dataclass
class PipelineConfig:
    """Everything ``rait run`` does (see the module docstring).

    ``world_facts``: build the offline world-facts set into ``RUN/data``; a ``data``,
    ``shots`` or test set of format ``world_facts`` without a ``path`` then reads it.
    ``methods``: data-construction methods to build, train and evaluate (default: every method
    registered in :data:`rait.methods.METHODS`, aliases left out; ``[]`` for baselines only);
    ``baselines``: base-model rows (``init-basic`` is always evaluated when any row needs
    THS). ``train.model`` is the top-level ``model``; ``eval`` settings apply to every row.
    ``representations``: the base model's question representations for the report's t-SNE
    and CRSS (``null`` skips the stage). ``against``: results.md sets every row against these
    rows, where the run has them, on the same questions (ΔTHS with its paired-bootstrap
    interval and p-value; ``eval.bootstrap`` sets the bootstrap). ``parallel``: shards for
    the probe and the evaluations, a launcher for the trainings (:class:`ParallelConfig`).
    """

    run_dir: str = option("runs/rait", help="the run directory (default: the config's run_dir)")
    model: ModelConfig = field(default_factory=ModelConfig)
    world_facts: WorldFactsConfig | None = None
    data: DataSource = field(default_factory=DataSource)
    shots: DataSource | None = None
    tests: list[TestSet] = field(default_factory=list)
    methods: list[str] = option(
        default_factory=lambda: method_names(aliases=False),
        help="the methods to build, train and evaluate (default: every registered method)",
    )
    baselines: list[str] = field(default_factory=lambda: list(BASELINES))
    probe: dict[str, Any] = field(default_factory=dict)
    representations: dict[str, Any] | None = field(default_factory=dict)
    rehearse: dict[str, Any] = field(default_factory=dict)
    influence: dict[str, Any] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    title: str | None = None
    against: list[str] = field(default_factory=lambda: list(DEFAULT_AGAINST))

    def validate(self) -> None:
        if list(self.against) != list(DEFAULT_AGAINST):  # named by the user: must be a row
            rows = {*self.methods, *self._baselines()}
            for name in self.against:
                if name not in rows:
                    raise ConfigError(
                        f"against: {name!r} is not a row of this run (rows: "
                        f"{', '.join(sorted(rows))})"
                    )
        if not self.methods and not self.baselines:
            raise ConfigError("nothing to run: `methods` and `baselines` are both empty")
        for name in self.methods:
            if name not in METHODS:
                raise ConfigError(
                    f"methods: unknown method {name!r}; known: {', '.join(sorted(METHODS))}"
                )
        for name in self.baselines:
            if name not in BASELINES:
                raise ConfigError(f"baselines: unknown {name!r}; known: {', '.join(BASELINES)}")
        for label, names in (("methods", self.methods), ("baselines", self.baselines)):
            if len(set(names)) != len(names):
                raise ConfigError(f"{label}: a name is listed twice")
        if not self.tests:
            raise ConfigError("tests: at least one test set is needed")
        names = [t.name for t in self.tests]
        if len(set(names)) != len(names):
            raise ConfigError("tests: two test sets have the same name")
        for section, keys in FILLED.items():
            for key in keys:
                if key in (getattr(self, section) or {}):
                    raise ConfigError(
                        f"{section}.{key} is set by the pipeline: use "
                        f"{HINT.get(key, 'the stage paths of the run directory')} instead"
                    )
        if not self.run_dir.strip():
            raise ConfigError("run_dir is empty: name the run directory (e.g. runs/my-run)")
        # every stage config is built (and checked) now, with the run directory's paths
        self.stage_configs(Path(self.run_dir), check_only=True)

    # ------------------------------------------------------------------ stage configs
    def resolve(self, source: DataSource, data_dir: Path) -> DataSource:
        if source.format == "world_facts" and source.path is None:
            if self.world_facts is None:
                raise ConfigError(
                    "a world_facts data source has no path: give one, or add a `world_facts` "
                    "section so the run builds the set"
                )
            return replace(source, path=str(data_dir))
        return source

    def specs(self) -> list[MethodSpec]:
        return [get_method(m) for m in self.methods]

    def prestages(self) -> list[str]:
        """The pre-stages the methods need, in :data:`PRESTAGES` order."""
        needed = {p for spec in self.specs() for p in spec.prestages}
        return [name for name in PRESTAGES if name in needed]

    def probe_settings(self) -> dict[str, bool]:
        """The probe settings that write the knowledge fields the methods require (R-Tuning-U's
        entropy: ``rtuning_u``), on whenever a method needs them."""
        settings = {}
        for spec in self.specs():
            for name in spec.requires:
                setting = KNOWLEDGE_FIELD_PROBE_SETTING.get(name)
                if setting is not None:
                    settings[setting] = True
        return settings

    def _stage(self, cls: type, section: str, **fills: Any) -> Any:
        """Stage ``section``'s dataclass config: the config's section plus the pipeline's
        fills, checked (errors name ``section.key``)."""
        return build_config(
            cls, {**getattr(self, section), **fills}, origin="config", prefix=section
        )

    def stage_configs(self, root: Path, check_only: bool = False) -> dict[str, Any]:
        """Every stage's dataclass config with the pipeline's fills (paths under ``root``)."""
        layout = RunLayout(root)
        data = config_to_dict(self.resolve(self.data, layout.data))
        shots = self.resolve(self.shots, layout.data) if self.shots else None
        model = config_to_dict(self.model)
        settings = {k: bool(self.probe.get(k)) or v for k, v in self.probe_settings().items()}
        out: dict[str, Any] = {
            "probe": self._stage(
                ProbeConfig,
                "probe",
                model=model,
                data=data,
                shots=config_to_dict(shots) if shots else None,
                **settings,
            )
        }
        if self.representations is not None:
            out["representations"] = self._stage(
                RepresentationsConfig, "representations", model=model, data=data
            )
        for name in self.prestages():
            # the stage reads the probe's folder (its own outputs do not exist yet)
            out[name] = self._stage(PRESTAGES[name].config, name, probe=str(layout.probe))
        out["build"] = {
            spec.name: self._stage(
                BuildConfig,
                "build",
                method=spec.name,
                data=data,
                knowledge=str(layout.knowledge),
                **{
                    PRESTAGE_BUILD_FIELD[name]: (
                        str(PRESTAGES[name].output(layout)) if name in spec.prestages else None
                    )
                    for name in PRESTAGE_BUILD_FIELD
                },
            )
            for spec in self.specs()
        }
        out["train"] = {
            spec.name: self._stage(
                TrainConfig, "train", model=model, data=str(layout.built(spec.name))
            )
            for spec in self.specs()
        }
        if self.parallel.train_launcher is None:  # one process: the batch sizes must divide
            trainings = [("train", c) for c in out["train"].values()]
            trainings += [(f"{k}.train", out[k].train) for k in self.prestages()]
            for section, train_cfg in trainings:
                try:
                    train_cfg.accumulation_steps(1)
                except ConfigError as exc:
                    raise ConfigError(f"{section}: {exc}") from None
        out["eval"] = {}
        for test in self.tests:
            for method in self._baselines():
                out["eval"][(test.name, method)] = self.eval_config(root, test, method)
            for method in self.methods:  # checked with the base model: no adapter exists yet
                self.eval_config(root, test, method, trained=self.model)
        return {} if check_only else out

    def eval_config(
        self, root: Path, test: TestSet, method: str, trained: ModelConfig | None = None
    ) -> Any:
        """The evaluation of ``method`` on ``test``: the base model for the baselines, the
        ``trained`` model for a method."""
        layout = RunLayout(root)
        baseline = layout.eval(test.name, "init-basic")
        confidence = METHODS[method].eval_confidence if method in METHODS else "answer"
        return self._stage(
            EvalConfig,
            "eval",
            model=config_to_dict(trained or self.model),
            data=config_to_dict(self.resolve(test.data, layout.data)),
            method=method,
            test_set=test.name,
            role=test.role,
            confidence=confidence,
            baseline=None if method == "init-basic" else str(baseline),
        )

    def _baselines(self) -> list[str]:
        """The base-model rows: the configured baselines, with Init-Basic first (every other
        row's THS is measured against it)."""
        return ["init-basic"] + [b for b in self.baselines if b != "init-basic"]


def run_pipeline(cfg: PipelineConfig, log=print) -> dict[str, Any]:
    """Run (or resume, or skip) every stage of ``cfg``; returns ``results.json``'s content.
    One ``rait run`` at a time writes a run directory (a second is refused, naming the
    first)."""
    cfg.validate()
    check_output_dir(cfg.run_dir, "run_dir")
    with exclusive(cfg.run_dir, "rait run"):
        return _run_pipeline(cfg, log)


def _run_pipeline(cfg: PipelineConfig, log) -> dict[str, Any]:
    run = RunDir(cfg.run_dir)
    root = run.root
    layout = RunLayout(root)
    started = time.perf_counter()
    if cfg.world_facts is not None:
        world_facts = cfg.world_facts
        run.run(
            "data",
            config_to_dict(world_facts),
            lambda stage, _resuming: {"manifest": write_world_facts(world_facts, stage.path)},
        )
    stages = cfg.stage_configs(root)
    preflight(cfg, stages, root)
    timings: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        log(f"[run] {name}")
        result = fn(*args, **kwargs)
        timings[name] = round(time.perf_counter() - t0, 2)
        return result

    launch = layout.launch

    def sharded(command: str, stage_cfg: Any, out: Path, stage, run_fn, name: str):
        """``run_fn`` in-process, after the shards when the config asks for them (the
        in-process run is then the merge)."""
        if (cfg.parallel.shards > 1 or cfg.parallel.devices) and not stage.is_complete():
            launch.mkdir(parents=True, exist_ok=True)
            devices = cfg.parallel.devices
            run_shards(command, stage_cfg, out, cfg.parallel.shards, devices, launch, name, log)
        return run_fn(stage_cfg, out)

    def probe(stage_cfg, out):
        return sharded("probe", stage_cfg, out, probe_stage(stage_cfg, out), run_probe, "probe")

    def evaluate(stage_cfg, out):
        name = f"eval-{stage_cfg.test_set}-{stage_cfg.method}"
        return sharded("eval", stage_cfg, out, eval_stage(stage_cfg, out), run_eval, name)

    def train(stage_cfg, out):
        launcher = cfg.parallel.train_launcher
        if launcher and not train_stage(stage_cfg, out).is_complete():
            launch.mkdir(parents=True, exist_ok=True)
            run_launched(launcher, "train", stage_cfg, out, launch, f"train-{out.name}", log)
        return run_train(stage_cfg, out, log=log)

    def isolated(command: str, stage_cfg: Any, out: Path, done: bool, run_fn):
        """With ``parallel.devices``, a stage that loads engines on the GPU (CRaFT's rehearsal,
        GRAIT's influence) first runs as its own ``python -m rait COMMAND`` on the first device
        set, so its memory is given back when it exits; the in-process call then finds its
        work done and only reads it."""
        if cfg.parallel.devices and not done:
            launch.mkdir(parents=True, exist_ok=True)
            device = {"CUDA_VISIBLE_DEVICES": str(cfg.parallel.devices[0])}
            run_launched(sys.executable, command, stage_cfg, out, launch, command, log, device)
        return run_fn(stage_cfg, out, log=log)

    timed("probe", probe, stages["probe"], layout.probe)
    if "representations" in stages:
        timed(
            "representations",
            run_representations,
            stages["representations"],
            layout.representations,
            log=log,
        )
    for name in cfg.prestages():
        out, stage_cfg, prestage = layout.root / name, stages[name], PRESTAGES[name]
        done = prestage.done(out, stage_cfg)
        timed(name, isolated, name, stage_cfg, out, done, prestage.run)
    results = []
    for test in cfg.tests:
        for method in cfg._baselines():
            if method == "init-basic" or method in cfg.baselines:
                out = layout.eval(test.name, method)
                timed(
                    f"eval {test.name} {method}", evaluate, stages["eval"][(test.name, method)], out
                )
    warned: list[str] = []
    for method in cfg.methods:
        with warnings.catch_warnings():  # logged here, and again before the results
            warnings.simplefilter("ignore", VacuousSelectionWarning)
            built = timed(
                f"build {method}",
                run_build,
                stages["build"][method],
                layout.built(method),
            )
        for text in built.get("vacuous", []):
            log(f"[run] warning: build {method}: {text}")
            warned.append(f"build {method}: {text}")
        trained = timed(f"train {method}", train, stages["train"][method], layout.train(method))
        model = trained_model(cfg.model, trained)
        for test in cfg.tests:
            out = layout.eval(test.name, method)
            timed(
                f"eval {test.name} {method}",
                evaluate,
                cfg.eval_config(root, test, method, model),
                out,
            )
    rows = [m for m in cfg._baselines() if m == "init-basic" or m in cfg.baselines] + cfg.methods
    for test in cfg.tests:
        for method in rows:
            results.append(load_results([layout.metrics(test.name, method)])[0])
    title = cfg.title or f"{cfg.model.name}: {', '.join(t.name for t in cfg.tests)}"
    present = {r["method"] for r in results}
    against = [a for a in cfg.against if a in present]  # the defaults: those the run has
    # the evaluations' bootstrap settings (`eval: {bootstrap: ...}`), for the paired intervals
    bootstrap = next(iter(stages["eval"].values())).bootstrap
    comparisons = [c for a in against for c in paired_comparisons(results, a, bootstrap)]
    table = "\n\n".join(
        [results_table(results, title=title)]
        + [paired_table(group) for group in by_against(comparisons).values()]
    )
    if warned:  # vacuous draws: a method that degenerated to another (rait build)
        table += "\n\nWarnings:\n" + "\n".join(f"- {text}" for text in warned)
    with atomic_open(layout.results_md) as handle:
        handle.write(table + "\n")
    summary = results_json(results, comparisons) | {
        "title": title,
        "methods": cfg.methods,
        "baselines": cfg.baselines,
        "warnings": warned,
        "seconds": timings,
        "total_seconds": round(time.perf_counter() - started, 2),
    }
    write_json(layout.results_json, summary)
    log("")
    log(table)
    log(f"\nRun directory: {root} (results.md, results.json)")
    return summary


def _describe(source: DataSource) -> str:
    """A data source in a few words: its format, subset and split, and where it is read."""
    parts = [source.format or "?"] + [p for p in (source.subset, source.split) if p]
    bench = BENCHMARKS.get(source.format or "")
    where = source.path or (f"hub {bench.hub_id}" if bench else "no path")
    sample = f", sample {source.sample}" if source.sample is not None else ""
    return f"{' '.join(parts)} ({where}{sample})"


def _count(source: DataSource) -> int | None:
    """How many questions a local source holds (after its ``sample``); None for a hub dataset,
    which ``--check`` does not download."""
    if source.path is None:
        return None
    return len(load_source(source))


def check_pipeline(cfg: PipelineConfig) -> str:
    """``rait run --check``: every stage's config built and checked, local data read and
    counted, and D_src set against what the methods draw from it, with nothing run or
    written (hub datasets are named, not downloaded). Vacuous draws that the sizes already
    imply (D_src no larger than N_van + N_idk: Van-Tuning takes all of it, and the method's
    known and unknown pools can only be smaller) are warnings, before the probe is paid."""
    root = Path(cfg.run_dir)
    stages = cfg.stage_configs(root)  # builds nothing on disk
    data = cfg.resolve(cfg.data, RunLayout(root).data)
    local = cfg.world_facts is None or data.format != "world_facts"
    n_src = _named("the training questions (`data`)", lambda: _count(data)) if local else None
    builds = stages["build"]
    lines = [
        f"config {cfg.run_dir}: {len(cfg.methods)} method(s), {len(cfg.tests)} test set(s), "
        f"pre-stages: {', '.join(cfg.prestages()) or 'none'}",
        f"D_src: {_describe(data)}: "
        + (f"{n_src:,} questions, every one probed" if n_src is not None else "not read here"),
    ]
    warnings_ = []
    by_sizes: dict[tuple, list[str]] = {}
    for method, build in builds.items():
        by_sizes.setdefault((build.n_van, build.n_idk), []).append(method)
    for (n_van, n_idk), methods in by_sizes.items():
        sizes = (
            "sizes from the probe's split (4:1 by default)"
            if n_van is None or n_idk is None
            else f"N_van {n_van:,} + N_idk {n_idk:,} = {n_van + n_idk:,}"
        )
        lines.append(f"  build {', '.join(methods)}: {sizes}")
    for (n_van, n_idk), methods in by_sizes.items():
        if None in (n_src, n_van, n_idk) or n_src > n_van + n_idk:
            continue
        warnings_.append(
            f"D_src has {n_src:,} questions, no more than the {n_van + n_idk:,} = N_van + N_idk "
            f"that {', '.join(methods)} build: a random draw of the whole set (Van-Tuning) "
            "takes all of D_src, and every split method has a side (known or unknown) no larger "
            "than what it draws, where its ranking picks nothing; probe the whole training pool "
            "(docs/methods.md §1)"
        )
    for i, test in enumerate(cfg.tests):
        source = cfg.resolve(test.data, RunLayout(root).data)
        n = None
        if cfg.world_facts is None or source.format != "world_facts":
            n = _named(f"tests[{i}] ({test.name!r}).data", lambda s=source: _count(s))
        count = f"{n:,} questions" if n is not None else "not read here"
        lines.append(f"test {test.name} ({test.role}): {_describe(source)}: {count}")
    if data.path is None or any(t.data.path is None for t in cfg.tests):
        lines.append("(hub datasets are not downloaded by --check; give `path` to count them)")
    lines += [f"warning: {text}" for text in warnings_]
    lines.append("config OK" + (f", {len(warnings_)} warning(s)" if warnings_ else ""))
    return "\n".join(lines)


def _named(where: str, check) -> Any:
    """``check()``, its error prefixed with where in the config it comes from."""
    try:
        return check()
    except RaitError as exc:
        raise ConfigError(f"config: {where}: {exc}") from None


def preflight(cfg: PipelineConfig, stages: dict[str, Any], root: Path) -> None:
    """Every check that needs the data but no model, before the first expensive stage: the
    training questions and their shots, and every test set (readable, valid, its sample)."""
    _named("the training questions (`data`, `shots`)", lambda: load_probe_inputs(stages["probe"]))
    for i, test in enumerate(cfg.tests):
        source = cfg.resolve(test.data, RunLayout(root).data)
        _named(f"tests[{i}] ({test.name!r}).data", lambda source=source: load_source(source))


def _same(recorded: Any, cfg: Any) -> bool:
    """Whether a config recorded in JSON is ``cfg`` (compared as JSON)."""
    return recorded is not None and stable_hash(recorded) == stable_hash(config_to_dict(cfg))


def _summary_config(path: Path) -> Any:
    """The ``config`` a finished stage recorded in its summary (None when there is none)."""
    try:
        return read_json(path).get("config")
    except (OSError, ValueError, AttributeError):
        return None


def load_pipeline_config(
    path: str | None, overrides: list[str] | tuple[str, ...] = ()
) -> PipelineConfig:
    """``rait run``'s config: a YAML file plus ``--set key.path=value`` overrides."""
    return load_config(PipelineConfig, path, list(overrides))
