"""Tests of rait.prompts (the papers' templates, verbatim) and rait.models.render_prompt.

The expected texts are hard-coded from GRAIT Tables 4-9 and R-Tuning section 2.2 / appendix A.5
(markup removed, line breaks where the tables break lines), as docs/methods.md §2, §4, §6
and 7 prescribe.
"""

from __future__ import annotations

import pytest

from rait.data.records import QARecord
from rait.matching import fold_apostrophes
from rait.models import build_tiny_tokenizer, render_prompt
from rait.prompts import (
    DEFAULT_REFUSAL_PHRASES,
    DEFAULT_SUBJECT,
    REFUSAL_ANSWER,
    RTUNING_SURE_QUESTION,
    RTUNING_UNCERTAINTY_TEXTS,
    SHOTS,
    build_messages,
    evaluation_messages,
    format_options,
    knowledge_query_messages,
    letters_comma_or,
    letters_or,
    question_block,
    training_messages,
)

MC = QARecord(
    id="mc1",
    question="What is the capital of France?",
    choices=("Paris", "Rome", "Berlin", "Madrid"),
    gold=0,
    subject="geography",
)
MC_SHOT_1 = QARecord(
    id="s1",
    question="Which element has the symbol O?",
    choices=("Gold", "Oxygen", "Osmium", "Iron"),
    gold=1,
    subject="chemistry",
)
MC_SHOT_2 = QARecord(
    id="s2",
    question="2 + 2 = ?",
    choices=("3", "5", "4", "22"),
    gold=2,
    subject="math",
)
OE = QARecord(
    id="oe1", question="Who wrote Hamlet?", answers=("William Shakespeare", "Shakespeare")
)
OE_SHOT_1 = QARecord(id="o1", question="What is the capital of Italy?", answers=("Rome", "Roma"))
OE_SHOT_2 = QARecord(id="o2", question="Largest planet?", answers=("Jupiter",))

MC_QUERY = (
    "There is a single choice question about geography. "
    "Answer the question by replying A, B, C or D.\n"
    "Question: What is the capital of France?\n"
    "A. Paris\n"
    "B. Rome\n"
    "C. Berlin\n"
    "D. Madrid\n"
    "Answer:"
)
MC_REFUSE = (
    "There is a single choice question about geography. "
    "If you know the answer, please directly respond with the correct answer A, B, C, or D. "
    'If you do not know the answer, please respond with "I don\'t know."\n'
    "Question: What is the capital of France?\n"
    "A. Paris\n"
    "B. Rome\n"
    "C. Berlin\n"
    "D. Madrid\n"
    "Answer:"
)
OE_QUERY = (
    "Answer the following question as simple as possible.\nQuestion: Who wrote Hamlet?\nAnswer:"
)
OE_REFUSE = (
    "Answer the following question, and if you don't know the answer, only reply with "
    '"I don\'t know": Who wrote Hamlet?'
)

# R-Tuning appendix A.5 (Yin et al. 2023), in the paper's order; the paper prints the last one
# with a typographic apostrophe
RTUNING_A5 = [
    "The answer is unknown.",
    "The answer is uncertain.",
    "The answer is unclear.",
    "There is no scientific evidence.",
    "There is no definitive answer.",
    "There is no right answer.",
    "There is much debate.",
    "There is no known case.",
    "There is no concrete answer to this question.",
    "There is no public information available.",
    "It is impossible to know.",
    "It is impossible to answer.",
    "It is difficult to predict.",
    "It is not known.",
    "We do not know.",
    "I’m not sure.",
]


# --------------------------------------------------------------------------- question_block
def test_mcqa_query_block_grait_table_4():
    assert question_block(MC, "query") == MC_QUERY


def test_mcqa_basic_block_is_table_4():
    assert question_block(MC, "basic") == MC_QUERY


def test_mcqa_refuse_block_grait_tables_6_8():
    assert question_block(MC, "refuse") == MC_REFUSE


def test_oeqa_query_and_basic_block_grait_table_5():
    assert question_block(OE, "query") == OE_QUERY
    assert question_block(OE, "basic") == OE_QUERY


def test_oeqa_refuse_block_grait_tables_7_9():
    assert question_block(OE, "refuse") == OE_REFUSE


def test_three_option_letters():
    record = QARecord(id="x", question="Q?", choices=("a", "b", "c"), gold=2, subject="s")
    assert question_block(record, "query") == (
        "There is a single choice question about s. Answer the question by replying A, B or C.\n"
        "Question: Q?\nA. a\nB. b\nC. c\nAnswer:"
    )
    assert question_block(record, "refuse") == (
        "There is a single choice question about s. If you know the answer, please directly "
        "respond with the correct answer A, B, or C. If you do not know the answer, please "
        'respond with "I don\'t know."\nQuestion: Q?\nA. a\nB. b\nC. c\nAnswer:'
    )


