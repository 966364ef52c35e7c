"""``rait influence``: GRAIT's gradient influence scores (docs/methods.md §5; GRAIT
Algorithm 1 lines 1-8, eqs. 6 and 9).

1. **Split** the probed questions D_src at ``T_c`` (0.5): ``D_ik = {µ ≥ T_c}``,
   ``D_idk = {µ < T_c}``.
2. **Warm-up checkpoint**: gradients are taken at a LoRA checkpoint trained briefly on the
   rehearsal set of CRaFT (at a fresh LoRA, B = 0 and every A-gradient is zero). Give one
   with ``warmup`` (an adapter folder, or a trainer checkpoint ``checkpoint-N`` that also holds
   the optimizer state), e.g. the one ``rait rehearse`` trained, or let this stage train it
   (``train``: one epoch by default, on the samples ``rait rehearse`` would pick).
3. **Gradient features**: for every x, ``g_idk(x)``, the gradient of the answer-token-mean SFT
   loss of x **with the refusal target**, w.r.t. the LoRA parameters (:mod:`rait.gradients`;
   ``gradient: adam`` uses LESS's Adam-preconditioned gradient), projected to ``k`` (8192)
   dimensions by a seeded dense Rademacher matrix scaled by 1/√k (:mod:`rait.projection`;
   ``projection: none`` keeps the exact gradient) and L2-normalised per sample (LESS; on by
   default): ``φ(x) = Pᵀ g_idk(x)/√k / ‖Pᵀ g_idk(x)/√k‖``.
4. **Scores**: ``ḡ_idk(D) = mean_{x∈D} φ(x)``;
   refusal influence ``I_ref(x) = ⟨φ(x), ḡ_idk(D_idk)⟩`` (eq. 6);
   stable influence ``I_sta(x) = ⟨φ(x), ḡ_idk(D_idk) − ḡ_idk(D_ik)⟩`` (Algorithm 1 line 7).
   ``ik_target: answer`` is eq. 9's reading: the D_ik mean uses each ik sample's own answer.

``rait build --method grait --influence OUT/influence.jsonl`` then selects and weights.

**Cost.** Gradients are per sample but computed a batch at a time. With normalisation, each
sample is projected (a dense (B × D)(D × k) product, with P generated once per chunk of
samples, ``chunk_memory_gb``). Without it, I_ref and I_sta are inner products with fixed
vectors, ``⟨Pᵀg/√k, Pᵀm/√k⟩ = ⟨g, PPᵀm/k⟩``: one pass sums the gradients, the two means are
projected and mapped back once, a second pass takes the inner products — no per-sample
projection. ``projection: none`` with normalisation needs the exact norms first: the first
pass sums ``g/‖g‖``, the second takes the inner products.

**Processes.** Under ``torchrun`` (or ``accelerate launch``) each process takes every
``world``-th batch of the length-sorted samples, with the same seed and projection; sums are
all-reduced and per-sample results gathered, and process 0 writes the files. The numbers equal
a single process's (the batches are the same).

Outputs: ``influence.jsonl`` (per question: ``id``, ``split`` ik/idk, ``mu``, ``i_ref``,
``i_sta``, ``grad_norm`` = ‖g_idk(x)‖ and, when projected, ``feature_norm`` = ‖Pᵀg/√k‖),
``influence_summary.json`` (sizes, settings, the means' inner products — GRAIT appendix A.3's
orthogonality check —, timing) and, with normalised projected features, ``features.npy``
(N × k float32, rows in the order of ``influence.jsonl``). A killed run resumes chunk by
chunk.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from rait.artifacts import (
    ADAPTER_DIR,
    CHECKPOINTS_DIR,
    FEATURES_FILE,
    INFLUENCE_FILE,
    INFLUENCE_SCORES_DIR,
    INFLUENCE_SUMMARY_FILE,
    KNOWLEDGE_FILE,
)
from rait.cliargs import option
from rait.config import config_to_dict
from rait.data.records import QARecord
from rait.distributed import Processes
from rait.errors import ConfigError, DataError
from rait.fileio import atomic_open, dumps, read_json, write_json
from rait.gradients import AdamPreconditioner, PerSampleGradients, collate
from rait.methods.base import DEFAULT_TAU_MU
from rait.models import ModelConfig, load_model, resolve_device
from rait.probe import load_probe
from rait.projection import RademacherProjector
from rait.prompts import REFUSAL_ANSWER, training_messages
from rait.rehearse import RehearseConfig, select_rehearsal, write_rehearsal_set
from rait.rundir import Stage, exclusive
from rait.train import TrainConfig, _latest_checkpoint, run_train, tokenize_rows

WORK_DIR = "work"
PROJECTIONS = ("rademacher", "none")
GRADIENTS = ("sgd", "adam")
IK_TARGETS = ("refusal", "answer")


def _warmup_train_default() -> TrainConfig:
    return TrainConfig(epochs=1.0)


@dataclass
class InfluenceConfig:
    """Settings of ``rait influence`` (see the module docstring).

    ``probe``: the probe's output folder (its data, model and ``knowledge.jsonl``).
    ``warmup``: a LoRA adapter folder or trainer checkpoint to take gradients at; None: train
    one on the rehearsal set (``warmup_size`` samples passing ``warmup_min_mu`` /
    ``warmup_min_sigma``, the ``rait rehearse`` defaults when None) with ``train``.
    ``tau_mu``: the threshold τµ (GRAIT's T_c).
    ``refusal``: the refusal target (default by task).
    ``projection``/``projection_dim``/``normalize``/``gradient``/``ik_target``: see above.
    ``batch_size``: samples per gradient batch. ``chunk_memory_gb``: memory for the per-sample
    gradients projected together (bigger chunks generate P fewer times).
    ``device``/``dtype``: override the probe's model settings.
    """

    probe: str | None = option(None, help="the probe's output folder")
    warmup: str | None = option(
        None,
        help="LoRA adapter or trainer checkpoint to take gradients at (default: train one on "
        "the rehearsal set)",
    )
    warmup_size: int = option(1000, help="warm-up (rehearsal) samples")
    warmup_min_mu: float | None = None
    warmup_min_sigma: float | None = None
    train: TrainConfig = field(default_factory=_warmup_train_default)
    #: keys of earlier versions, still read (configs, the stage.json of older runs)
    RENAMED: ClassVar[dict[str, str]] = {"tau_c": "tau_mu"}
    tau_mu: float = option(
        DEFAULT_TAU_MU, help="correctness threshold τµ (GRAIT's T_c): known (D_ik) when µ ≥ τµ"
    )
    refusal: str | None = None
    projection: str = option(
        "rademacher", help="feature projection of each gradient", choices=PROJECTIONS
    )
    projection_dim: int = option(8192, help="projection dimension k")
    normalize: bool = option(True, help="no per-sample L2 normalisation of the features")
    gradient: str = option(
        "sgd", help="plain gradients, or Adam-preconditioned (LESS)", choices=GRADIENTS
    )
    ik_target: str = option(
        "refusal",
        help="the D_ik mean's target: refusal (Algorithm 1) or answer (eq. 9)",
        choices=IK_TARGETS,
    )
    batch_size: int = option(16, help="samples per gradient batch")
    chunk_memory_gb: float = 2.0
    max_length: int = 2048
    save_features: bool = True
    seed: int = option(0, help="seed of the warm-up and the projection")
    device: str | None = option(None, help="cpu, cuda, ... (default: the probe's)")
    dtype: str | None = None

    def validate(self) -> None:
        checks = [
            (bool(self.probe), "influence: `probe` (the probe's output folder) is required"),
            (
                self.projection in PROJECTIONS,
                f"influence: projection must be one of {', '.join(PROJECTIONS)}, "
                f"got {self.projection!r}",
            ),
            (
                self.gradient in GRADIENTS,
                f"influence: gradient must be one of {', '.join(GRADIENTS)}, got {self.gradient!r}",
            ),
            (
                self.ik_target in IK_TARGETS,
                f"influence: ik_target must be one of {', '.join(IK_TARGETS)}, "
                f"got {self.ik_target!r}",
            ),
            (
                self.projection_dim > 0,
                f"influence: projection_dim must be positive, got {self.projection_dim}",
            ),
            (0.0 < self.tau_mu <= 1.0, f"influence: tau_mu must be in (0, 1], got {self.tau_mu}"),
            (self.batch_size > 0, f"influence: batch_size must be positive, got {self.batch_size}"),
            (
                self.chunk_memory_gb > 0 and math.isfinite(self.chunk_memory_gb),
                f"influence: chunk_memory_gb must be positive, got {self.chunk_memory_gb}",
            ),
            (self.warmup_size > 0, f"influence: warmup_size must be positive: {self.warmup_size}"),
            (
                self.refusal is None or bool(self.refusal.strip()),
                "influence: refusal is empty",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.warmup is not None and not (Path(self.warmup) / "adapter_config.json").is_file():
            raise ConfigError(
                f"influence: warmup {self.warmup!r} is not a LoRA adapter or trainer checkpoint "
                "folder (no adapter_config.json there)"
            )
        if (
            self.gradient == "adam"
            and self.warmup is not None
            and not (Path(self.warmup) / "optimizer.pt").is_file()
        ):
            raise ConfigError(
                f"influence: gradient: adam needs the warm-up's optimizer state and "
                f"{self.warmup} has no optimizer.pt: give the trainer checkpoint "
                "(…/checkpoints/checkpoint-N), or use gradient: sgd"
            )


# --------------------------------------------------------------------------- examples
@dataclass(frozen=True)
class GradientExample:
    """One gradient to take: question ``id`` of ``split`` ik/idk with the ``refusal`` target
    (scored) or, for eq. 9's D_ik mean, its own ``answer``."""

    id: str
    split: str
    target: str
    mu: float
    features: dict[str, Any]

    @property
    def scored(self) -> bool:
        return self.target == "refusal"


def gradient_examples(
    records: list[QARecord],
    mu_by_id: dict[str, float],
    tokenizer: Any,
    chat: bool,
    tau_mu: float = DEFAULT_TAU_MU,
    refusal: str | None = None,
    ik_target: str = "refusal",
    max_length: int = 2048,
    source: str = "<influence>",
    lines: dict[str, int] | None = None,
) -> list[GradientExample]:
    """The samples whose gradients are taken: every probed question with the refusal target,
    plus, for ``ik_target: answer``, every D_ik question with its own answer. Tokenized as
    ``rait train`` tokenizes (REFUSE prompt, loss on the answer only). ``lines``: each id's
    line in ``source``, for error messages."""
    planned = []
    for record in records:
        if record.id not in mu_by_id:
            continue
        mu = mu_by_id[record.id]
        split = "ik" if mu >= tau_mu else "idk"
        target = refusal or REFUSAL_ANSWER[record.task]
        planned.append((record, split, "refusal", target, mu))
        if ik_target == "answer" and split == "ik":
            planned.append((record, split, "answer", record.canonical_answer, mu))
    rows = []
    for i, (record, _, kind, answer, _) in enumerate(planned):
        messages = training_messages(record, answer, refuse_prompt=True)
        rows.append(
            {
                "id": f"{record.id}\x1f{kind}",
                "prompt": messages[:1],
                "completion": messages[1:],
                "weight": 1.0,
                "_line": (lines or {}).get(record.id, i + 1),
            }
        )
    tokenized = tokenize_rows(rows, tokenizer, chat, max_length, source)
    return [
        GradientExample(record.id, split, kind, mu, ex.features())
        for (record, split, kind, _, mu), ex in zip(planned, tokenized, strict=True)
    ]


# --------------------------------------------------------------------------- computation
@dataclass
class InfluenceSettings:
    projection: str = "rademacher"
    projection_dim: int = 8192
    normalize: bool = True
    seed: int = 0
    batch_size: int = 16
    chunk_memory_gb: float = 2.0


@dataclass
class InfluenceResult:
    """Scores of the scored examples (refusal target), in input order."""

    ids: list[str]
    splits: list[str]
    i_ref: Any
    i_sta: Any
    grad_norm: Any
    feature_norm: Any | None = None
    features: Any | None = None
    stats: dict[str, float] = field(default_factory=dict)
    passes: int = 1


class _Work:
    """Per-chunk results on disk, so that a killed run resumes (None: keep nothing)."""

    def __init__(self, folder: Path | None, procs: Processes):
        self.folder = folder
        self.procs = procs
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{name}.rank{self.procs.rank}of{self.procs.world}.pt"

    def load(self, name: str) -> Any:
        import torch

        path = self._path(name)
        if path is None or not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    def save(self, name: str, value: Any) -> None:
        import torch

        path = self._path(name)
        if path is None:
            return
        with atomic_open(path, "wb") as handle:
            torch.save(value, handle)


def _batches(examples: list[GradientExample], batch_size: int) -> list[list[int]]:
    """Indices in batches of similar length (less padding), the same on every process."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].features["input_ids"]), i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _chunks(batches: list[list[int]], per_chunk: int) -> list[list[list[int]]]:
    chunks, current, size = [], [], 0
    for batch in batches:
        if current and size + len(batch) > per_chunk:
            chunks.append(current)
            current, size = [], 0
        current.append(batch)
        size += len(batch)
    if current:
        chunks.append(current)
    return chunks


def compute_influence(
    engine: PerSampleGradients,
    examples: list[GradientExample],
    settings: InfluenceSettings,
    pad_id: int,
    device: Any = "cpu",
    procs: Processes | None = None,
    work_dir: Path | None = None,
    log=print,
) -> InfluenceResult:
    """I_ref and I_sta of every scored example (the fast path; module docstring)."""
    import torch

    procs = procs or Processes()
    work = _Work(work_dir, procs)
    n = len(examples)
    scored = [i for i, e in enumerate(examples) if e.scored]
    in_idk = torch.tensor([e.scored and e.split == "idk" for e in examples])
    ik_kind = "answer" if any(not e.scored for e in examples) else "refusal"
    in_ik = torch.tensor([e.split == "ik" and e.target == ik_kind for e in examples])
    if not bool(in_idk.any()):
        raise DataError("D_idk is empty: no probed question has µ < T_c, nothing to refuse")
    if not bool(in_ik.any()):
        raise DataError("D_ik is empty: no probed question has µ ≥ T_c")
    batches = _batches(examples, settings.batch_size)
    mine = batches[procs.rank :: procs.world]
    projector = None
    if settings.projection == "rademacher":
        projector = RademacherProjector(
            engine.dim, settings.projection_dim, settings.seed, device=device
        )
    bytes_per_row = 4 * engine.dim
    per_chunk = max(settings.batch_size, int(settings.chunk_memory_gb * 2**30 // bytes_per_row))
    chunks = _chunks(mine, per_chunk)
    started = time.perf_counter()
    done = [0]

    def gradients(batch: list[int], out: Any = None) -> Any:
        feats = [examples[i].features for i in batch]
        grads = engine(collate(feats, pad_id, device), [examples[i].id for i in batch], out)
        done[0] += len(batch)
        return grads

    def progress(label: str) -> None:
        seconds = time.perf_counter() - started
        log(
            f"[influence] {label}: {done[0]} gradients on this process, "
            f"{done[0] / max(seconds, 1e-9):.2f}/s"
        )

    norms = torch.zeros(n)
    if projector is not None and settings.normalize:
        # one pass: project every sample, then everything happens in feature space
        feats = torch.zeros(n, projector.output_dim)
        for c, chunk in enumerate(chunks):
            saved = work.load(f"features.chunk{c}")
            if saved is None:
                rows = [i for batch in chunk for i in batch]
                buffer = torch.empty(len(rows), engine.dim, device=device)
                at = 0
                for batch in chunk:
                    gradients(batch, buffer[at : at + len(batch)])
                    at += len(batch)
                saved = {
                    "rows": torch.tensor(rows),
                    "features": projector.project(buffer).cpu(),
                    "norms": buffer.norm(dim=1).cpu(),
                }
                del buffer
                work.save(f"features.chunk{c}", saved)
            feats[saved["rows"]] = saved["features"]
            norms[saved["rows"]] = saved["norms"]
            progress(f"chunk {c + 1}/{len(chunks)}")
        merged = procs.gather([(int(i), feats[i], norms[i]) for c in chunks for b in c for i in b])
        for i, f, g in merged:
            feats[i], norms[i] = f, g
        feature_norm = feats.norm(dim=1)
        phi = feats / feature_norm.clamp(min=torch.finfo(torch.float32).tiny)[:, None]
        mean_idk, mean_ik = phi[in_idk].mean(0), phi[in_ik].mean(0)
        i_ref, i_sta = phi @ mean_idk, phi @ (mean_idk - mean_ik)
        stats = _mean_stats(mean_idk, mean_ik)
        return InfluenceResult(
            ids=[examples[i].id for i in scored],
            splits=[examples[i].split for i in scored],
            i_ref=i_ref[scored],
            i_sta=i_sta[scored],
            grad_norm=norms[scored],
            feature_norm=feature_norm[scored],
            features=phi[scored],
            stats=stats,
            passes=1,
        )

    # two passes: means (of g, or of g/‖g‖ without projection), then inner products
    exact_normalized = projector is None and settings.normalize
    sums = work.load("sums")
    if sums is None or sums["chunks"] < len(chunks):
        state = sums or {
            "chunks": 0,
            "idk": torch.zeros(engine.dim),
            "ik": torch.zeros(engine.dim),
            "norms": torch.zeros(n),
        }
        for c in range(state["chunks"], len(chunks)):
            for batch in chunks[c]:
                grads = gradients(batch)
                rows = torch.tensor(batch)
                batch_norms = grads.norm(dim=1)
                if exact_normalized:
                    grads = grads / batch_norms.clamp(min=torch.finfo(torch.float32).tiny)[:, None]
                state["idk"] += grads[in_idk[rows].to(grads.device)].sum(0).cpu()
                state["ik"] += grads[in_ik[rows].to(grads.device)].sum(0).cpu()
                state["norms"][rows] = batch_norms.cpu()
            state["chunks"] = c + 1
            work.save("sums", state)
            progress(f"pass 1, chunk {c + 1}/{len(chunks)}")
        sums = state
    mean_idk = procs.all_sum(sums["idk"].clone()) / int(in_idk.sum())
    mean_ik = procs.all_sum(sums["ik"].clone()) / int(in_ik.sum())
    norms = procs.all_sum(sums["norms"].clone())
    if projector is not None:
        means = projector.project(torch.stack([mean_idk, mean_ik]).to(device))
        stats = _mean_stats(means[0].cpu(), means[1].cpu())
        directions = projector.back_project(torch.stack([means[0], means[0] - means[1]]))
    else:
        stats = _mean_stats(mean_idk, mean_ik)
        directions = torch.stack([mean_idk, mean_idk - mean_ik]).to(device)
    dots = torch.zeros(n, 2)
    done[0] = 0
    for c, chunk in enumerate(chunks):
        saved = work.load(f"dots.chunk{c}")
        if saved is None:
            rows = [i for batch in chunk for i in batch]
            values = torch.cat([gradients(batch) @ directions.T for batch in chunk]).cpu()
            saved = {"rows": torch.tensor(rows), "dots": values}
            work.save(f"dots.chunk{c}", saved)
        dots[saved["rows"]] = saved["dots"]
        progress(f"pass 2, chunk {c + 1}/{len(chunks)}")
    for i, d in procs.gather([(int(i), dots[i]) for c in chunks for b in c for i in b]):
        dots[i] = d
    if exact_normalized:
        dots = dots / norms.clamp(min=torch.finfo(torch.float32).tiny)[:, None]
    return InfluenceResult(
        ids=[examples[i].id for i in scored],
        splits=[examples[i].split for i in scored],
        i_ref=dots[scored, 0],
        i_sta=dots[scored, 1],
        grad_norm=norms[scored],
        stats=stats,
        passes=2,
    )


def _mean_stats(mean_idk: Any, mean_ik: Any) -> dict[str, float]:
    """GRAIT appendix A.3: the two means' inner products (near-orthogonal in the paper)."""
    idk_idk = float(mean_idk @ mean_idk)
    ik_ik = float(mean_ik @ mean_ik)
    idk_ik = float(mean_idk @ mean_ik)
    return {
        "idk_dot_idk": idk_idk,
        "ik_dot_ik": ik_ik,
        "idk_dot_ik": idk_ik,
        "cosine": idk_ik / math.sqrt(idk_idk * ik_ik) if idk_idk > 0 and ik_ik > 0 else 0.0,
    }


# --------------------------------------------------------------------------- the stage
def _train_warmup(cfg: InfluenceConfig, probe_cfg, task, candidates, out: Path, log):
    """The warm-up LoRA: ``train`` on the rehearsal set (``rait rehearse``'s selection)."""

    selection_cfg = RehearseConfig(
        probe=cfg.probe,
        min_mu=cfg.warmup_min_mu,
        min_sigma=cfg.warmup_min_sigma,
        size=cfg.warmup_size,
        seed=cfg.seed,
    )
    chosen, info = select_rehearsal(candidates, task, selection_cfg)
    log(f"[influence] warm-up set: {info['kept']} of {info['pool']} passing {info['rule']}")
    set_path = out / "warmup_set.jsonl"
    write_rehearsal_set(chosen, cfg.seed, set_path)
    if cfg.train.finetuning != "lora":
        raise ConfigError("influence: the warm-up must be a LoRA run (train.finetuning: lora)")
    train_cfg = replace(cfg.train, data=str(set_path), model=probe_cfg.model)
    summary = run_train(train_cfg, out / "warmup", log=log)
    checkpoint = _last_checkpoint(out / "warmup")
    return checkpoint or str(out / "warmup" / ADAPTER_DIR), summary


def _last_checkpoint(train_dir: Path) -> str | None:

    return _latest_checkpoint(train_dir / CHECKPOINTS_DIR)


def load_warmup_model(model_cfg: ModelConfig, warmup: str, gradient: str = "sgd"):
    """The base model with the warm-up LoRA loaded trainable, in eval mode (no dropout), and
    the Adam preconditioner when asked."""
    from peft import PeftModel

    lm = load_model(replace(model_cfg, adapter=None))
    try:
        model = PeftModel.from_pretrained(lm.model, warmup, is_trainable=True)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"influence: cannot load warm-up {warmup!r}: {reason}") from None
    model.eval()
    engine = PerSampleGradients(model)
    if gradient == "adam":
        engine.preconditioner = AdamPreconditioner.from_checkpoint(warmup, model)
    return lm, model, engine


