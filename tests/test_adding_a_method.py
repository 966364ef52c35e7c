"""Adding a method is one module and one registry line (docs/adding-a-method.md): a toy method
defined here, registered with ``register_method``, goes through ``rait build`` and a tiny
``rait run`` (build, train, evaluate, the results table) with no other change. It needs the
rehearsal pre-stage and R-Tuning-U's entropy, so the run must start both for it and score it
with the padding confidence it asks for."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

import test_build
from rait.cli import main
from rait.errors import ConfigError
from rait.methods import METHODS, method_names, register_method, row_order
from rait.methods.base import (
    BuildContext,
    Candidate,
    MethodSpec,
    RuleReport,
    Selection,
    gold_answer,
    pick_all,
    split_by_mu,
)
from test_build import read_jsonl
from test_pipeline import _config, _run, _write

TOY = "toy-rait"
probe = test_build.probe  # the fixture: a probe of mixed known and unknown questions


def select_toy(candidates: Sequence[Candidate], ctx: BuildContext) -> Selection:
    """The N_van known questions and the N_idk unknown ones that come first by id."""
    known, unknown = split_by_mu(candidates, ctx.tau_mu)
    van = sorted(known, key=lambda c: c.id)[: ctx.sizes.n_van]
    idk = sorted(unknown, key=lambda c: c.id)[: ctx.sizes.n_idk]
    out = Selection()
    out.picks = pick_all(van, "van", gold_answer, "toy: first known by id") + pick_all(
        idk, "idk", lambda c: ctx.targets.refusal, "toy: first unknown by id"
    )
    out.rules = [
        RuleReport("toy: first known by id", len(known), len(van), "later by id"),
        RuleReport("toy: first unknown by id", len(unknown), len(idk), "later by id"),
    ]
    return out


@pytest.fixture
def toy():
    spec = MethodSpec(
        name=TOY,
        select=select_toy,
        summary="first known keep answers, first unknown refuse",
        requires=("rtuning_u_entropy",),
        prestages=("rehearse",),
        eval_confidence="padding",
    )
    register_method(spec)
    yield spec
    del METHODS[TOY]


def test_a_registered_method_is_everywhere_the_registry_is_read(toy):
    assert TOY in method_names() and row_order()[-1] == TOY  # after the papers' rows
    with pytest.raises(ConfigError, match="already registered"):
        register_method(toy)
    with pytest.raises(ConfigError, match="unknown pre-stage"):
        MethodSpec(name="x", select=select_toy, summary="", prestages=("nope",))


def test_a_toy_method_through_rait_build(toy, probe, tmp_path, capsys):
    out = tmp_path / "toy.jsonl"
    argv = ["build", "--method", TOY, "--data", probe.data, "--knowledge", probe.knowledge]
    argv += ["--knowledge-after", probe.after]
    assert main([*argv, "--n-van", "3", "--n-idk", "2", "--out", str(out)]) == 0
    rows = read_jsonl(out)
    know = {r["id"]: r["mu"] for r in probe.know_rows}
    van = sorted(k for k, mu in know.items() if mu >= 0.5)[:3]
    idk = sorted(k for k, mu in know.items() if mu < 0.5)[:2]
    assert sorted(r["id"] for r in rows if r["kind"] == "van") == van
    assert sorted(r["id"] for r in rows if r["kind"] == "idk") == idk
    assert all(r["method"] == TOY and "delta_mu" in r for r in rows)
    summary = json.loads((tmp_path / "toy.summary.json").read_text())
    assert summary["eval_confidence"] == "padding"


def test_a_toy_method_through_a_tiny_rait_run(toy, tmp_path, tiny_model_dir):
    config = _config(tmp_path, tiny_model_dir, [TOY], baselines=["init-basic"])
    results = _run(_write(tmp_path, config))
    run = tmp_path / "run"
    # its pre-stage and its probe field were produced for it, and nothing else was
    assert (run / "rehearse" / "knowledge_after.jsonl").is_file()
    assert not (run / "influence").exists()
    probed = read_jsonl(run / "probe" / "knowledge.jsonl")
    assert all("rtuning_u_entropy" in r for r in probed)
    built = read_jsonl(run / "build" / f"{TOY}.jsonl")
    assert built and all("delta_mu" in r for r in built)  # the rehearsal reached the build
    assert (run / "train" / TOY / "adapter" / "adapter_config.json").is_file()
    stage = json.loads((run / "eval" / "wf-id" / TOY / "stage.json").read_text())
    assert stage["config"]["confidence"] == "padding"
    assert sorted(r["method"] for r in results["rows"]) == ["init-basic", "init-basic", TOY, TOY]
    assert f"| {TOY} |" in (run / "results.md").read_text()


def test_the_guides_example_method_builds(probe, tmp_path):
    """The example of docs/adding-a-method.md, run as written: CorCer-RAIT's rule, so its set
    is CorCer-RAIT's (the same σ ranking and tie-breaking)."""
    import re
    from pathlib import Path

    guide = (Path(__file__).parents[1] / "docs" / "adding-a-method.md").read_text()
    code = re.findall(r"```python\n(.*?)```", guide, re.S)[0]
    namespace: dict = {}
    exec(compile(code, "docs/adding-a-method.md", "exec"), namespace)
    register_method(namespace["SPEC"])
    try:
        mine = probe.build("my-method", n_van=4, n_idk=3).rows
        theirs = probe.build("corcer-rait", n_van=4, n_idk=3).rows
    finally:
        del METHODS["my-method"]
    assert {(r["id"], r["kind"]) for r in mine} == {(r["id"], r["kind"]) for r in theirs}
