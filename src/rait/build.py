"""Stage 2, ``rait build``: turn a knowledge probe into a refusal-aware SFT set
(docs/methods.md §3, §4 and §6).

Input: the training questions D_src, the probe's ``knowledge.jsonl`` (µ, σ per question) and,
for CRaFT, the rehearsed model's knowledge (``rait rehearse``, µ̃, σ̃). A method
(:mod:`rait.methods`) chooses N_van vanilla samples, which keep their answer, and N_idk IdK
samples, whose target becomes the refusal (or R-Tuning's padding / uncertainty expression).

Output, one JSON object per line, in TRL's conversational prompt/completion format:

``id``, ``kind`` (``van``/``idk``), ``prompt`` (``[{"role": "user", ...}]``: the REFUSE prompt of
GRAIT Tables 6/7 for every RAIT variant, the basic prompt for Van-Tuning), ``completion``
(``[{"role": "assistant", "content": target}]``), ``weight`` (1.0 unless a method sets it),
and for reading: ``method``, ``task``, ``answer`` (the target text), ``rule`` (which rule chose
it), ``mu``, ``sigma`` and, after rehearsal, ``delta_mu``, ``delta_sigma``. Rows are in a seeded
random order. Beside it, ``OUT.summary.json`` says how many samples each rule kept and dropped
and why, and any size adjustment. Both files are written whole or not at all.

**Sizes.** ``n_van`` and ``n_idk`` (N_van, N_idk). Default 4:1 (``van_idk_ratio``): with neither
given, the largest 4:1 set that Cor-RAIT's split of the probe (µ ≥ τµ vs µ < τµ) allows, the
same for every method so that methods are compared at equal size; with one given, the other
follows the ratio. A pool smaller than asked is taken whole and reported (``strict_sizes``:
an error instead); never up-sampled.
"""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rait.artifacts import (
    build_summary_path,
    check_ids,
    read_influence,
    read_knowledge,
    resolve_influence_file,
    training_row,
)
from rait.cliargs import option
from rait.config import config_to_dict
from rait.data.records import QARecord, task_of
from rait.data.sources import DataSource, load_source
from rait.errors import ConfigError, DataError, Location, VacuousSelectionWarning
from rait.fileio import (
    atomic_open,
    check_output_file,
    dumps,
    write_json,
)
from rait.methods import METHODS, get_method
from rait.methods.base import (
    DEFAULT_TAU_MU,
    DEFAULT_TEMPERATURE,
    BuildContext,
    Candidate,
    MethodSpec,
    Pick,
    Selection,
    Sizes,
    Targets,
)
from rait.methods.base import split_by_mu as _split_by_mu
from rait.prompts import REFUSAL_ANSWER, RTUNING_UNCERTAINTY_TEXTS


