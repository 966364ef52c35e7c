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

   ``projection: factorized`` (LoGra, Choe et al. 2024) projects each adapted layer instead.
   The gradient of a linear layer ``y_t = W a_t`` is ``G = Σ_t δ_t a_tᵀ`` (out × in,
   ``δ_t = ∂L/∂y_t``); with independent Rademacher ``P_in`` (in × k_in), ``P_out``
   (out × k_out)::

       F(x) = P_outᵀ G P_in / √(k_out k_in) = Σ_t (P_outᵀ δ_t)(P_inᵀ a_t)ᵀ / √(k_out k_in)
       vec_row(F) = (P_out ⊗ P_in)ᵀ vec_row(G) / √(k_out k_in)
       E⟨F(x), F(y)⟩ = E tr(P_inᵀ G(x)ᵀ P_out P_outᵀ G(y) P_in) / (k_out k_in) = ⟨G(x), G(y)⟩

   (``E[P Pᵀ] = k I``, the two sides independent). A side no wider than ``factor_dim`` (64) is
   kept exact (``P = I``, no 1/√k): LoRA's ``lora_A`` (r × in) is projected on its input side
   only, ``lora_B`` (out × r) on its output side only, so a layer gives ``r × factor_dim``
   features and φ is the concatenation over layers, normalised as above; the rest (means,
   I_ref, I_sta) is unchanged, in this feature space. Why ``factor_dim`` and not a total
   near ``k``: a block-diagonal projection estimates ``⟨g(x), g(y)⟩`` as the sum of the layers'
   estimates, each with relative variance about ``2/(k_in · rank)``; with L layers sharing
   the gradient evenly the sum's is about ``2/(L · k_in · rank)``, the dense projection's is
   ``2/k``, so L · factor_dim ≳ k matches the dense fidelity — 420 layers × 64 for the rank-8
   LoRA of SmolLM2-135M, F = 215,040 features; spreading k = 8192 over the layers instead
   would leave ~2 columns per layer. The per-sample cost is that of the activations,
   ``T (in · k_in + out · k_out + k_out k_in)`` per layer (or the layer's own gradient,
   ``T · out · in``, then its projection, when that is cheaper — at LoRA's small r it is):
   no (B × D) gradient and no D × k matrix. Each ``P`` comes from
   :func:`rait.gradients.factor_seed` (seed, layer, side) through the same device-identical
   generator as the dense P. ``‖g‖`` stays exact. ``gradient: adam`` needs the whole
   gradient (a ConfigError).
4. **Scores**: ``ḡ_idk(D) = mean_{x∈D} φ(x)``;
   refusal influence ``I_ref(x) = ⟨φ(x), ḡ_idk(D_idk)⟩`` (eq. 6);
   stable influence ``I_sta(x) = ⟨φ(x), ḡ_idk(D_idk) − ḡ_idk(D_ik)⟩`` (Algorithm 1 line 7).
   ``ik_target: answer`` is eq. 9's reading: the D_ik mean uses each ik sample's own answer.

``rait build --method grait --influence OUT/influence.jsonl`` then selects and weights.

**Cost.** Gradients are per sample but computed a batch at a time. With normalisation, each
sample is projected (a dense (B × D)(D × k) product, with P generated once per chunk of
samples). Without it, I_ref and I_sta are inner products with fixed
vectors, ``⟨Pᵀg/√k, Pᵀm/√k⟩ = ⟨g, PPᵀm/k⟩``: one pass sums the gradients, the two means are
projected and mapped back once, a second pass takes the inner products — no per-sample
projection. ``projection: none`` with normalisation needs the exact norms first: the first
pass sums ``g/‖g‖``, the second takes the inner products. ``factorized`` takes one pass (its
features kept, and written) when the N × F features fit in half the host's available memory,
else two passes as for ``none`` in its feature space.

**Chunks.** A chunk holds ``⌊min(chunk_memory_gb, 3/4 of the device's free memory − fixed
buffers) / bytes per row⌋`` per-sample rows (4·D bytes, plus 4·k for the dense projection
in one pass; 4·F factorised): ``torch.cuda.mem_get_info`` on CUDA, ``MemAvailable`` on the
CPU; the quarter left is for the forward and backward passes. ``chunk_memory_gb`` is unset by
default, so the free memory alone sizes a chunk: the dense mode generates P once per chunk, and
at LLaMA-3-8B's LoRA r 64 (671 MB a gradient) a 2 GiB cap would mean 3 samples a chunk and
~4,700 generations of P for MMLU (≈ 10 GPU-hours), against ~140 a chunk and ~100 on an H200
(``bench/influence_scale.py``). A batch larger than a chunk is
split (``batch_size`` never overrides the memory), and a row that does not fit is a
ConfigError naming the numbers. A resumed run keeps its chunks while they fit.

**Processes.** Under ``torchrun`` (or ``accelerate launch``) each process takes every
``world``-th batch of the length-sorted samples, with the same seed and projection; sums are
all-reduced and per-sample results gathered, and process 0 writes the files. The numbers equal
a single process's (the batches are the same).

Outputs: ``influence.jsonl`` (per question: ``id``, ``split`` ik/idk, ``mu``, ``i_ref``,
``i_sta``, ``grad_norm`` = ‖g_idk(x)‖ and, when projected, ``feature_norm`` = ‖Pᵀg/√k‖),
``influence_summary.json`` (sizes, settings, feature size, chunks, the means' inner products —
GRAIT appendix A.3's orthogonality check —, timing) and, with normalised features kept in one
pass, ``features.npy`` (N × k, or N × F factorised, float32, rows in the order of
``influence.jsonl``). A killed run resumes chunk by
chunk.
"""

from __future__ import annotations

import contextlib
import math
import os
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
from rait.gradients import (
    AdamPreconditioner,
    FactorizedGradients,
    PerSampleGradients,
    collate,
)
from rait.methods.base import DEFAULT_TAU_MU
from rait.models import ModelConfig, load_model, resolve_device
from rait.probe import load_probe
from rait.projection import GENERATOR as PROJECTION_GENERATOR
from rait.projection import RademacherProjector
from rait.prompts import REFUSAL_ANSWER, training_messages
from rait.rehearse import RehearseConfig, select_rehearsal, write_rehearsal_set
from rait.rundir import Stage, exclusive
from rait.train import TrainConfig, _latest_checkpoint, run_train, tokenize_rows

WORK_DIR = "work"
PROJECTIONS = ("rademacher", "factorized", "none")
DEFAULT_FACTOR_DIM = 64
#: the share of the device's free memory left to the forward and backward passes (activations,
#: δ, the model's temporary buffers): a chunk of per-sample rows never takes it
MEMORY_RESERVE = 0.25
#: the chunk budget (GiB) when neither ``chunk_memory_gb`` nor the device's free memory is known
FALLBACK_CHUNK_GB = 2.0
#: the factorised features of every sample are kept (one pass) when they take at most this
#: share of the host's available memory; two passes otherwise
HOST_FEATURE_SHARE = 0.5
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
    ``projection``/``projection_dim``/``factor_dim``/``normalize``/``gradient``/``ik_target``:
    see above. ``batch_size``: samples per gradient batch. ``chunk_memory_gb``: memory for the
    per-sample gradients held together (bigger chunks generate P fewer times), capped by the
    device's free memory.
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
        "rademacher",
        help="features of each gradient: dense Rademacher (LESS), factorized per layer "
        "(LoGra), or none (exact)",
        choices=PROJECTIONS,
    )
    projection_dim: int = option(8192, help="projection dimension k (rademacher)")
    factor_dim: int = option(
        DEFAULT_FACTOR_DIM,
        help="factorized: each side of a layer's gradient wider than this is projected to it",
    )
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
    chunk_memory_gb: float | None = option(
        None,
        help="GiB of per-sample gradients held at once, at most (default: 3/4 of the device's "
        "free memory; a batch that does not fit is split)",
    )
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
            (
                self.factor_dim > 0,
                f"influence: factor_dim must be positive, got {self.factor_dim}",
            ),
            (
                not (self.projection == "factorized" and self.gradient == "adam"),
                "influence: projection: factorized needs gradient: sgd (Adam's preconditioning "
                "acts on each entry of the whole gradient, which the factorized mode never forms)",
            ),
            (0.0 < self.tau_mu <= 1.0, f"influence: tau_mu must be in (0, 1], got {self.tau_mu}"),
            (self.batch_size > 0, f"influence: batch_size must be positive, got {self.batch_size}"),
            (
                self.chunk_memory_gb is None
                or (self.chunk_memory_gb > 0 and math.isfinite(self.chunk_memory_gb)),
                f"influence: chunk_memory_gb must be positive, got {self.chunk_memory_gb}",
            ),
            (self.warmup_size > 0, f"influence: warmup_size must be positive: {self.warmup_size}"),
            (0 <= self.seed < 2**63, f"influence: seed must be in [0, 2**63), got {self.seed}"),
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
    chunk_memory_gb: float | None = None
    factor_dim: int = DEFAULT_FACTOR_DIM


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
    feature_dim: int | None = None
    chunks: dict[str, Any] = field(default_factory=dict)


class _Work:
    """Per-chunk results on disk, so that a killed run resumes (None: keep nothing)."""

    def __init__(self, folder: Path | None, procs: Processes):
        self.folder = folder
        self.procs = procs
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def _suffix(self) -> str:
        return f".rank{self.procs.rank}of{self.procs.world}.pt"

    def _path(self, name: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{name}{self._suffix()}"

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

    def clear(self) -> None:
        """Forget this process's saved results."""
        if self.folder is not None:
            for path in self.folder.glob(f"*{self._suffix()}"):
                path.unlink()


# --------------------------------------------------------------------------- memory
def free_memory(device: Any) -> int | None:
    """Free bytes on ``device``: ``torch.cuda.mem_get_info`` on CUDA, the host's
    ``MemAvailable`` (``/proc/meminfo``, else psutil) on the CPU; None where unknown (then
    only ``chunk_memory_gb`` bounds a chunk)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":  # the host's memory is shared by the launcher's local ranks
        available = _host_available()
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        return None if available is None else available // max(local, 1)
    return None


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class ChunkPlan:
    """``chunk``: per-sample rows (gradients or factorised features) held and projected
    together, the unit a killed run resumes from; ``per_pass``: samples per forward/backward
    pass (``batch_size``, or fewer when the memory holds fewer rows)."""

    chunk: int
    per_pass: int
    row_bytes: int
    budget_bytes: int

    def describe(self) -> dict[str, Any]:
        return {
            "samples_per_chunk": self.chunk,
            "samples_per_pass": self.per_pass,
            "mib_per_sample": round(self.row_bytes / 2**20, 3),
            "budget_gib": round(self.budget_bytes / 2**30, 3),
        }


def plan_chunks(
    row_bytes: int,
    batch_size: int,
    chunk_memory_gb: float | None,
    free_bytes: int | None,
    fixed_bytes: int = 0,
) -> ChunkPlan:
    """How many per-sample rows of ``row_bytes`` fit: the budget is
    ``min(chunk_memory_gb GiB, (1 − MEMORY_RESERVE) · free_bytes − fixed_bytes)``
    (``chunk_memory_gb`` None: the free memory alone, the default, since every chunk generates
    P once more; ``free_bytes`` None: ``chunk_memory_gb`` alone, or
    :data:`FALLBACK_CHUNK_GB` when neither is known; ``fixed_bytes``: what the mode holds
    besides the rows, e.g. the two score directions), ``chunk = ⌊budget / row_bytes⌋`` and
    ``per_pass = min(batch_size, chunk)``: a batch that does not fit is split, never run out
    of memory. Not even one row: a ConfigError with the numbers."""
    budgets = []
    if chunk_memory_gb is not None:
        budgets.append(int(chunk_memory_gb * 2**30))
    if free_bytes is not None:
        budgets.append(int(free_bytes * (1 - MEMORY_RESERVE)) - int(fixed_bytes))
    budget = min(budgets) if budgets else int(FALLBACK_CHUNK_GB * 2**30)
    rows = max(budget, 0) // row_bytes
    if rows < 1:
        free = ""
        if free_bytes is not None:
            free = (
                f", {free_bytes / 2**30:.3g} GiB free on the device less a "
                f"{MEMORY_RESERVE:.0%} reserve and {fixed_bytes / 2**30:.3g} GiB of fixed buffers"
            )
        raise ConfigError(
            f"influence: one per-sample gradient row takes {row_bytes / 2**30:.3g} GiB, more than "
            f"the {max(budget, 0) / 2**30:.3g} GiB available (chunk_memory_gb "
            f"{'unset' if chunk_memory_gb is None else f'{chunk_memory_gb:g}'}{free}): raise "
            "chunk_memory_gb, free device memory, or use projection: factorized"
        )
    return ChunkPlan(int(rows), int(min(batch_size, rows)), int(row_bytes), max(budget, 0))


def _batches(examples: list[GradientExample], batch_size: int) -> list[list[int]]:
    """Indices in batches of similar length (less padding), the same on every process."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i].features["input_ids"]), i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _split(batches: list[list[int]], per_pass: int) -> list[list[int]]:
    """Each batch in passes of at most ``per_pass`` samples."""
    return [b[i : i + per_pass] for b in batches for i in range(0, len(b), per_pass)]


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


def _keep_all_features(n: int, width: int, procs: Processes) -> bool:
    """Whether the N × F factorised features (and their gathered copy) fit in
    ``HOST_FEATURE_SHARE`` of the host's available memory, in one process only: with several,
    every rank would hold and receive all N × F (and NCCL stages the gathered bytes on each
    GPU), so they take the two passes, whose per-sample results are two numbers."""
    if procs.world > 1:
        return False
    available = _host_available()
    return available is None or 2 * n * width * 4 <= HOST_FEATURE_SHARE * available


def _plan(
    settings: InfluenceSettings,
    projector: RademacherProjector | None,
    factorized: FactorizedGradients | None,
    width: int,
    n: int,
    device: Any,
    procs: Processes,
    work: _Work,
    log,
) -> tuple[bool, ChunkPlan]:
    """One pass (every sample's feature kept: the dense projection with normalisation, or the
    factorised features when they fit on the host) or two, and the chunks: per-sample rows of
    ``width`` floats (plus, dense one-pass, the row's projection) within ``chunk_memory_gb``
    and the device's free memory (:func:`plan_chunks`). A resumed run keeps the chunks it
    started with while they fit, else starts its saved chunks again."""
    import torch

    one_pass = settings.normalize and (
        projector is not None or (factorized is not None and _keep_all_features(n, width, procs))
    )
    row_bytes, fixed_bytes = 4 * width, 0
    if projector is not None:
        fixed_bytes = projector.block_bytes
        if one_pass:
            row_bytes += 4 * projector.output_dim  # each row's projected feature
    if not one_pass:
        fixed_bytes += 2 * 4 * width  # the two score directions
    free = free_memory(device)
    on_host = torch.device(device).type == "cpu"
    if free is not None and factorized is not None and one_pass and on_host:
        free -= 2 * n * width * 4  # the features kept on the host
    plan = plan_chunks(row_bytes, settings.batch_size, settings.chunk_memory_gb, free, fixed_bytes)
    saved = work.load("plan")
    if saved is not None:
        if saved["chunk"] <= plan.chunk and saved["per_pass"] <= plan.per_pass:
            plan = replace(plan, chunk=saved["chunk"], per_pass=saved["per_pass"])
        else:
            log("[influence] less memory than when this run started: its saved chunks are redone")
            work.clear()
    work.save("plan", {"chunk": plan.chunk, "per_pass": plan.per_pass})
    return one_pass, plan


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
    projector = factorized = None
    if settings.projection == "rademacher":
        projector = RademacherProjector(
            engine.dim, settings.projection_dim, settings.seed, device=device
        )
    elif settings.projection == "factorized":
        factorized = FactorizedGradients(engine, settings.factor_dim, settings.seed, device)
    width = factorized.dim if factorized is not None else engine.dim
    one_pass, plan = _plan(settings, projector, factorized, width, n, device, procs, work, log)
    mine = _batches(examples, settings.batch_size)[procs.rank :: procs.world]
    chunks = _chunks(_split(mine, plan.per_pass), plan.chunk)
    log(
        f"[influence] {plan.chunk} samples per chunk, {plan.per_pass} per pass "
        f"({plan.row_bytes / 2**20:.3g} MiB per sample, {plan.budget_bytes / 2**30:.2f} GiB "
        f"for a chunk), {'one pass' if one_pass else 'two passes'}"
    )
    started = time.perf_counter()
    done = [0]
    tiny = torch.finfo(torch.float32).tiny

    def rows(batch: list[int], out: Any = None) -> tuple[Any, Any]:
        """The batch's per-sample rows (gradients, or factorised features) and ‖g‖."""
        inputs = collate([examples[i].features for i in batch], pad_id, device)
        ids = [examples[i].id for i in batch]
        done[0] += len(batch)
        if factorized is not None:
            return factorized(inputs, ids, out)
        grads = engine(inputs, ids, out)
        return grads, grads.norm(dim=1)

    def progress(label: str) -> None:
        seconds = time.perf_counter() - started
        log(
            f"[influence] {label}: {done[0]} gradients on this process, "
            f"{done[0] / max(seconds, 1e-9):.2f}/s"
        )

    common = {
        "ids": [examples[i].id for i in scored],
        "splits": [examples[i].split for i in scored],
        "feature_dim": projector.output_dim
        if projector is not None
        else (factorized.dim if factorized is not None else None),
        "chunks": plan.describe(),
    }
    norms = torch.zeros(n)
    if one_pass:
        feats = torch.zeros(n, projector.output_dim if projector is not None else width)
        for c, chunk in enumerate(chunks):
            saved = work.load(f"features.chunk{c}")
            if saved is None:
                chunk_rows = [i for batch in chunk for i in batch]
                buffer = torch.empty(len(chunk_rows), width, device=device)
                grad_norms, at = [], 0
                for batch in chunk:
                    grad_norms.append(rows(batch, buffer[at : at + len(batch)])[1])
                    at += len(batch)
                saved = {
                    "rows": torch.tensor(chunk_rows),
                    "features": (buffer if projector is None else projector.project(buffer)).cpu(),
                    "norms": torch.cat(grad_norms).cpu(),
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
        phi = feats.div_(feature_norm.clamp(min=tiny)[:, None])
        mean_idk, mean_ik = phi[in_idk].mean(0), phi[in_ik].mean(0)
        i_ref, i_sta = phi @ mean_idk, phi @ (mean_idk - mean_ik)
        return InfluenceResult(
            i_ref=i_ref[scored],
            i_sta=i_sta[scored],
            grad_norm=norms[scored],
            feature_norm=feature_norm[scored],
            features=phi[scored],
            stats=_mean_stats(mean_idk, mean_ik),
            passes=1,
            **common,
        )

    # two passes: the means (of the rows, or of the normalised rows), then inner products
    row_normalized = projector is None and settings.normalize
    sums = work.load("sums")
    if sums is None or sums["chunks"] < len(chunks):
        state = sums or {
            "chunks": 0,
            "idk": torch.zeros(width),
            "ik": torch.zeros(width),
            "norms": torch.zeros(n),
            "grad_norms": torch.zeros(n),
        }
        for c in range(state["chunks"], len(chunks)):
            for batch in chunks[c]:
                values, grad_norms = rows(batch)
                index = torch.tensor(batch)
                row_norms = values.norm(dim=1)
                scale = 1 / row_norms.clamp(min=tiny) if row_normalized else 1.0
                for key, mask in (("idk", in_idk), ("ik", in_ik)):
                    weights = mask[index].to(values.device, values.dtype) * scale
                    state[key] += (weights @ values).cpu()
                state["norms"][index] = row_norms.cpu()
                state["grad_norms"][index] = grad_norms.cpu()
            state["chunks"] = c + 1
            work.save("sums", state)
            progress(f"pass 1, chunk {c + 1}/{len(chunks)}")
        sums = state
    mean_idk = procs.all_sum(sums["idk"].clone()) / int(in_idk.sum())
    mean_ik = procs.all_sum(sums["ik"].clone()) / int(in_ik.sum())
    norms = procs.all_sum(sums["norms"].clone())
    grad_norm = procs.all_sum(sums["grad_norms"].clone())
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
            chunk_rows = [i for batch in chunk for i in batch]
            values = torch.cat([rows(batch)[0] @ directions.T for batch in chunk]).cpu()
            saved = {"rows": torch.tensor(chunk_rows), "dots": values}
            work.save(f"dots.chunk{c}", saved)
        dots[saved["rows"]] = saved["dots"]
        progress(f"pass 2, chunk {c + 1}/{len(chunks)}")
    for i, d in procs.gather([(int(i), dots[i]) for c in chunks for b in c for i in b]):
        dots[i] = d
    if row_normalized:
        dots = dots / norms.clamp(min=tiny)[:, None]
    return InfluenceResult(
        i_ref=dots[scored, 0],
        i_sta=dots[scored, 1],
        grad_norm=grad_norm[scored],
        feature_norm=norms[scored] if factorized is not None else None,
        stats=stats,
        passes=2,
        **common,
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


def stage_key(cfg: InfluenceConfig) -> dict[str, Any]:
    """What the scores' stage is keyed by: the config and the generator of P (a run of another
    version's generator is neither resumed nor reused)."""
    return config_to_dict(cfg) | {"generator": PROJECTION_GENERATOR}


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
    keyed = stage_key(cfg)
    inputs = [str(Path(cfg.probe) / KNOWLEDGE_FILE), warmup]
    if probe_cfg.data.path:
        inputs.append(str(probe_cfg.data.path))
    stage = Stage(out / INFLUENCE_SCORES_DIR, "influence", keyed, inputs)
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
        factor_dim=cfg.factor_dim,
    )
    device = resolve_device(model_cfg.device)
    log(
        f"[influence] {sum(e.scored for e in examples)} questions, {engine.dim:,} LoRA "
        f"parameters, projection {cfg.projection}"
        + (f" to {cfg.projection_dim}" if cfg.projection == "rademacher" else "")
        + (f", factor_dim {cfg.factor_dim}" if cfg.projection == "factorized" else "")
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
        "projection_dim": cfg.projection_dim if cfg.projection == "rademacher" else None,
        "factor_dim": cfg.factor_dim if cfg.projection == "factorized" else None,
        "feature_dim": result.feature_dim,
        "chunks": result.chunks,
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
