"""Question representations and the CRSS of a vanilla/IdK split (CRaFT section 3.2, Figure 5).

A question's representation is the model's last hidden layer at the last prompt token: the
state from which the answer (or the refusal) is generated. The prompt is the one the question
is trained with (docs/methods.md §6: the REFUSE prompt, through the chat template on a chat
model), 0-shot.

``rait crss`` splits a training set into vanilla and IdK samples, either as Cor-RAIT does from
a probe (µ ≥ τ_µ keeps its answer; the statistic of CRaFT Figure 5) or as a built RAIT set
says (its ``kind`` column), and reports
``CRSS = |{x ∈ D_idk : max_{y ∈ D_van} cos(r_x, r_y) > τ_sim}| / |D_idk|`` (τ_sim = 0.97).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rait.artifacts import REPRESENTATION_IDS_FILE, REPRESENTATIONS_FILE
from rait.cliargs import option
from rait.config import config_to_dict
from rait.data.records import QARecord
from rait.data.sources import DataSource, load_source
from rait.errors import ConfigError, DataError, Location
from rait.fileio import atomic_open, read_jsonl_rows, write_json
from rait.methods.base import DEFAULT_TAU_MU
from rait.metrics import crss
from rait.models import LoadedModel, ModelConfig, load_model
from rait.prompts import build_messages
from rait.rundir import Stage


def question_representations(
    lm: LoadedModel,
    records: Sequence[QARecord],
    refuse_prompt: bool = True,
    batch_size: int = 8,
) -> Any:
    """``[len(records), hidden]`` float32 array: the last layer's hidden state at the last
    prompt token of each question (left-padded batches, so that token is the last column)."""
    import numpy as np
    import torch

    tokenizer = lm.tokenizer
    kind = "refuse" if refuse_prompt else "basic"
    texts = [lm.render(build_messages(r, kind)) for r in records]
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start : start + batch_size]
        width = max(len(ids) for ids in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, tokens in enumerate(chunk):
            ids[row, width - len(tokens) :] = torch.tensor(tokens)
            mask[row, width - len(tokens) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            hidden = lm.model(
                input_ids=ids.to(lm.device),
                attention_mask=mask.to(lm.device),
                position_ids=positions.to(lm.device),
                output_hidden_states=True,
            ).hidden_states[-1]
        out.append(hidden[:, -1, :].float().cpu().numpy())
    if not out:
        return np.zeros((0, lm.model.config.hidden_size), dtype=np.float32)
    return np.concatenate(out, axis=0)


@dataclass
class CrssConfig:
    """Settings of ``rait crss``: ``data`` (the training questions), and either ``knowledge``
    (a probe's knowledge.jsonl: Cor-RAIT's split at ``tau_mu``) or ``built`` (a RAIT set with
    ``id`` and ``kind`` = van/idk)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataSource = field(default_factory=DataSource)
    knowledge: str | None = option(
        None, help="a probe's knowledge.jsonl (Cor-RAIT split at tau_mu)"
    )
    built: str | None = option(None, help="a built RAIT set (its kind column: van/idk)")
    tau_mu: float = option(DEFAULT_TAU_MU, help="correctness threshold of the knowledge split")
    tau_sim: float = option(0.97, help="cosine similarity above which two questions conflict")
    batch_size: int = 8

    def validate(self) -> None:
        if (self.knowledge is None) == (self.built is None):
            raise ConfigError("crss: give exactly one of `knowledge` (a probe) or `built`")
        if not 0 <= self.tau_mu <= 1:
            raise ConfigError(f"tau_mu must be in [0, 1], got {self.tau_mu}")
        if not -1 <= self.tau_sim <= 1:
            raise ConfigError(f"tau_sim must be in [-1, 1], got {self.tau_sim}")
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {self.batch_size}")


def split_van_idk(cfg: CrssConfig, records: Sequence[QARecord]) -> tuple[list[str], list[str]]:
    """Ids of the vanilla and the IdK samples."""
    known = {r.id for r in records}
    if cfg.knowledge is not None:
        path, rows = cfg.knowledge, read_jsonl_rows(cfg.knowledge, ("id", "mu"))
    else:
        assert cfg.built is not None
        path, rows = cfg.built, read_jsonl_rows(cfg.built, ("id", "kind"))
    van, idk = [], []
    for row in rows:
        where = Location(path, row["_line"], record=str(row["id"]))
        if str(row["id"]) not in known:
            raise DataError("this id is not in the data", where)
        if cfg.knowledge is not None:
            mu = row["mu"]
            if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not 0 <= mu <= 1:
                raise DataError(f"mu must be a number in [0, 1], got {mu!r}", where)
            (van if mu >= cfg.tau_mu else idk).append(str(row["id"]))
        else:
            kind = row["kind"]
            if kind not in ("van", "idk"):
                raise DataError(f"kind must be 'van' or 'idk', got {kind!r}", where)
            (van if kind == "van" else idk).append(str(row["id"]))
    if not van or not idk:
        raise DataError(
            f"CRSS needs both vanilla and IdK samples; got {len(van)} vanilla, {len(idk)} IdK",
            Location(path),
        )
    return van, idk