def test_letters_helpers():
    assert letters_or(4) == "A, B, C or D"
    assert letters_or(3) == "A, B or C"
    assert letters_or(5) == "A, B, C, D or E"
    assert letters_comma_or(4) == "A, B, C, or D"
    assert letters_comma_or(3) == "A, B, or C"


def test_format_options():
    assert format_options(["x", "y"]) == "A. x\nB. y"


def test_missing_subject_falls_back_to_general_knowledge():
    record = QARecord(id="x", question="Q?", choices=("a", "b", "c", "d"), gold=0)
    assert DEFAULT_SUBJECT == "general knowledge"
    assert question_block(record, "query").startswith(
        "There is a single choice question about general knowledge. Answer the question"
    )
    assert question_block(record, "refuse").startswith(
        "There is a single choice question about general knowledge. If you know"
    )


def test_braces_in_text_are_kept_verbatim():
    record = QARecord(
        id="x", question="What is {x} in f(x)={x}?", choices=("{0}", "{a}"), gold=0, subject="{s}"
    )
    block = question_block(record, "refuse")
    assert "about {s}." in block
    assert "Question: What is {x} in f(x)={x}?\nA. {0}\nB. {a}\nAnswer:" in block
    oe = QARecord(id="y", question="Set {1, 2}?", answers=("x",))
    assert question_block(oe, "query").endswith("Question: Set {1, 2}?\nAnswer:")


# --------------------------------------------------------------------------- messages
def test_build_messages_without_shots():
    assert build_messages(MC, "refuse") == [{"role": "user", "content": MC_REFUSE}]


def test_build_messages_mcqa_shots_alternate_with_gold_letters():
    messages = build_messages(MC, "query", [MC_SHOT_1, MC_SHOT_2])
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == question_block(MC_SHOT_1, "query")
    assert messages[0]["content"].startswith("There is a single choice question about chemistry.")
    assert messages[1]["content"] == "B"
    assert messages[3]["content"] == "C"
    assert messages[4]["content"] == MC_QUERY


def test_build_messages_oeqa_shots_use_first_alias():
    messages = knowledge_query_messages(OE, [OE_SHOT_1, OE_SHOT_2])
    assert messages == [
        {
            "role": "user",
            "content": "Answer the following question as simple as possible.\n"
            "Question: What is the capital of Italy?\nAnswer:",
        },
        {"role": "assistant", "content": "Rome"},
        {
            "role": "user",
            "content": "Answer the following question as simple as possible.\n"
            "Question: Largest planet?\nAnswer:",
        },
        {"role": "assistant", "content": "Jupiter"},
        {"role": "user", "content": OE_QUERY},
    ]


def test_shot_counts():
    assert SHOTS == {"mcqa": 5, "oeqa": 3}


def test_training_messages():
    assert training_messages(MC, "I don't know.") == [
        {"role": "user", "content": MC_REFUSE},
        {"role": "assistant", "content": "I don't know."},
    ]
    assert training_messages(OE, "William Shakespeare", refuse_prompt=False) == [
        {"role": "user", "content": OE_QUERY},
        {"role": "assistant", "content": "William Shakespeare"},
    ]


def test_evaluation_messages():
    assert evaluation_messages(OE) == [{"role": "user", "content": OE_REFUSE}]
    assert evaluation_messages(MC, refuse_prompt=False) == [{"role": "user", "content": MC_QUERY}]


# --------------------------------------------------------------------------- R-Tuning and refusals
# R-Tuning section 2.2 (eq. 1 and the sentence after it), docs/methods.md §4: the answer,
# then "Are you sure you accurately answered the question based on your internal knowledge?"
# and "I am sure" (certain set D1) or "I am unsure" (uncertain set D0), written out here
PADDING_SURE = (
    "Shakespeare. Are you sure you accurately answered the question based on your internal "
    "knowledge? I am sure"
)
PADDING_UNSURE = (
    "{y}. Are you sure you accurately answered the question based on your internal knowledge? "
    "I am unsure"
)