def run_influence(cfg: InfluenceConfig, out_dir: str | Path, log=print) -> dict[str, Any]:
    """Warm up (unless given), compute the scores and write them (cached; resumable). One
    process at a time writes ``out_dir`` (rank 0 holds its lock under torchrun)."""
    cfg.validate()
    procs = Processes.from_env()
    with exclusive(out_dir, "influence") if procs.main else contextlib.nullcontext():
        return _run_influence(cfg, Path(out_dir), procs, log)


def _run_influence(cfg: InfluenceConfig, out: Path, procs: Processes, log) -> dict[str, Any]:
    import numpy as np

    probe_cfg, records, task, knowledge, candidates = load_probe(cfg.probe)
    warmup = cfg.warmup
    warmup_summary = None
    if warmup is None:
        if procs.world > 1:
            raise ConfigError(
                "influence: with several processes, train the warm-up first (run once without "
                "torchrun, or give `warmup`): the processes would each train it"
            )
        warmup, warmup_summary = _train_warmup(cfg, probe_cfg, task, candidates, out, log)
    if cfg.gradient == "adam" and not (Path(warmup) / "optimizer.pt").is_file():
        raise ConfigError(
            f"influence: gradient: adam needs the warm-up's optimizer state; {warmup} has none"
        )
    config = config_to_dict(cfg)
    inputs = [str(Path(cfg.probe) / KNOWLEDGE_FILE), warmup]
    if probe_cfg.data.path:
        inputs.append(str(probe_cfg.data.path))
    stage = Stage(out / INFLUENCE_SCORES_DIR, "influence", config, inputs)
    if stage.is_complete():
        log(f"[influence] up to date, skipped ({stage.path})")
        return read_json(stage.path / INFLUENCE_SUMMARY_FILE)
    procs.barrier()
    if procs.main:
        stage.begin()
    procs.barrier()
    model_cfg = probe_cfg.model
    if cfg.device is not None:
        model_cfg = replace(model_cfg, device=cfg.device)
    if cfg.dtype is not None:
        model_cfg = replace(model_cfg, dtype=cfg.dtype)
    lm, _, engine = load_warmup_model(model_cfg, warmup, cfg.gradient)
    mu_by_id = {k: float(row["mu"]) for k, row in knowledge.items()}
    examples = gradient_examples(
        records,
        mu_by_id,
        lm.tokenizer,
        lm.use_chat_template,
        cfg.tau_mu,
        cfg.refusal,
        cfg.ik_target,
        cfg.max_length,
        source=str(Path(cfg.probe) / KNOWLEDGE_FILE),
        lines={k: row["_line"] for k, row in knowledge.items()},
    )
    settings = InfluenceSettings(
        projection=cfg.projection,
        projection_dim=cfg.projection_dim,
        normalize=cfg.normalize,
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        chunk_memory_gb=cfg.chunk_memory_gb,
    )
    device = resolve_device(model_cfg.device)
    log(
        f"[influence] {sum(e.scored for e in examples)} questions, {engine.dim:,} LoRA "
        f"parameters, projection {cfg.projection}"
        + (f" to {cfg.projection_dim}" if cfg.projection != "none" else "")
        + f", normalise {'on' if cfg.normalize else 'off'}, gradient {cfg.gradient}, "
        f"{procs.world} process(es)"
    )
    started = time.perf_counter()
    result = compute_influence(
        engine,
        examples,
        settings,
        lm.tokenizer.pad_token_id
        if lm.tokenizer.pad_token_id is not None
        else lm.tokenizer.eos_token_id,
        device,
        procs,
        stage.path / WORK_DIR,
        log,
    )
    seconds = time.perf_counter() - started
    if not procs.main:
        procs.barrier()
        return {}
    rows = []
    for i, key in enumerate(result.ids):
        row = {
            "id": key,
            "task": task,
            "split": result.splits[i],
            "mu": mu_by_id[key],
            "i_ref": float(result.i_ref[i]),
            "i_sta": float(result.i_sta[i]),
            "grad_norm": float(result.grad_norm[i]),
        }
        if result.feature_norm is not None:
            row["feature_norm"] = float(result.feature_norm[i])
        rows.append(row)
    with atomic_open(stage.path / INFLUENCE_FILE) as handle:
        for row in rows:
            handle.write(dumps(row) + "\n")
    if result.features is not None and cfg.save_features:
        with atomic_open(stage.path / FEATURES_FILE, "wb") as handle:
            np.save(handle, result.features.numpy().astype(np.float32))
    n_idk = sum(s == "idk" for s in result.splits)
    summary = {
        "n": len(rows),
        "n_ik": len(rows) - n_idk,
        "n_idk": n_idk,
        "tau_mu": cfg.tau_mu,
        "lora_parameters": engine.dim,
        "projection": cfg.projection,
        "projection_dim": cfg.projection_dim if cfg.projection != "none" else None,
        "normalize": cfg.normalize,
        "gradient": cfg.gradient,
        "ik_target": cfg.ik_target,
        "passes": result.passes,
        "processes": procs.world,
        "means": result.stats,
        "seconds": round(seconds, 2),
        "gradients_per_second": round(len(examples) * result.passes / max(seconds, 1e-9), 3),
        "warmup": warmup,
        "warmup_train": (
            {k: v for k, v in warmup_summary.items() if k != "log_history"}
            if warmup_summary
            else None
        ),
        "influence": str(stage.path / INFLUENCE_FILE),
        "config": config,
    }
    write_json(stage.path / INFLUENCE_SUMMARY_FILE, summary)

    shutil.rmtree(stage.path / WORK_DIR, ignore_errors=True)
    stage.complete({"influence": INFLUENCE_FILE, "summary": INFLUENCE_SUMMARY_FILE})
    procs.barrier()
    return summary


def format_summary(s: dict) -> str:
    """The influence scores' summary in two lines (empty on a process other than rank 0)."""
    if not s:
        return ""
    m = s["means"]
    return (
        f"influence of {s['n']} questions ({s['n_ik']} ik, {s['n_idk']} idk) over "
        f"{s['lora_parameters']:,} LoRA parameters in {s['seconds']:.0f}s; means: <idk,idk> "
        f"{m['idk_dot_idk']:.4f}, <ik,ik> {m['ik_dot_ik']:.4f}, <idk,ik> {m['idk_dot_ik']:.4f}\n"
        f"scores in {s['influence']} (rait build --method grait --influence)"
    )