@dataclass
class BuildConfig:
    """Settings of ``rait build``.

    ``method``: one of :data:`rait.methods.METHODS`. ``data``: the training questions (D_src).
    ``knowledge``: the probe's ``knowledge.jsonl``. ``knowledge_after``: the rehearsed model's
    knowledge (``rait rehearse``; CRaFT and craft-no-cer need it). ``influence``: GRAIT's
    scores (``rait influence``'s ``influence.jsonl``; the grait methods need it).
    ``tau_mu``: the correctness threshold τµ (GRAIT's T_c). ``temperature``: GRAIT's τ of the
    stable-influence weights. ``refusal``: the refusal target (default "I don't know." for
    MCQA, "I don't know" for OEQA).
    """

    method: str = option(
        "cor-rait",
        help="the data-construction method (docs/methods.md)",
        choices=lambda: list(METHODS),
    )
    data: DataSource = field(default_factory=DataSource)
    knowledge: str | None = option(None, help="the probe's knowledge.jsonl")
    knowledge_after: str | None = option(
        None, help="the rehearsed model's knowledge (rait rehearse; CRaFT needs it)"
    )
    influence: str | None = option(
        None, help="GRAIT's scores (rait influence's output; GRAIT needs it)"
    )
    n_van: int | None = option(None, help="vanilla samples N_van (default: 4:1 with N_idk)")
    n_idk: int | None = option(None, help="IdK samples N_idk (default: 4:1 with N_van)")
    van_idk_ratio: float = 4.0
    tau_mu: float = option(DEFAULT_TAU_MU, help="correctness threshold τµ: known when µ ≥ τµ")
    temperature: float = option(
        DEFAULT_TEMPERATURE, help="GRAIT's τ of the stable-influence weights"
    )
    seed: int = option(0, help="seed of the random draws and the row order")
    strict_sizes: bool = option(
        False, help="stop when a pool is smaller than asked (default: take all of it and report)"
    )
    refusal: str | None = None

    def validate(self) -> MethodSpec:
        spec = get_method(self.method)
        if not self.knowledge:
            raise ConfigError("build: `knowledge` (a probe's knowledge.jsonl) is required")
        if spec.rehearsal and not self.knowledge_after:
            raise ConfigError(
                f"build: {self.method} needs the rehearsed model's knowledge: run `rait "
                "rehearse` and pass its knowledge_after.jsonl with --knowledge-after"
            )
        if spec.influence and not self.influence:
            raise ConfigError(
                f"build: {self.method} needs GRAIT's influence scores: run `rait influence` and "
                "pass its influence.jsonl with --influence"
            )
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ConfigError(f"build: temperature must be > 0, got {self.temperature}")
        for name in ("n_van", "n_idk"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"build: {name} must be >= 0, got {value}")
        if self.n_van == 0 and self.n_idk == 0:
            raise ConfigError("build: n_van and n_idk are both 0: nothing to train on")
        if not (self.van_idk_ratio > 0 and math.isfinite(self.van_idk_ratio)):
            raise ConfigError(f"build: van_idk_ratio must be > 0, got {self.van_idk_ratio}")
        if not 0.0 < self.tau_mu <= 1.0:
            raise ConfigError(f"build: tau_mu must be in (0, 1], got {self.tau_mu}")
        if self.refusal is not None and not self.refusal.strip():
            raise ConfigError("build: refusal is empty")
        return spec


def load_candidates(
    cfg: BuildConfig, spec: MethodSpec, records: list[QARecord]
) -> tuple[list[Candidate], list[str]]:
    """The probed training questions as candidates (data order), and notes on questions that
    have no knowledge row. A knowledge id that is not in the data is an error."""
    task = task_of(records)
    knowledge = read_knowledge(str(cfg.knowledge), task, spec.requires)
    by_id = {r.id: r for r in records}
    why = f"is not in the data ({cfg.data.describe()}): the knowledge file belongs to another "
    check_ids(knowledge, by_id, str(cfg.knowledge), why + "dataset or split")
    after: dict[str, dict[str, Any]] | None = None
    if spec.rehearsal:
        after = read_knowledge(str(cfg.knowledge_after), task)
        why = f"is not in the probe {cfg.knowledge}: the rehearsed probe must cover the same "
        check_ids(after, knowledge, str(cfg.knowledge_after), why + "questions")
        missing = [k for k in knowledge if k not in after]
        if missing:
            raise DataError(
                f"{len(missing)} probed question(s) are missing here (e.g. {missing[0]!r}): the "
                "rehearsed probe must cover the same questions as the probe",
                Location(str(cfg.knowledge_after)),
            )
    scores = _read_scores(cfg, knowledge) if spec.influence else None
    candidates = []
    for record in records:
        row = knowledge.get(record.id)
        if row is None:
            continue
        extra: dict[str, Any] = {}
        if after is not None:
            extra = {"mu_after": after[record.id]["mu"], "sigma_after": after[record.id]["sigma"]}
        if scores is not None:
            extra.update(i_ref=scores[record.id]["i_ref"], i_sta=scores[record.id]["i_sta"])
        candidates.append(
            Candidate(record, float(row["mu"]), float(row["sigma"]), knowledge=row, **extra)
        )
    notes = []
    unprobed = len(records) - len(candidates)
    if unprobed:
        notes.append(
            f"{unprobed} of {len(records)} data questions have no knowledge row (not probed) "
            "and are left out"
        )
    return candidates, notes


