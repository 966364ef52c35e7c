"""The benchmark datasets of the papers, from the Hugging Face hub or from local copies.

Each dataset has one row parser, used for both the hub rows (``datasets.load_dataset``) and
local files in the same format, so the hub code path is exercised offline by the tests:

==========  ==========================================  ===========================================
format      hub dataset (config, splits)                 local copies understood
==========  ==========================================  ===========================================
mmlu        ``cais/mmlu`` ("all" or a subject;           MMLU-style CSV files or a folder of them
            test / validation / dev)                     (``id,lang,question,A,B,C,D,target`` or
                                                         the original headerless
                                                         ``question,A,B,C,D,answer``), hub rows as
                                                         JSONL/Parquet
arc         ``allenai/ai2_arc`` ("ARC-Challenge";        the official ARC JSONL
            train / validation / test)                   (``question.stem``, ``question.choices``),
                                                         hub rows as JSONL/Parquet
triviaqa    ``mandarjoshi/trivia_qa`` ("rc.nocontext"    hub rows as JSONL/Parquet, the official
            or "unfiltered.nocontext";                   ``{"Data": [...]}`` JSON
            train / validation)
nq_open     ``google-research-datasets/nq_open``         the official JSONL / hub rows
            ("nq_open"; train / validation)
==========  ==========================================  ===========================================
"""

from __future__ import annotations

import csv
import io
import logging
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rait.cliargs import option
from rait.data.files import (
    FILE_FORMATS,
    ScanResult,
    decode_utf8,
    iter_raw_rows,
    scan_rows,
)
from rait.data.records import LETTERS, QARecord, duplicate_options
from rait.data.world_facts import world_facts_split_path
from rait.errors import DataError, Location

HUB_FORMATS = ("mmlu", "arc", "triviaqa", "nq_open")
ALL_FORMATS = ("auto", *FILE_FORMATS, *HUB_FORMATS, "world_facts")


@dataclass
class DataSource:
    """Where a QA set comes from.

    ``format``: ``auto`` (by file extension), a file format (jsonl, json, csv, tsv, parquet),
    a benchmark (mmlu, arc, triviaqa, nq_open) or ``world_facts`` (a folder built by
    ``rait data world-facts``). For benchmarks, ``path=None`` loads from the hub (needs
    network); a path loads a local copy. ``subset`` is the hub config (MMLU subject or "all",
    "ARC-Challenge", "rc.nocontext", ...). ``sample`` draws that many records with ``seed``
    (file order is kept). ``field_map`` renames foreign columns (see :mod:`rait.data.files`).
    """

    format: str = option(
        "auto",
        help="file format, or a benchmark parser (auto: by file extension)",
        choices=ALL_FORMATS,
    )
    path: str | None = option(None, help="a dataset file or folder")
    split: str | None = option(None, help="split label (world_facts / hub split for benchmarks)")
    subset: str | None = option(None, help="hub config, e.g. an MMLU subject or 'rc.nocontext'")
    field_map: dict[str, str] = option(
        default_factory=dict,
        help="read a canonical field from a foreign column, e.g. question=prompt (repeatable); "
        "choices=A,B,C,D gathers columns; dots follow nested objects",
        metavar="CANONICAL=COLUMN",
    )
    sample: int | None = option(None, help="draw this many records (seeded)")
    seed: int = option(0, help="seed of the sample")

    def describe(self) -> str:
        where = self.path or "hub"
        extra = "".join(
            f" {k}={v}" for k, v in (("subset", self.subset), ("split", self.split)) if v
        )
        return f"{self.format}:{where}{extra}"


# --------------------------------------------------------------------------- row parsers
RowParser = Callable[[Mapping[str, Any], int, str | None], dict[str, Any]]


def _subject_text(subject: str | None) -> str | None:
    return subject.replace("_", " ").strip() if subject else None


def parse_mmlu_row(row: Mapping[str, Any], index: int, split: str | None) -> dict[str, Any]:
    """A ``cais/mmlu`` row (question, subject, choices, answer) or an MMLU-style CSV row
    (id, question, A-D, target)."""
    if "choices" in row:
        subject = row.get("subject") or None
        raw_id = row.get("id")
        if raw_id is None:
            raw_id = f"{subject or 'mmlu'}/{split or 'unknown'}/{index}"
        return {
            "id": raw_id,
            "question": row.get("question"),
            "choices": row.get("choices"),
            "gold": row.get("answer"),
            "subject": _subject_text(subject),
            "domain": subject,
            "split": split,
        }
    letters = [c for c in LETTERS if c in row]
    gold = row.get("target", row.get("answer"))
    raw_id = row.get("id")
    subject = row.get("subject")
    if subject is None and isinstance(raw_id, str) and "/" in raw_id:
        subject = raw_id.split("/", 1)[0]
    if raw_id is None:
        raw_id = f"{subject or 'mmlu'}/{split or 'unknown'}/{index}"
    return {
        "id": raw_id,
        "question": row.get("question"),
        "choices": [row[c] for c in letters] if letters else None,
        "gold": gold,
        "subject": _subject_text(subject),
        "domain": subject,
        "split": split,
    }


