"""Stage 2, ``rait build``: the selection rules of every method (docs/methods.md §3 and §4),
the TRL prompt/completion rows, determinism, sizes and their adjustments, bad input (one
DataError/ConfigError naming file, line and field, and nothing written) and the CLI.

Every test writes a tiny data set and probe in ``tmp_path``; no model is needed. Expected
selections are recomputed here from the probe rows, independently of :mod:`rait.methods`.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rait.artifacts import build_summary_path as summary_path
from rait.build import BuildConfig, build_dataset, format_summary, run_build
from rait.cli import main
from rait.data.sources import DataSource
from rait.errors import ConfigError, DataError, VacuousSelectionWarning
from rait.methods import METHODS
from rait.prompts import (
    MCQA_QUERY_GRAIT_T4,
    MCQA_REFUSE_GRAIT_T6_T8,
    OEQA_QUERY_GRAIT_T5,
    OEQA_REFUSE_GRAIT_T7_T9,
    RTUNING_SURE_QUESTION,
    RTUNING_UNCERTAINTY_TEXTS,
)

RAIT_METHODS = sorted(set(METHODS) - {"van-tuning"})
REHEARSAL = {"craft", "craft-no-cer"}
LETTERS = "ABCD"


# --------------------------------------------------------------------------- helpers
def write_jsonl(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def oeqa_data(n: int, prefix: str = "q") -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "question": f"What is item {i}?", "answers": [f"Ans{i}", f"alt{i}"]}
        for i in range(n)
    ]


def mcqa_data(n: int) -> list[dict]:
    return [
        {
            "id": f"m{i}",
            "question": f"Which option is right for {i}?",
            "choices": [f"opt{i}a", f"opt{i}b", f"opt{i}c", f"opt{i}d"],
            "gold": i % 4,
            "subject": "testing",
        }
        for i in range(n)
    ]


def mixed_probe(n: int = 30, seed: int = 1234, task: str = "oeqa", prefix: str = "q"):
    """Knowledge and rehearsed knowledge for ``n`` questions: µ on a grid around τµ = 0.5, unique
    σ and entropies (so σ rankings have one answer), greedy answers that mostly follow µ, and a
    knowledge flow Δµ in {-0.2, -0.1, 0, +0.1}; unknown questions with Δµ ≥ 0 get the lowest σ,
    so that the flow filter changes CRaFT's IdK picks."""
    rng = random.Random(seed)
    sigmas = rng.sample(range(1000), n)
    entropies = rng.sample(range(1000), n)
    know, after = [], []
    for i in range(n):
        mu = rng.choice([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.9, 1.0])
        delta = rng.choice([-0.2, -0.1, 0.0, 0.1])
        gaining = mu < 0.5 and min(1.0, max(0.0, mu + delta)) >= mu
        know.append(
            {
                "id": f"{prefix}{i}",
                "task": task,
                "mu": mu,
                # questions that CRaFT's flow filter drops are the most certain unknowns
                "sigma": sigmas[i] / 1000 - (1.0 if gaining else 0.0),
                "greedy_correct": (mu >= 0.5) != (i % 4 == 0),
                "rtuning_u_entropy": entropies[i] / 500,
            }
        )
        after.append(
            {"id": f"{prefix}{i}", "mu": min(1.0, max(0.0, mu + delta)), "sigma": rng.random()}
        )
    return know, after


class Probe:
    """A data file, its knowledge and rehearsed knowledge, written in ``tmp_path``."""

    def __init__(self, tmp_path: Path, data, know, after=None, name="train"):
        self.dir = tmp_path
        self.data_rows = data
        self.know_rows = know
        self.after_rows = after
        self.data = write_jsonl(tmp_path / f"{name}.jsonl", data)
        self.knowledge = write_jsonl(tmp_path / f"{name}.knowledge.jsonl", know)
        self.after = (
            write_jsonl(tmp_path / f"{name}.knowledge_after.jsonl", after) if after else None
        )
        self.by_id = {r["id"]: r for r in know}
        self.after_by_id = {r["id"]: r for r in after or []}
        self.data_by_id = {r["id"]: r for r in data}
        self.influence_rows = influence_rows(know)
        self.influence = write_jsonl(tmp_path / f"{name}.influence.jsonl", self.influence_rows)

    def config(self, method: str, **kw) -> BuildConfig:
        kw.setdefault("knowledge_after", self.after if METHODS[method].rehearsal else None)
        kw.setdefault("influence", self.influence if METHODS[method].influence else None)
        return BuildConfig(
            method=method, data=DataSource(path=self.data), knowledge=self.knowledge, **kw
        )

    def build(self, method: str, **kw):
        return build_dataset(self.config(method, **kw))

    def delta(self, key: str) -> float:
        return self.after_by_id[key]["mu"] - self.by_id[key]["mu"]

    def gold(self, key: str) -> str:
        row = self.data_by_id[key]
        return LETTERS[row["gold"]] if "choices" in row else row["answers"][0]


def influence_rows(know: list[dict], tau_mu: float = 0.5, seed: int = 5) -> list[dict]:
    """Scores as ``rait influence`` writes them: split at T_c, seeded I_ref / I_sta."""
    rng = random.Random(seed)
    return [
        {
            "id": r["id"],
            "split": "ik" if r["mu"] >= tau_mu else "idk",
            "mu": r["mu"],
            "i_ref": rng.uniform(-0.2, 0.6),
            "i_sta": rng.uniform(-0.3, 0.3),
        }
        for r in know
    ]


@pytest.fixture
def probe(tmp_path) -> Probe:
    know, after = mixed_probe()
    return Probe(tmp_path, oeqa_data(len(know)), know, after)


@pytest.fixture
def mc_probe(tmp_path) -> Probe:
    know, after = mixed_probe(n=24, seed=99, task="mcqa", prefix="m")
    for row in know:
        row["sigma"] = -row["sigma"]  # MCQA σ is a negative entropy
    return Probe(tmp_path, mcqa_data(len(know)), know, after)


def ids(rows, kind=None) -> set[str]:
    return {r["id"] for r in rows if kind is None or r["kind"] == kind}


def content(row, part: str) -> str:
    return row[part][0]["content"]


def refuse_prompt(row: dict) -> str:
    return OEQA_REFUSE_GRAIT_T7_T9.format(question=row["question"])


