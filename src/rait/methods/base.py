"""What every data-construction method shares: the candidates (a question with its probed
knowledge), seeded selection, and the report of what each rule kept and dropped.

A method turns candidates into :class:`Pick` s: a question, its kind (``van``: keeps an answer;
``idk``: the refusal-aware side), the training target and a loss weight. Pools smaller than
asked are taken whole and reported (docs/methods.md §3: never silently up-sampled).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rait.data.records import QARecord
from rait.errors import ConfigError

Kind = Literal["van", "idk"]

#: the pre-stages a method can need, each a run-directory stage whose output ``rait build``
#: reads through one of its fields: CRaFT's rehearsal (``knowledge_after``, docs/methods.md
#: §3) and GRAIT's gradient influence (``influence``, §5). The pipeline runs each one once per
#: run, for every method that lists it (:data:`rait.pipeline.PRESTAGES` says how).
PRESTAGE_BUILD_FIELD = {"rehearse": "knowledge_after", "influence": "influence"}

#: the correctness threshold τµ between known (µ ≥ τµ) and unknown questions: CRaFT's τµ and
#: GRAIT's T_c, 0.5 in both papers (docs/methods.md §3, §5)
DEFAULT_TAU_MU = 0.5

#: GRAIT's τ of the stable-influence weights ω = exp(I_sta/τ) / mean exp(I_sta/τ)
#: (docs/methods.md §5)
DEFAULT_TEMPERATURE = 0.05

#: how ``rait eval`` scores a trained model's confidence (AP, ECE): the answer's probability,
#: or R-Tuning padding's mix with the sure-probability (docs/methods.md §4)
EVAL_CONFIDENCES = ("answer", "padding")


@dataclass(frozen=True)
class Candidate:
    """A training question with its knowledge state (µ, σ), after CRaFT's rehearsal the
    rehearsed model's (µ̃, σ̃), and for GRAIT its refusal and stable influence."""

    record: QARecord
    mu: float
    sigma: float
    knowledge: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    mu_after: float | None = None
    sigma_after: float | None = None
    i_ref: float | None = None
    i_sta: float | None = None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def delta_mu(self) -> float:
        """Knowledge flow of correctness, Δµ = µ̃ − µ0 (CRaFT §4.2, docs/methods.md §3.2)."""
        if self.mu_after is None:
            raise ValueError(f"{self.id}: no rehearsed µ")
        return self.mu_after - self.mu

    @property
    def delta_sigma(self) -> float:
        """Knowledge flow of certainty, Δσ = σ̃ − σ0."""
        if self.sigma_after is None:
            raise ValueError(f"{self.id}: no rehearsed σ")
        return self.sigma_after - self.sigma


@dataclass(frozen=True)
class Pick:
    """One training sample chosen by a method."""

    candidate: Candidate
    kind: Kind
    answer: str
    rule: str
    weight: float = 1.0


@dataclass
class RuleReport:
    """How many candidates one rule saw, kept and dropped, and why."""

    rule: str
    pool: int
    kept: int
    why_dropped: str = ""

    @property
    def dropped(self) -> int:
        return self.pool - self.kept

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "pool": self.pool,
            "kept": self.kept,
            "dropped": self.dropped,
            "why_dropped": self.why_dropped,
        }


@dataclass
class Selection:
    """A method's output: the picks, one report per rule, and any size adjustment."""

    picks: list[Pick] = field(default_factory=list)
    rules: list[RuleReport] = field(default_factory=list)
    adjustments: list[str] = field(default_factory=list)
    #: draws that chose nothing: a pool no larger than what is drawn from it (see :func:`take`)
    vacuous: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sizes:
    """How many vanilla and IdK samples to take (N_van, N_idk) and what to do when a pool is
    smaller: take all of it and report (default) or stop (``strict``)."""

    n_van: int
    n_idk: int
    strict: bool = False


@dataclass(frozen=True)
class Targets:
    """The training targets a method can use."""

    refusal: str
    uncertainty_texts: tuple[str, ...] = ()


