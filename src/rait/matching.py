"""Answer matching shared by the probe and the evaluation (METHODS.md sections 2 and 7).

Correctness of an open answer has two modes:

* ``contains`` (the CRaFT/GRAIT evaluation code; the default): correct if any alias,
  lower-cased, is a substring of the lower-cased answer;
* ``em`` (official TriviaQA): both sides normalised by :func:`normalize_answer`, then equality
  with any alias.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from typing import Literal

from rait.data.records import LETTERS

MatchMode = Literal["contains", "em"]
MATCH_MODES = ("contains", "em")

_PUNCTUATION = set(string.punctuation) | {"‘", "’", "´", "`"}
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "´": "'", "`": "'", "ʼ": "'"})


def normalize_answer(text: str) -> str:
    """The official TriviaQA normalisation: lower-case, ``_`` -> space, punctuation (including
    ‘ ’ ´ `) -> space, drop the articles a/an/the, collapse white space."""
    text = text.replace("_", " ").lower()
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def first_line(text: str) -> str:
    """The answer of a sampled continuation: its first non-empty line, stripped."""
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def is_correct_open(answer: str, aliases: Sequence[str], mode: MatchMode = "contains") -> bool:
    """Whether an open answer matches any alias under ``mode``."""
    if mode == "contains":
        lowered = answer.lower()
        return any(alias.lower() in lowered for alias in aliases if alias)
    if mode == "em":
        normalized = normalize_answer(answer)
        return any(normalize_answer(alias) == normalized for alias in aliases)
    raise ValueError(f"unknown match mode {mode!r}; known: {', '.join(MATCH_MODES)}")


def fold_apostrophes(text: str) -> str:
    """Curly and other apostrophes folded to ``'`` (so "I don’t know" is a refusal)."""
    return text.translate(_APOSTROPHES)


def is_refusal(answer: str, phrases: Iterable[str]) -> bool:
    """METHODS.md section 7 step 1: the answer contains a refusal phrase (case-insensitive,
    curly apostrophes folded)."""
    folded = fold_apostrophes(answer).lower()
    return any(fold_apostrophes(p).lower() in folded for p in phrases if p)


def extract_option_letter(answer: str, n_options: int) -> str | None:
    """The first standalone option letter (A.. for ``n_options``) in ``answer``, or None.

    Standalone: not part of a word, so the "A" of "Answer" or of "America" is not a letter,
    while "B", "(B)", "B." and "B) Paris" are.
    """
    letters = LETTERS[:n_options]
    match = re.search(rf"(?<![^\W\d_])([{letters}])(?![^\W\d_])", answer)
    return match.group(1) if match else None
