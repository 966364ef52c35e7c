"""The canonical QA record (docs/methods.md §1) and its validation.

A QA item has a unique ``id``, a ``question`` and either

* MCQA: ``choices`` (a list; letters A, B, C, ... by position) and ``gold`` (an index), or
* OEQA: ``answers`` (a non-empty list of accepted aliases; the first is the canonical answer).

Optional: ``subject`` (e.g. the MMLU subject, used in the MCQA prompt), ``domain`` (e.g. a
relation name, used for out-of-domain splits), ``split`` and a free ``meta`` mapping.

Text fields (``id``, ``question``, every option and alias) must not be blank (whitespace or
invisible format characters only) and must not hold a NUL (an escaped ``\u0000`` in JSON,
say) nor a lone surrogate; other control characters are kept (real benchmarks have them).
Numbers given as an id, option or alias are read as text (``42`` -> ``"42"``, ``3.0`` ->
``"3"``); booleans, non-finite numbers (JSON ``NaN``) and nested values are refused. Two
equal options in an MCQA record are kept (real benchmarks have them) but reported by
:func:`duplicate_options`: ``rait data inspect`` lists them and loading warns once per set.

Validation collects *every* problem of a record (for ``rait data inspect``); loading raises the
first one as a :class:`~rait.errors.DataError` naming the file, the line and the field.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from rait.errors import DataError, Location

TaskType = Literal["mcqa", "oeqa"]
LETTERS = string.ascii_uppercase
CORE_FIELDS = ("id", "question", "choices", "gold", "answers", "subject", "domain", "split")


@dataclass(frozen=True)
class QARecord:
    """One question with its gold answer, in the project's canonical form."""

    id: str
    question: str
    choices: tuple[str, ...] | None = None
    gold: int | None = None
    answers: tuple[str, ...] | None = None
    subject: str | None = None
    domain: str | None = None
    split: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def task(self) -> TaskType:
        """``"mcqa"`` for multiple choice, ``"oeqa"`` for open-ended."""
        return "mcqa" if self.choices is not None else "oeqa"

    @property
    def gold_letter(self) -> str:
        """The gold option's letter (MCQA only)."""
        if self.gold is None:
            raise ValueError(f"record {self.id!r} is not multiple choice")
        return LETTERS[self.gold]

    @property
    def option_letters(self) -> tuple[str, ...]:
        """The letters of the options, A, B, C, ... by position (MCQA only)."""
        if self.choices is None:
            raise ValueError(f"record {self.id!r} is not multiple choice")
        return tuple(LETTERS[: len(self.choices)])

    @property
    def canonical_answer(self) -> str:
        """The answer a model is trained to give: the gold option letter (MCQA), or the
        first alias (OEQA)."""
        if self.choices is not None:
            return self.gold_letter
        assert self.answers is not None
        return self.answers[0]

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict; optional fields that are unset are left out."""
        out: dict[str, Any] = {"id": self.id, "question": self.question}
        if self.choices is not None:
            out["choices"] = list(self.choices)
            out["gold"] = self.gold
        else:
            out["answers"] = list(self.answers or ())
        for name in ("subject", "domain", "split"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: Location | None = None) -> QARecord:
        """Validate ``raw`` and build a record; raises the first problem as a DataError."""
        record, problems = parse_record(raw, where or Location())
        if problems:
            raise problems[0]
        assert record is not None
        return record


# whitespace plus the invisible format characters a text may be made of (ZWSP, ZWJ, BOM, ...)
_INVISIBLE = re.compile(r"[\s\u200b-\u200f\u2060\ufeff]*")
# NUL and lone surrogates: a NUL ends a string in C code and tokenizers, a lone surrogate cannot
# be written as UTF-8. Other control characters are text: real benchmarks hold them (MMLU's
# test split 82 texts with U+0080, U+0089 or U+009D, Windows-1252 quotes gone wrong; ARC's dev
# split a U+0002), and refusing them would refuse those benchmarks.
_BAD_CHAR = re.compile(r"[\x00\ud800-\udfff]")


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and _INVISIBLE.fullmatch(value) is not None)


def _bad_char(text: str) -> str | None:
    """Why ``text`` cannot be used (a NUL or a lone surrogate), or None."""
    match = _BAD_CHAR.search(text)
    if match is None:
        return None
    code = ord(match.group())
    kind = "a lone surrogate (invalid Unicode)" if code >= 0xD800 else "a NUL character"
    return f"contains {kind} U+{code:04X} at character {match.start() + 1}"


def _as_text(value: Any) -> str | None:
    """Strings as they are; ints/finite floats (e.g. numeric answers read from CSV) as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON NaN/Infinity: not an answer anyone wrote
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    return None


