"""The ``rait`` command line: one subcommand per stage, each a thin layer over a function.

Every user-fixable problem ends in one ``rait: error: ...`` line and exit status 2; a dataset
with validation problems makes ``rait data inspect`` exit with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from rait import __version__
from rait.errors import ConfigError, RaitError


def _field_map(pairs: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ConfigError(
                f"--map {pair!r} must look like canonical=column (e.g. question=prompt)"
            )
        key, value = pair.split("=", 1)
        if not key.strip() or not value.strip():
            raise ConfigError(f"--map {pair!r} has an empty side")
        out[key.strip()] = value.strip()
    return out


def _add_source_args(parser: argparse.ArgumentParser) -> None:
    from rait.data.sources import ALL_FORMATS

    parser.add_argument(
        "--format",
        default="auto",
        choices=ALL_FORMATS,
        help="file format, or a benchmark parser (default: by file extension)",
    )
    parser.add_argument("--split", help="split label (hub split for benchmarks)")
    parser.add_argument("--subset", help="hub config, e.g. an MMLU subject or 'rc.nocontext'")
    parser.add_argument(
        "--map",
        action="append",
        metavar="FIELD=COLUMN",
        help="read a canonical field from a foreign column (repeatable); "
        "choices=A,B,C,D gathers columns; dots follow nested objects",
    )


def _source_from_args(args: argparse.Namespace, path: str | None):
    from rait.data.sources import DataSource

    return DataSource(
        format=args.format,
        path=path,
        split=args.split,
        subset=args.subset,
        field_map=_field_map(args.map),
        sample=getattr(args, "sample", None),
        seed=getattr(args, "seed", 0) or 0,
    )


def _flag_overrides(flags: dict[str, object]) -> list[str]:
    """``key=value`` overrides for the command-line flags that were given."""
    return [f"{k}={v}" for k, v in flags.items() if v is not None]


# --------------------------------------------------------------------------- commands
def cmd_data_inspect(args: argparse.Namespace) -> int:
    from rait.data.inspect import format_inspection
    from rait.data.sources import HUB_FORMATS, scan_source

    path = None if (args.file == "hub" and args.format in HUB_FORMATS) else args.file
    result = scan_source(_source_from_args(args, path))
    print(format_inspection(result, args.examples))
    return 1 if result.problems else 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from rait.data.files import write_records
    from rait.data.sources import HUB_FORMATS, load_source
    from rait.fileio import check_output_file

    path = None if (args.source == "hub" and args.format in HUB_FORMATS) else args.source
    check_output_file(args.out, inputs=[path])
    records = load_source(_source_from_args(args, path))
    count = write_records(args.out, records)
    print(f"wrote {count} records ({records[0].task}) to {args.out}")
    return 0


def cmd_data_world_facts(args: argparse.Namespace) -> int:
    from rait.config import load_config
    from rait.data.world_facts import WorldFactsConfig, write_world_facts

    overrides = list(args.set or [])
    for name in ("task", "seed", "n_cities"):
        value = getattr(args, name)
        if value is not None:
            overrides.append(f"{name}={value}")
    cfg = load_config(WorldFactsConfig, args.config, overrides)
    manifest = write_world_facts(cfg, args.out)
    totals = ", ".join(f"{k} {v}" for k, v in manifest["totals"].items())
    print(f"world facts ({cfg.task}, seed {cfg.seed}) in {manifest['seconds']:.2f}s: {totals}")
    print(
        f"written to {args.out}/ (train.jsonl, dev.jsonl, id_test.jsonl, ood_test.jsonl, "
        "manifest.json)"
    )
    return 0


def _shard(text: str | None):
    from rait.distributed import Shard

    return None if text is None else Shard.parse(text)


def _shard_done(summary: dict, command: str) -> str:
    return (
        f"shard {summary['shard']}: {summary['n']} rows in {summary['file']}; when every shard "
        f"is done, run the same `rait {command}` without --shard to merge them"
    )


def cmd_probe(args: argparse.Namespace) -> int:
    from rait.config import load_config
    from rait.probe import ProbeConfig, run_probe

    overrides = list(args.set or [])
    flags = {
        "model.name": args.model,
        "data.path": args.data,
        "data.format": args.format,
        "data.split": args.split,
        "data.sample": args.sample,
        "shots.path": args.shots,
        "shots.format": args.shots_format,
        "shots.split": args.shots_split,
        "n_samples": args.n_samples,
        "batch_size": args.batch_size,
        "backend": args.backend,
        "seed": args.seed,
    }
    overrides += _flag_overrides(flags)
    if args.rtuning_u:
        overrides.append("rtuning_u=true")
    cfg = load_config(ProbeConfig, args.config, overrides)
    summary = run_probe(cfg, args.out, shard=_shard(args.shard))
    if "shard" in summary:
        print(_shard_done(summary, "probe"))
        return 0
    print(
        f"probed {summary['n']} {summary['task']} questions: mean µ {summary['mean_mu']:.3f}, "
        f"mean σ {summary['mean_sigma']:.3f}, known (µ ≥ 0.5) {summary['known_fraction']:.1%}"
    )
    print(f"rows in {args.out}/knowledge.jsonl, summary in {args.out}/summary.json")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rait.config import load_config
    from rait.evaluate import EvalConfig, format_metrics, run_eval

    overrides = list(args.set or [])
    flags = {
        "model.name": args.model,
        "model.adapter": args.adapter,
        "data.path": args.data,
        "data.format": args.format,
        "data.split": args.split,
        "data.sample": args.sample,
        "method": args.method,
        "prompt": args.prompt,
        "test_set": args.test_set,
        "role": args.role,
        "match": args.match,
        "confidence": args.confidence,
        "baseline": args.baseline,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "backend": args.backend,
    }
    overrides += _flag_overrides(flags)
    if args.refusal_phrase:
        overrides.append("refusal_phrases=" + _yaml_list(args.refusal_phrase))
    cfg = load_config(EvalConfig, args.config, overrides)
    result = run_eval(cfg, args.out, shard=_shard(args.shard))
    if "shard" in result:
        print(_shard_done(result, "eval"))
        return 0
    print(format_metrics(result))
    print(f"predictions in {args.out}/predictions.jsonl, metrics in {args.out}/metrics.json")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from rait.build import BuildConfig, format_summary, run_build, summary_path
    from rait.config import load_config

    overrides = list(args.set or [])
    flags = {
        "method": args.method,
        "data.path": args.data,
        "data.format": args.format,
        "data.split": args.split,
        "knowledge": args.knowledge,
        "knowledge_after": args.knowledge_after,
        "influence": args.influence,
        "temperature": args.temperature,
        "n_van": args.n_van,
        "n_idk": args.n_idk,
        "tau_mu": args.tau_mu,
        "seed": args.seed,
    }
    overrides += _flag_overrides(flags)
    if args.strict_sizes:
        overrides.append("strict_sizes=true")
    summary = run_build(load_config(BuildConfig, args.config, overrides), args.out)
    print(format_summary(summary))
    print(f"written to {args.out} (summary: {summary_path(args.out)})")
    return 0


def _train_flag_overrides(args: argparse.Namespace, prefix: str = "") -> list[str]:
    flags = {
        "finetuning": args.finetuning,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "effective_batch_size": args.effective_batch_size,
        "lora_r": args.lora_r,
        "report_to": args.report_to,
    }
    return _flag_overrides({prefix + k: v for k, v in flags.items()})


def cmd_train(args: argparse.Namespace) -> int:
    from rait.config import load_config
    from rait.train import TrainConfig, run_train

    overrides = list(args.set or [])
    overrides += _flag_overrides({"model.name": args.model, "data": args.data, "seed": args.seed})
    overrides += _train_flag_overrides(args)
    if args.no_weights:
        overrides.append("use_weights=false")
    summary = run_train(load_config(TrainConfig, args.config, overrides), args.out)
    print(
        f"trained on {summary['n_samples']} samples ({summary['steps']} steps, "
        f"{summary['seconds']:.0f}s, {summary['samples_per_second']:.2f} samples/s): mean loss "
        f"{summary['train_loss']:.3f}, first logged {summary['first_loss']:.3f}, last logged "
        f"{summary['last_loss']:.3f}"
    )
    print(f"model in {summary['output']} (rait eval --adapter / --model)")
    return 0


def cmd_rehearse(args: argparse.Namespace) -> int:
    from rait.config import load_config
    from rait.rehearse import RehearseConfig, run_rehearse

    overrides = list(args.set or [])
    overrides += _flag_overrides(
        {
            "probe": args.probe,
            "size": args.size,
            "min_mu": args.min_mu,
            "min_sigma": args.min_sigma,
            "seed": args.seed,
            "backend": args.backend,
            "batch_size": args.probe_batch_size,
        }
    )
    overrides += _train_flag_overrides(args, "train.")
    summary = run_rehearse(load_config(RehearseConfig, args.config, overrides), args.out)
    print(
        f"rehearsed on {summary['rehearsal']['kept']} samples; knowledge flow over "
        f"{summary['n']} questions: mean Δµ {summary['mean_delta_mu']:+.3f}, mean Δσ "
        f"{summary['mean_delta_sigma']:+.3f}; of {summary['unknown']} with µ < 0.5: "
        f"{summary['unknown_delta_mu_negative']} Δµ < 0, {summary['unknown_delta_mu_zero']} "
        f"Δµ = 0, {summary['unknown_delta_mu_positive']} Δµ > 0"
    )
    print(
        f"knowledge after rehearsal in {summary['knowledge_after']} (rait build --knowledge-after)"
    )
    return 0


def cmd_influence(args: argparse.Namespace) -> int:
    from rait.config import load_config
    from rait.influence import InfluenceConfig, run_influence

    overrides = list(args.set or [])
    overrides += _flag_overrides(
        {
            "probe": args.probe,
            "warmup": args.warmup,
            "warmup_size": args.warmup_size,
            "tau_c": args.tau_c,
            "projection": args.projection,
            "projection_dim": args.projection_dim,
            "gradient": args.gradient,
            "ik_target": args.ik_target,
            "batch_size": args.gradient_batch_size,
            "seed": args.seed,
            "device": args.device,
        }
    )
    if args.no_normalize:
        overrides.append("normalize=false")
    overrides += _train_flag_overrides(args, "train.")
    summary = run_influence(load_config(InfluenceConfig, args.config, overrides), args.out)
    if not summary:
        return 0  # not the main process
    means = summary["means"]
    print(
        f"influence of {summary['n']} questions ({summary['n_ik']} ik, {summary['n_idk']} idk) "
        f"over {summary['lora_parameters']:,} LoRA parameters in {summary['seconds']:.0f}s; "
        f"means: <idk,idk> {means['idk_dot_idk']:.4f}, <ik,ik> {means['ik_dot_ik']:.4f}, "
        f"<idk,ik> {means['idk_dot_ik']:.4f}"
    )
    print(f"scores in {summary['influence']} (rait build --method grait --influence)")
    return 0


def _yaml_list(items: Sequence[str]) -> str:
    import json

    return json.dumps(list(items))  # JSON is YAML


def cmd_table(args: argparse.Namespace) -> int:
    from rait.fileio import atomic_open, check_output_file, write_json
    from rait.results import find_metrics, load_results, results_json, results_table

    found = find_metrics(args.paths)
    if args.out:
        for out in (args.out, os.path.splitext(args.out)[0] + ".json"):
            check_output_file(out, inputs=found)
    results = load_results(found)
    table = results_table(results, args.title)
    print(table)
    if args.out:
        with atomic_open(args.out) as handle:
            handle.write(table + "\n")
        json_path = os.path.splitext(args.out)[0] + ".json"
        write_json(json_path, results_json(results))
        print(f"\nwritten to {args.out} and {json_path}")
    return 0


def cmd_crss(args: argparse.Namespace) -> int:
    from rait.config import load_config
    from rait.fileio import write_json
    from rait.representations import CrssConfig, run_crss

    overrides = list(args.set or [])
    flags = {
        "model.name": args.model,
        "model.adapter": args.adapter,
        "data.path": args.data,
        "data.format": args.format,
        "data.split": args.split,
        "knowledge": args.knowledge,
        "built": args.built,
        "tau_mu": args.tau_mu,
        "tau_sim": args.tau_sim,
    }
    overrides += _flag_overrides(flags)
    result = run_crss(load_config(CrssConfig, args.config, overrides))
    print(
        f"CRSS {result['crss']:.1%} at τ_sim {result['tau_sim']} "
        f"({result['n_idk']} IdK vs {result['n_van']} vanilla samples; {result['split']})"
    )
    if args.out:
        write_json(args.out, result)
        print(f"written to {args.out}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rait.pipeline import load_pipeline_config, run_pipeline

    overrides = list(args.set or [])
    overrides += _flag_overrides({"run_dir": args.run_dir})
    if args.methods:
        overrides.append("methods=" + _yaml_list(args.methods))
    run_pipeline(load_pipeline_config(args.config, overrides))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from rait.compare import CompareConfig, run_compare

    cfg = CompareConfig(runs=args.run_dirs, names=args.names, out=args.out, title=args.title)
    paths = run_compare(cfg)
    from pathlib import Path

    print(Path(paths["markdown"]).read_text(encoding="utf-8").split("\n## ")[0].rstrip())
    print(f"\ncompare: {paths['html']} (and compare.md, compare.json)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rait.report import ReportConfig, run_report

    paths = run_report(
        ReportConfig(
            run_dir=args.run_dir,
            out=args.out,
            n_examples=args.examples,
            tau_sim=args.tau_sim,
            tsne_points=args.tsne_points,
        )
    )
    print(f"report: {paths['html']}")
    print(f"markdown: {paths['markdown']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rait.demo import load_demo_config, run_demo

    overrides = list(args.set or [])
    overrides += _flag_overrides({"run_dir": args.run_dir, "model.name": args.model})
    if args.methods:
        overrides.append("methods=" + _yaml_list(args.methods))
    run_demo(load_demo_config(args.config, overrides, args.n_questions))
    return 0


def _add_train_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--finetuning", choices=("lora", "full"))
    parser.add_argument("--epochs", type=float)
    parser.add_argument("--learning-rate", dest="learning_rate", type=float)
    parser.add_argument("--batch-size", dest="batch_size", type=int, help="per-device micro-batch")
    parser.add_argument("--effective-batch-size", dest="effective_batch_size", type=int)
    parser.add_argument("--lora-r", dest="lora_r", type=int)
    parser.add_argument("--report-to", dest="report_to", help="none, tensorboard, wandb, ...")


# --------------------------------------------------------------------------- parser
def _add_shard_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="answer only shard K of N (0-based) into OUT.shards/, e.g. one process per GPU; "
        "the same command without --shard merges the finished shards",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rait",
        description='Refusal-Aware Instruction Tuning: teach a model to say "I don\'t know".',
    )
    parser.add_argument("--version", action="version", version=f"rait {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    data = sub.add_parser("data", help="load, validate, convert and build QA datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data_sub.required = True

    inspect = data_sub.add_parser(
        "inspect", help="counts, task type, examples and every validation problem of a dataset"
    )
    inspect.add_argument("file", help="a dataset file or folder ('hub' for a benchmark's hub copy)")
    _add_source_args(inspect)
    inspect.add_argument("--examples", type=int, default=3, help="how many examples to show")
    inspect.set_defaults(func=cmd_data_inspect)

    convert = data_sub.add_parser("convert", help="load any supported source into canonical JSONL")
    convert.add_argument("source", help="a file or folder ('hub' to download a benchmark)")
    _add_source_args(convert)
    convert.add_argument("--sample", type=int, help="draw this many records (seeded)")
    convert.add_argument("--seed", type=int, default=0)
    convert.add_argument("--out", required=True, help="output JSONL file")
    convert.set_defaults(func=cmd_data_convert)

    facts = data_sub.add_parser(
        "world-facts", help="build the offline real-facts QA set (train/dev/id_test/ood_test)"
    )
    facts.add_argument("--out", required=True, help="output folder")
    facts.add_argument("--task", choices=("oeqa", "mcqa"))
    facts.add_argument("--seed", type=int)
    facts.add_argument("--n-cities", dest="n_cities", type=int)
    facts.add_argument("--config", help="YAML file with WorldFactsConfig fields")
    facts.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    facts.set_defaults(func=cmd_data_world_facts)

    probe = sub.add_parser(
        "probe", help="stage 1: correctness µ and certainty σ of every question (METHODS §2)"
    )
    probe.add_argument("--out", required=True, help="output folder (knowledge.jsonl, summary.json)")
    probe.add_argument("--model", help="model name, hub id or folder (default: offline SmolLM2)")
    probe.add_argument("--data", help="questions to probe: a file or folder")
    probe.add_argument("--format", help="format of --data (default: by extension)")
    probe.add_argument("--split", help="split of --data (world_facts / benchmark split)")
    probe.add_argument("--sample", type=int, help="probe this many questions (seeded)")
    probe.add_argument("--shots", help="few-shot pool: a file or folder of another split")
    probe.add_argument("--shots-format", dest="shots_format")
    probe.add_argument("--shots-split", dest="shots_split")
    probe.add_argument("--n-samples", dest="n_samples", type=int, help="OEQA samples (default 10)")
    probe.add_argument("--batch-size", dest="batch_size", type=int)
    probe.add_argument("--backend", choices=("auto", "hf", "vllm"))
    probe.add_argument("--seed", type=int)
    probe.add_argument(
        "--rtuning-u",
        dest="rtuning_u",
        action="store_true",
        help="also draw R-Tuning-U's samples (k at T=0.7)",
    )
    probe.add_argument("--config", help="YAML file with ProbeConfig fields")
    probe.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    _add_shard_flag(probe)
    probe.set_defaults(func=cmd_probe)

    build = sub.add_parser(
        "build", help="stage 2: a refusal-aware SFT set from a probe (METHODS §3, §4)"
    )
    build.add_argument("--out", required=True, help="output JSONL (summary written beside it)")
    build.add_argument("--method", help="van-tuning, cor-rait, rtuning-padding, ..., craft")
    build.add_argument("--data", help="the training questions D_src: a file or folder")
    build.add_argument("--format", help="format of --data (default: by extension)")
    build.add_argument("--split", help="split of --data (world_facts / benchmark split)")
    build.add_argument("--knowledge", help="the probe's knowledge.jsonl")
    build.add_argument(
        "--knowledge-after",
        dest="knowledge_after",
        help="the rehearsed model's knowledge (rait rehearse; CRaFT needs it)",
    )
    build.add_argument(
        "--influence", help="GRAIT's scores (rait influence's influence.jsonl; grait needs it)"
    )
    build.add_argument(
        "--temperature", type=float, help="GRAIT's τ of the stable-influence weights (0.05)"
    )
    build.add_argument("--n-van", dest="n_van", type=int, help="vanilla samples N_van")
    build.add_argument("--n-idk", dest="n_idk", type=int, help="IdK samples N_idk")
    build.add_argument("--tau-mu", dest="tau_mu", type=float, help="correctness threshold (0.5)")
    build.add_argument("--seed", type=int)
    build.add_argument(
        "--strict-sizes",
        dest="strict_sizes",
        action="store_true",
        help="stop when a pool is smaller than asked (default: take all of it and report)",
    )
    build.add_argument("--config", help="YAML file with BuildConfig fields")
    build.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    build.set_defaults(func=cmd_build)

    train = sub.add_parser(
        "train", help="stage 3: SFT with TRL + PEFT, per-sample weights (METHODS §6)"
    )
    train.add_argument("--out", required=True, help="output folder (adapter/ or model/)")
    train.add_argument("--data", help="a built set (rait build) or prompt/completion JSONL")
    train.add_argument("--model", help="model name, hub id or folder (default: offline SmolLM2)")
    train.add_argument("--seed", type=int)
    train.add_argument(
        "--no-weights", dest="no_weights", action="store_true", help="ignore the weight column"
    )
    _add_train_args(train)
    train.add_argument("--config", help="YAML file with TrainConfig fields")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    train.set_defaults(func=cmd_train)

    rehearse = sub.add_parser(
        "rehearse", help="CRaFT rehearsal: train on known answers, re-probe, knowledge flow"
    )
    rehearse.add_argument("--out", required=True, help="output folder (knowledge_after.jsonl)")
    rehearse.add_argument("--probe", help="the probe's output folder")
    rehearse.add_argument("--size", type=int, help="rehearsal samples (default 1000)")
    rehearse.add_argument("--min-mu", dest="min_mu", type=float)
    rehearse.add_argument("--min-sigma", dest="min_sigma", type=float)
    rehearse.add_argument("--seed", type=int)
    rehearse.add_argument("--backend", choices=("auto", "hf", "vllm"), help="re-probe engine")
    rehearse.add_argument("--probe-batch-size", dest="probe_batch_size", type=int)
    _add_train_args(rehearse)
    rehearse.add_argument("--config", help="YAML file with RehearseConfig fields")
    rehearse.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    rehearse.set_defaults(func=cmd_rehearse)

    influence = sub.add_parser(
        "influence", help="GRAIT: per-sample LoRA gradient influence I_ref, I_sta (METHODS §5)"
    )
    influence.add_argument("--out", required=True, help="output folder (scores/influence.jsonl)")
    influence.add_argument("--probe", help="the probe's output folder")
    influence.add_argument(
        "--warmup",
        help="LoRA adapter or trainer checkpoint to take gradients at (default: train one on "
        "the rehearsal set)",
    )
    influence.add_argument("--warmup-size", dest="warmup_size", type=int)
    influence.add_argument("--tau-c", dest="tau_c", type=float, help="correctness threshold (0.5)")
    influence.add_argument("--projection", choices=("rademacher", "none"))
    influence.add_argument(
        "--projection-dim", dest="projection_dim", type=int, help="k (default 8192)"
    )
    influence.add_argument(
        "--no-normalize", dest="no_normalize", action="store_true", help="no per-sample L2 norm"
    )
    influence.add_argument("--gradient", choices=("sgd", "adam"))
    influence.add_argument(
        "--ik-target",
        dest="ik_target",
        choices=("refusal", "answer"),
        help="the D_ik mean's target: refusal (Algorithm 1) or answer (eq. 9)",
    )
    influence.add_argument(
        "--gradient-batch-size", dest="gradient_batch_size", type=int, help="samples per batch"
    )
    influence.add_argument("--seed", type=int)
    influence.add_argument("--device", help="cpu, cuda, ... (default: the probe's)")
    _add_train_args(influence)
    influence.add_argument("--config", help="YAML file with InfluenceConfig fields")
    influence.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    influence.set_defaults(func=cmd_influence)

    ev = sub.add_parser(
        "eval", help="stage 4: answer a test set 0-shot, classify, score (METHODS §7)"
    )
    ev.add_argument("--out", required=True, help="output folder (predictions.jsonl, metrics.json)")
    ev.add_argument("--model", help="model name, hub id or folder (default: offline SmolLM2)")
    ev.add_argument("--adapter", help="a PEFT adapter folder trained on --model")
    ev.add_argument("--data", help="the test set: a file or folder")
    ev.add_argument("--format", help="format of --data (default: by extension)")
    ev.add_argument("--split", help="split of --data (world_facts / benchmark split)")
    ev.add_argument("--sample", type=int, help="evaluate this many questions (seeded)")
    ev.add_argument(
        "--method", help="row label: init-basic (basic prompt), init-refuse, cor-rait, ..."
    )
    ev.add_argument("--prompt", choices=("auto", "refuse", "basic"))
    ev.add_argument("--test-set", dest="test_set", help="column label (default: the split)")
    ev.add_argument("--role", choices=("id", "ood"), help="in-domain or out-of-domain test set")
    ev.add_argument("--match", choices=("contains", "em"))
    ev.add_argument(
        "--refusal-phrase",
        dest="refusal_phrase",
        action="append",
        help="a refusal phrase (repeatable; replaces the default list)",
    )
    ev.add_argument(
        "--confidence",
        choices=("answer", "padding"),
        help="answer probability, or R-Tuning padding's sure-probability mix",
    )
    ev.add_argument(
        "--baseline", help="Init-Basic's eval folder on the same test set (for THS, honesty)"
    )
    ev.add_argument("--batch-size", dest="batch_size", type=int)
    ev.add_argument("--max-new-tokens", dest="max_new_tokens", type=int)
    ev.add_argument("--backend", choices=("auto", "hf", "vllm"))
    ev.add_argument("--config", help="YAML file with EvalConfig fields")
    ev.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    _add_shard_flag(ev)
    ev.set_defaults(func=cmd_eval)

    table = sub.add_parser(
        "table", help="the results table (Pc, Pw, THS per test set) from eval folders"
    )
    table.add_argument("paths", nargs="+", help="metrics.json files or folders holding them")
    table.add_argument("--out", help="write the Markdown table here (and the JSON beside it)")
    table.add_argument("--title", help="a title line above the table")
    table.set_defaults(func=cmd_table)

    crss = sub.add_parser(
        "crss", help="conflict rate of similar vanilla/IdK samples (CRaFT section 3.2)"
    )
    crss.add_argument("--data", help="the training questions: a file or folder")
    crss.add_argument("--format", help="format of --data (default: by extension)")
    crss.add_argument("--split", help="split of --data")
    crss.add_argument("--knowledge", help="a probe's knowledge.jsonl (Cor-RAIT split at tau_mu)")
    crss.add_argument("--built", help="a built RAIT set (its kind column: van/idk)")
    crss.add_argument("--model", help="model name, hub id or folder (default: offline SmolLM2)")
    crss.add_argument("--adapter", help="a PEFT adapter folder trained on --model")
    crss.add_argument("--tau-mu", dest="tau_mu", type=float)
    crss.add_argument("--tau-sim", dest="tau_sim", type=float)
    crss.add_argument("--out", help="write the result as JSON here")
    crss.add_argument("--config", help="YAML file with CrssConfig fields")
    crss.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    crss.set_defaults(func=cmd_crss)

    run = sub.add_parser(
        "run",
        help="the whole pipeline from one YAML config: probe, rehearse, influence, build, "
        "train, eval, results (cached and resumable)",
    )
    run.add_argument("config", help="a pipeline YAML (see configs/)")
    run.add_argument("--run-dir", dest="run_dir", help="override the config's run_dir")
    run.add_argument(
        "--methods", nargs="+", metavar="METHOD", help="override the config's method list"
    )
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    run.set_defaults(func=cmd_run)

    report = sub.add_parser(
        "report",
        help="a run's results as a self-contained HTML page and Markdown, with figures",
    )
    report.add_argument("run_dir", help="a run directory (rait run / rait demo)")
    report.add_argument("--out", help="the report folder (default RUN_DIR/report)")
    report.add_argument(
        "--examples", type=int, default=6, help="changed answers shown per kind (default 6)"
    )
    report.add_argument(
        "--tau-sim", type=float, default=0.97, help="CRSS similarity threshold (default 0.97)"
    )
    report.add_argument(
        "--tsne-points",
        type=int,
        default=2000,
        help="the most questions the t-SNE embeds, a seeded sample (default 2000)",
    )
    report.set_defaults(func=cmd_report)

    compare = sub.add_parser(
        "compare",
        help="several runs side by side: one table and one Pc–Pw plane (HTML, Markdown, JSON)",
    )
    compare.add_argument("run_dirs", nargs="+", help="run directories (rait run / rait demo)")
    compare.add_argument("--names", nargs="+", help="a label per run (default: folder names)")
    compare.add_argument("--out", default="compare", help="output folder (default ./compare)")
    compare.add_argument("--title", help="the page's title")
    compare.set_defaults(func=cmd_compare)

    demo = sub.add_parser(
        "demo",
        help="the main job: every method on world facts with the offline default (see README)",
    )
    demo.add_argument("--run-dir", dest="run_dir")
    demo.add_argument(
        "--n-questions", dest="n_questions", type=int, help="questions drawn from each test set"
    )
    demo.add_argument("--model", help="model name, hub id or folder (default: offline SmolLM2)")
    demo.add_argument("--methods", nargs="+", metavar="METHOD", help="only these methods")
    demo.add_argument(
        "--config", help="a pipeline YAML instead of the built-in one (configs/demo.yaml)"
    )
    demo.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    demo.set_defaults(func=cmd_demo)
    return parser


def _other_rank() -> bool:
    """A launched process other than rank 0 (``RANK`` is set by torchrun and accelerate)."""
    return os.environ.get("RANK", "0") not in ("", "0")


# the commands whose --out is a file (every other --out is a folder)
def _file_outputs() -> set:
    return {cmd_data_convert, cmd_build, cmd_table, cmd_crss}


def _check_output(args: argparse.Namespace) -> None:
    """``--out`` checked before any work: a folder where a file is wanted (or the reverse), an
    unwritable or read-only place, is one clear error now, not a traceback after the work."""
    from rait.fileio import check_output_dir, check_output_file

    out = getattr(args, "out", None)
    if out is None:
        return
    if args.func in _file_outputs():
        check_output_file(out)
    else:
        check_output_dir(out)


def _silence_stdout() -> None:
    """After a closed pipe (``rait ... | head``), send the rest of the output nowhere, so the
    interpreter's final flush raises nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    quiet = _other_rank() and not args.verbose
    try:
        _check_output(args)
        if quiet:  # under torchrun / accelerate, rank 0 reports; errors still reach stderr
            with (
                open(os.devnull, "w", encoding="utf-8") as devnull,
                contextlib.redirect_stdout(devnull),
            ):
                return args.func(args)
        return args.func(args)
    except RaitError as exc:
        print(f"rait: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rait: interrupted; finished work is kept, rerun to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141  # as a command killed by SIGPIPE
    except OSError as exc:  # a full disk, a read-only folder, a vanished file
        from rait.fileio import describe_os_error

        print(
            f"rait: error: {describe_os_error(exc)} (finished work is kept; rerun to resume "
            "once the cause is fixed)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