@pytest.mark.parametrize("method", ["rtuning-padding", "rtuning-u"])
def test_rtuning_padding_trained_text_is_exact(tmp_path, capsys, method):
    """What `rait build --method rtuning-padding` (and rtuning-u) writes, and the completion
    tokens `rait train` puts its loss on, are the gold answer + R-Tuning's padding, verbatim
    (braces in the answer kept), under the REFUSE prompt (docs/methods.md §6)."""
    import json

    from rait.cli import main
    from rait.train import read_training_rows, tokenize_rows

    data = tmp_path / "train.jsonl"
    items = [
        {"id": "h", "question": "Who wrote Hamlet?", "answers": ["Shakespeare", "W. S."]},
        {"id": "b", "question": "What is f({x})?", "answers": ["{y}"]},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in items))
    knowledge = tmp_path / "knowledge.jsonl"
    know = [  # h: certain by both splits (greedy correct, lowest entropy); b: uncertain
        {"id": "h", "mu": 0.2, "sigma": 0.5, "greedy_correct": True, "rtuning_u_entropy": 0.1},
        {"id": "b", "mu": 0.9, "sigma": 0.9, "greedy_correct": False, "rtuning_u_entropy": 1.5},
    ]
    knowledge.write_text("".join(json.dumps(r) + "\n" for r in know))
    out = tmp_path / "set.jsonl"
    argv = ["build", "--method", method, "--data", str(data), "--knowledge", str(knowledge)]
    assert main([*argv, "--n-van", "1", "--n-idk", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows.keys() == {"h", "b"}
    assert (rows["h"]["kind"], rows["b"]["kind"]) == ("van", "idk")
    assert rows["h"]["completion"] == [{"role": "assistant", "content": PADDING_SURE}]
    assert rows["b"]["completion"] == [{"role": "assistant", "content": PADDING_UNSURE}]
    assert rows["h"]["prompt"] == [
        {
            "role": "user",
            "content": "Answer the following question, and if you don't know the answer, only "
            'reply with "I don\'t know": Who wrote Hamlet?',
        }
    ]
    # the tokens the training loss is on: the padding text and the turn's end, nothing else
    for chat, end in ((True, "<|im_end|>\n"), (False, None)):
        tokenizer = build_tiny_tokenizer(chat=chat)
        examples = tokenize_rows(read_training_rows(str(out)), tokenizer, chat, 2048, str(out))
        trained = {e.id: tokenizer.decode(e.completion_ids) for e in examples}
        if end is None:  # a base model: a space before the answer, EOS after it
            lead, end = " ", tokenizer.eos_token
        else:
            lead = ""
        assert trained == {"h": lead + PADDING_SURE + end, "b": lead + PADDING_UNSURE + end}


def test_rtuning_sure_question():
    assert RTUNING_SURE_QUESTION == (
        "Are you sure you accurately answered the question based on your internal knowledge?"
    )


def test_rtuning_uncertainty_texts_are_the_16_of_appendix_a5():
    assert len(RTUNING_UNCERTAINTY_TEXTS) == 16
    assert len(set(RTUNING_UNCERTAINTY_TEXTS)) == 16
    # same words and order; apostrophes compared folded (the paper typesets ’)
    assert [fold_apostrophes(t) for t in RTUNING_UNCERTAINTY_TEXTS] == [
        fold_apostrophes(t) for t in RTUNING_A5
    ]


def test_default_refusal_phrases():
    assert "I don't know" in DEFAULT_REFUSAL_PHRASES
    assert "I am unsure" in DEFAULT_REFUSAL_PHRASES
    for text in RTUNING_UNCERTAINTY_TEXTS:
        assert text in DEFAULT_REFUSAL_PHRASES
    assert len(DEFAULT_REFUSAL_PHRASES) == 18


def test_refusal_answers():
    assert REFUSAL_ANSWER == {"mcqa": "I don't know.", "oeqa": "I don't know"}


# --------------------------------------------------------------------------- render_prompt
@pytest.fixture(scope="module")
def chat_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def base_tokenizer():
    return build_tiny_tokenizer(chat=False)


def test_render_prompt_chat_template_with_generation_prompt(chat_tokenizer):
    messages = build_messages(OE, "query", [OE_SHOT_1])
    text = render_prompt(chat_tokenizer, messages, chat=True)
    assert text == (
        "<|im_start|>user\n"
        + question_block(OE_SHOT_1, "query")
        + "<|im_end|>\n<|im_start|>assistant\nRome<|im_end|>\n<|im_start|>user\n"
        + OE_QUERY
        + "<|im_end|>\n<|im_start|>assistant\n"
    )


def test_render_prompt_chat_auto_detects_template(chat_tokenizer, base_tokenizer):
    messages = build_messages(OE, "basic")
    assert render_prompt(chat_tokenizer, messages) == render_prompt(
        chat_tokenizer, messages, chat=True
    )
    assert render_prompt(base_tokenizer, messages) == OE_QUERY


def test_render_prompt_plain_layout(chat_tokenizer):
    messages = build_messages(MC, "query", [MC_SHOT_1, MC_SHOT_2])
    text = render_prompt(chat_tokenizer, messages, chat=False)
    assert text == (
        question_block(MC_SHOT_1, "query")
        + " B\n\n"
        + question_block(MC_SHOT_2, "query")
        + " C\n\n"
        + MC_QUERY
    )
    assert text.endswith("D. Madrid\nAnswer:")


def test_render_prompt_plain_zero_shot_is_the_block(base_tokenizer):
    assert render_prompt(base_tokenizer, evaluation_messages(OE), chat=False) == OE_REFUSE


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
        training_messages(OE, "Shakespeare"),
    ],
)
@pytest.mark.parametrize("chat", [True, False])
def test_render_prompt_must_end_with_user(chat_tokenizer, messages, chat):
    with pytest.raises(ValueError, match="end with a user message"):
        render_prompt(chat_tokenizer, messages, chat=chat)
