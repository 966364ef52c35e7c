"""Every file a stage hands to the next: its name, its reader, its writer, and where it lives
in a run directory (:class:`RunLayout`).

=====================  ================================  =====================================
stage                  writes                            read by
=====================  ================================  =====================================
``rait probe``         ``knowledge.jsonl``, ``summary``  build, rehearse, influence, report
``rait rehearse``      ``knowledge_after.jsonl``         build (CRaFT), report
``rait influence``     ``scores/influence.jsonl``        build (GRAIT)
``rait build``         ``METHOD.jsonl`` + summary        train, report (CRSS)
``rait train``         ``adapter/`` or ``model/``        eval, rehearse's re-probe
``rait eval``          ``predictions.jsonl``, metrics    results table, report, compare
``rait run``           ``results.md``, ``results.json``  report, compare
=====================  ================================  =====================================

Readers validate what they read and name the file, line and field of every problem
(:class:`~rait.errors.DataError`). This module imports no stage, so every stage can import it.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rait.errors import ConfigError, DataError, Location
from rait.fileio import read_jsonl_by_id, row_number
from rait.methods.base import Pick
from rait.models import ModelConfig
from rait.prompts import training_messages

# ----------------------------------------------------------------------------- file names
#: probe: one row per question (id, mu, sigma, samples, ...) and the run's summary
KNOWLEDGE_FILE = "knowledge.jsonl"
PROBE_SUMMARY_FILE = "summary.json"
#: rehearse: the rehearsal set, the rehearsed model's knowledge with Δµ/Δσ, the summary
REHEARSAL_SET_FILE = "rehearsal_set.jsonl"
KNOWLEDGE_AFTER_FILE = "knowledge_after.jsonl"
REHEARSE_SUMMARY_FILE = "rehearse_summary.json"
#: influence: per-question I_ref / I_sta (in the ``scores`` stage folder), projected features
INFLUENCE_SCORES_DIR = "scores"
INFLUENCE_FILE = "influence.jsonl"
INFLUENCE_SUMMARY_FILE = "influence_summary.json"
FEATURES_FILE = "features.npy"
#: train: the LoRA adapter or the fully fine-tuned model, checkpoints, the summary
ADAPTER_DIR = "adapter"
MODEL_DIR = "model"
CHECKPOINTS_DIR = "checkpoints"
LOSS_FILE = "rait_loss.json"  # in each checkpoint: the loss summed over its steps
TRAIN_SUMMARY_FILE = "train_summary.json"
#: eval: one row per answered question, and the scores
PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
#: representations: the base model's question representations (the report's t-SNE, CRSS)
REPRESENTATIONS_FILE = "representations.npy"
REPRESENTATION_IDS_FILE = "ids.json"

#: how to obtain a knowledge field that a method requires (``MethodSpec.requires``)
KNOWLEDGE_FIELD_HINT = {
    "greedy_correct": "probe with rtuning: true (the default) to get R-Tuning's greedy answer",
    "rtuning_u_entropy": "probe with --rtuning-u to get R-Tuning-U's entropy",
}
#: the probe setting that writes each such field (``rait run`` turns it on when a method of
#: the run requires the field)
KNOWLEDGE_FIELD_PROBE_SETTING = {"greedy_correct": "rtuning", "rtuning_u_entropy": "rtuning_u"}


# ----------------------------------------------------------------------------- run directory
@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory (``rait run``, ``rait demo``)::

    RUN/data/                     the world-facts set (a `world_facts` section)
    RUN/probe/                    µ, σ (and R-Tuning-U's entropies) of the training questions
    RUN/representations/          the base model's question representations
    RUN/rehearse/                 CRaFT's rehearsal and knowledge_after.jsonl
    RUN/influence/                GRAIT's I_ref / I_sta at a warm-up LoRA
    RUN/build/METHOD.jsonl        each method's refusal-aware training set (+ .summary.json)
    RUN/train/METHOD/             each method's LoRA (or full) model
    RUN/eval/TEST/METHOD/         predictions and metrics, the baselines included
    RUN/results.md, results.json  the results table and its data
    RUN/launch/                   configs and logs of the processes `parallel` starts
    """

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def probe(self) -> Path:
        return self.root / "probe"

    @property
    def knowledge(self) -> Path:
        return self.probe / KNOWLEDGE_FILE

    @property
    def representations(self) -> Path:
        return self.root / "representations"

    @property
    def rehearse(self) -> Path:
        return self.root / "rehearse"

    @property
    def knowledge_after(self) -> Path:
        return self.rehearse / KNOWLEDGE_AFTER_FILE

    @property
    def influence(self) -> Path:
        return self.root / "influence"

    @property
    def influence_scores(self) -> Path:
        return influence_path(self.influence)

    def built(self, method: str) -> Path:
        return self.root / "build" / f"{method}.jsonl"

    def train(self, method: str) -> Path:
        return self.root / "train" / method

    def eval(self, test_set: str, method: str) -> Path:
        return self.root / "eval" / test_set / method

    def metrics(self, test_set: str, method: str) -> Path:
        return self.eval(test_set, method) / METRICS_FILE

    @property
    def results_md(self) -> Path:
        return self.root / "results.md"

    @property
    def results_json(self) -> Path:
        return self.root / "results.json"

    @property
    def launch(self) -> Path:
        return self.root / "launch"


