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
    normalize_refusal_text,
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
    assert not is_refusal("anything", ["  ", "..."])  # nor one with no letter or digit


# The default phrases as written and with their trailing period dropped (R-Tuning's texts end
# in "."; the training refusal "I don't know" does not). Computed here, not by rait.matching.
CORES = [phrase.rstrip(".") for phrase in DEFAULT_REFUSAL_PHRASES]
RUNNING_TEXT = [
    "{p}",  # the whole answer
    "{p}.",  # with its trailing period
    "{p}!",
    "{p}, but it could be Paris.",  # a comma after it, at the start
    "{p}. Maybe Paris.",  # at the start, with its period, followed by more
    "Hmm, {p}",  # at the end, no period
    "Hmm, {p}.",  # at the end, with its period
    "Honestly, {p}, sorry.",  # embedded, a comma after it
    "Well: {p}; that is all.",
    '"{p}"',  # quoted
    "({p})",
    "  {p}  ",
]


def _variants(core: str) -> list[str]:
    return [core, core.upper(), core.lower(), core.replace("'", "’")]


@pytest.mark.parametrize("template", RUNNING_TEXT)
@pytest.mark.parametrize("phrase", DEFAULT_REFUSAL_PHRASES)
def test_each_default_phrase_in_running_text(phrase, template):
    core = phrase.rstrip(".")
    for variant in _variants(core):
        answer = template.format(p=variant)
        assert is_refusal(answer, [phrase]), answer  # this phrase alone, not another one
        assert is_refusal(answer, DEFAULT_REFUSAL_PHRASES), answer


@pytest.mark.parametrize(
    "answer",
    [
        "It is not known",
        "The answer is unknown",
        "We do not know, sadly",
        "I'm not sure, but it could be Paris",
    ],
)
def test_is_refusal_issue_examples(answer):
    """Issue 15 item 6: missed while R-Tuning's phrases were matched with their periods."""
    assert is_refusal(answer, DEFAULT_REFUSAL_PHRASES)


@pytest.mark.parametrize(
    "answer",
    [
        "Paris? I am unsure",  # anywhere in the answer, not only at its start
        "My guess is Paris, though there is much debate.",
        "I  don't \t know",  # white space runs
        "I DON’T KNOW!!!",
        "“It is impossible to know”",
        "Hmm...I'm not sure...right?",  # punctuation, not space, around it
    ],
)
def test_is_refusal_anywhere_and_punctuation_free(answer):
    assert is_refusal(answer, DEFAULT_REFUSAL_PHRASES)


@pytest.mark.parametrize(
    "answer",
    [
        "The capital of France is Paris.",
        "Paris is well known; the answer is Paris.",
        "We do know: it is Paris.",
        "There is an answer: Paris.",
        "I'm sure it is Paris.",
        "It is possible to know: Paris.",
    ],
)
def test_correct_answer_without_a_phrase_is_not_a_refusal(answer):
    assert not is_refusal(answer, DEFAULT_REFUSAL_PHRASES)


@pytest.mark.parametrize(
    ("answer", "phrases"),
    [
        ("The answer is unknownness.", ["The answer is unknown."]),
        ("the answer is unknowns", ["the answer is unknown"]),
        ("I don't knowingly guess: Paris", DEFAULT_REFUSAL_PHRASES),
        ("A summit is not known by that name", DEFAULT_REFUSAL_PHRASES),  # "it is not known"
        ("There is much debated history", DEFAULT_REFUSAL_PHRASES),
        ("The answer is unclearly worded", DEFAULT_REFUSAL_PHRASES),
        ("Kiwi am unsure", DEFAULT_REFUSAL_PHRASES),  # "i am unsure" after a letter
        ("ideas", ["idea"]),
        ("no idea2", ["no idea"]),  # digits are word characters too
        ("The answer is unknowné", ["The answer is unknown."]),  # so are non-ASCII letters
        ("Øit is not known", ["It is not known."]),
    ],
)
def test_phrase_inside_a_longer_word_is_not_a_refusal(answer, phrases):
    assert not is_refusal(answer, phrases)


