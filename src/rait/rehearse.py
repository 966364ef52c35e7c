"""``rait rehearse``: CRaFT's rehearsal training and knowledge flow (docs/methods.md §3).

1. **Rehearsal set**: the probed questions the model knows best, ``µ ≥ min_mu`` and
   ``σ ≥ min_sigma`` (defaults from the released code, docs/methods.md §3: OEQA µ ≥ 0.995
   and σ ≥ 0.995; MCQA p(gold) > 0.99, strictly, with no σ threshold; a ``min_mu`` that is
   set is always the inclusive ``µ ≥ min_mu``), ``size`` of them (1,000) drawn with the seed;
   a smaller pool is taken whole and reported. Targets are the original answers (no refusals),
   under the REFUSE prompt that the final tuning uses.
2. **Rehearsal training**: the same trainer and hyper-parameters as the final tuning
   (``rait train``) → the rehearsed model M̃.
3. **Re-probe** D_src with M̃, with the original probe's own settings (read from its
   ``stage.json``: same questions, shots, samples and seed) → µ̃, σ̃.
4. ``knowledge_after.jsonl``: per question ``mu``/``sigma`` (the rehearsed model's, so that the
   file is a knowledge file like any other), ``mu_before``/``sigma_before`` and the knowledge
   flow ``delta_mu = µ̃ − µ0``, ``delta_sigma = σ̃ − σ0`` (the paper's equation swaps Cor and
   Cer; docs/methods.md fixes it). ``rait build --knowledge-after`` reads it.

Δµ is matched by question id, never by row position (the released OEQA code takes Δµ from the
wrong question, docs/methods.md §8).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rait.artifacts import (
    KNOWLEDGE_AFTER_FILE,
    KNOWLEDGE_FILE,
    REHEARSAL_SET_FILE,
    REHEARSE_SUMMARY_FILE,
    read_knowledge,
    trained_model,
    training_row,
)
from rait.backends import backend_names
from rait.cliargs import option
from rait.config import config_to_dict
from rait.errors import ConfigError, DataError, Location
from rait.fileio import atomic_open, dumps, write_json
from rait.methods.base import DEFAULT_TAU_MU, Candidate, Pick, derived_rng, gold_answer
from rait.probe import load_probe, run_probe
from rait.train import TrainConfig, run_train

#: per task: (µ threshold, whether the default µ bound is strict, σ threshold or None); the
#: released code's rehearsal rules (docs/methods.md §3): MCQA p(gold) > 0.99 (strict, no σ
#: threshold), OEQA µ ≥ 0.995 and σ ≥ 0.995
DEFAULT_THRESHOLDS = {"mcqa": (0.99, True, None), "oeqa": (0.995, False, 0.995)}


@dataclass
class RehearseConfig:
    """Settings of ``rait rehearse``.

    ``probe``: the probe's output folder (its ``knowledge.jsonl`` and ``stage.json``, whose
    settings the re-probe repeats). ``min_mu``/``min_sigma``: rehearsal thresholds (None: the
    task's default). ``size``: rehearsal samples. ``train``: the trainer settings (its ``data``
    is set here). ``backend``/``batch_size``: override the re-probe's engine settings only.
    """

    probe: str | None = option(None, help="the probe's output folder")
    min_mu: float | None = option(
        None, help="rehearsal threshold on µ (default: the task's, docs/methods.md §3)"
    )
    min_sigma: float | None = option(None, help="rehearsal threshold on σ (default: the task's)")
    size: int = option(1000, help="rehearsal samples")
    seed: int = option(0, help="seed of the rehearsal draw")
    train: TrainConfig = field(default_factory=TrainConfig)
    backend: str | None = option(
        None, help="the re-probe's engine (default: the probe's)", choices=backend_names
    )
    batch_size: int | None = option(None, help="the re-probe's batch size (default: the probe's)")

    def validate(self) -> None:
        if not self.probe:
            raise ConfigError("rehearse: `probe` (the probe's output folder) is required")
        if self.size <= 0:
            raise ConfigError(f"rehearse: size must be positive, got {self.size}")
        if self.min_mu is not None and not 0.0 <= self.min_mu <= 1.0:
            raise ConfigError(f"rehearse: min_mu must be in [0, 1], got {self.min_mu}")


def select_rehearsal(
    candidates: list[Candidate], task: str, cfg: RehearseConfig
) -> tuple[list[Candidate], dict[str, Any]]:
    """The rehearsal set: ``µ ≥ min_mu`` (and ``σ ≥ min_sigma``), ``size`` drawn with the seed.

    Unset thresholds take the task's :data:`DEFAULT_THRESHOLDS`: MCQA ``µ > 0.99`` (strictly:
    a question at exactly 0.99 is not rehearsed), OEQA ``µ ≥ 0.995`` and ``σ ≥ 0.995``."""
    default_mu, default_strict, default_sigma = DEFAULT_THRESHOLDS[task]
    min_mu = default_mu if cfg.min_mu is None else cfg.min_mu
    strict = default_strict and cfg.min_mu is None
    min_sigma = default_sigma if cfg.min_sigma is None else cfg.min_sigma
    pool = [
        c
        for c in candidates
        if (c.mu > min_mu if strict else c.mu >= min_mu)
        and (min_sigma is None or c.sigma >= min_sigma)
    ]
    rule = f"µ {'>' if strict else '≥'} {min_mu:g}"
    rule += f" and σ ≥ {min_sigma:g}" if min_sigma is not None else ""
    if not pool:
        raise DataError(
            f"no probed question passes the rehearsal thresholds ({rule}): lower min_mu / "
            "min_sigma",
            Location(cfg.probe),
        )
    notes = []
    n = cfg.size
    if n > len(pool):
        notes.append(
            f"asked for {n} rehearsal samples, {len(pool)} pass {rule}; all {len(pool)} taken"
        )
        n = len(pool)
    chosen = derived_rng(cfg.seed, "rehearsal").sample(pool, n)
    info = {
        "rule": rule,
        "pool": len(pool),
        "kept": len(chosen),
        "candidates": len(candidates),
        "notes": notes,
    }
    return chosen, info


def knowledge_after_rows(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Rows of ``knowledge_after.jsonl``: the rehearsed µ̃, σ̃ with Δµ = µ̃ − µ0, Δσ = σ̃ − σ0,
    matched by id."""
    rows = []
    for key, old in before.items():
        new = after[key]
        rows.append(
            {
                "id": key,
                "task": old.get("task"),
                "mu": new["mu"],
                "sigma": new["sigma"],
                "mu_before": old["mu"],
                "sigma_before": old["sigma"],
                "delta_mu": new["mu"] - old["mu"],
                "delta_sigma": new["sigma"] - old["sigma"],
            }
        )
    return rows


