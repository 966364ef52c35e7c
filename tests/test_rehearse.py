"""rait.rehearse: CRaFT's rehearsal set, rehearsal training, re-probe and knowledge flow."""

from __future__ import annotations

import json

import pytest

from rait.artifacts import KNOWLEDGE_AFTER_FILE, REHEARSAL_SET_FILE
from rait.build import BuildConfig, run_build
from rait.data.records import QARecord
from rait.data.sources import DataSource
from rait.errors import ConfigError, DataError
from rait.methods.base import Candidate
from rait.probe import probe_config_of, run_probe
from rait.rehearse import (
    RehearseConfig,
    knowledge_after_rows,
    run_rehearse,
    select_rehearsal,
)
from rait.train import TrainConfig
from test_probe import _config, mcqa_rows


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def probed(tmp_path, tiny_model_dir):
    cfg = _config(tmp_path, tiny_model_dir, mcqa_rows(10), mcqa_rows(6, "s"))
    run_probe(cfg, tmp_path / "probe", progress=False)
    return tmp_path / "probe", cfg


def _rehearse_cfg(probe_dir, **overrides):
    train = TrainConfig(
        lora_r=4,
        lora_dropout=0.0,
        batch_size=2,
        effective_batch_size=4,
        epochs=2.0,
        learning_rate=5e-3,
        save_steps=100,
    )
    base = {"probe": str(probe_dir), "min_mu": 0.0, "size": 6, "train": train}
    base.update(overrides)
    return RehearseConfig(**base)


def test_rehearse_trains_reprobes_and_writes_the_knowledge_flow(probed, tmp_path):
    probe_dir, probe_cfg = probed
    out = tmp_path / "rehearse"
    summary = run_rehearse(_rehearse_cfg(probe_dir), out, log=lambda _: None)
    assert summary["rehearsal"]["kept"] == 6 and summary["n"] == 10
    rehearsal = _read(out / REHEARSAL_SET_FILE)
    assert len(rehearsal) == 6 and {r["kind"] for r in rehearsal} == {"van"}
    assert all("I don't know" not in r["completion"][0]["content"] for r in rehearsal)
    before = {r["id"]: r for r in _read(probe_dir / "knowledge.jsonl")}
    after = {r["id"]: r for r in _read(out / "probe" / "knowledge.jsonl")}
    flow = _read(out / KNOWLEDGE_AFTER_FILE)
    assert [r["id"] for r in flow] == list(before)
    for row in flow:
        assert row["mu_before"] == before[row["id"]]["mu"]
        assert row["mu"] == after[row["id"]]["mu"]
        assert row["delta_mu"] == pytest.approx(row["mu"] - row["mu_before"])
        assert row["delta_sigma"] == pytest.approx(row["sigma"] - row["sigma_before"])
    assert any(abs(r["delta_mu"]) > 1e-6 for r in flow)  # the rehearsed model differs
    # the re-probe repeats the original probe's settings, with the adapter
    reprobe = probe_config_of(out / "probe")
    assert reprobe.model.adapter == str(out / "train" / "adapter")
    assert reprobe.data == probe_cfg.data and reprobe.seed == probe_cfg.seed
    # CRaFT builds from it
    build = BuildConfig(
        method="craft",
        data=DataSource(path=probe_cfg.data.path),
        knowledge=str(probe_dir / "knowledge.jsonl"),
        knowledge_after=str(out / KNOWLEDGE_AFTER_FILE),
        n_van=0,
        n_idk=3,
    )
    idk = [r for r in flow if r["mu_before"] < 0.5 and r["delta_mu"] < 0]
    assert idk  # the tiny model knows nothing (µ ≈ 1/4) and rehearsal moves µ both ways
    built = run_build(build, tmp_path / "craft.jsonl")
    assert built["n_idk"] == min(3, len(idk))
    # a rerun trains and probes nothing
    messages = []
    run_rehearse(_rehearse_cfg(probe_dir), out, log=messages.append)
    assert any("up to date" in m for m in messages)


def test_rehearsal_selection_thresholds_size_and_seed():
    records = [QARecord(id=f"q{i}", question="?", answers=("a",)) for i in range(20)]
    cands = [Candidate(r, mu=i / 19, sigma=1 - i / 40) for i, r in enumerate(records)]
    cfg = RehearseConfig(probe="p", min_mu=0.5, min_sigma=0.6, size=3, seed=1)
    chosen, info = select_rehearsal(cands, "oeqa", cfg)
    assert len(chosen) == 3 and all(c.mu >= 0.5 and c.sigma >= 0.6 for c in chosen)
    assert info["pool"] == sum(c.mu >= 0.5 and c.sigma >= 0.6 for c in cands)
    again, _ = select_rehearsal(cands, "oeqa", cfg)
    assert [c.id for c in again] == [c.id for c in chosen]
    big = RehearseConfig(probe="p", min_mu=0.5, min_sigma=0.6, size=100)
    chosen, info = select_rehearsal(cands, "oeqa", big)
    assert len(chosen) == info["pool"] and "all" in info["notes"][0]