def parse_arc_row(row: Mapping[str, Any], index: int, split: str | None) -> dict[str, Any]:
    """An ``allenai/ai2_arc`` row (question str, choices {text, label}, answerKey) or an
    official ARC JSONL row (question {stem, choices [{text, label}]}, answerKey)."""
    question = row.get("question")
    choices_raw: Any = row.get("choices")
    if isinstance(question, Mapping):  # official format
        choices_raw = question.get("choices")
        question = question.get("stem")
    texts: list[Any] | None = None
    labels: list[Any] = []
    if isinstance(choices_raw, Mapping):
        texts = list(choices_raw.get("text") or [])
        labels = list(choices_raw.get("label") or [])
    elif isinstance(choices_raw, list):
        texts = [c.get("text") if isinstance(c, Mapping) else c for c in choices_raw]
        labels = [c.get("label") if isinstance(c, Mapping) else None for c in choices_raw]
    key = row.get("answerKey")
    gold: Any = key
    if key is not None and labels and str(key) in [str(label) for label in labels]:
        gold = [str(label) for label in labels].index(str(key))
    elif key is not None and labels:
        gold = f"answerKey {key!r} is not one of the labels {labels}"
    return {
        "id": row.get("id", f"arc/{split or 'unknown'}/{index}"),
        "question": question,
        "choices": texts,
        "gold": gold,
        "subject": "science",
        "domain": "arc_challenge",
        "split": split,
    }


def parse_triviaqa_row(row: Mapping[str, Any], index: int, split: str | None) -> dict[str, Any]:
    """A ``mandarjoshi/trivia_qa`` row (question, question_id, answer {value, aliases}) or an
    official TriviaQA JSON entry (Question, QuestionId, Answer {Value, Aliases})."""
    official = "Question" in row
    answer = row.get("Answer" if official else "answer")
    if not isinstance(answer, Mapping):
        answer = {}
    value = answer.get("Value" if official else "value")
    aliases = answer.get("Aliases" if official else "aliases")
    aliases = list(aliases) if isinstance(aliases, (list, tuple)) else []
    qid = row.get("QuestionId" if official else "question_id")
    question = row.get("Question" if official else "question")
    answers: list[Any] = []
    if isinstance(value, str) and value.strip() and value != "<unk>":
        answers.append(value)
    answers.extend(a for a in aliases if a not in answers)
    return {
        "id": qid if qid is not None else f"triviaqa/{split or 'unknown'}/{index}",
        "question": question,
        "answers": answers,
        "domain": "triviaqa",
        "split": split,
    }


def parse_nq_open_row(row: Mapping[str, Any], index: int, split: str | None) -> dict[str, Any]:
    """A ``google-research-datasets/nq_open`` row (question, answer list)."""
    return {
        "id": row.get("id", f"nq_open/{split or 'unknown'}/{index}"),
        "question": row.get("question"),
        "answers": row.get("answer", row.get("answers")),
        "domain": "nq_open",
        "split": split,
    }


@dataclass(frozen=True)
class Benchmark:
    parser: RowParser
    hub_id: str
    default_subset: str | None
    split_names: Mapping[str, str]  # hub split name -> canonical split label


BENCHMARKS: dict[str, Benchmark] = {
    "mmlu": Benchmark(parse_mmlu_row, "cais/mmlu", "all", {"validation": "val"}),
    "arc": Benchmark(parse_arc_row, "allenai/ai2_arc", "ARC-Challenge", {"validation": "dev"}),
    "triviaqa": Benchmark(
        parse_triviaqa_row, "mandarjoshi/trivia_qa", "rc.nocontext", {"validation": "dev"}
    ),
    "nq_open": Benchmark(
        parse_nq_open_row, "google-research-datasets/nq_open", "nq_open", {"validation": "dev"}
    ),
}


# --------------------------------------------------------------------------- row sources
def _iter_hub_rows(bench: Benchmark, subset: str | None, split: str) -> Iterator[Any]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise DataError(f"the 'datasets' package is needed to load {bench.hub_id}: {exc}") from None
    try:
        dataset = datasets.load_dataset(bench.hub_id, subset or bench.default_subset, split=split)
    except Exception as exc:  # hub/network/cache errors come in many types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot load hub dataset {bench.hub_id!r} (config "
            f"{subset or bench.default_subset!r}, split {split!r}): {reason}. Without network, "
            "download it elsewhere and pass the local copy as `path`",
            Location(bench.hub_id),
        ) from None
    yield from dataset


MMLU_SPLIT_LABELS = ("dev", "val", "test", "auxiliary_train")


def _split_files(files: list[Path], split: str | None) -> list[Path]:
    """In a folder holding several splits (``dev/``, ``val/``, ``*_test.csv``), keep the files of
    ``split``; a folder of one split (or no split asked) is read whole."""
    if not split:
        return files
    chosen = [f for f in files if f.stem.endswith(f"_{split}") or split in f.parent.parts[-1:]]
    return chosen or files


