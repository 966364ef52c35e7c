"""The papers' defaults, pinned: one test per default, each naming where it comes from.

Each default is checked where it lives (the dataclass config of its stage), in the two
paper-setup configs (``configs/mmlu-llama3-8b.yaml``, ``configs/triviaqa-llama3-8b.yaml``,
loaded with ``rait run``'s own loader and expanded into the stages' configs), and, for the
trainer, in what the TRL trainer is actually built with. ``configs/demo.yaml`` is a CPU demo
and may use other values; it is not checked here.

Sources: CRaFT = "Utilize the Flow before Stepping into the Same River Twice" (Zhu et al.);
GRAIT = "GRAIT: Gradient-Driven Refusal-Aware Instruction Tuning"; R-Tuning = "R-Tuning:
Instructing Large Language Models to Say 'I Don't Know'" (Zhang et al., NAACL 2024); where the
papers' text is silent, the project's spec (``docs/methods.md``) fixes the value and is cited.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rait.build import BuildConfig
from rait.data.records import QARecord
from rait.influence import InfluenceConfig
from rait.methods.base import DEFAULT_TEMPERATURE, Candidate
from rait.pipeline import load_pipeline_config
from rait.probe import ProbeConfig
from rait.rehearse import RehearseConfig, select_rehearsal
from rait.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = ["configs/mmlu-llama3-8b.yaml", "configs/triviaqa-llama3-8b.yaml"]


@pytest.fixture(scope="module", params=PAPER_CONFIGS)
def stages(request, tmp_path_factory):
    """Every stage's config of a paper-setup run (nothing is run or downloaded)."""
    cfg = load_pipeline_config(str(ROOT / request.param))
    return cfg.stage_configs(tmp_path_factory.mktemp("run"))


def _trainings(stages):
    """The final tunings of every method and the rehearsal training (CRaFT: "the same trainer
    and hyper-parameters as the final tuning", docs/methods.md §3)."""
    return [*stages["train"].values(), stages["rehearse"].train]


@pytest.fixture(scope="module")
def trainer(tiny_model_dir, tmp_path_factory):
    """The TRL trainer that ``rait train`` builds with every default (on the tiny model)."""
    from rait.models import ModelConfig, load_model
    from rait.train import TrainExample, build_trainer

    cfg = TrainConfig(model=ModelConfig(name=str(tiny_model_dir)))
    lm = load_model(cfg.model)
    examples = [TrainExample(f"x{i}", [5, 6, 7 + i], [8, 9], 1.0) for i in range(4)]
    return build_trainer(cfg, examples, tmp_path_factory.mktemp("trainer"), lm, lm.model)


# --------------------------------------------------------------------------- stage 1: probe
def test_probe_takes_n_10_samples_at_temperature_1(stages):
    # CRaFT section 4.2: "generates responses N times (with N = 10) ... with a temperature of
    # 1.0 and sampling enabled"
    assert (ProbeConfig.n_samples, ProbeConfig.temperature) == (10, 1.0)
    assert (stages["probe"].n_samples, stages["probe"].temperature) == (10, 1.0)


def test_rtuning_u_takes_k_10_answers_at_temperature_0_7(stages):
    # R-Tuning section 5.1 (Unsupervised Identification): "We set the temperature to 0.7 and
    # k = 10"
    defaults = (ProbeConfig.rtuning_u_samples, ProbeConfig.rtuning_u_temperature)
    assert defaults == (10, 0.7)
    probe = stages["probe"]
    assert probe.rtuning_u  # both setups build rtuning-u
    assert (probe.rtuning_u_samples, probe.rtuning_u_temperature) == (10, 0.7)


