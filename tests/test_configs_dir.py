"""The example configs shipped in configs/ stay loadable and in sync with the dataclasses."""

from __future__ import annotations

from pathlib import Path

import pytest

from rait.config import config_to_dict
from rait.demo import demo_config_path, load_demo_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_demo_yaml_is_the_built_in_demo():

    assert demo_config_path().resolve() == (CONFIGS / "demo.yaml").resolve()  # one file
    from_file = load_demo_config(str(CONFIGS / "demo.yaml"))
    assert config_to_dict(from_file) == config_to_dict(load_demo_config())


@pytest.mark.parametrize(
    "name", ["demo.yaml", "run-world-facts.yaml", "mmlu-llama3-8b.yaml", "triviaqa-llama3-8b.yaml"]
)
def test_pipeline_configs_load_and_check(name):
    from rait.methods import METHODS
    from rait.pipeline import load_pipeline_config

    cfg = load_pipeline_config(str(CONFIGS / name))
    if name == "demo.yaml":  # the papers' headline methods; `rait demo --all` runs the rest
        assert cfg.methods == ["van-tuning", "cor-rait", "craft", "grait"]
    else:  # every method (craft-no-flow is CorCer-RAIT under its ablation name)
        assert sorted([*cfg.methods, "craft-no-flow"]) == sorted(METHODS)
    assert {t.role for t in cfg.tests} == {"id", "ood"}


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("ddp.yaml", "MULTI_GPU"),
        ("fsdp.yaml", "FSDP"),
        ("deepspeed-zero2.yaml", "DEEPSPEED"),
        ("deepspeed-zero3.yaml", "DEEPSPEED"),
        ("cpu-2proc.yaml", "MULTI_CPU"),
    ],
)
def test_accelerate_configs_are_valid_accelerate_configs(name, kind):
    """accelerate's own loader reads each file (unknown top-level keys are an error there) and
    every FSDP / DeepSpeed setting is an option `accelerate launch` knows."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    path = CONFIGS / "accelerate" / name
    config = load_config_from_file(str(path))
    assert config.distributed_type.value == kind
    options = {action.dest for action in launch_command_parser()._actions}
    for section in (config.fsdp_config, config.deepspeed_config):
        unknown = sorted(set(section or {}) - options)
        assert not unknown, f"{name}: accelerate launch has no option {unknown}"
    if kind == "FSDP":
        assert config.fsdp_config["fsdp_version"] == 2
    if kind == "DEEPSPEED":
        assert config.deepspeed_config["zero_stage"] == int(name[-6])