def _read_scores(
    cfg: BuildConfig, knowledge: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """GRAIT's influence scores, checked against the probe: the same questions, split at the
    same threshold."""
    path = str(resolve_influence_file(cfg.influence))
    scores = read_influence(path)
    for key, row in scores.items():
        where = Location(path, row["_line"], field="id")
        if key not in knowledge:
            raise DataError(
                f"id {key!r} is not in the probe {cfg.knowledge}: the scores belong to another "
                "probe",
                where,
            )
        split = "ik" if float(knowledge[key]["mu"]) >= cfg.tau_mu else "idk"
        if row["split"] != split:
            raise DataError(
                f"split {row['split']!r} but µ = {knowledge[key]['mu']} is {split} at tau_mu "
                f"{cfg.tau_mu:g}: the scores were computed with another tau_mu (T_c) or probe",
                Location(path, row["_line"], field="split"),
            )
    missing = [k for k in knowledge if k not in scores]
    if missing:
        raise DataError(
            f"{len(missing)} probed question(s) have no scores (e.g. {missing[0]!r}): run "
            "`rait influence` on this probe",
            Location(path),
        )
    return scores


# --------------------------------------------------------------------------- sizes
def resolve_sizes(cfg: BuildConfig, candidates: list[Candidate]) -> tuple[Sizes, str]:
    """N_van and N_idk from the config, filling a missing one from ``van_idk_ratio`` (4:1)."""
    ratio = cfg.van_idk_ratio
    n_van, n_idk = cfg.n_van, cfg.n_idk
    if n_van is None and n_idk is None:
        known, unknown = _split_by_mu(candidates, cfg.tau_mu)
        n_idk = min(len(unknown), math.floor(len(known) / ratio))
        n_van = round(ratio * n_idk)
        how = (
            f"default {ratio:g}:1 on the probe's split ({len(known)} with µ ≥ {cfg.tau_mu:g}, "
            f"{len(unknown)} below): N_van {n_van}, N_idk {n_idk}"
        )
        if n_van + n_idk == 0:
            raise DataError(
                f"no {ratio:g}:1 set is possible from this probe ({len(known)} questions with "
                f"µ ≥ {cfg.tau_mu:g}, {len(unknown)} below): give n_van and n_idk",
                Location(str(cfg.knowledge)),
            )
    elif n_van is None:
        n_van = round(ratio * n_idk)
        how = f"N_idk {n_idk} given, N_van = {ratio:g} × N_idk = {n_van}"
    elif n_idk is None:
        n_idk = math.floor(n_van / ratio)
        how = f"N_van {n_van} given, N_idk = N_van / {ratio:g} = {n_idk}"
    else:
        how = f"N_van {n_van}, N_idk {n_idk} (given)"
    return Sizes(n_van, n_idk, cfg.strict_sizes), how


@dataclass
class BuildResult:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def build_dataset(cfg: BuildConfig) -> BuildResult:
    """Choose the samples and make the rows; writes nothing."""
    spec = cfg.validate()
    records = load_source(cfg.data)
    task = task_of(records)
    candidates, notes = load_candidates(cfg, spec, records)
    sizes, sizes_how = resolve_sizes(cfg, candidates)
    targets = Targets(cfg.refusal or REFUSAL_ANSWER[task], tuple(RTUNING_UNCERTAINTY_TEXTS))
    ctx = BuildContext(
        sizes=sizes,
        targets=targets,
        tau_mu=cfg.tau_mu,
        seed=cfg.seed,
        temperature=cfg.temperature,
    )
    selection: Selection = spec.select(candidates, ctx)
    n_idk = sum(p.kind == "idk" for p in selection.picks)
    if spec.refuse_prompt and sizes.n_idk > 0 and n_idk == 0:
        pools = "; ".join(f"{r.rule}: pool {r.pool}" for r in selection.rules)
        emptied = [r for r in selection.rules if r.pool > 0 and r.kept == 0 and r.why_dropped]
        if emptied:  # there were unknown questions, but a filter removed every one
            why = "; ".join(
                f"the rule {r.rule!r} dropped all {r.pool} ({r.why_dropped})" for r in emptied
            )
            raise DataError(
                f"{spec.name}: zero IdK candidates: {why}. Probe more questions, or set n_idk: "
                "0 to build a set without refusals",
                Location(str(cfg.knowledge)),
            )
        raise DataError(
            f"{spec.name}: zero IdK candidates ({pools}); the probe finds nothing this model does "
            "not know, so there is nothing to refuse. Probe more or harder questions, or set "
            "n_idk: 0 to build a set without refusals",
            Location(str(cfg.knowledge)),
        )
    if not selection.picks:
        raise DataError(f"{spec.name}: no sample selected", Location(str(cfg.knowledge)))
    for text in selection.vacuous:
        warnings.warn(text, VacuousSelectionWarning, stacklevel=2)
    rows = [training_row(p, spec.name, spec.refuse_prompt) for p in selection.picks]
    random.Random(cfg.seed).shuffle(rows)
    summary = {
        "method": spec.name,
        "description": spec.summary,
        "task": task,
        "n": len(rows),
        "n_van": len(rows) - n_idk,
        "n_idk": n_idk,
        "asked": {"n_van": sizes.n_van, "n_idk": sizes.n_idk, "how": sizes_how},
        "candidates": len(candidates),
        "rules": [r.to_dict() for r in selection.rules],
        "adjustments": selection.adjustments,
        "vacuous": selection.vacuous,
        "notes": notes,
        "weights": _weight_summary(selection.picks),
        "prompt": "refuse" if spec.refuse_prompt else "basic",
        "eval_confidence": spec.eval_confidence,
        "config": config_to_dict(cfg),
    }
    return BuildResult(rows, summary)


def _weight_summary(picks: list[Pick]) -> dict[str, Any]:
    weights = [p.weight for p in picks]
    return {
        "all_one": all(w == 1.0 for w in weights),
        "min": min(weights),
        "max": max(weights),
        "mean": sum(weights) / len(weights),
        "idk_mean": (
            sum(p.weight for p in picks if p.kind == "idk") / n
            if (n := sum(p.kind == "idk" for p in picks))
            else None
        ),
    }


def run_build(cfg: BuildConfig, out: str | Path) -> dict[str, Any]:
    """Build and write ``out`` (JSONL) and its summary; nothing is written on an error."""
    out = Path(out)
    if out.suffix != ".jsonl":
        raise ConfigError(f"build: the output {out} must be a .jsonl file")
    inputs = [cfg.knowledge, cfg.knowledge_after, cfg.influence, cfg.data.path]
    for target in (out, build_summary_path(out)):
        check_output_file(target, "build: the output", inputs=inputs)
    result = build_dataset(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(out) as handle:
        for row in result.rows:
            handle.write(dumps(row) + "\n")
    write_json(build_summary_path(out), result.summary)
    return result.summary


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    lines = [
        f"{summary['method']}: {summary['n']} samples ({summary['n_van']} vanilla, "
        f"{summary['n_idk']} IdK) from {summary['candidates']} probed questions",
        f"  sizes: {summary['asked']['how']}",
    ]
    for rule in summary["rules"]:
        dropped = f", dropped {rule['dropped']}" if rule["dropped"] else ""
        why = f" ({rule['why_dropped']})" if rule["dropped"] and rule["why_dropped"] else ""
        lines.append(f"  {rule['rule']}: pool {rule['pool']}, kept {rule['kept']}{dropped}{why}")
    weights = summary.get("weights")
    if weights and not weights["all_one"]:
        lines.append(
            f"  weights: min {weights['min']:.3g}, max {weights['max']:.3g}, mean "
            f"{weights['mean']:.3g}"
        )
    lines += [f"  note: {text}" for text in summary["adjustments"] + summary["notes"]]
    lines += [f"  warning: {text}" for text in summary.get("vacuous", [])]
    return "\n".join(lines)


__all__ = [
    "BuildConfig",
    "BuildResult",
    "build_dataset",
    "format_summary",
    "load_candidates",
    "resolve_sizes",
    "run_build",
]
