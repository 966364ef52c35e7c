"""GRAIT (Zhu et al., 2025), Algorithm 1 lines 9-19 with docs/methods.md §5's corrections,
and its two ablations. The influence scores come from ``rait influence``.

* Split at T_c (= τµ, 0.5): ``D_ik = {µ ≥ T_c}`` keeps its answer, ``D_idk = {µ < T_c}``
  gets the refusal.
* Selection (eqs. 7-8): ``D_ik^sel`` = the N_ik (N_van) of D_ik with the highest µ;
  ``D_idk^sel`` = the N_idk of D_idk with the highest refusal influence I_ref. Ties are
  broken in a seeded random order.
* Weights (eq. 10), for ``D_idk^sel`` only (Algorithm 1 line 17 names D_ik^sel, a typo):
  ``ω(x) = exp(I_sta(x)/τ) / mean_{D_idk^sel} exp(I_sta/τ)``, τ = 0.05, computed with the
  maximum subtracted; D_ik^sel samples weigh 1. ``rait train`` then minimises
  ``Σ_idk ω L + Σ_ik L`` as a per-sample weighted mean (eq. 11) at any batch size.

Ablations: **w/o O1** (``grait-no-o1``): Cor-RAIT's random draws from D_ik and D_idk (the
same sets as ``cor-rait`` at the same seed), with the weights; **w/o O2** (``grait-no-o2``):
GRAIT's selection (the same sets as ``grait``), every weight 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rait.methods.base import (
    BuildContext,
    Candidate,
    MethodSpec,
    Pick,
    RuleReport,
    Selection,
    derived_rng,
    gold_answer,
    split_by_mu,
    take,
)


def stable_influence_weights(i_sta: Sequence[float], temperature: float) -> list[float]:
    """``ω_j = exp(I_sta_j/τ) / mean_l exp(I_sta_l/τ)`` (GRAIT eq. 10), with ``max_l I_sta_l``
    subtracted from every exponent (the ratio is unchanged, nothing overflows). The weights
    average 1. An empty list gives an empty list."""
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"the temperature τ must be positive, got {temperature}")
    if not i_sta:
        return []
    top = max(i_sta)
    scaled = [math.exp((s - top) / temperature) for s in i_sta]
    mean = sum(scaled) / len(scaled)
    return [s / mean for s in scaled]


def _require_scores(candidates: Sequence[Candidate]) -> None:
    missing = [c.id for c in candidates if c.i_ref is None or c.i_sta is None]
    if missing:
        raise ValueError(f"no influence scores for {len(missing)} candidates, e.g. {missing[0]}")


def _grait(
    name: str, candidates: Sequence[Candidate], ctx: BuildContext, o1: bool, o2: bool
) -> Selection:
    out = Selection()
    tau = f"{ctx.tau_mu:g}"
    known, unknown = split_by_mu(candidates, ctx.tau_mu)
    _require_scores(unknown)
    common = {"sizes": ctx.sizes, "selection": out}
    # the ablations draw exactly what they ablate to: w/o O2 GRAIT's selection (same ties),
    # w/o O1 Cor-RAIT's random sets
    stream = "grait" if o1 else "cor-rait"
    order = "top" if o1 else "random"  # w/o O1: Cor-RAIT's random draws (keys unused)
    van = take(
        known,
        ctx.sizes.n_van,
        name=f"{name} N_ik",
        order=order,
        rng=derived_rng(ctx.seed, stream, "van"),
        key=lambda c: c.mu,
        **common,
    )
    idk = take(
        unknown,
        ctx.sizes.n_idk,
        name=f"{name} N_idk",
        order=order,
        rng=derived_rng(ctx.seed, stream, "idk"),
        key=lambda c: c.i_ref,
        **common,
    )
    if o1:
        van_rule = f"µ ≥ {tau}: top N_ik by µ, original answer"
        idk_rule = f"µ < {tau}: top N_idk by I_ref, refusal"
        why = "outside the top N"
    else:
        van_rule = f"µ ≥ {tau}: random N_ik, original answer"
        idk_rule = f"µ < {tau}: random N_idk, refusal"
        why = "not drawn"
    if o2:
        weights = stable_influence_weights([c.i_sta for c in idk], ctx.temperature)
        idk_rule += f", weight ω = softmax-normalised exp(I_sta/{ctx.temperature:g})"
    else:
        weights = [1.0] * len(idk)
    out.picks = [Pick(c, "van", gold_answer(c), van_rule) for c in van] + [
        Pick(c, "idk", ctx.targets.refusal, idk_rule, weight=w)
        for c, w in zip(idk, weights, strict=True)
    ]
    out.rules += [
        RuleReport(van_rule, len(known), len(van), why),
        RuleReport(idk_rule, len(unknown), len(idk), why),
    ]
    return out


def select_grait(candidates: Sequence[Candidate], ctx: BuildContext) -> Selection:
    """GRAIT: top-µ D_ik, top-I_ref D_idk, stable-influence weights."""
    return _grait("grait", candidates, ctx, o1=True, o2=True)


def select_no_o1(candidates: Sequence[Candidate], ctx: BuildContext) -> Selection:
    """GRAIT w/o O1: random draws (Cor-RAIT / R-Tuning selection), stable-influence weights."""
    return _grait("grait-no-o1", candidates, ctx, o1=False, o2=True)


def select_no_o2(candidates: Sequence[Candidate], ctx: BuildContext) -> Selection:
    """GRAIT w/o O2: GRAIT's selection, every weight 1."""
    return _grait("grait-no-o2", candidates, ctx, o1=True, o2=False)


GRAIT = MethodSpec(
    name="grait",
    select=select_grait,
    summary="µ ≥ T_c top-µ keep answers; µ < T_c top-I_ref refuse, weighted by exp(I_sta/τ)",
    prestages=("influence",),
)
GRAIT_NO_O1 = MethodSpec(
    name="grait-no-o1",
    select=select_no_o1,
    summary="GRAIT w/o O1: random N_ik / N_idk, IdK weighted by exp(I_sta/τ)",
    prestages=("influence",),
)
GRAIT_NO_O2 = MethodSpec(
    name="grait-no-o2",
    select=select_no_o2,
    summary="GRAIT w/o O2: top-µ answers, top-I_ref refusals, all weights 1",
    prestages=("influence",),
)