def assert_nothing_written(out_dir: Path) -> None:
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


# --------------------------------------------------------------------------- registry
def test_every_method_of_the_spec_is_registered():
    assert set(METHODS) == {
        "van-tuning",
        "cor-rait",
        "rtuning-padding",
        "rtuning-replace",
        "rtuning-u",
        "corcer-rait",
        "craft",
        "craft-no-flow",
        "craft-no-cer",
        "grait",
        "grait-no-o1",
        "grait-no-o2",
    }
    assert {name for name, spec in METHODS.items() if spec.rehearsal} == REHEARSAL
    assert [name for name, spec in METHODS.items() if not spec.refuse_prompt] == ["van-tuning"]


# --------------------------------------------------------------------------- output format
@pytest.mark.parametrize("method", sorted(METHODS))
def test_rows_are_trl_conversational_prompt_completion(probe, method, tmp_path):
    out = tmp_path / "out" / "set.jsonl"
    summary = run_build(probe.config(method, n_van=4, n_idk=2, seed=3), out)
    rows = read_jsonl(out)
    assert len(rows) == summary["n"] == 6
    for row in rows:
        assert {"id", "kind", "prompt", "completion", "weight"} <= set(row)
        assert row["kind"] in {"van", "idk"}
        assert row["id"] in probe.by_id
        assert row["method"] == method
        assert row["task"] == "oeqa"
        assert isinstance(row["prompt"], list) and len(row["prompt"]) == 1
        assert isinstance(row["completion"], list) and len(row["completion"]) == 1
        assert row["prompt"][0].keys() == {"role", "content"}
        assert row["prompt"][0]["role"] == "user"
        assert row["completion"][0].keys() == {"role", "content"}
        assert row["completion"][0]["role"] == "assistant"
        assert row["answer"] == content(row, "completion")
        assert isinstance(row["weight"], float)
        weighted = method in {"grait", "grait-no-o1"} and row["kind"] == "idk"
        assert (row["weight"] == 1.0) or weighted
        assert row["mu"] == probe.by_id[row["id"]]["mu"]
        assert row["sigma"] == probe.by_id[row["id"]]["sigma"]
        assert ("delta_mu" in row) == (method in REHEARSAL)
        assert ("i_ref" in row and "i_sta" in row) == METHODS[method].influence
    assert len(ids(rows)) == len(rows)
    on_disk = json.loads(summary_path(out).read_text(encoding="utf-8"))
    assert on_disk == summary
    assert summary_path(out).name == "set.summary.json"
    assert summary["n_van"] == sum(r["kind"] == "van" for r in rows)
    assert summary["n_idk"] == sum(r["kind"] == "idk" for r in rows)
    assert summary["prompt"] == ("basic" if method == "van-tuning" else "refuse")
    expected_conf = "padding" if method in {"rtuning-padding", "rtuning-u"} else "answer"
    assert summary["eval_confidence"] == expected_conf


@pytest.mark.parametrize("method", RAIT_METHODS)
def test_rait_variants_train_with_the_refuse_prompt(probe, method):
    rows = probe.build(method, n_van=4, n_idk=2).rows
    for row in rows:
        question = probe.data_by_id[row["id"]]["question"]
        assert content(row, "prompt") == OEQA_REFUSE_GRAIT_T7_T9.format(question=question)
        assert "I don't know" in content(row, "prompt")


def test_mcqa_rows_use_the_mcqa_refuse_prompt_letters_and_refusal(mc_probe):
    rows = mc_probe.build("cor-rait", n_van=5, n_idk=3).rows
    assert len(rows) == 8
    for row in rows:
        data = mc_probe.data_by_id[row["id"]]
        options = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(data["choices"]))
        expected = MCQA_REFUSE_GRAIT_T6_T8.format(
            subject="testing",
            letters_comma_or="A, B, C, or D",
            question=data["question"],
            options=options,
        )
        assert content(row, "prompt") == expected
        assert row["task"] == "mcqa"
        if row["kind"] == "van":
            assert row["mu"] >= 0.5
            assert content(row, "completion") == LETTERS[data["gold"]]
        else:
            assert row["mu"] < 0.5
            assert content(row, "completion") == "I don't know."


def test_mcqa_van_tuning_uses_the_basic_prompt(mc_probe):
    rows = mc_probe.build("van-tuning", n_van=4, n_idk=2).rows
    assert len(rows) == 6
    for row in rows:
        data = mc_probe.data_by_id[row["id"]]
        options = "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(data["choices"]))
        expected = MCQA_QUERY_GRAIT_T4.format(
            subject="testing", letters_or="A, B, C or D", question=data["question"], options=options
        )
        assert content(row, "prompt") == expected
        assert "know" not in content(row, "prompt")
        assert content(row, "completion") == LETTERS[data["gold"]]


# --------------------------------------------------------------------------- method rules
def test_cor_rait_splits_on_mu_and_refuses_the_unknown(probe):
    known = [k for k, r in probe.by_id.items() if r["mu"] >= 0.5]
    unknown = [k for k, r in probe.by_id.items() if r["mu"] < 0.5]
    assert len(known) > 6 and len(unknown) > 4
    result = probe.build("cor-rait", n_van=6, n_idk=4, seed=5)
    rows = result.rows
    assert len(ids(rows, "van")) == 6 and len(ids(rows, "idk")) == 4
    for row in rows:
        if row["kind"] == "van":
            assert probe.by_id[row["id"]]["mu"] >= 0.5
            assert row["answer"] == probe.gold(row["id"])
        else:
            assert probe.by_id[row["id"]]["mu"] < 0.5
            assert row["answer"] == "I don't know"
    pools = [(r["pool"], r["kept"], r["dropped"]) for r in result.summary["rules"]]
    assert pools == [(len(known), 6, len(known) - 6), (len(unknown), 4, len(unknown) - 4)]
    assert result.summary["adjustments"] == []


