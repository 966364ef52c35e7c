"""Van-Tuning (CRaFT/GRAIT baseline): plain instruction tuning on a random sample of D_src with
the original answers and the basic prompt; no refusals (docs/methods.md §3)."""

from __future__ import annotations

from collections.abc import Sequence

from rait.methods.base import (
    BuildContext,
    Candidate,
    MethodSpec,
    RuleReport,
    Selection,
    derived_rng,
    gold_answer,
    pick_all,
    take,
)


def select(candidates: Sequence[Candidate], ctx: BuildContext) -> Selection:
    """``N_van + N_idk`` questions drawn at random from D_src, every one keeping its answer."""
    out = Selection()
    n = ctx.sizes.n_van + ctx.sizes.n_idk
    rule = "random sample of D_src, original answers"
    chosen = take(
        candidates,
        n,
        name="van-tuning N_van+N_idk",
        sizes=ctx.sizes,
        selection=out,
        order="random",
        rng=derived_rng(ctx.seed, "van-tuning", "sample"),
    )
    out.picks = pick_all(chosen, "van", gold_answer, rule)
    out.rules.append(RuleReport(rule, len(candidates), len(chosen), "not drawn"))
    return out


SPEC = MethodSpec(
    name="van-tuning",
    select=select,
    summary="random N_van+N_idk samples, original answers, basic prompt (no refusals)",
    refuse_prompt=False,
)
