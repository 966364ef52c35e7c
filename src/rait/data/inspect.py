"""``rait data inspect``: counts, task type, a few examples and every validation problem."""

from __future__ import annotations

from collections import Counter

from rait.data.files import ScanResult
from rait.data.records import QARecord, duplicate_options


def _counts(label: str, counter: Counter, top: int = 12) -> list[str]:
    if not counter:
        return []
    items = counter.most_common(top)
    more = len(counter) - len(items)
    body = ", ".join(f"{k} {v}" for k, v in items) + (f", ... ({more} more)" if more > 0 else "")
    return [f"{label}: {body}"]


def _example(record: QARecord) -> list[str]:
    lines = [f"  [{record.id}] {record.question}"]
    if record.choices is not None:
        for i, (letter, text) in enumerate(zip(record.option_letters, record.choices)):
            mark = "*" if i == record.gold else " "
            lines.append(f"     {mark}{letter}. {text}")
    else:
        lines.append(f"     answers: {' | '.join(record.answers or ())}")
    return lines


def format_inspection(result: ScanResult, n_examples: int = 3) -> str:
    """A human-readable report of a scanned dataset."""
    records = result.records
    lines = [
        f"source: {result.source}",
        f"rows: {result.rows}   valid records: {len(records)}   problems: {len(result.problems)}",
    ]
    tasks = Counter(r.task for r in records)
    if tasks:
        kinds = {"mcqa": "multiple choice (MCQA)", "oeqa": "open-ended (OEQA)"}
        lines.append("task: " + ", ".join(f"{kinds[t]} {n}" for t, n in tasks.items()))
    lines += _counts("splits", Counter(r.split for r in records if r.split))
    lines += _counts("domains", Counter(r.domain for r in records if r.domain))
    lines += _counts("subjects", Counter(r.subject for r in records if r.subject))
    mc = [r for r in records if r.task == "mcqa"]
    if mc:
        lines += _counts("options per question", Counter(len(r.choices or ()) for r in mc))
        lines += _counts("gold letters", Counter(r.gold_letter for r in mc))
    oe = [r for r in records if r.task == "oeqa"]
    if oe:
        mean = sum(len(r.answers or ()) for r in oe) / len(oe)
        lines.append(
            f"aliases per question: mean {mean:.2f}, max {max(len(r.answers or ()) for r in oe)}"
        )
    if records and n_examples > 0:
        lines.append("examples:")
        step = max(len(records) // n_examples, 1)
        for record in records[::step][:n_examples]:
            lines += _example(record)
    twins = [(r, why) for r in mc if (why := duplicate_options(r)) is not None]
    if twins:
        lines.append(
            f"notes: {len(twins)} MCQA record(s) with duplicate options (kept; choosing the "
            "twin of the gold is scored wrong):"
        )
        lines += [f"  record {r.id!r}: {why}" for r, why in twins]
    if result.problems:
        lines.append("problems:")
        lines += [f"  {p}" for p in result.problems]
    else:
        lines.append("no problems found")
    return "\n".join(lines)
