"""The ``rait`` command line: one subcommand per stage, each declared once from its config
dataclass (:mod:`rait.cliargs` derives the flags; ``--config FILE`` and ``--set key=value``
are added to every command that has a config).

Every user-fixable problem ends in one ``rait: error: ...`` line and exit status 2; a dataset
with validation problems makes ``rait data inspect`` exit with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rait import __version__
from rait.artifacts import METRICS_FILE, PREDICTIONS_FILE, build_summary_path
from rait.build import BuildConfig, format_summary, run_build
from rait.cliargs import add_flags, flag_overrides
from rait.compare import CompareConfig, run_compare
from rait.config import load_config
from rait.data.files import write_records
from rait.data.inspect import format_inspection
from rait.data.sources import HUB_FORMATS, DataSource, load_source, scan_source
from rait.data.world_facts import WorldFactsConfig, format_manifest, write_world_facts
from rait.demo import load_demo_config, run_demo
from rait.distributed import Shard
from rait.errors import ConfigError, RaitError, VacuousSelectionWarning
from rait.evaluate import EvalConfig, format_metrics, run_eval
from rait.fileio import (
    atomic_open,
    check_output_dir,
    check_output_file,
    describe_os_error,
    write_json,
)
from rait.influence import InfluenceConfig, run_influence
from rait.influence import format_summary as influence_summary
from rait.pipeline import PipelineConfig, check_pipeline, load_pipeline_config, run_pipeline
from rait.probe import ProbeConfig, run_probe
from rait.probe import format_summary as probe_summary
from rait.references import reference_names, rows_beside
from rait.rehearse import RehearseConfig, run_rehearse
from rait.rehearse import format_summary as rehearse_summary
from rait.report import ReportConfig, run_report
from rait.representations import CrssConfig, format_crss, run_crss
from rait.results import (
    by_against,
    find_metrics,
    load_results,
    paired_comparisons,
    paired_table,
    results_json,
    results_table,
)
from rait.threads import share_cores
from rait.train import TrainConfig, run_train
from rait.train import format_summary as train_summary
from rait.uncertainty import BootstrapConfig

#: the commands that compute with torch: each takes its share of the machine's cores
#: (:mod:`rait.threads`) once its config is loaded
USES_CORES = {"probe", "train", "rehearse", "influence", "eval", "crss", "run", "demo"}


@dataclass(frozen=True)
class Command:
    """A subcommand: its config dataclass, the keys it offers as flags, where it writes
    (``out``: ``"dir"``, ``"file"``, an optional ``"file?"``, or None) and what it does with the
    loaded config: ``run(cfg, args)`` returns the text to print or an exit status (anything
    else: status 0)."""

    name: str
    help: str
    config: type
    run: Callable[[Any, argparse.Namespace], Any]
    flags: str = ""
    out: str | None = "dir"
    out_help: str = "output folder"
    shard: bool = False
    extra: Callable[[argparse.ArgumentParser], None] | None = None
    config_file: bool = True


# --------------------------------------------------------------------------- what each does
def _shard(args: argparse.Namespace) -> Shard | None:
    text = getattr(args, "shard", None)
    return None if text is None else Shard.parse(text)


def _sharded(run: Callable, command: str, show: Callable[[dict, Any], str]):
    """A probe or an evaluation, whole or one ``--shard K/N`` of it."""

    def do(cfg: Any, args: argparse.Namespace) -> str:
        summary = run(cfg, args.out, shard=_shard(args))
        if "shard" not in summary:
            return show(summary, args)
        return (
            f"shard {summary['shard']}: {summary['n']} rows in {summary['file']}; when every "
            f"shard is done, run the same `rait {command}` without --shard to merge them"
        )

    return do


def _hub_aware(source: DataSource) -> DataSource:
    """``hub`` as the path of a benchmark format: its hub copy (no local path)."""
    if source.path == "hub" and source.format in HUB_FORMATS:
        source.path = None
    return source


def do_inspect(cfg: DataSource, args: argparse.Namespace) -> int:
    result = scan_source(_hub_aware(cfg))
    print(format_inspection(result, args.examples))
    return 1 if result.problems else 0


def do_convert(cfg: DataSource, args: argparse.Namespace) -> str:
    source = _hub_aware(cfg)
    check_output_file(args.out, inputs=[source.path])
    records = load_source(source)
    count = write_records(args.out, records)
    return f"wrote {count} records ({records[0].task}) to {args.out}"


def do_crss(cfg: CrssConfig, args: argparse.Namespace) -> str:
    result = run_crss(cfg)
    if args.out:
        write_json(args.out, result)
    return format_crss(result) + (f"\nwritten to {args.out}" if args.out else "")


def do_compare(cfg: CompareConfig, args: argparse.Namespace) -> str:
    paths = run_compare(cfg)
    table = Path(paths["markdown"]).read_text(encoding="utf-8").split("\n## ")[0].rstrip()
    return f"{table}\n\ncompare: {paths['html']} (and compare.md, compare.json)"


def do_report(cfg: ReportConfig, args: argparse.Namespace) -> str:
    paths = run_report(cfg)
    return f"report: {paths['html']}\nmarkdown: {paths['markdown']}"


do_probe = _sharded(run_probe, "probe", lambda s, args: probe_summary(s, args.out))
do_eval = _sharded(
    run_eval,
    "eval",
    lambda s, args: (
        f"{format_metrics(s)}\npredictions in {args.out}/{PREDICTIONS_FILE}, "
        f"metrics in {args.out}/{METRICS_FILE}"
    ),
)


def do_build(cfg: BuildConfig, args: argparse.Namespace) -> str:
    with warnings.catch_warnings():  # said once, below and in the summary
        warnings.simplefilter("ignore", VacuousSelectionWarning)
        summary = run_build(cfg, args.out)
    for text in summary["vacuous"]:
        print(f"rait: warning: {text}", file=sys.stderr)
    text = format_summary(summary)
    return f"{text}\nwritten to {args.out} (summary: {build_summary_path(args.out)})"


def cmd_table(args: argparse.Namespace) -> int:
    if not args.paths and not args.reference:
        raise ConfigError("table: give metrics files or folders, or --reference NAME")
    found = find_metrics(args.paths) if args.paths else []
    json_path = os.path.splitext(args.out)[0] + ".json" if args.out else None
    for out in (args.out, json_path) if args.out else ():
        check_output_file(out, inputs=found)
    bootstrap = BootstrapConfig(args.confidence, args.resamples, args.bootstrap_seed)
    bootstrap.validate()
    results = load_results(found)
    comparisons = [c for a in args.against for c in paired_comparisons(results, a, bootstrap)]
    references = rows_beside(args.reference, results)
    parts = [results_table(results + references, args.title)]
    parts += [paired_table(group) for group in by_against(comparisons).values()]
    text = "\n\n".join(p for p in parts if p)
    print(text)
    if args.out:
        with atomic_open(args.out) as handle:
            handle.write(text + "\n")
        write_json(json_path, results_json(results + references, comparisons))
        print(f"\nwritten to {args.out} and {json_path}")
    return 0


# --------------------------------------------------------------------------- the commands
def _examples(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--examples", type=int, default=3, help="how many examples to show")


def _demo_extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--n-questions", dest="n_questions", type=int, help="questions drawn from each test set"
    )
    parser.add_argument(
        "--all",
        dest="all_methods",
        action="store_true",
        help="every method and ablation (the demo runs the papers' headline methods), in the "
        "same run directory: stages whose inputs did not change are reused (the probe adds "
        "R-Tuning's queries, so it and what follows from it run again)",
    )


def _run_extra(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--check",
        action="store_true",
        help="check the config, read and count local data, warn about vacuous draws; run "
        "and write nothing",
    )


# fmt: off
SOURCE = "data.path=--data data.format=--format data.split=--split"
TRAIN = "finetuning epochs learning_rate batch_size effective_batch_size lora_r report_to"
TRAIN_SECTION = " ".join(f"train.{key}=--{key.replace('_', '-')}" for key in TRAIN.split())
DATA_SOURCE = "<path> format split subset field_map=--map sample seed"

COMMANDS = [
    Command("probe", "stage 1: correctness µ and certainty σ of every question "
            "(docs/methods.md §2)", ProbeConfig, do_probe,
            f"model.name=--model {SOURCE} data.sample=--sample shots.path=--shots "
            "shots.format=--shots-format shots.split=--shots-split n_samples batch_size backend "
            "seed rtuning_u", out_help="output folder (knowledge.jsonl, summary.json)",
            shard=True),
    Command("build", "stage 2: a refusal-aware SFT set from a probe (docs/methods.md §3, §4)",
            BuildConfig, do_build,
            f"method {SOURCE} knowledge knowledge_after influence temperature n_van n_idk tau_mu "
            "seed strict_sizes", out="file", out_help="output JSONL (summary written beside it)"),
    Command("train", "stage 3: SFT with TRL + PEFT, per-sample weights (docs/methods.md §6)",
            TrainConfig, lambda cfg, args: train_summary(run_train(cfg, args.out)),
            f"data model.name=--model seed use_weights=--no-weights {TRAIN}",
            out_help="output folder (adapter/ or model/)"),
    Command("rehearse", "CRaFT rehearsal: train on known answers, re-probe, knowledge flow",
            RehearseConfig, lambda cfg, args: rehearse_summary(run_rehearse(cfg, args.out)),
            "probe size min_mu min_sigma seed backend batch_size=--probe-batch-size "
            + TRAIN_SECTION,
            out_help="output folder (knowledge_after.jsonl)"),
    Command("influence", "GRAIT: per-sample LoRA gradient influence I_ref, I_sta "
            "(docs/methods.md §5)", InfluenceConfig,
            lambda cfg, args: influence_summary(run_influence(cfg, args.out)),
            "probe warmup warmup_size tau_mu=--tau-mu/--tau-c projection projection_dim factor_dim "
            "normalize gradient ik_target batch_size=--gradient-batch-size chunk_memory_gb seed "
            f"device {TRAIN_SECTION}",
            out_help="output folder (scores/influence.jsonl)"),
    Command("eval", "stage 4: answer a test set 0-shot, classify, score (docs/methods.md §7)",
            EvalConfig, do_eval,
            f"model.name=--model model.adapter=--adapter {SOURCE} data.sample=--sample method "
            "prompt test_set role match refusal_phrases=--refusal-phrase confidence baseline "
            "batch_size max_new_tokens backend",
            out_help="output folder (predictions.jsonl, metrics.json)", shard=True),
    Command("crss", "conflict rate of similar vanilla/IdK samples (CRaFT section 3.2)",
            CrssConfig, do_crss,
            f"{SOURCE} knowledge built model.name=--model model.adapter=--adapter tau_mu tau_sim",
            out="file?", out_help="write the result as JSON here"),
    Command("run", "the whole pipeline from one YAML config: probe, rehearse, influence, build, "
            "train, eval, results (cached and resumable)", PipelineConfig,
            lambda cfg, args: check_pipeline(cfg) if args.check else run_pipeline(cfg),
            "run_dir methods+", out=None, extra=_run_extra),
    Command("report", "a run's results as a self-contained HTML page and Markdown, with figures",
            ReportConfig, do_report,
            "<run_dir> out n_examples=--examples tau_sim tsne_points against reference",
            out=None),
    Command("compare", "several runs side by side: one table and one Pc–Pw plane (HTML, "
            "Markdown, JSON)", CompareConfig, do_compare,
            "<runs+> names+ out title against reference", out=None),
    Command("demo", "the main job: every method on world facts with the offline default "
            "(see README)", PipelineConfig, lambda cfg, args: run_demo(cfg),
            "run_dir model.name=--model methods+",
            out=None, extra=_demo_extra),
]
DATA_COMMANDS = [
    Command("inspect", "counts, task type, examples and every validation problem of a dataset",
            DataSource, do_inspect, DATA_SOURCE, out=None, extra=_examples, config_file=False),
    Command("convert", "load any supported source into canonical JSONL", DataSource, do_convert,
            DATA_SOURCE, out="file", out_help="output JSONL file", config_file=False),
    Command("world-facts", "build the offline real-facts QA set (train/dev/id_test/ood_test)",
            WorldFactsConfig,
            lambda cfg, args: format_manifest(cfg, write_world_facts(cfg, args.out), args.out),
            "task seed n_cities"),
]
# fmt: on


# --------------------------------------------------------------------------- the parser
def _add_command(sub: Any, command: Command) -> None:
    parser = sub.add_parser(command.name, help=command.help)
    if command.name == "run":
        parser.add_argument("config_path", metavar="config", help="a pipeline YAML (see configs/)")
    if command.out in ("dir", "file"):
        parser.add_argument("--out", required=True, help=command.out_help)
    elif command.out == "file?":
        parser.add_argument("--out", help=command.out_help)
    specs = add_flags(parser, command.config, command.flags.split())
    if command.extra:
        command.extra(parser)
    if command.shard:
        parser.add_argument(
            "--shard",
            metavar="K/N",
            help="answer only shard K of N (0-based) into OUT.shards/, e.g. one process per "
            "GPU; the same command without --shard merges the finished shards",
        )
    if command.config_file:
        if command.name != "run":
            what = (
                "a pipeline YAML instead of configs/demo.yaml"
                if command.name == "demo"
                else (f"YAML file with {command.config.__name__} fields")
            )
            parser.add_argument("--config", help=what)
        parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    parser.set_defaults(command=command, specs=specs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rait",
        description='Refusal-Aware Instruction Tuning: teach a model to say "I don\'t know".',
    )
    parser.add_argument("--version", action="version", version=f"rait {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the libraries' own warnings, logs and progress bars (transformers, the hub)",
    )
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)
    data = sub.add_parser("data", help="load, validate, convert and build QA datasets")
    data_sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    for command in DATA_COMMANDS:
        _add_command(data_sub, command)
    for command in COMMANDS:
        _add_command(sub, command)
    table = sub.add_parser(
        "table", help="the results table (Pc, Pw, THS per test set) from eval folders"
    )
    table.add_argument("paths", nargs="*", help="metrics.json files or folders holding them")
    table.add_argument("--out", help="write the Markdown table here (and the JSON beside it)")
    table.add_argument("--title", help="a title line above the table")
    table.add_argument(
        "--against",
        action="append",
        default=[],
        metavar="METHOD",
        help="also every row against METHOD on the same questions: ΔTHS, its paired-bootstrap "
        "interval and p-value (repeatable)",
    )
    table.add_argument(
        "--reference",
        action="append",
        default=[],
        metavar="NAME",
        help=f"the papers' printed rows beside yours: {', '.join(reference_names())} "
        "(repeatable; alone, the reference table itself)",
    )
    defaults = BootstrapConfig()
    table.add_argument(
        "--confidence", type=float, default=defaults.confidence, help="of the paired intervals"
    )
    table.add_argument(
        "--resamples", type=int, default=defaults.n_resamples, help="bootstrap redraws B"
    )
    table.add_argument(
        "--bootstrap-seed", type=int, default=defaults.seed, help="seed of the redraws"
    )
    table.set_defaults(command=None, run=cmd_table)
    return parser


def load_command_config(args: argparse.Namespace) -> Any:
    """The command's config: its file (``--config``), then ``--set``, then the given flags."""
    command: Command = args.command
    overrides = list(getattr(args, "set", None) or [])
    overrides += flag_overrides(args, command.config, args.specs)
    if command.name == "run":
        return load_pipeline_config(args.config_path, overrides)
    if command.name == "demo":
        return load_demo_config(args.config, overrides, args.n_questions, args.all_methods)
    path = getattr(args, "config", None) if command.config_file else None
    return load_config(command.config, path, overrides)