# --------------------------------------------------------------------------- D_src
@pytest.mark.parametrize(
    ("config", "source", "sizes"),
    [
        ("configs/mmlu-llama3-8b.yaml", ("mmlu", None, "test"), (4000, 1000)),
        ("configs/triviaqa-llama3-8b.yaml", ("triviaqa", "unfiltered.nocontext", "train"),
         (8000, 2000)),
    ],
)  # fmt: skip
def test_d_src_is_the_whole_training_pool(config, source, sizes, tmp_path):
    # docs/methods.md §1: D_src is the whole pool (MMLU test, 14,042; TriviaQA train
    # unfiltered.nocontext, 87,622, GRAIT Table 1); 5,000 / 10,000 are the sizes of the set
    # built from it (4,000 + 1,000, 8,000 + 2,000; CRaFT's process(total_n=10000))
    stages = load_pipeline_config(str(ROOT / config)).stage_configs(tmp_path)
    data = stages["probe"].data
    assert (data.format, data.subset, data.split) == source
    assert data.sample is None  # every question of the pool is probed
    for build in stages["build"].values():
        assert (build.n_van, build.n_idk) == sizes


# --------------------------------------------------------------------------- GRAIT
def test_grait_projects_to_k_8192_with_normalisation(stages):
    # GRAIT section 5.2 (LoRA + random projection, following LESS, Xia et al. 2024); the
    # dimension k = 8192 and the per-sample L2 normalisation: docs/methods.md §5
    defaults = InfluenceConfig()
    assert (defaults.projection, defaults.projection_dim, defaults.normalize) == (
        "rademacher",
        8192,
        True,
    )
    used = stages["influence"]
    assert (used.projection, used.projection_dim, used.normalize) == ("rademacher", 8192, True)


def test_correctness_threshold_t_c_is_0_5(stages):
    # GRAIT section 6.1: "we assigned the hyperparameter T_C a value of 0.5" (CRaFT's τµ,
    # docs/methods.md §3, is the same 0.5)
    assert InfluenceConfig.tau_mu == 0.5 and BuildConfig.tau_mu == 0.5
    assert stages["influence"].tau_mu == 0.5
    assert {b.tau_mu for b in stages["build"].values()} == {0.5}


def test_stable_influence_temperature_tau_is_0_05(stages):
    # GRAIT section 6.1: "... and τ a value of 0.05" (also tests/test_grait.py pins
    # rait.methods.base.DEFAULT_TEMPERATURE; here: the build config that uses it)
    assert DEFAULT_TEMPERATURE == 0.05 and BuildConfig.temperature == 0.05
    assert {b.temperature for b in stages["build"].values()} == {0.05}


# --------------------------------------------------------------------------- training
def test_lora_r_64_alpha_16_dropout_0_1(stages, trainer):
    # CRaFT section 5.4 and GRAIT section 6.1: "LoRA ... r = 64, α = 16, dropout = 0.1"
    defaults = TrainConfig()
    assert defaults.finetuning == "lora"
    assert (defaults.lora_r, defaults.lora_alpha, defaults.lora_dropout) == (64, 16, 0.1)
    for cfg in _trainings(stages):
        assert cfg.finetuning == "lora"
        assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (64, 16, 0.1)
    lora = trainer.model.peft_config["default"]
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (64, 16, 0.1)


def test_learning_rate_is_2e_4(stages, trainer):
    # CRaFT section 5.4: "a learning rate of 2e-4"; GRAIT section 6.1: "2 × 10^-4"
    assert TrainConfig.learning_rate == 2e-4
    assert {c.learning_rate for c in _trainings(stages)} == {2e-4}
    assert trainer.args.learning_rate == 2e-4


def test_three_epochs(stages, trainer):
    # CRaFT section 5.4 ("XTuner with 3 epochs") and GRAIT section 6.1 ("over 3 epochs")
    assert TrainConfig.epochs == 3.0
    assert {c.epochs for c in _trainings(stages)} == {3.0}
    assert trainer.args.num_train_epochs == 3.0


def _learning_rates(trainer, steps):
    """The learning rate of each of ``steps`` optimisation steps, from the trainer's own
    optimizer and scheduler (built afresh)."""
    trainer.optimizer, trainer.lr_scheduler = None, None
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    rates = []
    for _ in range(steps):
        rates.append(trainer.lr_scheduler.get_last_lr()[0])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    return rates


