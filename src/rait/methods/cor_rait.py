"""Cor-RAIT: the correctness-only RAIT baseline (CRaFT §3.1, docs/methods.md §3.4).

D_van = {µ ≥ τµ} keeps its answer, D_idk = {µ < τµ} gets the refusal; N_van and N_idk are drawn
at random from each."""

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


def select(candidates: Sequence[Candidate], ctx: BuildContext) -> Selection:
    out = Selection()
    known, unknown = split_by_mu(candidates, ctx.tau_mu)
    van_rule = f"µ ≥ {ctx.tau_mu:g}: random N_van, original answer"
    idk_rule = f"µ < {ctx.tau_mu:g}: random N_idk, refusal"
    van, idk = take_sides("cor-rait", known, unknown, ctx, out)
    out.picks = pick_all(van, "van", gold_answer, van_rule) + pick_all(
        idk, "idk", lambda c: ctx.targets.refusal, idk_rule
    )
    out.rules += [
        RuleReport(van_rule, len(known), len(van), "not drawn"),
        RuleReport(idk_rule, len(unknown), len(idk), "not drawn"),
    ]
    return out


SPEC = MethodSpec(
    name="cor-rait",
    select=select,
    summary="µ ≥ τµ keeps its answer, µ < τµ refuses; random N_van / N_idk",
)
