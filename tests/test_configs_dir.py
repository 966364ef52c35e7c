"""The example configs shipped in configs/ stay loadable and in sync with the dataclasses."""

from __future__ import annotations

from pathlib import Path

import pytest

from rait.config import config_to_dict
from rait.demo import demo_config_dict, load_demo_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_demo_yaml_is_the_built_in_demo():
    from rait.config import load_yaml

    assert load_yaml(CONFIGS / "demo.yaml") == demo_config_dict()
    from_file = load_demo_config(str(CONFIGS / "demo.yaml"))
    assert config_to_dict(from_file) == config_to_dict(load_demo_config())


@pytest.mark.parametrize(
    "name", ["demo.yaml", "run-world-facts.yaml", "mmlu-llama3-8b.yaml", "triviaqa-llama3-8b.yaml"]
)
def test_pipeline_configs_load_and_check(name):
    from rait.methods import METHODS
    from rait.pipeline import load_pipeline_config

    cfg = load_pipeline_config(str(CONFIGS / name))
    # the examples run every method (craft-no-flow is CorCer-RAIT under its ablation name)
    assert sorted([*cfg.methods, "craft-no-flow"]) == sorted(METHODS)
    assert {t.role for t in cfg.tests} == {"id", "ood"}