def test_released_thresholds_are_the_defaults():
    """docs/methods.md §3 (CRaFT's released code): OEQA µ ≥ 0.995 and σ ≥ 0.995 (both
    inclusive); MCQA p(gold) > 0.99, strictly, with no σ threshold."""
    records = [QARecord(id=f"q{i}", question="?", answers=("a",)) for i in range(7)]
    cands = [
        Candidate(records[0], mu=1.0, sigma=0.999),
        Candidate(records[1], mu=1.0, sigma=0.99),
        Candidate(records[2], mu=0.9, sigma=1.0),
        Candidate(records[3], mu=0.995, sigma=0.995),  # OEQA: exactly at both bounds, kept
        Candidate(records[4], mu=0.99, sigma=0.0),  # MCQA: exactly 0.99 is not > 0.99
        Candidate(records[5], mu=0.9900001, sigma=-1.3),  # MCQA: just above, any σ
        Candidate(records[6], mu=0.994, sigma=1.0),  # OEQA: µ just below 0.995
    ]
    chosen, info = select_rehearsal(cands, "oeqa", RehearseConfig(probe="p"))
    assert {c.id for c in chosen} == {"q0", "q3"}
    assert info["rule"] == "µ ≥ 0.995 and σ ≥ 0.995"
    mcqa, info = select_rehearsal(cands, "mcqa", RehearseConfig(probe="p"))
    assert {c.id for c in mcqa} == {"q0", "q1", "q3", "q5", "q6"}
    assert info["rule"] == "µ > 0.99"
    # a min_mu that is set is the inclusive bound, for every task
    inclusive, info = select_rehearsal(cands, "mcqa", RehearseConfig(probe="p", min_mu=0.99))
    assert "q4" in {c.id for c in inclusive} and info["rule"] == "µ ≥ 0.99"


def test_mcqa_candidate_at_exactly_the_default_threshold_is_not_rehearsed():
    records = [QARecord(id=f"q{i}", question="?", answers=("a",)) for i in range(2)]
    at, above = Candidate(records[0], mu=0.99, sigma=0.0), Candidate(records[1], 1.0, 0.0)
    chosen, _ = select_rehearsal([at, above], "mcqa", RehearseConfig(probe="p"))
    assert [c.id for c in chosen] == ["q1"]
    with pytest.raises(DataError, match=r"µ > 0\.99"):
        select_rehearsal([at], "mcqa", RehearseConfig(probe="p"))


def test_nothing_passes_the_thresholds_is_an_error():
    records = [QARecord(id="q0", question="?", answers=("a",))]
    with pytest.raises(DataError, match="min_mu"):
        select_rehearsal([Candidate(records[0], 0.2, 0.1)], "oeqa", RehearseConfig(probe="p"))


def test_knowledge_flow_is_matched_by_id_not_position():
    before = {"a": {"mu": 0.2, "sigma": 0.1}, "b": {"mu": 0.9, "sigma": 0.8}}
    after = {"b": {"mu": 0.5, "sigma": 0.7}, "a": {"mu": 0.4, "sigma": 0.3}}
    rows = {r["id"]: r for r in knowledge_after_rows(before, after)}
    assert rows["a"]["delta_mu"] == pytest.approx(0.2)
    assert rows["b"]["delta_mu"] == pytest.approx(-0.4)


def test_not_a_probe_folder(tmp_path):
    with pytest.raises(ConfigError, match="not a probe folder"):
        probe_config_of(tmp_path)
    with pytest.raises(ConfigError, match="probe"):
        run_rehearse(RehearseConfig(), tmp_path / "o", log=lambda _: None)
    with pytest.raises(ConfigError, match="size"):
        run_rehearse(RehearseConfig(probe=str(tmp_path), size=0), tmp_path / "o")


def test_cli_rehearse(probed, tmp_path, capsys):
    from rait.cli import main

    probe_dir, _ = probed
    argv = ["rehearse", "--probe", str(probe_dir), "--min-mu", "0", "--size", "4"]
    argv += ["--lora-r", "4", "--batch-size", "2", "--effective-batch-size", "4"]
    argv += ["--epochs", "1", "--out", str(tmp_path / "r")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "rehearsed on 4 samples" in out and "knowledge_after.jsonl" in out
    assert main(["rehearse", "--probe", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not a probe folder" in capsys.readouterr().err
