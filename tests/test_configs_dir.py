"""The example configs shipped in configs/ stay loadable and in sync with the dataclasses."""

from __future__ import annotations

from pathlib import Path

from rait.config import config_to_dict, load_config
from rait.demo import DemoConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_demo_config_lists_every_field_at_its_default():
    cfg = load_config(DemoConfig, CONFIGS / "demo.yaml")
    assert config_to_dict(cfg) == config_to_dict(DemoConfig())