# ----------------------------------------------------------------------------- knowledge
def read_knowledge(
    path: str, task: str, requires: tuple[str, ...] = ()
) -> dict[str, dict[str, Any]]:
    """A probe's ``knowledge.jsonl`` by id, validated: µ in [0, 1], σ finite, unique ids, the
    data's task, and the fields a method ``requires``. Every problem names file, line, field."""
    by_id = read_jsonl_by_id(path, required=("id", "mu", "sigma"))
    for row in by_id.values():
        line = row["_line"]
        if "prompt" in row and "completion" in row:
            raise DataError(
                "this is a built training set (`rait build`'s output, prompt/completion rows), "
                "not a probe's knowledge.jsonl: give the probe's output (rait probe --out)",
                Location(path, line, field="prompt"),
            )
        row_number(row, "mu", path, 0.0, 1.0)
        row_number(row, "sigma", path)
        row_task = row.get("task")
        if row_task is not None and row_task != task:
            raise DataError(
                f"the probe is {row_task} but the data is {task}: this knowledge file belongs "
                "to another dataset",
                Location(path, line, field="task"),
            )
        for name in requires:
            if row.get(name) is None:
                raise DataError(
                    f"missing ({KNOWLEDGE_FIELD_HINT.get(name, 'needed by this method')})",
                    Location(path, line, field=name),
                )
            if name == "greedy_correct" and not isinstance(row[name], bool):
                raise DataError(
                    f"expected true or false, got {row[name]!r}", Location(path, line, field=name)
                )
            if name == "rtuning_u_entropy":
                row_number(row, name, path, 0.0)
    return by_id


def check_ids(rows: dict[str, dict[str, Any]], known: Container[str], path: str, why: str) -> None:
    """Every id of ``rows`` (read from ``path``) is in ``known``; the first that is not is a
    DataError naming its line: ``id 'x' <why>``."""
    for key, row in rows.items():
        if key not in known:
            raise DataError(f"id {key!r} {why}", Location(path, row["_line"], field="id"))


# ----------------------------------------------------------------------------- influence
def influence_path(out_dir: str | Path) -> Path:
    """Where ``rait influence --out OUT`` writes the scores."""
    return Path(out_dir) / INFLUENCE_SCORES_DIR / INFLUENCE_FILE


def resolve_influence_file(path: str | Path) -> Path:
    """``influence.jsonl`` itself, or the folder ``rait influence`` wrote (or its ``scores``)."""
    path = Path(path)
    if path.is_dir():
        for candidate in (influence_path(path), path / INFLUENCE_FILE):
            if candidate.is_file():
                return candidate
        raise ConfigError(f"{path} holds no {INFLUENCE_FILE}: give `rait influence`'s output")
    return path


def read_influence(path: str) -> dict[str, dict[str, Any]]:
    """``influence.jsonl`` by id, validated (file, line and field in every error)."""
    by_id = read_jsonl_by_id(path, required=("id", "split", "i_ref", "i_sta"))
    for row in by_id.values():
        if row["split"] not in ("ik", "idk"):
            raise DataError(
                f"expected 'ik' or 'idk', got {row['split']!r}",
                Location(path, row["_line"], field="split"),
            )
        for name in ("i_ref", "i_sta"):
            row_number(row, name, path)
    return by_id


# ----------------------------------------------------------------------------- built sets
def training_row(pick: Pick, method: str, refuse_prompt: bool = True) -> dict[str, Any]:
    """One row of a built set: TRL prompt/completion messages plus what a reader needs
    (``kind`` van/idk, ``weight``, ``rule``, µ, σ and, when known, Δµ, Δσ, I_ref, I_sta)."""
    c = pick.candidate
    messages = training_messages(c.record, pick.answer, refuse_prompt=refuse_prompt)
    row: dict[str, Any] = {
        "id": c.id,
        "kind": pick.kind,
        "prompt": messages[:1],
        "completion": messages[1:],
        "weight": float(pick.weight),
        "method": method,
        "task": c.record.task,
        "answer": pick.answer,
        "rule": pick.rule,
        "mu": c.mu,
        "sigma": c.sigma,
    }
    if c.mu_after is not None:
        row["delta_mu"] = c.delta_mu
        row["delta_sigma"] = c.delta_sigma
    if c.i_ref is not None:
        row["i_ref"] = c.i_ref
        row["i_sta"] = c.i_sta
    return row


def build_summary_path(out: str | Path) -> Path:
    """The summary ``rait build --out OUT.jsonl`` writes beside its set: ``OUT.summary.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".summary.json")


# ----------------------------------------------------------------------------- trained models
def trained_model(base: ModelConfig, train_summary: dict[str, Any]) -> ModelConfig:
    """The model ``rait train`` wrote (its summary's ``output``): ``base`` with the LoRA
    adapter, or the fully fine-tuned model folder."""
    output = str(train_summary["output"])
    if train_summary.get("finetuning", "lora") == "lora":
        return replace(base, adapter=output)
    return replace(base, name=output, gguf_file=None, adapter=None)
