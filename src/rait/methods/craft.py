"""CRaFT (Zhu et al., 2024), Algorithm 1 with docs/methods.md §3's corrections, and its
ablations from the same probe.

Stage 1 (coarse, by correctness and knowledge flow Δµ = µ̃ − µ0 after rehearsal):
``D¹_van = {µ ≥ τµ}``, ``D¹_idk = {µ < τµ ∧ Δµ < 0}``; ``{µ < τµ ∧ Δµ ≥ 0}`` is dropped
(knowledge the model is still acquiring: refusing it would fight the fine-tuning).
Stage 2 (fine, by certainty σ): ``D²_van`` = the N_van of D¹_van with the *highest* σ,
``D²_idk`` = the N_idk of D¹_idk with the *lowest* σ; D²_idk answers become the refusal.

Ablations: **w/o Flow** (= CorCer-RAIT) skips the Δµ filter (D¹_idk = {µ < τµ});
**w/o Cer** keeps the Δµ filter and draws at random instead of ranking by σ.
"""

from __future__ import annotations

from collections.abc import Sequence

from rait.methods.base import (
    BuildContext,
    Candidate,
    MethodSpec,
    RuleReport,
    Selection,
    gold_answer,
    pick_all,
    split_by_mu,
    take_sides,
)


def _craft(
    name: str,
    candidates: Sequence[Candidate],
    ctx: BuildContext,
    flow: bool,
    certainty: bool,
) -> Selection:
    out = Selection()
    tau = f"{ctx.tau_mu:g}"
    known, unknown = split_by_mu(candidates, ctx.tau_mu)
    if flow:
        idk_pool = [c for c in unknown if c.delta_mu < 0]
        out.rules.append(
            RuleReport(
                f"µ < {tau} ∧ Δµ < 0 → D¹_idk",
                len(unknown),
                len(idk_pool),
                "Δµ ≥ 0: rehearsal does not lower µ, so CRaFT does not refuse it",
            )
        )
    else:
        idk_pool = unknown
    if certainty:
        van_rule = f"µ ≥ {tau}: top N_van by σ, original answer"
        idk_rule = "D¹_idk: bottom N_idk by σ, refusal"
        why = "outside the N by σ"
    else:
        van_rule = f"µ ≥ {tau}: random N_van, original answer"
        idk_rule = "D¹_idk: random N_idk, refusal"
        why = "not drawn"
    order = "top-bottom" if certainty else "random"
    van, idk = take_sides(name, known, idk_pool, ctx, out, order, key=lambda c: c.sigma)
    out.picks = pick_all(van, "van", gold_answer, van_rule) + pick_all(
        idk, "idk", lambda c: ctx.targets.refusal, idk_rule
    )
    out.rules += [
        RuleReport(van_rule, len(known), len(van), why),
        RuleReport(idk_rule, len(idk_pool), len(idk), why),
    ]
    return out


def select_craft(candidates: Sequence[Candidate], ctx: BuildContext) -> Selection:
    """CRaFT: Δµ filter (knowledge flow) and σ ranking (certainty)."""
    return _craft("craft", candidates, ctx, flow=True, certainty=True)


def select_no_flow(candidates: Sequence[Candidate], ctx: BuildContext) -> Selection:
    """CRaFT w/o Flow = CorCer-RAIT: σ ranking, no Δµ filter."""
    return _craft("craft-no-flow", candidates, ctx, flow=False, certainty=True)


def select_no_cer(candidates: Sequence[Candidate], ctx: BuildContext) -> Selection:
    """CRaFT w/o Cer: Δµ filter, random draws instead of σ ranking."""
    return _craft("craft-no-cer", candidates, ctx, flow=True, certainty=False)


CRAFT = MethodSpec(
    name="craft",
    select=select_craft,
    summary="µ ≥ τµ top-σ keep answers; µ < τµ with Δµ < 0, bottom-σ, refuse",
    prestages=("rehearse",),
)
CORCER_RAIT = MethodSpec(
    name="corcer-rait",
    select=select_no_flow,
    summary="CRaFT without knowledge flow: µ ≥ τµ top-σ answers, µ < τµ bottom-σ refusals",
)
CRAFT_NO_FLOW = MethodSpec(
    name="craft-no-flow",
    select=select_no_flow,
    summary="CRaFT w/o Flow (= corcer-rait)",
    alias_of="corcer-rait",
)
CRAFT_NO_CER = MethodSpec(
    name="craft-no-cer",
    select=select_no_cer,
    summary="CRaFT w/o Cer: Δµ < 0 filter, random N_van / N_idk",
    prestages=("rehearse",),
)
