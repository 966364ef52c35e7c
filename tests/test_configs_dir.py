"""The example configs shipped in configs/ stay loadable and in sync with the dataclasses."""

from __future__ import annotations

from pathlib import Path

import pytest

from rait.config import config_to_dict, load_config
from rait.demo import DemoConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_demo_config_lists_every_field_at_its_default():
    cfg = load_config(DemoConfig, CONFIGS / "demo.yaml")
    assert config_to_dict(cfg) == config_to_dict(DemoConfig())


@pytest.mark.parametrize(
    "name", ["run-world-facts.yaml", "mmlu-llama3-8b.yaml", "triviaqa-llama3-8b.yaml"]
)
def test_pipeline_configs_load_and_check(name):
    from rait.methods import METHODS
    from rait.pipeline import load_pipeline_config

    cfg = load_pipeline_config(str(CONFIGS / name))
    # the examples run every method (craft-no-flow is CorCer-RAIT under its ablation name)
    assert sorted([*cfg.methods, "craft-no-flow"]) == sorted(METHODS)
    assert {t.role for t in cfg.tests} == {"id", "ood"}