def test_cor_rait_threshold_is_inclusive_and_configurable(tmp_path):
    know = [
        {"id": "q0", "mu": 0.5, "sigma": 0.1},
        {"id": "q1", "mu": 0.49, "sigma": 0.1},
        {"id": "q2", "mu": 0.7, "sigma": 0.1},
    ]
    p = Probe(tmp_path, oeqa_data(3), know)
    rows = p.build("cor-rait", n_van=5, n_idk=5).rows
    assert ids(rows, "van") == {"q0", "q2"} and ids(rows, "idk") == {"q1"}
    rows = p.build("cor-rait", n_van=5, n_idk=5, tau_mu=0.7).rows
    assert ids(rows, "van") == {"q2"} and ids(rows, "idk") == {"q0", "q1"}


def test_custom_refusal_target(probe):
    rows = probe.build("cor-rait", n_van=2, n_idk=2, refusal="No idea.").rows
    assert {r["answer"] for r in rows if r["kind"] == "idk"} == {"No idea."}


def test_craft_filters_by_flow_and_ranks_by_sigma(probe):
    known = sorted(
        (k for k, r in probe.by_id.items() if r["mu"] >= 0.5),
        key=lambda k: -probe.by_id[k]["sigma"],
    )
    unknown = [k for k, r in probe.by_id.items() if r["mu"] < 0.5]
    flow_pool = sorted(
        (k for k in unknown if probe.delta(k) < 0), key=lambda k: probe.by_id[k]["sigma"]
    )
    # The test data must make the rules matter: a gaining or steady question has a lower σ
    # than the last IdK pick, and the pools are larger than asked.
    n_van, n_idk = 5, 3
    assert len(known) > n_van and len(flow_pool) > n_idk
    dropped = [k for k in unknown if probe.delta(k) >= 0]
    assert any(probe.delta(k) == 0 for k in dropped)
    assert (
        min(probe.by_id[k]["sigma"] for k in dropped) < probe.by_id[flow_pool[n_idk - 1]]["sigma"]
    )

    result = probe.build("craft", n_van=n_van, n_idk=n_idk, seed=11)
    rows = result.rows
    assert ids(rows, "van") == set(known[:n_van])
    assert ids(rows, "idk") == set(flow_pool[:n_idk])
    for row in rows:
        assert row["delta_mu"] == pytest.approx(probe.delta(row["id"]))
        key = row["id"]
        expected_ds = probe.after_by_id[key]["sigma"] - probe.by_id[key]["sigma"]
        assert row["delta_sigma"] == pytest.approx(expected_ds)
        if row["kind"] == "idk":
            assert row["delta_mu"] < 0 and row["mu"] < 0.5
            assert row["answer"] == "I don't know"
        else:
            assert row["answer"] == probe.gold(row["id"])
    flow_rule = result.summary["rules"][0]
    assert (flow_rule["pool"], flow_rule["kept"]) == (len(unknown), len(flow_pool))
    assert flow_rule["dropped"] == len(dropped)


def test_craft_sigma_ties_are_allowed(tmp_path):
    know = [{"id": f"q{i}", "mu": 0.9 if i < 4 else 0.1, "sigma": 0.5} for i in range(8)]
    after = [{"id": f"q{i}", "mu": 0.0, "sigma": 0.5} for i in range(8)]
    p = Probe(tmp_path, oeqa_data(8), know, after)
    rows = p.build("craft", n_van=2, n_idk=2).rows
    assert len(ids(rows, "van")) == 2 and len(ids(rows, "idk")) == 2


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_corcer_rait_is_craft_without_flow(probe, seed):
    unknown = sorted(
        (k for k, r in probe.by_id.items() if r["mu"] < 0.5),
        key=lambda k: probe.by_id[k]["sigma"],
    )
    corcer = probe.build("corcer-rait", n_van=5, n_idk=3, seed=seed).rows
    no_flow = probe.build("craft-no-flow", n_van=5, n_idk=3, seed=seed).rows
    strip = [{k: v for k, v in r.items() if k != "method"} for r in corcer]
    assert strip == [{k: v for k, v in r.items() if k != "method"} for r in no_flow]
    # No Δµ filter: the lowest-σ unknown questions, whatever their flow.
    assert ids(corcer, "idk") == set(unknown[:3])
    assert any(probe.delta(k) >= 0 for k in unknown[:3])
    craft = probe.build("craft", n_van=5, n_idk=3, seed=seed).rows
    assert ids(craft, "van") == ids(corcer, "van")
    assert ids(craft, "idk") != ids(corcer, "idk")


def test_corcer_rait_needs_no_rehearsal(tmp_path):
    know, _ = mixed_probe()
    p = Probe(tmp_path, oeqa_data(len(know)), know)
    rows = p.build("corcer-rait", n_van=3, n_idk=2).rows
    assert len(rows) == 5 and all("delta_mu" not in r for r in rows)


def test_craft_no_cer_keeps_the_flow_filter_but_draws_at_random(probe):
    known = [k for k, r in probe.by_id.items() if r["mu"] >= 0.5]
    flow_pool = {k for k, r in probe.by_id.items() if r["mu"] < 0.5 and probe.delta(k) < 0}
    top = set(sorted(known, key=lambda k: -probe.by_id[k]["sigma"])[:3])
    bottom = set(sorted(flow_pool, key=lambda k: probe.by_id[k]["sigma"])[:2])
    van_sets, idk_sets = set(), set()
    for seed in range(8):
        rows = probe.build("craft-no-cer", n_van=3, n_idk=2, seed=seed).rows
        assert ids(rows, "idk") <= flow_pool and len(ids(rows, "idk")) == 2
        assert ids(rows, "van") <= set(known) and len(ids(rows, "van")) == 3
        van_sets.add(frozenset(ids(rows, "van")))
        idk_sets.add(frozenset(ids(rows, "idk")))
    assert len(van_sets) > 1 and len(idk_sets) > 1
    assert van_sets != {frozenset(top)} and idk_sets != {frozenset(bottom)}


def test_van_tuning_keeps_every_answer_with_the_basic_prompt(probe):
    seen_mu = set()
    for seed in range(4):
        result = probe.build("van-tuning", n_van=4, n_idk=3, seed=seed)
        assert len(result.rows) == 7
        assert result.summary["n_van"] == 7 and result.summary["n_idk"] == 0
        for row in result.rows:
            assert row["kind"] == "van"
            assert row["answer"] == probe.gold(row["id"])
            question = probe.data_by_id[row["id"]]["question"]
            assert content(row, "prompt") == OEQA_QUERY_GRAIT_T5.format(question=question)
            assert "know" not in content(row, "prompt")
            seen_mu.add(row["mu"] >= 0.5)
    assert seen_mu == {True, False}  # drawn from all of D_src, not only the known


