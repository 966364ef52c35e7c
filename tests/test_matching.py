"""Tests of rait.matching: answer normalisation, correctness modes, refusals, option letters."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rait.matching import (
    MATCH_MODES,
    extract_option_letter,
    first_line,
    fold_apostrophes,
    is_correct_open,
    is_refusal,
    normalize_answer,
)
from rait.prompts import DEFAULT_REFUSAL_PHRASES


# --------------------------------------------------------------------------- normalize_answer
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Paris", "paris"),
        ("  The   Beatles ", "beatles"),
        ("A Tale of Two Cities", "tale of two cities"),
        ("an apple a day", "apple day"),
        ("Theatre", "theatre"),  # 'the' inside a word stays
        ("Anathema", "anathema"),
        ("Washington, D.C.", "washington d c"),
        ("rock_and_roll", "rock and roll"),
        ("O'Brien", "o brien"),
        ("O’Brien", "o brien"),  # right single quotation mark
        ("‘quoted’", "quoted"),  # left/right single quotation marks
        ("it´s", "it s"),  # acute accent
        ("`tick`", "tick"),  # backtick
        ('"Hello!" (world)?', "hello world"),
        ("the-end", "end"),  # punctuation becomes a space, then 'the' is an article
        ("Zürich", "zürich"),  # non-ASCII letters are kept
        ("THE", ""),
        ("", ""),
        ("...", ""),
        ("line\nbreak\ttab", "line break tab"),
        ("1,000", "1 000"),
    ],
)
def test_normalize_answer_examples(text, expected):
    assert normalize_answer(text) == expected


@given(st.text())
def test_normalize_answer_idempotent(text):
    once = normalize_answer(text)
    assert normalize_answer(once) == once


@given(st.text())
def test_normalize_answer_has_no_punctuation_or_outer_space(text):
    out = normalize_answer(text)
    assert out == out.strip()
    assert "  " not in out
    assert not set(out) & (set(string.punctuation) | {"‘", "’", "´", "`"})
    assert all(word not in ("a", "an", "the") for word in out.split(" "))


# --------------------------------------------------------------------------- is_correct_open
def test_match_modes():
    assert MATCH_MODES == ("contains", "em")


@pytest.mark.parametrize(
    ("answer", "aliases", "contains", "em"),
    [
        ("Paris", ["Paris"], True, True),
        ("paris", ["Paris"], True, True),
        ("The capital is Paris.", ["Paris"], True, False),  # only contains
        ("Paris, France", ["Paris"], True, False),
        ("The Beatles", ["Beatles"], True, True),
        ("Beatles", ["The Beatles"], False, True),  # only em (articles dropped)
        ("Washington DC", ["Washington, D.C."], False, False),
        ("washington d c", ["Washington, D.C."], False, True),
        ("rock and roll", ["rock_and_roll"], False, True),
        ("Parisian", ["Paris"], True, False),  # substring inside a word counts in contains
        ("London", ["Paris", "London"], True, True),  # any alias
        ("Rome", ["Paris", "London"], False, False),
        ("", ["Paris"], False, False),
        ("anything", [], False, False),
    ],
)
def test_is_correct_open_modes(answer, aliases, contains, em):
    assert is_correct_open(answer, aliases, "contains") is contains
    assert is_correct_open(answer, aliases, "em") is em


def test_is_correct_open_default_mode_is_contains():
    assert is_correct_open("It is Paris.", ["Paris"]) is True


def test_contains_ignores_empty_alias():
    assert is_correct_open("whatever", ["", "Paris"], "contains") is False


def test_is_correct_open_accepts_tuples():
    assert is_correct_open("Tokyo", ("Kyoto", "Tokyo"), "em") is True


@pytest.mark.parametrize("mode", ["exact", "EM", "", "Contains"])
def test_unknown_mode_raises(mode):
    with pytest.raises(ValueError, match="unknown match mode"):
        is_correct_open("Paris", ["Paris"], mode)  # type: ignore[arg-type]


@given(st.text(min_size=1))
def test_alias_matches_itself_in_both_modes(alias):
    assert is_correct_open(alias, [alias], "contains")
    if normalize_answer(alias):
        assert is_correct_open(alias, [alias], "em")


ascii_text = st.text(alphabet=string.ascii_letters + string.digits + " .,'-", max_size=20)


def _flip_case(text: str, flips: list[bool]) -> str:
    return "".join(
        (ch.swapcase() if flip else ch) for ch, flip in zip(text, flips + [False] * len(text))
    )


@given(
    ascii_text.filter(lambda s: s != ""),
    ascii_text,
    ascii_text,
    st.lists(st.booleans(), max_size=60),
)
def test_contains_mode_is_case_insensitive(alias, prefix, suffix, flips):
    answer = _flip_case(prefix + alias + suffix, flips)
    assert is_correct_open(answer, [alias], "contains")
    assert is_correct_open(answer.upper(), [alias.lower()], "contains")
    assert is_correct_open(answer.lower(), [alias.upper()], "contains")


@given(ascii_text, ascii_text)
def test_contains_result_unchanged_by_case(answer, alias):
    expected = is_correct_open(answer, [alias], "contains")
    assert is_correct_open(answer.swapcase(), [alias], "contains") is expected
    assert is_correct_open(answer, [alias.upper()], "contains") is expected


# --------------------------------------------------------------------------- first_line
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Paris", "Paris"),
        ("  Paris  \nQuestion: next", "Paris"),
        ("\n\n  \n Rome\nmore", "Rome"),
        ("", ""),
        ("   \n\t\n", ""),
        ("a\r\nb", "a"),
    ],
)
def test_first_line(text, expected):
    assert first_line(text) == expected


# --------------------------------------------------------------------------- is_refusal
@pytest.mark.parametrize(
    "answer",
    [
        "I don't know",
        "I don't know.",
        "I don’t know.",  # right single quotation mark
        "I don‘t know",  # left single quotation mark
        "I donʼt know",  # modifier letter apostrophe
        "i DON'T KNOW",
        "Well, I don't know the answer.",
        "I am unsure",
        "I am unsure.",
        "It is impossible to know.",
        "I'm not sure.",
        "I’m not sure.",
        "THE ANSWER IS UNKNOWN.",
    ],
)
def test_is_refusal_default_phrases(answer):
    assert is_refusal(answer, DEFAULT_REFUSAL_PHRASES)


@pytest.mark.parametrize("answer", ["Paris", "I know: Paris", "I am sure", "", "I do know"])
def test_is_not_refusal(answer):
    assert not is_refusal(answer, DEFAULT_REFUSAL_PHRASES)


def test_is_refusal_phrase_with_curly_apostrophe():
    assert is_refusal("I can't say", ["I can’t say"])
    assert is_refusal("I CAN’T SAY", ["i can't say"])


def test_is_refusal_custom_and_empty_phrases():
    assert is_refusal("No idea, sorry", ["no idea"])
    assert not is_refusal("anything", [])
    assert not is_refusal("anything", [""])  # an empty phrase never matches


def test_fold_apostrophes():
    assert fold_apostrophes("don’t ‘x’ ´y` zʼ") == "don't 'x' 'y' z'"


# --------------------------------------------------------------------------- option letters
@pytest.mark.parametrize(
    ("answer", "n_options", "expected"),
    [
        ("B", 4, "B"),
        ("(C)", 4, "C"),
        ("D. Paris", 4, "D"),
        ("B) Rome", 4, "B"),
        ("B.", 4, "B"),
        ("Answer: A", 4, "A"),
        ("The answer is C.", 4, "C"),
        ("America", 4, None),
        ("Answer", 4, None),
        ("", 4, None),
        ("I think B, not C", 4, "B"),
        ("E", 4, None),  # beyond the options
        ("E. Not an option, so D", 4, "D"),
        ("E", 5, "E"),
        ("C", 3, "C"),
        ("D", 3, None),
        ("b", 4, None),  # lower-case letters are not option letters
        ("**B**", 4, "B"),
        ("[A]", 2, "A"),
    ],
)
def test_extract_option_letter(answer, n_options, expected):
    assert extract_option_letter(answer, n_options) == expected


@pytest.mark.parametrize("answer", ["Düsseldorf", "Cádiz", "Béla Bartók"])
def test_extract_option_letter_ignores_words_with_non_ascii_letters(answer):
    assert extract_option_letter(answer, 4) is None