def run_crss(cfg: CrssConfig) -> dict:
    """CRSS of the split ``cfg`` describes."""
    cfg.validate()
    records = load_source(cfg.data)
    van_ids, idk_ids = split_van_idk(cfg, records)
    by_id = {r.id: r for r in records}
    lm = load_model(cfg.model)
    reps = question_representations(
        lm, [by_id[i] for i in van_ids + idk_ids], batch_size=cfg.batch_size
    )
    value = crss(reps[len(van_ids) :], reps[: len(van_ids)], cfg.tau_sim)
    return {
        "crss": value,
        "tau_sim": cfg.tau_sim,
        "n_van": len(van_ids),
        "n_idk": len(idk_ids),
        "split": "cor-rait (µ ≥ τ_µ)" if cfg.knowledge else f"built set {Path(cfg.built).name}",
        "tau_mu": cfg.tau_mu if cfg.knowledge else None,
        "model": cfg.model.name,
    }


# --------------------------------------------------------------------------- the run's stage


@dataclass
class RepresentationsConfig:
    """The ``representations`` stage of ``rait run``: the base model's representation of every
    training question (``data``), kept for the report's t-SNE and CRSS (CRaFT Figure 3)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataSource = field(default_factory=DataSource)
    batch_size: int = 8

    def validate(self) -> None:
        if self.batch_size <= 0:
            raise ConfigError(f"batch_size must be positive, got {self.batch_size}")


def run_representations(cfg: RepresentationsConfig, out_dir: str | Path, log=print) -> dict:
    """Write ``representations.npy`` ([n, hidden] float32) and ``ids.json`` (the question of
    each row) into ``out_dir``; cached like every stage (an unchanged config and data set is
    not run again)."""
    import numpy as np

    cfg.validate()
    records = load_source(cfg.data)
    inputs = [cfg.data.path] if cfg.data.path else []
    stage = Stage(Path(out_dir), "representations", config_to_dict(cfg), inputs)
    with stage.lock():
        if stage.is_complete():
            log(f"[representations] up to date, skipped ({stage.path})")
            return {"n": len(records), "path": str(stage.path)}
        with stage.started():
            log(f"[representations] {len(records)} questions -> {stage.path}")
            lm = load_model(cfg.model)
            reps = question_representations(lm, records, batch_size=cfg.batch_size)
            with atomic_open(stage.path / REPRESENTATIONS_FILE, "wb") as handle:
                np.save(handle, reps.astype(np.float32))
            write_json(stage.path / REPRESENTATION_IDS_FILE, [r.id for r in records])
        stage.complete({"n": len(records), "hidden": int(reps.shape[1])})
    return {"n": len(records), "path": str(stage.path)}


def load_representations(folder: str | Path) -> tuple[list[str], Any] | None:
    """``(ids, [n, hidden] array)`` written by :func:`run_representations`, or None when the
    folder has none; a clear error when the two files disagree."""
    import json

    import numpy as np

    folder = Path(folder)
    reps_path, ids_path = folder / REPRESENTATIONS_FILE, folder / REPRESENTATION_IDS_FILE
    if not reps_path.is_file() or not ids_path.is_file():
        return None
    try:
        ids = json.loads(ids_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"not valid JSON ({exc})", Location(str(ids_path))) from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise DataError("must be a JSON list of question ids", Location(str(ids_path)))
    try:
        reps = np.load(reps_path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"not a NumPy array file ({exc})", Location(str(reps_path))) from None
    if reps.ndim != 2 or reps.shape[0] != len(ids):
        raise DataError(
            f"has shape {tuple(reps.shape)}; expected [{len(ids)}, hidden] (one row per id in "
            f"{REPRESENTATION_IDS_FILE})",
            Location(str(reps_path)),
        )
    return ids, reps


def format_crss(result: dict) -> str:
    """A CRSS result in one line."""
    return (
        f"CRSS {result['crss']:.1%} at τ_sim {result['tau_sim']} "
        f"({result['n_idk']} IdK vs {result['n_van']} vanilla samples; {result['split']})"
    )