def test_van_tuning_builds_even_when_the_model_knows_everything(tmp_path):
    know = [{"id": f"q{i}", "mu": 1.0, "sigma": 0.9} for i in range(5)]
    rows = Probe(tmp_path, oeqa_data(5), know).build("van-tuning", n_van=3, n_idk=1).rows
    assert len(rows) == 4


def test_rtuning_padding_pads_every_gold_answer(probe):
    rows = probe.build("rtuning-padding", n_van=5, n_idk=4, seed=2).rows
    assert len(ids(rows, "van")) == 5 and len(ids(rows, "idk")) == 4
    for row in rows:
        gold = probe.gold(row["id"])
        text = content(row, "completion")
        assert gold in text
        sure = probe.by_id[row["id"]]["greedy_correct"]
        assert row["kind"] == ("van" if sure else "idk")
        word = "sure" if sure else "unsure"
        assert text == f"{gold}. {RTUNING_SURE_QUESTION} I am {word}"
        assert text.endswith("I am sure") == sure
    # the greedy split, not µ: some certain question has µ < 0.5 in this probe
    certain_low = [k for k, r in probe.by_id.items() if r["greedy_correct"] and r["mu"] < 0.5]
    assert certain_low
    all_rows = probe.build("rtuning-padding", n_van=100, n_idk=100).rows
    assert set(certain_low) <= ids(all_rows, "van")


def test_rtuning_replace_uses_the_uncertainty_expressions(probe):
    rows = probe.build("rtuning-replace", n_van=100, n_idk=100, seed=4).rows
    assert len(rows) == len(probe.by_id)
    expressions = set()
    for row in rows:
        sure = probe.by_id[row["id"]]["greedy_correct"]
        assert row["kind"] == ("van" if sure else "idk")
        if sure:
            assert row["answer"] == probe.gold(row["id"])
        else:
            assert row["answer"] in RTUNING_UNCERTAINTY_TEXTS
            expressions.add(row["answer"])
    assert len(expressions) > 1  # drawn per sample


def test_rtuning_u_splits_on_entropy(probe):
    n = len(probe.by_id)
    result = probe.build("rtuning-u", n_van=n, n_idk=n)
    rows = result.rows
    assert len(rows) == n
    van, idk = ids(rows, "van"), ids(rows, "idk")
    assert len(van) == n // 2 == len(idk)
    entropy = {k: r["rtuning_u_entropy"] for k, r in probe.by_id.items()}
    assert max(entropy[k] for k in van) < min(entropy[k] for k in idk)
    for row in rows:
        gold = probe.gold(row["id"])
        word = "sure" if row["kind"] == "van" else "unsure"
        assert row["answer"] == f"{gold}. {RTUNING_SURE_QUESTION} I am {word}"
    assert len(result.summary["adjustments"]) == 2  # both pools smaller than asked


# --------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("method", sorted(METHODS))
def test_same_seed_same_bytes_other_seed_other_selection(probe, method, tmp_path):
    def build(seed, name):
        out = tmp_path / "out" / f"{name}.jsonl"
        run_build(probe.config(method, n_van=4, n_idk=2, seed=seed), out)
        return out

    a, b, c = build(3, "a"), build(3, "b"), build(4, "c")
    assert a.read_bytes() == b.read_bytes()
    if method in {"craft", "corcer-rait", "craft-no-flow"}:
        # σ-ranked without ties: only the order of the rows follows the seed
        assert ids(read_jsonl(a)) == ids(read_jsonl(c))
        assert read_jsonl(a) != read_jsonl(c)
    else:
        assert ids(read_jsonl(a)) != ids(read_jsonl(c))


@pytest.mark.parametrize("method", sorted(METHODS))
def test_knowledge_file_order_does_not_matter(probe, method, tmp_path):
    first = probe.build(method, n_van=4, n_idk=2, seed=9).rows
    shuffled = list(probe.know_rows)
    random.Random(0).shuffle(shuffled)
    write_jsonl(Path(probe.knowledge), shuffled)
    if probe.after:
        after = list(probe.after_rows)
        random.Random(1).shuffle(after)
        write_jsonl(Path(probe.after), after)
    assert probe.build(method, n_van=4, n_idk=2, seed=9).rows == first


# --------------------------------------------------------------------------- sizes
def sized_probe(tmp_path, n_known: int, n_unknown: int) -> Probe:
    know = [
        {"id": f"q{i}", "mu": 0.9 if i < n_known else 0.1, "sigma": i / 100}
        for i in range(n_known + n_unknown)
    ]
    return Probe(tmp_path, oeqa_data(len(know)), know)


def test_a_small_pool_is_taken_whole_and_reported(tmp_path):
    p = sized_probe(tmp_path, n_known=6, n_unknown=3)
    result = p.build("cor-rait", n_van=4, n_idk=5)
    assert len(ids(result.rows, "van")) == 4
    assert ids(result.rows, "idk") == {"q6", "q7", "q8"}
    assert len(result.rows) == len(ids(result.rows)) == 7  # no up-sampling
    (adjustment,) = result.summary["adjustments"]
    assert "asked for 5" in adjustment and "pool has 3" in adjustment
    assert result.summary["asked"]["n_idk"] == 5 and result.summary["n_idk"] == 3
    assert "asked for 5" in format_summary(result.summary)