def duplicate_options(record: QARecord) -> str | None:
    """``"B repeats A 'Paris'"`` when two options of an MCQA record are the same text (after
    trimming spaces), else None. Such a question has two right letters but one gold: choosing
    the twin of the gold is scored wrong."""
    first_of: dict[str, int] = {}
    repeats = []
    for i, text in enumerate(record.choices or ()):
        key = text.strip()
        if key in first_of:
            repeats.append(f"{LETTERS[i]} repeats {LETTERS[first_of[key]]} {key!r}")
        else:
            first_of[key] = i
    return "; ".join(repeats) or None


def _not_text(value: Any) -> str:
    """Why ``value`` (for which :func:`_as_text` gave None) is not text."""
    if isinstance(value, bool):
        return f"{str(value).lower()} is a boolean"
    if isinstance(value, float):
        return f"{value} is not a finite number"
    if value is None:
        return "null is not text"
    return f"a {type(value).__name__} is not text"


def _as_list(value: Any) -> list[Any] | None:
    if isinstance(value, (list, tuple)):
        return list(value)
    # numpy arrays / pyarrow lists coming from parquet readers
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not isinstance(value, (str, bytes)):
        converted = tolist()
        if isinstance(converted, list):
            return converted
    return None


def parse_gold(value: Any, n_choices: int) -> int:
    """Turn a gold label into an option index.

    Accepts an int index, a letter ("B"), or a digit string ("2" is read as an index, as in
    ``cais/mmlu``); raises ValueError with a readable reason otherwise.
    """
    if isinstance(value, bool):
        raise ValueError(f"gold must be an option index or letter, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        index = value
    elif isinstance(value, str):
        text = value.strip()
        if len(text) == 1 and text.upper() in LETTERS:
            index = LETTERS.index(text.upper())
        elif text.lstrip("-").isdigit():
            index = int(text)
        else:
            raise ValueError(f"gold must be an option index or letter, got {value!r}")
    else:
        raise ValueError(f"gold must be an option index or letter, got {value!r}")
    if not 0 <= index < n_choices:
        letters = f"A-{LETTERS[n_choices - 1]}" if n_choices else "none"
        raise ValueError(
            f"gold {value!r} is out of range for {n_choices} choices "
            f"(indices 0-{n_choices - 1}, letters {letters})"
        )
    return index


def parse_record(
    raw: Mapping[str, Any], where: Location
) -> tuple[QARecord | None, list[DataError]]:
    """Validate one raw mapping. Returns the record (or None) and every problem found."""
    problems: list[DataError] = []

    def problem(field_name: str, message: str) -> None:
        problems.append(
            DataError(
                message,
                Location(where.source, where.line, where.record or record_id, field_name),
            )
        )

    if not isinstance(raw, Mapping):
        return None, [DataError(f"expected an object, got {type(raw).__name__}", where)]

    record_id: str | None = None
    raw_id = raw.get("id")
    if _is_blank(raw_id):
        problem("id", "missing or empty")
    else:
        text = _as_text(raw_id)
        if text is None:
            problem("id", f"must be a string or integer, got {type(raw_id).__name__}")
        elif (why := _bad_char(text)) is not None:
            problem("id", why)
        else:
            record_id = text.strip()

    question = raw.get("question")
    if _is_blank(question):
        problem("question", "missing or empty")
    elif not isinstance(question, str):
        problem("question", f"must be a string, got {type(question).__name__}")
    elif (why := _bad_char(question)) is not None:
        problem("question", why)

    has_choices = raw.get("choices") is not None
    has_answers = raw.get("answers") is not None
    choices: tuple[str, ...] | None = None
    gold: int | None = None
    answers: tuple[str, ...] | None = None
    if has_choices and has_answers:
        problem("choices", "a record has either 'choices' and 'gold' (MCQA) or 'answers' (OEQA)")
    elif not has_choices and not has_answers:
        problem("answers", "missing: give 'answers' (OEQA) or 'choices' and 'gold' (MCQA)")
    elif has_choices:
        listed = _as_list(raw["choices"])
        if listed is None:
            problem("choices", f"must be a list, got {type(raw['choices']).__name__}")
        elif len(listed) < 2:
            problem("choices", f"needs at least 2 options, got {len(listed)}")
        else:
            texts = [_as_text(c) for c in listed]
            bad = [i for i, t in enumerate(texts) if t is None or _is_blank(t)]
            if bad:
                letters = ", ".join(LETTERS[i] for i in bad if i < len(LETTERS))
                problem("choices", f"empty or non-text option(s): {letters}")
            elif len(listed) > len(LETTERS):
                problem("choices", f"at most {len(LETTERS)} options, got {len(listed)}")
            else:
                options = [t for t in texts if t is not None]
                for i, text in enumerate(options):
                    if (why := _bad_char(text)) is not None:
                        problem("choices", f"option {LETTERS[i]} {why}")
                        break
                else:
                    # duplicate options are kept (MMLU's test split has 9) but reported: see
                    # duplicate_options
                    choices = tuple(options)
        if "gold" not in raw or _is_blank(raw.get("gold")):
            problem("gold", "missing or empty (MCQA records need the gold option)")
        elif choices is not None:
            try:
                gold = parse_gold(raw["gold"], len(choices))
            except ValueError as exc:
                problem("gold", str(exc))
    else:
        value = raw["answers"]
        listed = [value] if isinstance(value, str) else _as_list(value)
        if listed is None:
            problem("answers", f"must be a list of strings, got {type(value).__name__}")
        else:
            texts = [_as_text(a) for a in listed]
            reasons = [
                f"alias {i + 1}: "
                + (_not_text(a) if t is None else "empty" if _is_blank(t) else str(_bad_char(t)))
                for i, (a, t) in enumerate(zip(listed, texts))
                if t is None or _is_blank(t) or _bad_char(t) is not None
            ]
            if not texts:
                problem("answers", "empty list: at least one accepted answer is needed")
            elif reasons:
                more = f"; and {len(reasons) - 3} more" if len(reasons) > 3 else ""
                problem(
                    "answers",
                    f"contains an empty or non-text answer ({'; '.join(reasons[:3])}{more}); "
                    "aliases must be non-empty strings (or numbers)",
                )
            else:
                # keep order (the first alias is canonical), drop exact duplicates
                answers = tuple(dict.fromkeys(t.strip() for t in texts if t is not None))

    optional: dict[str, str | None] = {}
    for name in ("subject", "domain", "split"):
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            optional[name] = None
        elif isinstance(value, str):
            optional[name] = value.strip()
        else:
            problem(name, f"must be a string, got {type(value).__name__}")

    meta_raw = raw.get("meta")
    meta: dict[str, Any] = {}
    if meta_raw is not None:
        if isinstance(meta_raw, Mapping):
            meta.update(meta_raw)
        else:
            problem("meta", f"must be an object, got {type(meta_raw).__name__}")
    for key, value in raw.items():
        if key not in CORE_FIELDS and key != "meta":
            meta[key] = value

    if problems:
        return None, problems
    assert record_id is not None and isinstance(question, str)
    record = QARecord(
        id=record_id,
        question=question.strip(),
        choices=choices,
        gold=gold,
        answers=answers,
        subject=optional.get("subject"),
        domain=optional.get("domain"),
        split=optional.get("split"),
        meta=meta,
    )
    return record, []


def dataset_problems(
    records: Sequence[QARecord], source: str, where_of: Sequence[Location]
) -> list[DataError]:
    """Every dataset-level problem: emptiness, duplicate ids, mixed task types."""
    if not records:
        return [DataError("the dataset is empty (no records)", Location(source))]
    problems: list[DataError] = []
    first_seen: dict[str, Location] = {}
    for record, where in zip(records, where_of):
        if record.id in first_seen:
            before = first_seen[record.id]
            at = f"line {before.line}" if before.line is not None else str(before)
            problems.append(
                DataError(
                    f"duplicate id {record.id!r} (first used at {at})",
                    Location(where.source, where.line, where.record, "id"),
                )
            )
        else:
            first_seen[record.id] = where
    tasks = {r.task for r in records}
    if len(tasks) > 1:
        first_mc = next(w for r, w in zip(records, where_of) if r.task == "mcqa")
        first_oe = next(w for r, w in zip(records, where_of) if r.task == "oeqa")
        problems.append(
            DataError(
                "mixes multiple-choice and open-ended records "
                f"(first MCQA at {first_mc}, first OEQA at {first_oe}); use one task per file",
                Location(source),
            )
        )
    return problems


def task_of(records: Iterable[QARecord]) -> TaskType:
    """The single task type of a (validated) dataset."""
    tasks = {r.task for r in records}
    if len(tasks) != 1:
        raise ValueError(f"expected one task type, found {sorted(tasks) or 'none'}")
    return next(iter(tasks))
