"""rait: Refusal-Aware Instruction Tuning, a faithful and tested reference implementation.

The pipeline flows one way: data -> probe -> (rehearse, gradients) -> build -> train ->
evaluate -> report. Each stage is a plain function with a dataclass config and a CLI subcommand.
"""

__version__ = "0.1.0"