def _rehearsal_rows(chosen: list[Candidate], seed: int) -> list[dict[str, Any]]:
    rows = [
        training_row(Pick(c, "van", gold_answer(c), "rehearsal: original answer"), "rehearsal")
        for c in chosen
    ]
    random.Random(seed).shuffle(rows)
    return rows


def write_rehearsal_set(chosen: list[Candidate], seed: int, path: Path) -> None:
    """The rehearsal rows (original answers, REFUSE prompt, seeded order), rewritten only when
    they change (so that the training stage's cache holds)."""
    text = "".join(dumps(r) + "\n" for r in _rehearsal_rows(chosen, seed))
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        with atomic_open(path) as handle:
            handle.write(text)


def run_rehearse(cfg: RehearseConfig, out_dir: str | Path, log=print) -> dict[str, Any]:
    """Select, train, re-probe and write ``OUT/knowledge_after.jsonl`` (each step cached)."""
    cfg.validate()
    out = Path(out_dir)
    probe_cfg, _, task, before, candidates = load_probe(cfg.probe)
    chosen, info = select_rehearsal(candidates, task, cfg)
    for note in info["notes"]:
        log(f"[rehearse] note: {note}")
    log(f"[rehearse] rehearsal set: {info['kept']} of {info['pool']} passing {info['rule']}")
    set_path = out / REHEARSAL_SET_FILE
    write_rehearsal_set(chosen, cfg.seed, set_path)
    train_cfg = replace(cfg.train, data=str(set_path), model=probe_cfg.model)
    train_summary = run_train(train_cfg, out / "train", log=log)
    model = trained_model(probe_cfg.model, train_summary)
    reprobe = replace(probe_cfg, model=model, rtuning=False, rtuning_u=False)
    if cfg.backend is not None:
        reprobe.backend = cfg.backend
    if cfg.batch_size is not None:
        reprobe.batch_size = cfg.batch_size
    run_probe(reprobe, out / "probe")
    after = read_knowledge(str(out / "probe" / KNOWLEDGE_FILE), task)
    flow = knowledge_after_rows(before, after)
    with atomic_open(out / KNOWLEDGE_AFTER_FILE) as handle:
        for row in flow:
            handle.write(dumps(row) + "\n")
    unknown = [r for r in flow if r["mu_before"] < DEFAULT_TAU_MU]
    summary = {
        "rehearsal": info,
        "train": {k: v for k, v in train_summary.items() if k != "log_history"},
        "n": len(flow),
        "mean_delta_mu": sum(r["delta_mu"] for r in flow) / len(flow),
        "mean_delta_sigma": sum(r["delta_sigma"] for r in flow) / len(flow),
        "unknown": len(unknown),
        "unknown_delta_mu_negative": sum(r["delta_mu"] < 0 for r in unknown),
        "unknown_delta_mu_zero": sum(r["delta_mu"] == 0 for r in unknown),
        "unknown_delta_mu_positive": sum(r["delta_mu"] > 0 for r in unknown),
        "knowledge_after": str(out / KNOWLEDGE_AFTER_FILE),
        "config": config_to_dict(cfg),
    }
    write_json(out / REHEARSE_SUMMARY_FILE, summary)
    return summary


def format_summary(s: dict) -> str:
    """A finished rehearsal's knowledge flow in two lines."""
    return (
        f"rehearsed on {s['rehearsal']['kept']} samples; knowledge flow over {s['n']} "
        f"questions: mean Δµ {s['mean_delta_mu']:+.3f}, mean Δσ {s['mean_delta_sigma']:+.3f}; "
        f"of {s['unknown']} with µ < {DEFAULT_TAU_MU:g}: {s['unknown_delta_mu_negative']} "
        f"Δµ < 0, {s['unknown_delta_mu_zero']} Δµ = 0, {s['unknown_delta_mu_positive']} Δµ > 0\n"
        f"knowledge after rehearsal in {s['knowledge_after']} (rait build --knowledge-after)"
    )