@pytest.mark.parametrize(
    ("method", "n_van", "n_idk", "vacuous"),
    [
        # CRaFT's σ ranking: 6 known, 6 asked → the ranking picks nothing on the van side
        ("craft", 6, 2, ["craft N_van: the ranking (top first)"]),
        ("corcer-rait", 6, 2, ["craft-no-flow N_van: the ranking (top first)"]),
        # GRAIT's top-µ and top-I_ref: both sides no larger than asked
        ("grait", 7, 3, ["grait N_ik: the ranking", "grait N_idk: the ranking"]),
        # Cor-RAIT's random draw of the unknown side: 3 unknown, 3 asked
        ("cor-rait", 4, 3, ["cor-rait N_idk: the random draw"]),
        # Van-Tuning draws N_van + N_idk = 9 of D_src (9): all of D_src
        ("van-tuning", 6, 3, ["van-tuning N_van+N_idk: the random draw"]),
    ],
)
def test_a_vacuous_draw_is_reported_and_warned(tmp_path, method, n_van, n_idk, vacuous):
    """A pool no larger than what is drawn from it makes the ranking (or random draw) choose
    nothing (issue 18: D_src must be the whole pool): build says so in its summary, as a
    Python warning, and ``rait build`` on stderr."""
    p = sized_probe(tmp_path, n_known=6, n_unknown=3)
    if METHODS[method].rehearsal:
        after = [dict(r, mu=r["mu"] - 0.05) for r in p.know_rows]  # every Δµ < 0
        p = Probe(tmp_path, p.data_rows, p.know_rows, after)
    with pytest.warns(VacuousSelectionWarning) as caught:
        summary = p.build(method, n_van=n_van, n_idk=n_idk).summary
    assert len(summary["vacuous"]) == len(vacuous) == len(caught)
    for text, start in zip(summary["vacuous"], vacuous, strict=True):
        assert text.startswith(start) and "vacuous" in text
    assert all(f"warning: {t}" in format_summary(summary) for t in summary["vacuous"])


def test_a_draw_from_a_larger_pool_is_not_vacuous(tmp_path, recwarn):
    p = sized_probe(tmp_path, n_known=6, n_unknown=3)
    for method in ("cor-rait", "van-tuning", "grait", "corcer-rait"):
        assert p.build(method, n_van=5, n_idk=2).summary["vacuous"] == []
    assert not [w for w in recwarn if w.category is VacuousSelectionWarning]


def test_rait_build_warns_about_a_vacuous_draw_on_stderr(tmp_path, capsys):
    p = sized_probe(tmp_path, n_known=6, n_unknown=3)
    out = tmp_path / "set.jsonl"
    code = main(["build", "--method", "van-tuning", "--data", p.data, "--knowledge",
                 p.knowledge, "--n-van", "6", "--n-idk", "3", "--out", str(out)])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err.count("rait: warning: van-tuning N_van+N_idk: the random draw") == 1
    assert "warning: van-tuning N_van+N_idk" in captured.out


def test_strict_sizes_refuse_a_small_pool_and_write_nothing(tmp_path):
    p = sized_probe(tmp_path, n_known=6, n_unknown=3)
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(ConfigError, match="strict_sizes"):
        run_build(p.config("cor-rait", n_van=4, n_idk=5, strict_sizes=True), out)
    assert_nothing_written(out.parent)
    assert len(p.build("cor-rait", n_van=4, n_idk=3, strict_sizes=True).rows) == 7


@pytest.mark.parametrize(
    ("n_known", "n_unknown", "expected"),
    [(9, 5, (8, 2)), (20, 2, (8, 2)), (3, 5, None), (12, 3, (12, 3))],
)
@pytest.mark.parametrize("method", ["cor-rait", "rtuning-u", "van-tuning"])
def test_default_sizes_are_the_largest_4_to_1_set_of_the_mu_split(
    tmp_path, n_known, n_unknown, expected, method
):
    p = sized_probe(tmp_path, n_known, n_unknown)
    for i, row in enumerate(p.know_rows):
        row["rtuning_u_entropy"] = i / 10
    write_jsonl(Path(p.knowledge), p.know_rows)
    if expected is None:
        with pytest.raises(DataError, match="4:1"):
            p.build(method)
        return
    summary = p.build(method).summary
    assert (summary["asked"]["n_van"], summary["asked"]["n_idk"]) == expected
    if method == "cor-rait":
        assert (summary["n_van"], summary["n_idk"]) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"n_idk": 2}, (8, 2)),
        ({"n_van": 8}, (8, 2)),
        ({"n_van": 11}, (11, 2)),
        ({"n_van": 3}, (3, 0)),
        ({"n_idk": 2, "van_idk_ratio": 2.0}, (4, 2)),
        ({"n_van": 6, "van_idk_ratio": 3.0}, (6, 2)),
    ],
)
def test_one_size_given_the_other_follows_the_ratio(tmp_path, given, expected):
    p = sized_probe(tmp_path, n_known=12, n_unknown=4)
    result = p.build("cor-rait", **given)
    assert (result.summary["asked"]["n_van"], result.summary["asked"]["n_idk"]) == expected
    assert (result.summary["n_van"], result.summary["n_idk"]) == expected


def test_default_sizes_follow_a_custom_ratio(tmp_path):
    p = sized_probe(tmp_path, n_known=9, n_unknown=5)
    summary = p.build("cor-rait", van_idk_ratio=2.0).summary
    assert (summary["n_van"], summary["n_idk"]) == (8, 4)
    assert "default 2:1" in summary["asked"]["how"]


@pytest.mark.parametrize(
    ("n_known", "sizes"),
    [(5, {"n_idk": 0}), (0, {"n_van": 3, "n_idk": 0})],  # N_van = 4 × 0; an empty van pool
)
def test_an_empty_selection_is_an_error_not_an_empty_file(tmp_path, n_known, sizes):
    p = sized_probe(tmp_path, n_known=n_known, n_unknown=5)
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(DataError, match="no sample selected"):
        run_build(p.config("cor-rait", **sizes), out)
    assert_nothing_written(out.parent)


def test_n_idk_zero_builds_a_set_without_refusals(tmp_path):
    p = sized_probe(tmp_path, n_known=5, n_unknown=0)
    rows = p.build("cor-rait", n_van=3, n_idk=0).rows
    assert len(rows) == 3 and {r["kind"] for r in rows} == {"van"}


def test_unprobed_questions_are_left_out_with_a_note(tmp_path):
    know = [{"id": f"q{i}", "mu": 0.9 if i < 6 else 0.1, "sigma": 0.2} for i in range(8)]
    p = Probe(tmp_path, oeqa_data(10), know)
    result = p.build("cor-rait", n_van=100, n_idk=100)
    assert ids(result.rows) == {f"q{i}" for i in range(8)}
    assert result.summary["candidates"] == 8
    (note,) = result.summary["notes"]
    assert "2 of 10" in note and "left out" in note
    assert "note: 2 of 10" in format_summary(result.summary)


