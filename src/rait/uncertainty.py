"""How much of a difference is noise: paired bootstrap intervals over the test questions.

A test set of n questions is a sample; a rate measured on it would come out differently on
another n questions of the same kind. The nonparametric bootstrap (Efron & Tibshirani 1993,
ch. 13) estimates that spread by redrawing n questions with replacement, B times, and
recomputing the statistic on each redraw; the **percentile interval** is the α/2 and 1 − α/2
quantiles of the B values (docs/evaluate.md#uncertainty).

**Paired.** Every statistic here is a function of a few verdict lists *on the same questions*:
a method's, the base model's (Init-Basic: THS, the knowledge quadrants), and for a comparison
a second method's. A redraw takes a question with all its verdicts together, so a question
that is hard for every model moves them together, and the interval of a difference is the
interval of a paired difference, much narrower than two separate intervals would suggest.

**How it is drawn.** Each question enters a statistic only through its tuple of verdicts (3
verdicts per list: at most 9 tuples for a method and its base, 27 for a comparison). Redrawing
n questions with replacement is therefore exactly a multinomial draw of the n questions over
the tuples, with the observed shares as probabilities: ``numpy.random.Generator.multinomial``
with a seeded PCG64 generator. It is the same distribution as resampling question indices
(tested against ``scipy.stats.bootstrap`` and against the exact binomial of a rate), at a cost
that does not grow with n, so 10,000 redraws take milliseconds on 14,042 MMLU questions.

**p-value** of a paired difference Δ (two-sided, the bootstrap distribution's mass on the far
side of 0; Davison & Hinkley 1997, §4.4, with the +1 that keeps it away from 0):
``p = min(1, (1 + 2·min(#{Δ* ≤ 0}, #{Δ* ≥ 0})) / (B + 1))``. It is below α about when the
percentile interval excludes 0; a difference whose every redraw is 0 has p = 1.

A statistic that is undefined on some redraws (THS when a redraw holds no error of the base
model; refusal precision when it holds no refusal) is taken over the redraws where it is
defined, and the interval says how many were left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rait.cliargs import option
from rait.errors import ConfigError
from rait.metrics import MetricError, rates

ESTIMATOR = "paired bootstrap, percentile interval"
#: B × (verdict tuples) counts are held in memory: 10^7 × 27 int64 is 2 GB
MAX_RESAMPLES = 10_000_000


@dataclass
class BootstrapConfig:
    """The paired bootstrap of every interval (docs/evaluate.md#uncertainty)."""

    confidence: float = option(0.95, help="confidence level of the intervals")
    n_resamples: int = option(10_000, help="bootstrap redraws B")
    seed: int = option(0, help="seed of the redraws")

    def validate(self) -> None:
        c, b, seed = self.confidence, self.n_resamples, self.seed
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c < 1:
            raise ConfigError(f"bootstrap.confidence must be in (0, 1), got {c!r}")
        if isinstance(b, bool) or not isinstance(b, int) or not 100 <= b <= MAX_RESAMPLES:
            raise ConfigError(
                f"bootstrap.n_resamples must be an integer in [100, {MAX_RESAMPLES:,}], got {b!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"bootstrap.seed must be an integer >= 0, got {seed!r}")

    def describe(self) -> dict[str, Any]:
        return {
            "estimator": ESTIMATOR,
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
        }


# --------------------------------------------------------------------------- the redraws
class Redraws:
    """B redraws of the questions, as counts over the verdict tuples that occur.

    ``lists`` are verdict lists over the same questions in the same order; ``count(k, v)`` is,
    per redraw, how many questions have verdict ``v`` in list ``k`` (an array of B), and
    ``observed(k, v)`` the same on the test set itself.
    """

    def __init__(self, lists: Sequence[Sequence[str]], cfg: BootstrapConfig):
        import numpy as np

        cfg.validate()
        n = len(lists[0])
        for i, verdicts in enumerate(lists):
            if len(verdicts) != n:
                raise MetricError(
                    f"verdict list {i} has {len(verdicts)} verdicts, list 0 has {n}: "
                    "a paired interval needs the same questions"
                )
            rates(verdicts)  # non-empty, known labels
        tuples = Counter(zip(*lists, strict=True))
        self.keys = sorted(tuples)
        self.n = n
        self.observed_counts = np.array([tuples[k] for k in self.keys], dtype=np.int64)
        rng = np.random.default_rng(cfg.seed)
        self.draws = rng.multinomial(n, self.observed_counts / n, size=cfg.n_resamples)

    def _mask(self, list_index: int, verdicts: tuple[str, ...]):
        import numpy as np

        return np.array([k[list_index] in verdicts for k in self.keys], dtype=bool)

    def count(self, list_index: int, *verdicts: str):
        return self.draws[:, self._mask(list_index, verdicts)].sum(axis=1)

    def observed(self, list_index: int, *verdicts: str) -> int:
        return int(self.observed_counts[self._mask(list_index, verdicts)].sum())

    def count_where(self, conditions: dict[int, tuple[str, ...]]):
        import numpy as np

        mask = np.ones(len(self.keys), dtype=bool)
        for index, verdicts in conditions.items():
            mask &= self._mask(index, verdicts)
        return self.draws[:, mask].sum(axis=1)


def percentile_interval(values: Any, confidence: float) -> dict[str, Any] | None:
    """``{"low", "high", "undefined"}``: the percentile interval of the finite values (NaN
    marks a redraw where the statistic is undefined); ``None`` when no redraw defines it."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    alpha = 1.0 - confidence
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return {"low": float(low), "high": float(high), "undefined": int(values.size - finite.size)}


def _ratio(top, bottom):
    import numpy as np

    top = np.asarray(top, dtype=np.float64)
    bottom = np.asarray(bottom, dtype=np.float64)
    out = np.full(top.shape, np.nan)
    np.divide(top, bottom, out=out, where=bottom != 0)
    return out


def _ths(pc, pw, pc0, pw0):
    """THS = (Pc·Pw0 − Pw·Pc0) / Pw0 per redraw (:func:`rait.metrics.ths`), NaN at Pw0 = 0."""
    return _ratio(pc * pw0 - pw * pc0, pw0)


# --------------------------------------------------------------------------- one method
STATISTICS = ("pc", "pw", "pr", "ths", "refusal_precision", "refusal_recall")


def _statistics(r: Redraws, m: int, base: int | None) -> dict[str, Any]:
    """Per redraw, every statistic of list ``m`` (against list ``base`` where given)."""
    n = r.n
    out = {
        "pc": r.count(m, "correct") / n,
        "pw": r.count(m, "wrong") / n,
        "pr": r.count(m, "refused") / n,
    }
    if base is not None:
        out["ths"] = _ths(
            out["pc"], out["pw"], r.count(base, "correct") / n, r.count(base, "wrong") / n
        )
        good = r.count_where({m: ("refused",), base: ("wrong", "refused")})
        out["refusal_precision"] = _ratio(good, r.count(m, "refused"))
        out["refusal_recall"] = _ratio(good, r.count(base, "wrong", "refused"))
    return out


def intervals(
    verdicts: Sequence[str],
    base_verdicts: Sequence[str] | None = None,
    cfg: BootstrapConfig | None = None,
) -> dict[str, Any]:
    """Paired-bootstrap intervals of Pc, Pw, Pr, and with the base model's verdicts on the same
    questions (same order) of THS and the refusal precision and recall
    (:func:`rait.metrics.knowledge_quadrants`). Each interval is ``{"low", "high",
    "undefined"}`` as fractions, or ``None`` where no redraw defines the statistic."""
    cfg = cfg or BootstrapConfig()
    lists = [verdicts] if base_verdicts is None else [verdicts, base_verdicts]
    r = Redraws(lists, cfg)
    stats = _statistics(r, 0, None if base_verdicts is None else 1)
    return cfg.describe() | {
        "n": r.n,
        **{k: percentile_interval(v, cfg.confidence) for k, v in stats.items()},
    }


# --------------------------------------------------------------------------- two methods
def p_value(deltas: Any) -> float | None:
    """Two-sided bootstrap p-value of a paired difference (the module docstring); None when no
    redraw defines the difference."""
    import numpy as np

    deltas = np.asarray(deltas, dtype=np.float64)
    deltas = deltas[np.isfinite(deltas)]
    if deltas.size == 0:
        return None
    tail = min(int((deltas <= 0).sum()), int((deltas >= 0).sum()))
    return min(1.0, (1 + 2 * tail) / (deltas.size + 1))


def paired_difference(
    verdicts: Sequence[str],
    other_verdicts: Sequence[str],
    base_verdicts: Sequence[str],
    cfg: BootstrapConfig | None = None,
) -> dict[str, Any]:
    """A method against another on the same test set: ``delta`` of each statistic (this
    method's minus the other's), its paired-bootstrap interval and p-value. The three verdict
    lists (this method, the other, the base model for THS) are redrawn together."""
    from rait.metrics import knowledge_quadrants, ths

    cfg = cfg or BootstrapConfig()
    r = Redraws([verdicts, other_verdicts, base_verdicts], cfg)
    ours, theirs = _statistics(r, 0, 2), _statistics(r, 1, 2)
    point_a, point_b = rates(verdicts), rates(other_verdicts)
    base = rates(base_verdicts)
    qa = knowledge_quadrants(verdicts, base_verdicts)
    qb = knowledge_quadrants(other_verdicts, base_verdicts)
    points: dict[str, tuple[float | None, float | None]] = {
        "pc": (point_a.pc, point_b.pc),
        "pw": (point_a.pw, point_b.pw),
        "pr": (point_a.pr, point_b.pr),
        "ths": (
            ths(point_a.pc, point_a.pw, base.pc, base.pw),
            ths(point_b.pc, point_b.pw, base.pc, base.pw),
        ),
        "refusal_precision": (qa["refusal_precision"], qb["refusal_precision"]),
        "refusal_recall": (qa["refusal_recall"], qb["refusal_recall"]),
    }
    out: dict[str, Any] = cfg.describe() | {"n": r.n}
    for key, (a, b) in points.items():
        deltas = ours[key] - theirs[key]
        delta = None if a is None or b is None else a - b
        out[key] = {
            "delta": delta,
            "interval": percentile_interval(deltas, cfg.confidence) if delta is not None else None,
            "p_value": p_value(deltas) if delta is not None else None,
        }
    return out


def significant(entry: dict[str, Any] | None) -> bool:
    """Whether a paired difference's interval excludes 0."""
    interval = (entry or {}).get("interval")
    return bool(interval) and (interval["low"] > 0 or interval["high"] < 0)


def format_interval(
    point: float | None, interval: dict[str, Any] | None, scale: float = 100.0, digits: int = 1
) -> str:
    """``36.0 [26.6, 45.4]`` (×100, one decimal); ``–`` for an undefined point."""
    if point is None:
        return "–"
    text = f"{scale * point:.{digits}f}"
    if interval:
        text += f" [{scale * interval['low']:.{digits}f}, {scale * interval['high']:.{digits}f}]"
    return text


def format_p(p: float | None) -> str:
    """A p-value for a table: three decimals, or two significant digits below 0.001 (the
    smallest is 1 / (B + 1), about 1e-4 at B = 10,000)."""
    if p is None:
        return "–"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"