def derived_rng(seed: int, *labels: str) -> random.Random:
    """An independent, platform-stable RNG per (seed, method, rule)."""
    text = "\x1f".join((str(seed), *labels))
    return random.Random(int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big"))


def take(
    pool: Sequence[Candidate],
    n: int,
    *,
    name: str,
    sizes: Sizes,
    selection: Selection,
    order: Literal["random", "top", "bottom"],
    rng: random.Random,
    key: Callable[[Candidate], float] | None = None,
) -> list[Candidate]:
    """``n`` candidates of ``pool``: a seeded random sample (``random``), or the ``n`` with the
    highest (``top``) / lowest (``bottom``) ``key``. Ties in ``key`` are broken by a seeded
    random order, so the result depends on the seed only, not on the file order.

    A pool smaller than ``n`` is taken whole and the shortfall is recorded in
    ``selection.adjustments``, or, with ``sizes.strict``, is an error. A pool no larger than
    ``n`` (smaller or equal) makes the draw **vacuous**: the ranking (or the random choice)
    picks nothing, every candidate is taken, and the method degenerates to "the whole pool"
    (CRaFT's σ ranking to Cor-RAIT's known side, Van-Tuning to all of D_src). That is recorded
    in ``selection.vacuous``; ``rait build`` reports it as a warning (docs/build.md)."""
    if n < 0:
        raise ConfigError(f"{name}: a size cannot be negative, got {n}")
    if 0 < len(pool) <= n:
        what = "random draw" if order == "random" else f"ranking ({order} first)"
        selection.vacuous.append(
            f"{name}: the {what} is vacuous: the pool has {len(pool)}, no more than the {n} "
            f"asked, so every candidate is taken and the choice plays no part; draw from a "
            "larger pool (probe more questions) or ask for fewer"
        )
    if n > len(pool):
        message = (
            f"{name}: asked for {n}, the pool has {len(pool)}; all {len(pool)} taken "
            "(no up-sampling)"
        )
        if sizes.strict:
            raise ConfigError(message + "; strict_sizes is on: lower the size or the thresholds")
        selection.adjustments.append(message)
        n = len(pool)
    by_id = sorted(pool, key=lambda c: c.id)  # draws do not depend on the file order
    if order == "random":
        return rng.sample(by_id, n)
    if key is None:
        raise ValueError("a ranked take needs a key")
    tiebreak = {c.id: rng.random() for c in by_id}
    sign = -1.0 if order == "top" else 1.0
    ranked = sorted(pool, key=lambda c: (sign * key(c), tiebreak[c.id]))
    return ranked[:n]


def take_sides(
    name: str,
    van_pool: Sequence[Candidate],
    idk_pool: Sequence[Candidate],
    ctx: BuildContext,
    selection: Selection,
    order: Literal["random", "top-bottom"] = "random",
    key: Callable[[Candidate], float] | None = None,
) -> tuple[list[Candidate], list[Candidate]]:
    """N_van of ``van_pool`` and N_idk of ``idk_pool`` (see :func:`take`), each side with its
    own RNG derived from (seed, method, side). ``top-bottom``: the vanilla side takes the
    highest ``key``, the IdK side the lowest (CRaFT's σ ranking); ``random``: seeded draws."""
    van_order, idk_order = ("top", "bottom") if order == "top-bottom" else ("random", "random")
    van = take(
        van_pool,
        ctx.sizes.n_van,
        name=f"{name} N_van",
        sizes=ctx.sizes,
        selection=selection,
        order=van_order,
        rng=derived_rng(ctx.seed, name, "van"),
        key=key,
    )
    idk = take(
        idk_pool,
        ctx.sizes.n_idk,
        name=f"{name} N_idk",
        sizes=ctx.sizes,
        selection=selection,
        order=idk_order,
        rng=derived_rng(ctx.seed, name, "idk"),
        key=key,
    )
    return van, idk


def split_by_mu(
    candidates: Sequence[Candidate], tau_mu: float
) -> tuple[list[Candidate], list[Candidate]]:
    """Cor-RAIT's split (docs/methods.md §3): known ``µ ≥ τµ`` and unknown ``µ < τµ``."""
    known = [c for c in candidates if c.mu >= tau_mu]
    unknown = [c for c in candidates if c.mu < tau_mu]
    return known, unknown


@dataclass(frozen=True)
class BuildContext:
    """Everything a method's selection reads besides the candidates."""

    sizes: Sizes
    targets: Targets
    tau_mu: float = DEFAULT_TAU_MU
    seed: int = 0
    temperature: float = DEFAULT_TEMPERATURE


@dataclass(frozen=True)
class MethodSpec:
    """A data-construction method: its selection function and what it needs. Registering one
    in :data:`rait.methods.METHODS` is all that ``rait build``, ``rait run``, the results
    table, the demo and the CLI need (see docs/adding-a-method.md).

    ``refuse_prompt``: train with the REFUSE prompt (every RAIT variant) or the basic prompt
    (Van-Tuning), docs/methods.md §6. ``requires``: knowledge fields beyond µ and σ (the
    pipeline turns on the probe settings that write them, :data:`rait.artifacts.
    KNOWLEDGE_FIELD_PROBE_SETTING`). ``prestages``: the pre-stages whose output the selection
    reads (:data:`PRESTAGE_BUILD_FIELD`). ``eval_confidence``: how ``rait eval`` scores the
    trained model's confidence. ``alias_of``: another registered name for the same rule (the
    demo and the default method lists leave aliases out).
    """

    name: str
    select: Callable[[Sequence[Candidate], BuildContext], Selection]
    summary: str
    refuse_prompt: bool = True
    requires: tuple[str, ...] = ()
    prestages: tuple[str, ...] = ()
    eval_confidence: str = "answer"
    alias_of: str | None = None

    def __post_init__(self) -> None:
        unknown = [p for p in self.prestages if p not in PRESTAGE_BUILD_FIELD]
        if unknown:
            raise ConfigError(
                f"method {self.name!r}: unknown pre-stage(s) {', '.join(unknown)}; known: "
                f"{', '.join(PRESTAGE_BUILD_FIELD)}"
            )
        if self.eval_confidence not in EVAL_CONFIDENCES:
            raise ConfigError(
                f"method {self.name!r}: eval_confidence must be one of "
                f"{', '.join(EVAL_CONFIDENCES)}, got {self.eval_confidence!r}"
            )

    @property
    def rehearsal(self) -> bool:
        """Needs the rehearsed model's knowledge (``rait build --knowledge-after``)."""
        return "rehearse" in self.prestages

    @property
    def influence(self) -> bool:
        """Needs GRAIT's influence scores (``rait build --influence``)."""
        return "influence" in self.prestages


def pick_all(
    chosen: Sequence[Candidate], kind: Kind, answer_of: Callable[[Candidate], str], rule: str
) -> list[Pick]:
    return [Pick(c, kind, answer_of(c), rule) for c in chosen]


def gold_answer(candidate: Candidate) -> str:
    """The original answer: the gold letter (MCQA) or the first alias (OEQA)."""
    return candidate.record.canonical_answer