# --------------------------------------------------------------------------- properties
flows = st.sampled_from([-0.3, -0.1, 0.0, 0.05, 0.2])
probe_entries = st.lists(
    st.tuples(
        st.sampled_from([0.0, 0.2, 0.49, 0.5, 0.51, 0.8, 1.0]),
        st.integers(min_value=0, max_value=6),  # few σ values: many ties
        flows,
    ),
    min_size=1,
    max_size=16,
)


@settings(max_examples=40, deadline=None)
@given(
    entries=probe_entries,
    n_van=st.integers(min_value=0, max_value=10),
    n_idk=st.integers(min_value=1, max_value=10),
    method=st.sampled_from(["craft", "corcer-rait", "craft-no-cer"]),
    seed=st.integers(min_value=0, max_value=3),
)
def test_craft_family_invariants_hold_on_random_probes(entries, n_van, n_idk, method, seed):
    know = [{"id": f"q{i}", "mu": mu, "sigma": s / 7} for i, (mu, s, _) in enumerate(entries)]
    after = [
        {"id": f"q{i}", "mu": min(1.0, max(0.0, mu + d)), "sigma": 0.0}
        for i, (mu, _, d) in enumerate(entries)
    ]
    by_id = {r["id"]: r for r in know}
    delta = {a["id"]: a["mu"] - by_id[a["id"]]["mu"] for a in after}
    flow = method != "corcer-rait"
    known = {k for k, r in by_id.items() if r["mu"] >= 0.5}
    unknown = {k for k, r in by_id.items() if r["mu"] < 0.5}
    idk_pool = {k for k in unknown if delta[k] < 0} if flow else unknown
    with tempfile.TemporaryDirectory() as tmp:
        p = Probe(Path(tmp), oeqa_data(len(know)), know, after)
        try:
            result = p.build(method, n_van=n_van, n_idk=n_idk, seed=seed)
        except DataError as exc:
            assert not idk_pool and "zero IdK" in str(exc)
            return
    rows, summary = result.rows, result.summary
    van, idk = ids(rows, "van"), ids(rows, "idk")
    assert len(rows) == len(van) + len(idk) == len(ids(rows))  # no id twice
    assert van <= known and idk <= idk_pool
    assert len(van) == min(n_van, len(known)) and len(idk) == min(n_idk, len(idk_pool))
    if method != "craft-no-cer":  # σ ranking: nothing left out beats a pick
        sigma = {k: r["sigma"] for k, r in by_id.items()}
        if van and known - van:
            assert min(sigma[k] for k in van) >= max(sigma[k] for k in known - van)
        if idk and idk_pool - idk:
            assert max(sigma[k] for k in idk) <= min(sigma[k] for k in idk_pool - idk)
    rules = summary["rules"]
    for rule in rules:
        assert rule["pool"] == rule["kept"] + rule["dropped"] and rule["dropped"] >= 0
    expected = [(len(known), len(van)), (len(idk_pool), len(idk))]
    if flow:
        expected.insert(0, (len(unknown), len(idk_pool)))
    assert [(r["pool"], r["kept"]) for r in rules] == expected
    shortfalls = (n_van > len(known)) + (n_idk > len(idk_pool))
    assert len(summary["adjustments"]) == shortfalls
    assert (summary["n_van"], summary["n_idk"], summary["n"]) == (len(van), len(idk), len(rows))


@settings(max_examples=30, deadline=None)
@given(
    mus=st.lists(st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]), min_size=1, max_size=14),
    n_van=st.integers(min_value=0, max_value=9),
    n_idk=st.integers(min_value=0, max_value=9),
    method=st.sampled_from(["cor-rait", "rtuning-padding", "rtuning-replace", "van-tuning"]),
)
def test_random_draw_methods_take_min_of_asked_and_pool(mus, n_van, n_idk, method):
    know = [
        {"id": f"q{i}", "mu": mu, "sigma": 0.1, "greedy_correct": mu >= 0.5}
        for i, mu in enumerate(mus)
    ]
    known = sum(mu >= 0.5 for mu in mus)
    unknown = len(mus) - known
    with tempfile.TemporaryDirectory() as tmp:
        p = Probe(Path(tmp), oeqa_data(len(know)), know)
        if n_van == n_idk == 0:
            with pytest.raises(ConfigError):
                p.build(method, n_van=n_van, n_idk=n_idk)
            return
        try:
            result = p.build(method, n_van=n_van, n_idk=n_idk)
        except DataError as exc:
            if method == "van-tuning":
                raise
            assert (n_idk > 0 and unknown == 0) or min(n_van, known) + min(n_idk, unknown) == 0
            assert "IdK" in str(exc) or "no sample" in str(exc)
            return
    rows = result.rows
    assert len(ids(rows)) == len(rows)
    if method == "van-tuning":
        assert len(rows) == min(n_van + n_idk, len(mus))
    else:
        assert len(ids(rows, "van")) == min(n_van, known)
        assert len(ids(rows, "idk")) == min(n_idk, unknown)


# --------------------------------------------------------------------------- bad input
def _set(line: int, **fields):
    def edit(know, after, data):
        know[line - 1].update(fields)

    return edit


def _drop(line: int, key: str):
    def edit(know, after, data):
        del know[line - 1][key]

    return edit


def _raw_knowledge(line: int, text: str):
    def edit(know, after, data):
        know[line - 1] = text

    return edit


BAD_KNOWLEDGE = {
    "id not in data": (_set(3, id="zzz"), "knowledge", 3, "id", "not in the data"),
    "duplicate id": (_set(4, id="q0"), "knowledge", 4, "id", "duplicate id 'q0'"),
    "NaN mu": (
        _raw_knowledge(2, '{"id": "q1", "mu": NaN, "sigma": 0.5}'),
        "knowledge",
        2,
        "mu",
        "nan",
    ),
    "NaN sigma": (
        _raw_knowledge(5, '{"id": "q4", "mu": 0.5, "sigma": NaN}'),
        "knowledge",
        5,
        "sigma",
        "nan",
    ),
    "infinite sigma": (
        _raw_knowledge(5, '{"id": "q4", "mu": 0.5, "sigma": -Infinity}'),
        "knowledge",
        5,
        "sigma",
        "finite",
    ),
    "mu above 1": (_set(2, mu=1.5), "knowledge", 2, "mu", "outside"),
    "mu below 0": (_set(6, mu=-0.1), "knowledge", 6, "mu", "outside"),
    "mu as a string": (_set(3, mu="0.7"), "knowledge", 3, "mu", "expected a number"),
    "mu as a bool": (_set(3, mu=True), "knowledge", 3, "mu", "expected a number"),
    "missing mu": (_drop(4, "mu"), "knowledge", 4, "mu", "missing"),
    "missing sigma": (_drop(1, "sigma"), "knowledge", 1, "sigma", "missing"),
    "missing id": (_drop(2, "id"), "knowledge", 2, "id", "missing"),
    "task mismatch": (_set(1, task="mcqa"), "knowledge", 1, "task", "mcqa"),
    "malformed JSON": (_raw_knowledge(2, '{"id": "q1", "mu": 0.5,'), "knowledge", 2, None, "JSON"),
    "not an object": (_raw_knowledge(3, "[1, 2]"), "knowledge", 3, None, "object"),
}


