"""R-Tuning (Zhang et al., NAACL 2024), docs/methods.md §4: three ways to build the set.

The split into a *certain* set D1 and an *uncertain* set D0 comes from R-Tuning's query (one
greedy answer; certain if correct, probe field ``greedy_correct``) or, for R-Tuning-U, from the
entropy of k answers at T = 0.7 (probe field ``rtuning_u_entropy``; the 50% lowest are certain,
R-Tuning eq. 7). N_van samples are drawn from D1 and N_idk from D0, at random.

* **padding** (the main method, eq. 1): every sample keeps its gold answer and is padded with
  "Are you sure you accurately answered the question based on your internal knowledge? I am
  sure" (D1) or "... I am unsure" (D0);
* **replace** (R-Tuning-R): D1 keeps its answer, D0's answer becomes one of the 16 uncertainty
  expressions (appendix A.5), drawn per sample with the seed;
* **U**: padding on the entropy split.

The padding target is written after the answer as one line, ``"{answer}. {question} I am
sure"``; ``rait eval --confidence padding`` asks the same question after the model's answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from rait.errors import DataError
from rait.methods.base import (
    BuildContext,
    Candidate,
    MethodSpec,
    RuleReport,
    Selection,
    derived_rng,
    gold_answer,
    pick_all,
    take_sides,
)
from rait.prompts import RTUNING_SURE, RTUNING_SURE_QUESTION, RTUNING_UNSURE


def rtuning_u_certain(rows: Sequence[dict], fraction: float = 0.5) -> set[str]:
    """The ids of the ``fraction`` of questions with the lowest R-Tuning-U entropy, rounded
    down (ties broken by id, so the split is deterministic)."""
    scored = [r for r in rows if r.get("rtuning_u_entropy") is not None]
    if len(scored) != len(rows):
        raise DataError("R-Tuning-U needs a probe run with rtuning_u: true")
    ranked = sorted(scored, key=lambda r: (r["rtuning_u_entropy"], str(r["id"])))
    return {str(r["id"]) for r in ranked[: math.floor(len(ranked) * fraction)]}


def padded_answer(answer: str, sure: bool) -> str:
    """R-Tuning eq. (1) after the answer: ``"{a}. Are you sure ...? I am sure|unsure"``."""
    return f"{answer}. {RTUNING_SURE_QUESTION} I am {RTUNING_SURE if sure else RTUNING_UNSURE}"


def _greedy_split(candidates: Sequence[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
    certain = [c for c in candidates if c.knowledge["greedy_correct"]]
    uncertain = [c for c in candidates if not c.knowledge["greedy_correct"]]
    return certain, uncertain


def _entropy_split(candidates: Sequence[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
    certain_ids = rtuning_u_certain([c.knowledge for c in candidates])
    certain = [c for c in candidates if c.id in certain_ids]
    uncertain = [c for c in candidates if c.id not in certain_ids]
    return certain, uncertain


def _select(
    name: str,
    candidates: Sequence[Candidate],
    ctx: BuildContext,
    split: Callable[[Sequence[Candidate]], tuple[list[Candidate], list[Candidate]]],
    split_label: tuple[str, str],
    van_answer: Callable[[Candidate], str],
    idk_answer: Callable[[Candidate], str],
    targets: tuple[str, str],
) -> Selection:
    out = Selection()
    certain, uncertain = split(candidates)
    van_rule = f"{split_label[0]}: random N_van, {targets[0]}"
    idk_rule = f"{split_label[1]}: random N_idk, {targets[1]}"
    van, idk = take_sides(name, certain, uncertain, ctx, out)
    out.picks = pick_all(van, "van", van_answer, van_rule) + pick_all(
        idk, "idk", idk_answer, idk_rule
    )
    out.rules += [
        RuleReport(van_rule, len(certain), len(van), "not drawn"),
        RuleReport(idk_rule, len(uncertain), len(idk), "not drawn"),
    ]
    return out


GREEDY_LABELS = ("certain (greedy answer correct)", "uncertain (greedy answer wrong)")
ENTROPY_LABELS = ("certain (lower 50% entropy)", "uncertain (upper 50% entropy)")


def select_padding(candidates: Sequence[Candidate], ctx: BuildContext) -> Selection:
    return _select(
        "rtuning-padding",
        candidates,
        ctx,
        _greedy_split,
        GREEDY_LABELS,
        lambda c: padded_answer(gold_answer(c), sure=True),
        lambda c: padded_answer(gold_answer(c), sure=False),
        ("answer + 'I am sure'", "answer + 'I am unsure'"),
    )


def select_replace(candidates: Sequence[Candidate], ctx: BuildContext) -> Selection:
    rng = derived_rng(ctx.seed, "rtuning-replace", "expression")
    texts = ctx.targets.uncertainty_texts
    expression = {c.id: rng.choice(texts) for c in sorted(candidates, key=lambda c: c.id)}
    return _select(
        "rtuning-replace",
        candidates,
        ctx,
        _greedy_split,
        GREEDY_LABELS,
        gold_answer,
        lambda c: expression[c.id],
        ("original answer", "an uncertainty expression"),
    )


def select_unsupervised(candidates: Sequence[Candidate], ctx: BuildContext) -> Selection:
    return _select(
        "rtuning-u",
        candidates,
        ctx,
        _entropy_split,
        ENTROPY_LABELS,
        lambda c: padded_answer(gold_answer(c), sure=True),
        lambda c: padded_answer(gold_answer(c), sure=False),
        ("answer + 'I am sure'", "answer + 'I am unsure'"),
    )


PADDING = MethodSpec(
    name="rtuning-padding",
    select=select_padding,
    summary="greedy-correct → answer + 'I am sure', else answer + 'I am unsure'",
    requires=("greedy_correct",),
    eval_confidence="padding",
)
REPLACE = MethodSpec(
    name="rtuning-replace",
    select=select_replace,
    summary="greedy-correct keeps its answer, else one of 16 uncertainty expressions",
    requires=("greedy_correct",),
)
UNSUPERVISED = MethodSpec(
    name="rtuning-u",
    select=select_unsupervised,
    summary="padding on the entropy split (k answers at T=0.7; lower 50% certain)",
    requires=("rtuning_u_entropy",),
    eval_confidence="padding",
)