def test_cosine_schedule(stages, trainer):
    # docs/methods.md §6 (the papers train with XTuner, whose recipe this is): cosine decay
    assert TrainConfig.lr_scheduler == "cosine"
    assert {c.lr_scheduler for c in _trainings(stages)} == {"cosine"}
    steps = 200
    rates = _learning_rates(trainer, steps)
    warm = math.ceil(0.03 * steps)
    for t in range(warm, steps):  # after the warm-up: lr = peak · (1 + cos(π·progress)) / 2
        progress = (t - warm) / (steps - warm)
        assert rates[t] == pytest.approx(2e-4 * 0.5 * (1 + math.cos(math.pi * progress)))


def test_three_percent_warm_up(stages, trainer):
    # docs/methods.md §6: linear warm-up over the first 3% of the steps
    assert TrainConfig.warmup_ratio == 0.03
    assert {c.warmup_ratio for c in _trainings(stages)} == {0.03}
    for steps in (100, 200, 1000):
        assert trainer.args.get_warmup_steps(steps) == math.ceil(0.03 * steps)
    rates = _learning_rates(trainer, 200)  # 6 warm-up steps: 0, 1/6, ..., 5/6 of the peak
    assert rates[:7] == pytest.approx([2e-4 * t / 6 for t in range(7)])


def test_effective_batch_of_16(stages, trainer):
    # docs/methods.md §6: effective batch 16 (per-device batch × accumulation × processes)
    assert TrainConfig.effective_batch_size == 16
    for cfg in _trainings(stages):
        assert cfg.effective_batch_size == 16
        assert cfg.batch_size * cfg.accumulation_steps(1) == 16
    args = trainer.args
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 16


def test_max_length_2048(stages, trainer):
    # CRaFT section 5.4 ("a maximum context length of 2048") and GRAIT section 6.1
    assert TrainConfig.max_length == 2048 and InfluenceConfig.max_length == 2048
    assert {c.max_length for c in _trainings(stages)} == {2048}
    assert stages["influence"].max_length == 2048
    assert trainer.args.max_length == 2048


# --------------------------------------------------------------------------- CRaFT rehearsal
def _candidates(*values):
    records = [QARecord(id=f"q{i}", question="?", answers=("a",)) for i in range(len(values))]
    return [Candidate(r, mu=mu, sigma=sigma) for r, (mu, sigma) in zip(records, values)]


def test_rehearsal_thresholds_mcqa_strictly_above_0_99(stages):
    # docs/methods.md §3 (CRaFT's released code): MCQA rehearsal samples have p(gold) > 0.99
    # (strictly), no σ threshold; 1,000 of them
    at, above, below = _candidates((0.99, 0.0), (0.991, -1.3), (0.5, 0.0))
    configs = [RehearseConfig(probe="p")]
    if stages["probe"].data.format == "mmlu":
        configs.append(stages["rehearse"])
    for cfg in configs:
        assert cfg.size == 1000
        chosen, info = select_rehearsal([at, above, below], "mcqa", cfg)
        assert [c.id for c in chosen] == [above.id] and info["rule"] == "µ > 0.99"


def test_rehearsal_thresholds_oeqa_mu_and_sigma_at_least_0_995(stages):
    # docs/methods.md §3 (CRaFT's released code): OEQA µ ≥ 0.995 and σ ≥ 0.995 (inclusive)
    cands = _candidates((0.995, 0.995), (1.0, 0.994), (0.994, 1.0), (1.0, 1.0))
    configs = [RehearseConfig(probe="p")]
    if stages["probe"].data.format == "triviaqa":
        configs.append(stages["rehearse"])
    for cfg in configs:
        assert cfg.size == 1000
        chosen, info = select_rehearsal(cands, "oeqa", cfg)
        assert {c.id for c in chosen} == {"q0", "q3"}
        assert info["rule"] == "µ ≥ 0.995 and σ ≥ 0.995"