def _write_edited(tmp_path: Path, edit):
    know = [
        {"id": f"q{i}", "task": "oeqa", "mu": 0.9 if i < 5 else 0.1, "sigma": 0.5} for i in range(8)
    ]
    after = [{"id": f"q{i}", "mu": 0.0, "sigma": 0.5} for i in range(8)]
    data = oeqa_data(8)
    edit(know, after, data)

    def dump(rows):
        return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)

    paths = {"knowledge": tmp_path / "k.jsonl", "after": tmp_path / "ka.jsonl"}
    paths["knowledge"].write_text(dump(know), encoding="utf-8")
    paths["after"].write_text(dump(after), encoding="utf-8")
    data_path = write_jsonl(tmp_path / "d.jsonl", data)
    return paths, data_path


@pytest.mark.parametrize("case", sorted(BAD_KNOWLEDGE))
@pytest.mark.parametrize("method", ["cor-rait", "craft"])
def test_bad_knowledge_names_file_line_field_and_writes_nothing(tmp_path, case, method):
    edit, which, line, field, words = BAD_KNOWLEDGE[case]
    paths, data = _write_edited(tmp_path, edit)
    cfg = BuildConfig(
        method=method,
        data=DataSource(path=data),
        knowledge=str(paths["knowledge"]),
        knowledge_after=str(paths["after"]),
        n_van=2,
        n_idk=1,
    )
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(DataError) as info:
        run_build(cfg, out)
    message = str(info.value)
    assert f"{paths[which]}:{line}" in message
    if field is not None:
        assert f"field '{field}'" in message
    assert words.lower() in message.lower()
    assert_nothing_written(out.parent)


BAD_AFTER = {
    "missing id": (
        lambda know, after, data: after.pop(3),
        None,
        None,
        "1 probed question(s) are missing",
    ),
    "extra id": (
        lambda know, after, data: after.append({"id": "q99", "mu": 0.5, "sigma": 0.5}),
        9,
        "id",
        "'q99' is not in the probe",
    ),
    "NaN mu": (
        lambda know, after, data: after.__setitem__(2, {"id": "q2", "mu": math.nan, "sigma": 0}),
        3,
        "mu",
        "nan",
    ),
    "mu outside": (
        lambda know, after, data: after[5].update(mu=2),
        6,
        "mu",
        "outside",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_AFTER))
@pytest.mark.parametrize("method", sorted(REHEARSAL))
def test_bad_rehearsed_knowledge_is_named_and_writes_nothing(tmp_path, case, method):
    edit, line, field, words = BAD_AFTER[case]
    paths, data = _write_edited(tmp_path, edit)
    cfg = BuildConfig(
        method=method,
        data=DataSource(path=data),
        knowledge=str(paths["knowledge"]),
        knowledge_after=str(paths["after"]),
        n_van=2,
        n_idk=1,
    )
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(DataError) as info:
        run_build(cfg, out)
    message = str(info.value)
    assert str(paths["after"]) in message
    if line is not None:
        assert f"{paths['after']}:{line}" in message
    if field is not None:
        assert f"field '{field}'" in message
    assert words.lower() in message.lower()
    assert_nothing_written(out.parent)


@pytest.mark.parametrize("method", sorted(REHEARSAL))
def test_rehearsal_methods_need_knowledge_after(probe, tmp_path, method):
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(ConfigError, match="--knowledge-after"):
        run_build(probe.config(method, n_van=2, n_idk=1, knowledge_after=None), out)
    assert_nothing_written(out.parent)


@pytest.mark.parametrize(
    ("settings_", "words"),
    [
        ({"method": "craftt"}, "unknown method 'craftt'"),
        ({"n_van": -1}, "n_van must be >= 0"),
        ({"n_idk": -3, "n_van": 2}, "n_idk must be >= 0"),
        ({"n_van": 0, "n_idk": 0}, "both 0"),
        ({"van_idk_ratio": 0.0}, "van_idk_ratio"),
        ({"van_idk_ratio": math.inf}, "van_idk_ratio"),
        ({"tau_mu": 0.0}, "tau_mu"),
        ({"tau_mu": 1.5}, "tau_mu"),
        ({"refusal": "  "}, "refusal"),
        ({"knowledge": None}, "knowledge"),
    ],
)
def test_bad_settings_are_config_errors_and_write_nothing(probe, tmp_path, settings_, words):
    kw = {"method": "cor-rait", "n_van": 2, "n_idk": 1, **settings_}
    method = kw.pop("method")
    cfg = BuildConfig(
        method=method,
        data=DataSource(path=probe.data),
        knowledge=kw.pop("knowledge", probe.knowledge),
        **kw,
    )
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(ConfigError, match=words):
        run_build(cfg, out)
    assert_nothing_written(out.parent)


@pytest.mark.parametrize("name", ["set.json", "set", "set.jsonl.txt"])
def test_output_must_be_jsonl(probe, tmp_path, name):
    out = tmp_path / "out" / name
    with pytest.raises(ConfigError, match=r"\.jsonl"):
        run_build(probe.config("cor-rait", n_van=2, n_idk=1), out)
    assert_nothing_written(out.parent)


