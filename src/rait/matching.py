"""Answer matching shared by the probe and the evaluation (docs/methods.md §2 and §7).

Correctness of an open answer has two modes:

* ``contains`` (the CRaFT/GRAIT evaluation code; the default): correct if any alias,
  lower-cased, is a substring of the lower-cased answer;
* ``em`` (official TriviaQA): both sides normalised by :func:`normalize_answer`, then equality
  with any alias.

A refusal (:func:`is_refusal`) is a refusal phrase anywhere in the answer, on word boundaries,
ignoring case, apostrophe style, white space and the phrase's leading/trailing punctuation.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from functools import lru_cache
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


# What a refusal phrase is stripped of at both ends: anything that is not a letter or a digit.
_EDGE_NON_ALNUM = re.compile(r"^[\W_]+|[\W_]+$")


def normalize_refusal_text(text: str) -> str:
    """A refusal phrase or an answer as :func:`is_refusal` compares them: apostrophes folded
    (:func:`fold_apostrophes`), case-folded, every run of white space made one space, and
    anything that is not a letter or a digit cut from both ends ("The answer is unknown." ->
    "the answer is unknown", "“I DON’T KNOW!”" -> "i don't know"). Punctuation inside is kept.
    A text with no letter or digit normalises to ""."""
    text = " ".join(fold_apostrophes(text).casefold().split())
    return _EDGE_NON_ALNUM.sub("", text)


@lru_cache(maxsize=1024)
def _refusal_pattern(phrase: str) -> re.Pattern[str] | None:
    """The normalised phrase as a regex that starts and ends on word boundaries (no letter or
    digit right before or after it); None for a phrase that normalises to ""."""
    core = normalize_refusal_text(phrase)
    if not core:
        return None
    return re.compile(rf"(?<![^\W_]){re.escape(core)}(?![^\W_])")


def is_refusal(answer: str, phrases: Iterable[str]) -> bool:
    """docs/methods.md §7 step 1: the answer contains a refusal phrase.

    *Contains* means anywhere in the answer, not only at its start ("Well, I don't know the
    answer." and "Paris? I am unsure" are refusals), with both sides normalised by
    :func:`normalize_refusal_text`: case-insensitive, curly and other apostrophes folded to
    ``'``, white space runs collapsed, and the phrase's leading and trailing punctuation
    ignored, so the phrase "It is not known." matches "It is not known", "it is not known, sadly"
    and "(It is NOT known!)". The match must start and end on a word boundary: no letter or
    digit right before or after it, so the phrase "The answer is unknown" does not match "the
    answer is unknownness" nor "I don't know" match "I don't knowingly". Punctuation inside a
    phrase must match as written. A phrase with no letter or digit ("", "...") never matches.
    """
    text = normalize_refusal_text(answer)
    for phrase in phrases:
        pattern = _refusal_pattern(phrase)
        if pattern is not None and pattern.search(text):
            return True
    return False


def extract_option_letter(answer: str, n_options: int) -> str | None:
    """The first standalone option letter (A.. for ``n_options``) in ``answer``, or None.

    Standalone: not part of a word, so the "A" of "Answer" or of "America" is not a letter,
    while "B", "(B)", "B." and "B) Paris" are.
    """
    letters = LETTERS[:n_options]
    match = re.search(rf"(?<![^\W\d_])([{letters}])(?![^\W\d_])", answer)
    return match.group(1) if match else None
