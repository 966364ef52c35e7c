"""Every prompt template of the papers, in one place, each named after where it comes from.

A prompt is a list of chat messages (``{"role", "content"}``). Few-shot prompts are
multi-turn: each shot is a user turn (the instruction block) and an assistant turn (its answer),
the queried question is the last user turn. :func:`rait.models.render_prompt` turns the
messages into model text: through the tokenizer's chat template on a chat model (docs/methods.md
section 6), or, on a base model, by plain concatenation
``"{block} {answer}\\n\\n{block} {answer}\\n\\n{block}"``, the layout of the papers' tables.

Templates (the papers' HTML/bold markup removed, line breaks where the tables break lines):

===========================  ==================================  =============================
name                         source                              used for
===========================  ==================================  =============================
MCQA_QUERY_GRAIT_T4          GRAIT Table 4 (5-shot)              knowledge probe, MCQA; the
                                                                 *basic* prompt (0-shot) of
                                                                 Van-Tuning and Init-Basic
OEQA_QUERY_GRAIT_T5          GRAIT Table 5 (3-shot)              knowledge probe, OEQA; basic
                                                                 prompt (0-shot)
MCQA_REFUSE_GRAIT_T6_T8      GRAIT Tables 6 (train) and 8 (eval) every RAIT variant, MCQA
OEQA_REFUSE_GRAIT_T7_T9      GRAIT Tables 7 (train) and 9 (eval) every RAIT variant, OEQA
RTUNING_UNCERTAINTY_TEXTS    R-Tuning appendix A.5 (Yin 2023)    R-Tuning-R targets
===========================  ==================================  =============================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from rait.data.records import LETTERS, QARecord

Message = dict[str, str]
PromptKind = Literal["query", "basic", "refuse"]

# --- GRAIT Table 4: knowledge state query on MMLU (also the basic MCQA prompt)
MCQA_QUERY_GRAIT_T4 = (
    "There is a single choice question about {subject}. "
    "Answer the question by replying {letters_or}.\n"
    "Question: {question}\n"
    "{options}\n"
    "Answer:"
)
# --- GRAIT Table 5: knowledge state query on TriviaQA (also the basic OEQA prompt)
OEQA_QUERY_GRAIT_T5 = (
    "Answer the following question as simple as possible.\nQuestion: {question}\nAnswer:"
)
# --- GRAIT Tables 6 and 8: REFUSE prompt, MCQA (training and evaluation)
MCQA_REFUSE_GRAIT_T6_T8 = (
    "There is a single choice question about {subject}. "
    "If you know the answer, please directly respond with the correct answer {letters_comma_or}. "
    'If you do not know the answer, please respond with "I don\'t know."\n'
    "Question: {question}\n"
    "{options}\n"
    "Answer:"
)
# --- GRAIT Tables 7 and 9: REFUSE prompt, OEQA (training and evaluation)
OEQA_REFUSE_GRAIT_T7_T9 = (
    "Answer the following question, and if you don't know the answer, only reply with \"I don't "
    'know": {question}'
)
# --- R-Tuning (NAACL 2024) eq. (1) and the inference-time question of section 2.3
RTUNING_SURE_QUESTION = (
    "Are you sure you accurately answered the question based on your internal knowledge?"
)
RTUNING_SURE, RTUNING_UNSURE = "sure", "unsure"
# --- R-Tuning appendix A.5: the 16 uncertainty expressions of Yin et al. (2023)
RTUNING_UNCERTAINTY_TEXTS = (
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
    "I'm not sure.",
)
# --- docs/methods.md §6: the refusal answers used as training targets
REFUSAL_ANSWER = {"mcqa": "I don't know.", "oeqa": "I don't know"}
# --- docs/methods.md §7: the default refusal phrases of the evaluation. R-Tuning's texts keep
# their paper form (trailing period included); rait.matching.is_refusal ignores a phrase's
# leading and trailing punctuation, case and apostrophe style, so "It is not known" still matches.
DEFAULT_REFUSAL_PHRASES = ("I don't know", *RTUNING_UNCERTAINTY_TEXTS, "I am unsure")

DEFAULT_SUBJECT = "general knowledge"
SHOTS = {"mcqa": 5, "oeqa": 3}  # docs/methods.md §2


def letters_or(n: int) -> str:
    """'A, B, C or D' for 4 options (GRAIT Table 4)."""
    letters = list(LETTERS[:n])
    return ", ".join(letters[:-1]) + f" or {letters[-1]}"


def letters_comma_or(n: int) -> str:
    """'A, B, C, or D' for 4 options (GRAIT Tables 6 and 8)."""
    letters = list(LETTERS[:n])
    if n == 2:
        return f"{letters[0]} or {letters[1]}"
    return ", ".join(letters[:-1]) + f", or {letters[-1]}"


def format_options(choices: Sequence[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(choices))


def question_block(record: QARecord, kind: PromptKind) -> str:
    """The instruction block of one record, ending where the model answers.

    ``query`` and ``basic`` use GRAIT Tables 4/5; ``refuse`` uses Tables 6-9.
    """
    if record.task == "mcqa":
        assert record.choices is not None
        n = len(record.choices)
        template = MCQA_REFUSE_GRAIT_T6_T8 if kind == "refuse" else MCQA_QUERY_GRAIT_T4
        return template.format(
            subject=record.subject or DEFAULT_SUBJECT,
            letters_or=letters_or(n),
            letters_comma_or=letters_comma_or(n),
            question=record.question,
            options=format_options(record.choices),
        )
    template = OEQA_REFUSE_GRAIT_T7_T9 if kind == "refuse" else OEQA_QUERY_GRAIT_T5
    return template.format(question=record.question)


def build_messages(
    record: QARecord, kind: PromptKind, shots: Sequence[QARecord] = ()
) -> list[Message]:
    """Chat messages for ``record``: optional few-shot turns, then the question."""
    messages: list[Message] = []
    for shot in shots:
        messages.append({"role": "user", "content": question_block(shot, kind)})
        messages.append({"role": "assistant", "content": shot.canonical_answer})
    messages.append({"role": "user", "content": question_block(record, kind)})
    return messages


def knowledge_query_messages(record: QARecord, shots: Sequence[QARecord]) -> list[Message]:
    """docs/methods.md §2: the few-shot knowledge query (GRAIT Tables 4/5)."""
    return build_messages(record, "query", shots)


def training_messages(record: QARecord, answer: str, refuse_prompt: bool = True) -> list[Message]:
    """docs/methods.md §6: REFUSE prompt (Tables 6/7) for RAIT, basic prompt for
    Van-Tuning; the assistant turn is the training target."""
    kind: PromptKind = "refuse" if refuse_prompt else "basic"
    return [
        {"role": "user", "content": question_block(record, kind)},
        {"role": "assistant", "content": answer},
    ]


def evaluation_messages(record: QARecord, refuse_prompt: bool = True) -> list[Message]:
    """docs/methods.md §7: 0-shot; REFUSE prompt (Tables 8/9), basic for Init-Basic."""
    return build_messages(record, "refuse" if refuse_prompt else "basic")