@pytest.mark.parametrize("method", ["cor-rait", "craft", "corcer-rait", "rtuning-padding"])
def test_zero_idk_candidates_is_an_error(tmp_path, method):
    know = [{"id": f"q{i}", "mu": 0.8, "sigma": 0.5, "greedy_correct": True} for i in range(6)]
    after = [{"id": f"q{i}", "mu": 0.5, "sigma": 0.5} for i in range(6)]
    p = Probe(tmp_path, oeqa_data(6), know, after)
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(DataError, match="zero IdK candidates") as info:
        run_build(p.config(method, n_van=3, n_idk=1), out)
    assert p.knowledge in str(info.value)
    assert_nothing_written(out.parent)


def test_craft_without_a_losing_question_has_zero_idk(tmp_path):
    know = [{"id": f"q{i}", "mu": 0.8 if i < 4 else 0.2, "sigma": 0.5} for i in range(6)]
    after = [{"id": f"q{i}", "mu": 0.8 if i < 4 else 0.2, "sigma": 0.5} for i in range(6)]
    p = Probe(tmp_path, oeqa_data(6), know, after)
    with pytest.raises(DataError, match="zero IdK"):
        p.build("craft", n_van=3, n_idk=1)
    assert len(p.build("corcer-rait", n_van=3, n_idk=1).rows) == 4


def test_rtuning_u_without_entropy_points_to_the_probe_flag(tmp_path):
    know = [{"id": f"q{i}", "mu": 0.5, "sigma": 0.5} for i in range(4)]
    p = Probe(tmp_path, oeqa_data(4), know)
    out = tmp_path / "out" / "set.jsonl"
    with pytest.raises(DataError) as info:
        run_build(p.config("rtuning-u", n_van=1, n_idk=1), out)
    message = str(info.value)
    assert "--rtuning-u" in message
    assert f"{p.knowledge}:1" in message and "field 'rtuning_u_entropy'" in message
    assert_nothing_written(out.parent)


@pytest.mark.parametrize("value", [None, "yes", 1])
def test_rtuning_padding_needs_a_boolean_greedy_correct(tmp_path, value):
    know = [{"id": f"q{i}", "mu": 0.5, "sigma": 0.5, "greedy_correct": True} for i in range(4)]
    if value is None:
        del know[2]["greedy_correct"]
    else:
        know[2]["greedy_correct"] = value
    p = Probe(tmp_path, oeqa_data(4), know)
    with pytest.raises(DataError) as info:
        p.build("rtuning-padding", n_van=1, n_idk=1)
    assert f"{p.knowledge}:3" in str(info.value)
    assert "field 'greedy_correct'" in str(info.value)


def test_mcqa_knowledge_for_oeqa_data_is_rejected(tmp_path):
    know, _ = mixed_probe(n=6, task="mcqa")
    p = Probe(tmp_path, oeqa_data(6), know)
    with pytest.raises(DataError, match="the probe is mcqa but the data is oeqa") as info:
        p.build("cor-rait", n_van=1, n_idk=1)
    assert f"{p.knowledge}:1" in str(info.value)


def test_missing_knowledge_file_is_a_data_error(probe, tmp_path):
    cfg = probe.config("cor-rait", n_van=1, n_idk=1)
    cfg.knowledge = str(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match=r"nope\.jsonl"):
        build_dataset(cfg)


def test_an_error_keeps_an_existing_output(probe, tmp_path):
    out = tmp_path / "set.jsonl"
    run_build(probe.config("cor-rait", n_van=2, n_idk=1), out)
    before = out.read_bytes(), summary_path(out).read_bytes()
    with pytest.raises(ConfigError):
        run_build(probe.config("cor-rait", n_van=-1, n_idk=1), out)
    assert (out.read_bytes(), summary_path(out).read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# --------------------------------------------------------------------------- CLI
def test_cli_build_writes_the_set_and_prints_the_summary(probe, tmp_path, capsys):
    out = tmp_path / "cli" / "set.jsonl"
    code = main(
        [
            "build",
            "--method",
            "cor-rait",
            "--data",
            probe.data,
            "--knowledge",
            probe.knowledge,
            "--n-van",
            "3",
            "--n-idk",
            "1",
            "--seed",
            "2",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "cor-rait: 4 samples (3 vanilla, 1 IdK)" in captured.out
    assert str(out) in captured.out and "set.summary.json" in captured.out
    rows = read_jsonl(out)
    assert len(ids(rows, "van")) == 3 and len(ids(rows, "idk")) == 1
    api = build_dataset(probe.config("cor-rait", n_van=3, n_idk=1, seed=2)).rows
    assert rows == api


def test_cli_strict_sizes_and_knowledge_after(probe, tmp_path, capsys):
    out = tmp_path / "cli" / "set.jsonl"
    args = ["build", "--method", "craft", "--data", probe.data, "--knowledge", probe.knowledge]
    args += ["--knowledge-after", probe.after, "--n-van", "2", "--n-idk", "1", "--out", str(out)]
    assert main(args) == 0
    assert "craft: 3 samples" in capsys.readouterr().out
    code = main([*args[:-4], "--n-van", "1000", "--strict-sizes", "--out", str(out)])
    assert code == 2
    assert "strict_sizes" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--method", "nope"], "unknown method"),
        (["--method", "cor-rait", "--n-van", "-2"], "n_van must be >= 0"),
        (["--method", "craft"], "--knowledge-after"),
        (["--method", "rtuning-u"], "--rtuning-u"),
    ],
)
def test_cli_bad_input_is_one_error_line_and_status_2(probe, tmp_path, capsys, extra, words):
    for row in probe.know_rows:
        del row["rtuning_u_entropy"]
    write_jsonl(Path(probe.knowledge), probe.know_rows)
    out = tmp_path / "cli" / "set.jsonl"
    code = main(
        ["build", "--data", probe.data, "--knowledge", probe.knowledge, "--out", str(out), *extra]
    )
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rait: error:")
    assert words in lines[0]
    assert captured.out == ""
    assert_nothing_written(out.parent)


def test_cli_malformed_knowledge_names_the_line(probe, tmp_path, capsys):
    Path(probe.knowledge).write_text('{"id": "q0", "mu": 0.5, "sigma": 0.1}\n{oops\n')
    out = tmp_path / "cli" / "set.jsonl"
    code = main(
        [
            *("build", "--method", "cor-rait", "--data", probe.data),
            *("--knowledge", probe.knowledge, "--out", str(out)),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("rait: error:") and f"{probe.knowledge}:2" in err
    assert_nothing_written(out.parent)