def _iter_mmlu_csv(path: Path, split: str | None) -> Iterator[tuple[Location, Any]]:
    """MMLU CSV with the ``id,lang,question,A,B,C,D,target`` header, or headerless
    ``question,A,B,C,D,answer`` (subject from the file name ``{subject}_{split}.csv``)."""
    text = decode_utf8(path, path.read_bytes())
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return
    header = [c.strip().lower() for c in rows[0]]
    stem = path.stem
    suffixes = [f"_{name}" for name in (split, *MMLU_SPLIT_LABELS) if name]
    subject = next(
        (stem[: -len(end)] for end in suffixes if stem.endswith(end) and len(stem) > len(end)),
        stem,
    )
    if "question" in header:
        names = [c.strip() for c in rows[0]]
        body, first_line = rows[1:], 2
    else:
        names = ["question", "A", "B", "C", "D", "answer"]
        body, first_line = rows, 1
    for offset, cells in enumerate(body):
        where = Location(str(path), first_line + offset)
        if len(cells) != len(names):
            raise DataError(
                f"row has {len(cells)} columns, expected {len(names)} ({','.join(names)})", where
            )
        row: dict[str, Any] = dict(zip(names, cells))
        row.setdefault("subject", subject)
        yield where, row


def _local_rows(fmt: str, path: Path, split: str | None) -> Iterator[tuple[Location, Any]]:
    if not path.exists():
        raise DataError("file or folder not found", Location(str(path)))
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in (".csv", ".jsonl", ".json", ".parquet", ".pq", ".ndjson")
        )
        if not files:
            raise DataError(
                f"no dataset files in this folder for format {fmt!r}", Location(str(path))
            )
        files = _split_files(files, split)
    else:
        files = [path]
    for file in files:
        if fmt == "mmlu" and file.suffix.lower() == ".csv":
            yield from _iter_mmlu_csv(file, split)
        else:
            yield from iter_raw_rows(file)


def _parsed(
    rows: Iterator[tuple[Location, Any]], parser: RowParser, split: str | None
) -> Iterator[tuple[Location, Any]]:
    """Apply a benchmark's row parser; a row of the wrong shape becomes a located problem."""
    counters: dict[str, int] = {}
    for where, row in rows:
        if not isinstance(row, Mapping):
            yield where, row
            continue
        # running index per file (so fallback ids stay stable when files are added)
        key = where.source or ""
        index = counters.get(key, 0)
        counters[key] = index + 1
        try:
            parsed = parser(row, index, split)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise DataError(
                f"row does not have the expected shape for this format ({type(exc).__name__}: "
                f"{exc}); is --format right?",
                where,
            ) from None
        yield where, parsed


def scan_source(source: DataSource) -> ScanResult:
    """Read any source and validate every record (file-level problems still raise)."""
    fmt = source.format
    if fmt not in ALL_FORMATS:
        raise DataError(f"unknown data format {fmt!r}; known: {', '.join(ALL_FORMATS)}")
    if fmt == "world_facts":
        if not source.path:
            raise DataError(
                "format 'world_facts' needs `path`: the folder built by `rait data world-facts`"
            )
        path = world_facts_split_path(source.path, source.split)
        return scan_rows(iter_raw_rows(path, "jsonl"), str(path), source.field_map)
    if fmt in BENCHMARKS:
        bench = BENCHMARKS[fmt]
        label = bench.split_names.get(source.split or "", source.split)
        if source.path:
            rows = _local_rows(fmt, Path(source.path), label)
            return scan_rows(_parsed(rows, bench.parser, label), source.path, source.field_map)
        if not source.split:
            raise DataError(f"loading {bench.hub_id} from the hub needs a `split`")
        hub_rows = (
            (Location(bench.hub_id, record=f"row {i}"), row)
            for i, row in enumerate(_iter_hub_rows(bench, source.subset, source.split))
        )
        return scan_rows(_parsed(hub_rows, bench.parser, label), bench.hub_id, source.field_map)
    if not source.path:
        raise DataError(f"format {fmt!r} needs a `path`")
    return scan_rows(iter_raw_rows(source.path, fmt), source.path, source.field_map)


def load_source(source: DataSource) -> list[QARecord]:
    """Load, validate and (optionally) sample a QA set; the first problem raises."""
    result = scan_source(source)
    result.raise_first()
    records = result.records
    twins = [(r.id, why) for r in records if (why := duplicate_options(r)) is not None]
    if twins:
        logging.getLogger("rait.data").warning(
            "%s: %d MCQA record(s) have duplicate options, kept (e.g. record %r: %s); choosing "
            "the twin of the gold is scored wrong",
            result.source,
            len(twins),
            *twins[0],
        )
    if source.sample is not None:
        if source.sample <= 0:
            raise DataError(f"sample must be positive, got {source.sample}")
        if source.sample < len(records):
            keep = sorted(random.Random(source.seed).sample(range(len(records)), source.sample))
            records = [records[i] for i in keep]
    return records