@pytest.mark.parametrize(
    ("answer", "phrase"),
    [
        ("No idea, sorry", "No idea!"),  # user phrases lose their edge punctuation too
        ("no idea", "  ¿No idea?  "),
        ("I CAN'T SAY", "I can’t say."),
        ("i can’t say, really", "I can't say"),
        ("hard to tell", "Hard   to\ttell"),
        ("no idea_sorry", "no idea"),  # "_" is not a word character
        ("(n/a)", "n/a"),  # inner punctuation is kept and matched
    ],
)
def test_custom_phrases_are_normalised_like_the_defaults(answer, phrase):
    assert is_refusal(answer, [phrase])


@pytest.mark.parametrize(("answer", "phrase"), [("no, idea", "no idea"), ("n a", "n/a")])
def test_inner_punctuation_of_a_phrase_must_match(answer, phrase):
    assert not is_refusal(answer, [phrase])


@pytest.mark.parametrize("phrase", ["", "   ", "...", "?!", "“”"])
def test_phrase_without_letters_or_digits_never_matches(phrase):
    assert not is_refusal("...?! “” anything", [phrase])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is unknown.", "the answer is unknown"),
        ("“I DON’T KNOW!”", "i don't know"),
        ("  I'm   not\tsure.  ", "i'm not sure"),
        ("n/a", "n/a"),
        ("No, idea.", "no, idea"),
        ("...", ""),
        ("", ""),
    ],
)
def test_normalize_refusal_text(text, expected):
    assert normalize_refusal_text(text) == expected


EDGE_TEXT = st.text(alphabet=string.punctuation + string.whitespace + "‘’“”«»¡¿…—–·", max_size=8)
APOSTROPHES = st.sampled_from(["'", "’", "‘", "ʼ", "´", "`"])
NOT_ALNUM = st.characters().filter(lambda ch: not ch.isalnum())


@given(
    st.sampled_from(DEFAULT_REFUSAL_PHRASES),
    EDGE_TEXT,
    EDGE_TEXT,
    st.booleans(),
    APOSTROPHES,
    st.lists(st.booleans(), max_size=60),
)
def test_default_phrase_in_any_punctuation_is_a_refusal(
    phrase, before, after, keep_period, apostrophe, flips
):
    core = phrase if keep_period else phrase.rstrip(".")
    answer = before + _flip_case(core.replace("'", apostrophe), flips) + after
    assert is_refusal(answer, [phrase])
    assert is_refusal(answer, DEFAULT_REFUSAL_PHRASES)


@given(st.sampled_from(DEFAULT_REFUSAL_PHRASES), st.text(), NOT_ALNUM, NOT_ALNUM, st.text())
def test_default_phrase_between_any_words_is_a_refusal(phrase, left, sep_left, sep_right, right):
    answer = left + sep_left + phrase.rstrip(".") + sep_right + right
    assert is_refusal(answer, [phrase])


@given(
    st.sampled_from(CORES),
    st.text(alphabet=string.ascii_letters + string.digits + "éüßñØ", min_size=1, max_size=5),
    st.booleans(),
)
def test_default_phrase_glued_to_a_word_is_not_a_refusal(core, glue, at_start):
    answer = glue + core if at_start else core + glue
    assert not is_refusal(answer, [core])
    assert not is_refusal(answer, [core + "."])


@st.composite
def answers_around(draw, core: str) -> str:
    """Arbitrary text, half the time with ``core`` (glued or not) inside."""
    if draw(st.booleans()):
        return draw(st.text())
    return draw(st.text(max_size=5)) + core + draw(st.sampled_from(["", ".", ",", "s", "!"]))


@given(st.sampled_from(DEFAULT_REFUSAL_PHRASES), EDGE_TEXT, EDGE_TEXT, st.data())
def test_phrase_edge_punctuation_does_not_change_the_verdict(phrase, before, after, data):
    bare = phrase.rstrip(".")
    answer = data.draw(answers_around(bare))
    assert is_refusal(answer, [before + bare + after]) is is_refusal(answer, [bare])


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
