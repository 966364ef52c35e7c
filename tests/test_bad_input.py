"""Input that used to be accepted silently, or refused with a misleading message, now ends in
one clear error naming the file, line and field (see docs/faults.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rait.build import BuildConfig, build_dataset
from rait.data.sources import DataSource
from rait.data.world_facts import WorldFactsConfig, build_world_facts
from rait.errors import ConfigError, DataError
from rait.pipeline import load_pipeline_config
from rait.results import load_results
from rait.train import read_training_rows

REPO = Path(__file__).resolve().parents[1]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_a_training_set_whose_weights_are_all_zero_is_refused(tmp_path):
    row = {"prompt": "Q?", "completion": "A", "weight": 0.0}
    path = write_jsonl(tmp_path / "set.jsonl", [dict(row, id="a"), dict(row, id="b")])
    with pytest.raises(DataError, match="every sample has weight 0") as info:
        read_training_rows(str(path))
    assert str(info.value).startswith(f"{path}, field 'weight'")
    assert len(read_training_rows(str(path), use_weights=False)) == 2  # weights ignored: fine
    write_jsonl(path, [dict(row, id="a"), dict(row, id="b", weight=0.5)])
    assert [r["weight"] for r in read_training_rows(str(path))] == [0.0, 0.5]


@pytest.mark.parametrize(
    "prompt", ["", "   ", [{"role": "user", "content": ""}], [{"role": "user", "content": " \n"}]]
)
def test_an_empty_training_prompt_is_refused(tmp_path, prompt):
    completion = "A" if isinstance(prompt, str) else [{"role": "assistant", "content": "A"}]
    good = {
        "id": "a",
        "prompt": "Q?" if isinstance(prompt, str) else [{"role": "user", "content": "Q?"}],
    }
    path = write_jsonl(
        tmp_path / "set.jsonl",
        [
            dict(good, completion=completion),
            {"id": "b", "prompt": prompt, "completion": completion},
        ],
    )
    with pytest.raises(DataError, match="empty") as info:
        read_training_rows(str(path))
    assert str(info.value).startswith(f"{path}:2, field 'prompt'")


def test_an_empty_run_dir_is_refused():
    with pytest.raises(ConfigError, match="run_dir is empty"):
        load_pipeline_config(str(REPO / "configs" / "demo.yaml"), ["run_dir="])


def test_a_world_facts_setting_that_empties_a_split_is_refused():
    with pytest.raises(ConfigError, match=r"the train and id_test split\(s\) would be empty"):
        build_world_facts(WorldFactsConfig(dev_per_relation=100000))


def _probe_files(tmp_path: Path, mus, after_mus=None):
    data = [
        {"id": f"q{i}", "question": f"Item {i}?", "answers": [f"a{i}"]} for i in range(len(mus))
    ]
    know = [{"id": f"q{i}", "task": "oeqa", "mu": m, "sigma": 0.1 * i} for i, m in enumerate(mus)]
    files = {
        "data": write_jsonl(tmp_path / "train.jsonl", data),
        "knowledge": write_jsonl(tmp_path / "knowledge.jsonl", know),
    }
    if after_mus is not None:
        after = [{"id": f"q{i}", "mu": m, "sigma": 0.5} for i, m in enumerate(after_mus)]
        files["after"] = write_jsonl(tmp_path / "after.jsonl", after)
    return files


def test_a_built_set_given_as_knowledge_is_named(tmp_path):
    files = _probe_files(tmp_path, [0.9, 0.9, 0.1, 0.1])
    cfg = BuildConfig(
        method="cor-rait",
        data=DataSource(path=str(files["data"])),
        knowledge=str(files["knowledge"]),
        n_van=2,
        n_idk=2,
    )
    built = tmp_path / "built.jsonl"
    write_jsonl(built, build_dataset(cfg).rows)  # a built row carries id, mu and sigma too
    cfg.knowledge = str(built)
    with pytest.raises(DataError, match="this is a built training set") as info:
        build_dataset(cfg)
    assert str(info.value).startswith(f"{built}:1, field 'prompt'")


def test_craft_without_a_falling_mu_says_what_the_flow_filter_removed(tmp_path):
    # two questions the model does not know (µ < 0.5), but rehearsal lowers neither
    files = _probe_files(tmp_path, [0.9, 0.9, 0.1, 0.2], after_mus=[0.9, 0.9, 0.1, 0.3])
    cfg = BuildConfig(
        method="craft",
        data=DataSource(path=str(files["data"])),
        knowledge=str(files["knowledge"]),
        knowledge_after=str(files["after"]),
        n_van=2,
        n_idk=2,
    )
    with pytest.raises(DataError) as info:
        build_dataset(cfg)
    message = str(info.value)
    assert "dropped all 2" in message and "Δµ ≥ 0" in message
    assert "finds nothing this model does not know" not in message


def _metrics(tmp_path: Path, **changes) -> Path:
    data = {
        "method": "cor-rait",
        "test_set": "wf-id",
        "role": "id",
        "pc": 0.25,
        "pw": 0.5,
        "pr": 0.25,
        "ths": 0.1,
    }
    data.update(changes)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("changes", "field", "needle"),
    [
        ({"pc": 1.7}, "pc", "a share must lie in [0, 1], got 1.7"),
        ({"pw": float("nan")}, "pw", "expected a finite number, got nan"),
        ({"ths": float("inf")}, "ths", "expected a finite number"),
        ({"pr": "25%"}, "pr", "expected a finite number, got '25%'"),
        ({"pc": 0.3}, "pc", "pc + pw + pr = 1.05"),
        ({"role": "test"}, "role", "expected id or ood"),
        ({"method": ""}, "method", "non-empty string"),
    ],
)
def test_an_edited_metrics_file_is_refused_not_tabled(tmp_path, changes, field, needle):
    path = _metrics(tmp_path, **changes)
    with pytest.raises(DataError) as info:
        load_results([path])
    assert str(info.value).startswith(f"{path}, field '{field}'")
    assert needle in str(info.value)


def test_a_sound_metrics_file_is_read(tmp_path):
    (result,) = load_results([_metrics(tmp_path, ths=None)])
    assert result["pc"] == 0.25 and result["ths"] is None


# --------------------------------------------------------------------------- rait run, early
def _run_config(tmp_path: Path, **changes) -> dict:
    config = {
        "run_dir": str(tmp_path / "run"),
        "model": {"name": str(tmp_path / "no-model-needed")},
        "world_facts": {"task": "mcqa", "n_cities": 60},
        "data": {"format": "world_facts", "split": "train", "sample": 8},
        "shots": {"format": "world_facts", "split": "dev"},
        "tests": [{"name": "wf-id", "data": {"format": "world_facts", "split": "id_test"}}],
        "methods": ["cor-rait"],
    }
    config.update(changes)
    return config


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        (
            {"tests": [{"name": "wf-id", "data": {"path": "missing.jsonl"}}]},
            "tests[0] ('wf-id').data",
        ),
        (
            {
                "tests": [
                    {
                        "name": "t2",
                        "data": {"format": "world_facts", "split": "id_test", "sample": -1},
                    }
                ]
            },
            "tests[0] ('t2').data: sample must be positive, got -1",
        ),
        ({"shots": None}, "need a `shots` source"),
        ({"train": {"batch_size": 3, "effective_batch_size": 8}}, "train: effective_batch_size 8"),
        (
            {
                "methods": ["craft"],
                "rehearse": {"train": {"batch_size": 3, "effective_batch_size": 16}},
            },
            "rehearse.train: effective_batch_size 16",
        ),
    ],
)
def test_rait_run_checks_everything_it_can_before_the_first_expensive_stage(
    tmp_path, changes, needle
):
    from rait.pipeline import run_pipeline

    config = _run_config(tmp_path, **changes)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as info:
        run_pipeline(load_pipeline_config(str(path)), log=lambda _: None)
    assert needle in str(info.value)
    assert not (tmp_path / "run" / "probe").exists()  # no model was loaded, nothing probed