def _check_output(args: argparse.Namespace) -> None:
    """``--out`` checked before any work: a folder where a file is wanted (or the reverse), an
    unwritable or read-only place, is one clear error now, not a traceback after the work.
    (``report`` and ``compare`` take their output folder as a config field, ``out``.)"""
    command = args.command
    kind = command.out if command else "file"
    out = getattr(args, "out", None)
    if out is None and getattr(args, "cfg__out", None) is not None:
        kind, out = "dir", args.cfg__out
    if out is None or kind is None:
        return
    (check_output_dir if kind == "dir" else check_output_file)(out)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command is None:
        return args.run(args)
    cfg = load_command_config(args)
    if args.command.out is None and isinstance(getattr(cfg, "out", None), str):
        check_output_dir(cfg.out)  # report / compare: an output folder of their config
    if args.command.name in USES_CORES and not getattr(args, "check", False):
        share_cores()  # after the config's checks: a bad setting stays one error line
    result = args.command.run(cfg, args)
    if isinstance(result, str):  # what the command has to say
        if result:
            print(result)
        return 0
    return result if isinstance(result, int) else 0  # a status, or nothing to say


def _other_rank() -> bool:
    """A launched process other than rank 0 (``RANK`` is set by torchrun and accelerate)."""
    return os.environ.get("RANK", "0") not in ("", "0")


def _silence_stdout() -> None:
    """After a closed pipe (``rait ... | head``), send the rest of the output nowhere, so the
    interpreter's final flush raises nothing."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
                return _dispatch(args)
        return _dispatch(args)
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
        print(
            f"rait: error: {describe_os_error(exc)} (finished work is kept; rerun to resume "
            "once the cause is fixed)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
