"""The evaluation stage: classification (refusal first), answer confidences, predictions and
metrics files, baselines and THS, caching, resuming, and bad input.

Scripted engines (answers chosen by the test) check the bookkeeping exactly; the tiny random
model checks that the real HF engine's batched greedy answers equal plain generation.
"""

from __future__ import annotations

import json
import math

import pytest

import rait.evaluate as evaluate_module
from rait.backends.hf import HFEngine
from rait.config import load_config
from rait.data.records import QARecord
from rait.data.sources import DataSource
from rait.engine import Completion
from rait.errors import ConfigError, DataError
from rait.evaluate import (
    EvalConfig,
    Evaluator,
    answer_part,
    answer_token_logprobs,
    classify,
    format_metrics,
    run_eval,
)
from rait.models import ModelConfig, build_tiny_tokenizer, load_model
from rait.prompts import DEFAULT_REFUSAL_PHRASES, RTUNING_SURE_QUESTION

PHRASES = DEFAULT_REFUSAL_PHRASES


def oe(id_="q1", answers=("Paris",)):
    return QARecord(id=id_, question="What is the capital of France?", answers=tuple(answers))


def mc(id_="m1", gold=1):
    return QARecord(
        id=id_,
        question="What is the capital of France?",
        choices=("Rome", "Paris", "Berlin", "Madrid"),
        gold=gold,
        subject="geography",
    )


# --------------------------------------------------------------------------- classification
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Paris", "Paris"),
        ("  Paris.  ", "Paris."),
        (f"Paris. {RTUNING_SURE_QUESTION} I am sure", "Paris"),
        (f"Paris {RTUNING_SURE_QUESTION.lower()} I am unsure", "Paris"),
        ("", ""),
    ],
)
def test_answer_part_cuts_rtuning_padding_question(line, expected):
    assert answer_part(line) == expected


def test_refusal_is_checked_before_correctness():
    verdict = classify("I don't know, maybe Paris", oe(), "contains", PHRASES)
    assert verdict.verdict == "refused"
    assert verdict.refused
    assert verdict.answer_correct  # the answer itself names the gold (AP and ECE see this)


@pytest.mark.parametrize(
    "answer",
    ["I DON'T KNOW", "i don’t know.", "It is impossible to know.", "Hmm. I am unsure"],
)
def test_refusal_is_case_insensitive_and_folds_curly_apostrophes(answer):
    assert classify(answer, oe(), "contains", PHRASES).verdict == "refused"


def test_custom_refusal_phrases_replace_the_defaults():
    assert classify("No idea", oe(), "contains", ["no idea"]).verdict == "refused"
    assert classify("I don't know", oe(), "contains", ["no idea"]).verdict == "wrong"


def test_forced_refusal_overrides_a_correct_answer():
    verdict = classify("Paris", oe(), "contains", PHRASES, refused=True)
    assert (verdict.verdict, verdict.answer_correct) == ("refused", True)


@pytest.mark.parametrize(
    ("answer", "verdict", "parsed"),
    [
        ("B", "correct", "B"),
        ("(B) Paris", "correct", "B"),
        ("Answer: B.", "correct", "B"),  # the "A" of "Answer" is not a letter
        ("A", "wrong", "A"),
        ("A. Rome, or maybe B", "wrong", "A"),  # the first standalone letter counts
        ("Paris", "wrong", None),  # no letter: wrong
        ("", "wrong", None),
        ("E", "wrong", None),  # not one of the 4 options
    ],
)
def test_mcqa_takes_the_first_standalone_option_letter(answer, verdict, parsed):
    result = classify(answer, mc(), "contains", PHRASES)
    assert (result.verdict, result.parsed) == (verdict, parsed)


@pytest.mark.parametrize(
    ("answer", "mode", "verdict"),
    [
        ("The capital is Paris.", "contains", "correct"),
        ("The capital is Paris.", "em", "wrong"),
        ("the Paris", "em", "correct"),  # TriviaQA normalisation drops articles
        ("Lyon", "contains", "wrong"),
        ("", "contains", "wrong"),
        ("", "em", "wrong"),  # an empty answer is never correct, even against an empty alias
    ],
)
def test_oeqa_match_modes(answer, mode, verdict):
    assert classify(answer, oe(), mode, PHRASES).verdict == verdict


def test_answer_token_logprobs_keep_only_the_answer_tokens():
    tok = build_tiny_tokenizer()
    ids = tok("\n Paris\nRome", add_special_tokens=False)["input_ids"]
    logprobs = [-(i + 1) / 10 for i in range(len(ids))]
    kept = answer_token_logprobs(tok, ids, logprobs, "Paris")
    # the tokens that spell "Paris" (and nothing of the blank line before or "Rome" after)
    spans = []
    previous = 0
    for i in range(len(ids)):
        upto = len(tok.decode(ids[: i + 1]))
        spans.append((previous, upto))
        previous = upto
    text = tok.decode(ids)
    start = text.find("Paris")
    expected = [
        lp
        for lp, (a, b) in zip(logprobs, spans)
        if b > a and b > start and a < start + len("Paris")
    ]
    assert kept == expected
    assert 0 < len(kept) < len(ids)
    assert answer_token_logprobs(tok, ids, logprobs, "") == []
    assert answer_token_logprobs(tok, [], [], "Paris") == []


# --------------------------------------------------------------------------- scripted engine
class ScriptedEngine:
    """Answers chosen per question id; log-probs chosen so confidences are known."""

    name = "scripted"

    def __init__(self, answers, sure=None, letter_logps=None):
        self.tokenizer = build_tiny_tokenizer()
        self.answers = answers
        self.sure = sure or {}
        self.letter_logps = letter_logps
        self.chat = True
        self.calls = 0

    def encode(self, text):
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def sample(self, prompts, keys, n, temperature, max_new_tokens, seeds=None, **kw):
        assert n == 1 and temperature == 0.0
        self.calls += 1
        out = []
        for key in keys:
            text = self.answers[key]
            ids = self.encode(text)
            first = None
            if kw.get("score_first") is not None:
                first = self.letter_logps or [math.log(0.1), math.log(0.6), -9.0, -9.0]
            out.append([Completion(text, ids, [math.log(0.5)] * len(ids), "eos", first)])
        return out

    def continuation_logprobs(self, prompts, keys, continuations):
        assert all(p.endswith(f"{RTUNING_SURE_QUESTION} I am") for p in prompts)
        return [
            [math.log(self.sure.get(k, 0.5)), math.log(1 - self.sure.get(k, 0.5))] for k in keys
        ]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


OE_ROWS = [
    {"id": "a", "question": "Capital of France?", "answers": ["Paris"], "domain": "capital"},
    {"id": "b", "question": "Capital of Italy?", "answers": ["Rome"], "domain": "capital"},
    {"id": "c", "question": "Capital of Spain?", "answers": ["Madrid"], "domain": "capital"},
    {"id": "d", "question": "Continent of Peru?", "answers": ["South America"], "domain": "cont"},
]


@pytest.fixture
def scripted(monkeypatch):
    """Install a scripted engine for run_eval; returns a setter."""
    holder = {}

    def install(engine):
        holder["engine"] = engine
        import rait.backends

        monkeypatch.setattr(rait.backends, "load_engine", lambda *a, **k: engine)
        return engine

    return install


def eval_cfg(data, **kw):
    kw.setdefault("backend", "hf")
    return EvalConfig(data=DataSource(path=data), **kw)


def read_rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_predictions_and_metrics_of_a_scripted_model(tmp_path, scripted):
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    scripted(ScriptedEngine({"a": "Paris", "b": "Milan", "c": "I don't know", "d": "\n"}))
    result = run_eval(eval_cfg(data, method="init-refuse", batch_size=3), tmp_path / "out")
    rows = {r["id"]: r for r in read_rows(tmp_path / "out" / "predictions.jsonl")}
    assert [rows[k]["verdict"] for k in "abcd"] == ["correct", "wrong", "refused", "wrong"]
    assert rows["a"]["answer_prob"] == pytest.approx(0.5)  # geometric mean of 0.5s
    assert rows["d"]["answer"] == "" and rows["d"]["answer_prob"] == 0.0
    assert (result["pc"], result["pw"], result["pr"]) == (0.25, 0.5, 0.25)
    assert result["accuracy_answered"] == pytest.approx(1 / 3)
    assert result["ths"] is None and "baseline" in result["ths_note"]
    assert result["per_domain"]["cont"] == {"n": 1, "pc": 0.0, "pw": 1.0, "pr": 0.0}
    on_disk = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert on_disk["pc"] == 0.25 and on_disk["prompt"] == "refuse"
    assert sum(b["count"] for b in on_disk["reliability"]) == 4
    assert "Pc 25.0" in format_metrics(result)


def test_init_basic_uses_the_basic_prompt_and_is_its_own_baseline(tmp_path, scripted):
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    engine = scripted(ScriptedEngine({"a": "Paris", "b": "Milan", "c": "Lima", "d": "Asia"}))
    seen = []
    original = Evaluator.render

    def spy(self, record):
        text = original(self, record)
        seen.append(text)
        return text

    evaluate_module.Evaluator.render = spy
    try:
        result = run_eval(eval_cfg(data, method="init-basic"), tmp_path / "basic")
    finally:
        evaluate_module.Evaluator.render = original
    assert engine.calls
    assert all("I don't know" not in t and "as simple as possible" in t for t in seen)
    assert result["prompt"] == "basic"
    assert result["ths"] == 0.0  # THS of the base model against itself
    assert result["honesty"]["over_conservativeness"] == 0.0


def test_ths_against_a_baseline_and_honesty_scores(tmp_path, scripted):
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    scripted(ScriptedEngine({"a": "Paris", "b": "Milan", "c": "Lima", "d": "Asia"}))
    run_eval(eval_cfg(data, method="init-basic"), tmp_path / "basic")  # Pc0 .25, Pw0 .75
    scripted(ScriptedEngine({"a": "Paris", "b": "Rome", "c": "I don't know", "d": "Asia"}))
    result = run_eval(
        eval_cfg(data, method="cor-rait", baseline=str(tmp_path / "basic")), tmp_path / "tuned"
    )
    # Pc .5, Pw .25: THS = (.5 * .75 - .25 * .25) / .75
    assert result["ths"] == pytest.approx((0.5 * 0.75 - 0.25 * 0.25) / 0.75)
    assert result["baseline"]["pc0"] == 0.25 and result["baseline"]["pw0"] == 0.75
    honesty = result["honesty"]
    assert honesty["over_conservativeness"] == 0.0  # "a" was known and is still answered
    assert honesty["prudence"] == pytest.approx(0.5)  # of c, d (still not correct): c refused


def test_ths_is_undefined_not_a_crash_when_the_baseline_makes_no_error(tmp_path, scripted):
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    scripted(ScriptedEngine({"a": "Paris", "b": "Rome", "c": "I don't know", "d": "I don't know"}))
    result = run_eval(eval_cfg(data, method="init-basic"), tmp_path / "basic")
    assert result["pw"] == 0.0 and result["ths"] is None
    assert "undefined" in result["ths_note"]
    tuned = run_eval(
        eval_cfg(data, method="craft", baseline=str(tmp_path / "basic")), tmp_path / "tuned"
    )
    assert tuned["ths"] is None and "Pw0 = 0" in tuned["ths_note"]
    assert "undefined" in format_metrics(tuned)


def test_mcqa_confidence_is_the_largest_option_probability(tmp_path, scripted):
    rows = [
        {
            "id": f"m{i}",
            "question": f"Q{i}?",
            "choices": ["w", "x", "y", "z"],
            "gold": 1,
            "subject": "s",
        }
        for i in range(3)
    ]
    data = write_jsonl(tmp_path / "mc.jsonl", rows)
    scripted(ScriptedEngine({"m0": "B", "m1": "A) w", "m2": "I don't know."}))
    result = run_eval(eval_cfg(data), tmp_path / "out")
    preds = {r["id"]: r for r in read_rows(tmp_path / "out" / "predictions.jsonl")}
    probs = preds["m0"]["option_probs"]
    assert sum(probs) == pytest.approx(1.0)
    assert preds["m0"]["confidence"] == pytest.approx(max(probs))
    assert probs[1] == pytest.approx(0.6 / (0.1 + 0.6 + 2 * math.exp(-9)))
    assert [preds[k]["verdict"] for k in ("m0", "m1", "m2")] == ["correct", "wrong", "refused"]
    assert result["task"] == "mcqa" and preds["m0"]["gold"] == "B"


def test_padding_confidence_and_unsure_answers_count_as_refused(tmp_path, scripted):
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    scripted(
        ScriptedEngine(
            {
                "a": f"Paris. {RTUNING_SURE_QUESTION} I am sure",
                "b": "Rome",
                "c": "Madrid",
                "d": "Asia",
            },
            sure={"a": 0.9, "b": 0.2, "c": 0.7, "d": 0.6},
        )
    )
    result = run_eval(eval_cfg(data, confidence="padding"), tmp_path / "out")
    preds = {r["id"]: r for r in read_rows(tmp_path / "out" / "predictions.jsonl")}
    assert preds["a"]["answer"] == "Paris"
    assert preds["a"]["sure_prob"] == pytest.approx(0.9)
    assert preds["a"]["confidence"] == pytest.approx(0.5 * 0.5 + 0.5 * 0.9)
    assert preds["b"]["verdict"] == "refused" and preds["b"]["answer_correct"]
    assert [preds[k]["verdict"] for k in "acd"] == ["correct", "correct", "wrong"]
    assert result["confidence"] == "padding"
    # AP ranks the answers (a .7, b .35, c .6, d .55): correct a, b, c; wrong d
    assert result["ap"] == pytest.approx((1 + 1 + 0.75) / 3)


def test_predictions_are_cached_and_a_baseline_added_later_only_rescores(tmp_path, scripted):
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    scripted(ScriptedEngine({"a": "Paris", "b": "Milan", "c": "Lima", "d": "Asia"}))
    run_eval(eval_cfg(data, method="init-basic"), tmp_path / "basic")
    engine = scripted(ScriptedEngine({"a": "Paris", "b": "Rome", "c": "Lima", "d": "Asia"}))
    first = run_eval(eval_cfg(data), tmp_path / "out")
    assert engine.calls == 1 and first["ths"] is None
    again = scripted(ScriptedEngine({}))  # would fail if asked to answer
    second = run_eval(eval_cfg(data, baseline=str(tmp_path / "basic")), tmp_path / "out")
    assert again.calls == 0
    assert second["pc"] == first["pc"] and second["ths"] is not None


def test_a_changed_setting_recomputes_the_predictions(tmp_path, scripted):
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    scripted(ScriptedEngine({"a": "Paris", "b": "Milan", "c": "Lima", "d": "Asia"}))
    run_eval(eval_cfg(data), tmp_path / "out")
    engine = scripted(ScriptedEngine({"a": "Paris", "b": "Milan", "c": "Lima", "d": "Asia"}))
    run_eval(eval_cfg(data, match="em"), tmp_path / "out")
    assert engine.calls > 0


def test_an_interrupted_evaluation_resumes_without_redoing_finished_batches(tmp_path, scripted):
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    answers = {"a": "Paris", "b": "Milan", "c": "Lima", "d": "Asia"}

    class Dying(ScriptedEngine):
        def sample(self, *args, **kw):
            if self.calls == 1:
                raise KeyboardInterrupt
            return super().sample(*args, **kw)

    scripted(Dying(answers))
    with pytest.raises(KeyboardInterrupt):
        run_eval(eval_cfg(data, batch_size=2), tmp_path / "out")
    assert len(read_rows(tmp_path / "out" / "predictions.jsonl")) == 2
    engine = scripted(ScriptedEngine(answers))
    resumed = run_eval(eval_cfg(data, batch_size=2), tmp_path / "out")
    assert engine.calls == 1  # only the unfinished batch
    scripted(ScriptedEngine(answers))
    clean = run_eval(eval_cfg(data, batch_size=2), tmp_path / "clean")
    assert sorted(read_rows(tmp_path / "out" / "predictions.jsonl"), key=str) == sorted(
        read_rows(tmp_path / "clean" / "predictions.jsonl"), key=str
    )
    assert resumed["pc"] == clean["pc"]


# --------------------------------------------------------------------------- bad input
def test_baseline_errors_name_the_file_line_and_field(tmp_path, scripted):
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    scripted(ScriptedEngine({"a": "Paris", "b": "Milan", "c": "Lima", "d": "Asia"}))
    with pytest.raises(ConfigError, match=r"no predictions\.jsonl"):
        run_eval(eval_cfg(data, baseline=str(tmp_path / "nowhere")), tmp_path / "o1")
    partial = write_jsonl(tmp_path / "base.jsonl", [{"id": "a", "verdict": "correct"}])
    with pytest.raises(DataError, match="no prediction for 3 of 4"):
        run_eval(eval_cfg(data, baseline=partial), tmp_path / "o2")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "verdict": "correct"}\n{"id": "b", "verdict": "maybe"}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2, field 'verdict'"):
        run_eval(eval_cfg(data, baseline=str(bad)), tmp_path / "o3")
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"id": "a"}\n')
    with pytest.raises(DataError, match=r"missing\.jsonl:1, field 'verdict'"):
        run_eval(eval_cfg(data, baseline=str(missing)), tmp_path / "o4")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "a", "verdict": "correct"}\n{"id": \n')
    with pytest.raises(DataError, match=r"broken\.jsonl:2.*not valid JSON"):
        run_eval(eval_cfg(data, baseline=str(broken)), tmp_path / "o5")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("prompt=polite", "prompt must be one of"),
        ("role=train", "role must be one of"),
        ("match=fuzzy", "match must be one of"),
        ("confidence=vibes", "confidence must be one of"),
        ("max_new_tokens=0", "max_new_tokens must be positive"),
        ("batch_size=0", "batch_size must be positive"),
        ("refusal_phrases=[]", "refusal_phrases is empty"),
        ("refusal_phrases=['  ']", r"refusal_phrases\[0\] is empty"),
        ("refusal_phrases=['I do not know', '...']", r"refusal_phrases\[1\] '...' has no letter"),
        ("method=' '", "method must not be empty"),
        ("backend=tpu", "backend must be one of"),
    ],
)
def test_impossible_settings_are_one_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(EvalConfig, None, [override])


def test_missing_data_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.path"):
        run_eval(EvalConfig(backend="hf"), tmp_path / "out")


def test_an_existing_foreign_output_folder_is_not_deleted(tmp_path, scripted):
    data = write_jsonl(tmp_path / "test.jsonl", OE_ROWS)
    scripted(ScriptedEngine({"a": "Paris", "b": "Milan", "c": "Lima", "d": "Asia"}))
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a rait stage folder"):
        run_eval(eval_cfg(data), precious)
    assert (precious / "notes.txt").read_text() == "keep me"


# --------------------------------------------------------------------------- real engine
def test_hf_engine_greedy_answers_equal_plain_generation(tiny_model_dir):
    """The evaluator's batched, first-line greedy answers are what plain generate() gives."""
    from oracles import generate
    from rait.matching import first_line

    lm = load_model(ModelConfig(name=str(tiny_model_dir)))
    engine = HFEngine(lm, batch_size=3)
    cfg = EvalConfig(model=ModelConfig(name=str(tiny_model_dir)), max_new_tokens=6)
    evaluator = Evaluator(cfg, engine, lm.use_chat_template)
    records = [oe(f"q{i}", ("Paris",)) for i in range(2)] + [
        QARecord(id=f"r{i}", question=f"Where is city number {i}?" * (i + 1), answers=("x",))
        for i in range(4)
    ]
    rows = evaluator.predict(records)
    items = [(r.id, evaluator.render(r)) for r in records]
    reference = dict(pair for batch in generate(lm, items, 6, batch_size=1) for pair in batch)
    for row in rows:
        assert row["answer"] == first_line(reference[row["id"]]), row["id"]
        assert 0.0 <= row["confidence"] <= 1.0
        assert row["verdict"] in ("correct", "wrong", "refused")


def test_hf_engine_padding_and_mcqa_paths_run_on_a_tiny_model(tiny_model_dir, tmp_path):
    """``rait eval`` on the real HF engine (padded batches of 2, questions of different
    lengths) against an oracle written with plain transformers, one unpadded sample at a
    time: the option probabilities are the softmax over the option letters of the next-token
    logits after the prompt; the answer is plain greedy generate(); sure_prob is
    p(" sure") / (p(" sure") + p(" unsure")) after "{prompt}{answer}. Are you sure ...? I am"
    (R-Tuning section 2.3); confidence = (max option prob + sure_prob) / 2 (docs/methods.md
    section 4); the verdicts and Pc/Pw/Pr follow from these."""
    import re

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rait.prompts import evaluation_messages

    questions = ["Q0?", "Which of the four is the largest number of them all, Q1?", "Q2 here?"]
    questions += ["A long question " * 6 + "Q3?", "Q4?"]
    rows = [
        {"id": f"m{i}", "question": q, "choices": ["w", "x", "y", "z"], "gold": i % 4}
        for i, q in enumerate(questions)
    ]
    data = write_jsonl(tmp_path / "mc.jsonl", rows)
    model = ModelConfig(name=str(tiny_model_dir))
    result = run_eval(
        EvalConfig(
            model=model,
            data=DataSource(path=data),
            backend="hf",
            batch_size=2,
            max_new_tokens=4,
            confidence="padding",
        ),
        tmp_path / "out",
        progress=False,
    )
    preds = {r["id"]: r for r in read_rows(tmp_path / "out" / "predictions.jsonl")}
    assert len(preds) == 5 and result["n"] == 5

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    lm = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    eps = torch.finfo(torch.float32).eps

    def ids_of(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    def logprobs(ids):
        with torch.no_grad():
            logits = lm(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
        return torch.log_softmax(logits.double(), dim=-1)

    def tolerance(ids, logp):
        # a float32 forward pass of n tokens: its longest reductions have n' = max(n, MLP
        # width) terms, so batching/padding/caching moves a log-probability by at most about
        # n'·eps·max|log p| (Higham's γ_n for a sum of n' terms of that size)
        return max(len(ids), lm.config.intermediate_size) * eps * float(logp.abs().max())

    literal_sure = (
        "Are you sure you accurately answered the question based on your internal knowledge?"
    )
    verdicts = []
    for row in rows:
        got = preds[row["id"]]
        record = QARecord(
            id=row["id"], question=row["question"], choices=tuple(row["choices"]), gold=row["gold"]
        )
        prompt = tok.apply_chat_template(
            evaluation_messages(record), tokenize=False, add_generation_prompt=True
        )
        base = ids_of(prompt)
        # the option letters' tokens as they follow the prompt (chat model: "A", "B", ...)
        letters = []
        for letter in "ABCD":
            joined = ids_of(prompt + letter)
            assert joined[: len(base)] == base and len(joined) == len(base) + 1
            letters.append(joined[-1])
        logp = logprobs(base)
        option_logp = logp[-1, letters]
        want_probs = torch.softmax(option_logp, dim=0)
        tol = tolerance(base, logp)
        assert got["option_probs"] == pytest.approx(want_probs.tolist(), abs=2 * tol, rel=0)
        assert got["answer_prob"] == pytest.approx(float(want_probs.max()), abs=2 * tol, rel=0)
        assert got["gold"] == "ABCD"[row["gold"]]
        # greedy answer, plain generate() on the unpadded prompt, cut at its first line
        with torch.no_grad():
            out = lm.generate(
                torch.tensor([base]), do_sample=False, max_new_tokens=4, pad_token_id=0
            )
        text = tok.decode(out[0, len(base) :], skip_special_tokens=True)
        answer = text.strip().splitlines()[0].strip() if text.strip() else ""
        assert got["answer"] == answer, row["id"]
        # R-Tuning's sure/unsure question after the answer
        asked = f"{prompt}{answer}. {literal_sure} I am"
        asked_ids = ids_of(asked)
        scores, tol_sure = [], 0.0
        for word in (" sure", " unsure"):
            full = ids_of(asked + word)
            assert full[: len(asked_ids)] == asked_ids and len(full) > len(asked_ids)
            lp = logprobs(full)
            scores.append(sum(float(lp[t - 1, full[t]]) for t in range(len(asked_ids), len(full))))
            tol_sure += (len(full) - len(asked_ids)) * tolerance(full, lp)
        sure = 1 / (1 + math.exp(scores[1] - scores[0]))
        # sure_prob = σ(x), x = log p(sure) − log p(unsure), and x moves by at most tol_sure;
        # σ' = σ(1 − σ) changes by at most a factor e^δ over [x − δ, x + δ], so sure_prob moves
        # by at most σ(1 − σ)·δ·e^δ (plus float64 rounding): tight even where the tiny model
        # is almost sure, so that 1 − sure_prob is checked too
        sure_tol = sure * (1 - sure) * tol_sure * math.exp(tol_sure) + 1e-15
        assert got["sure_prob"] == pytest.approx(sure, abs=sure_tol, rel=0)
        assert got["confidence"] == pytest.approx(
            0.5 * float(want_probs.max()) + 0.5 * sure, abs=sure_tol + 2 * tol, rel=0
        )
        # the verdict: unsure (< 0.5) is a refusal; else a refusal phrase; else the first
        # standalone letter A-D against the gold one
        letter = re.search(r"(?<![A-Za-z])([ABCD])(?![A-Za-z])", answer)
        folded = answer.lower().replace("\u2019", "'")
        if sure < 0.5 or any(p.lower() in folded for p in DEFAULT_REFUSAL_PHRASES):
            want = "refused"
        elif letter and letter.group(1) == "ABCD"[row["gold"]]:
            want = "correct"
        else:
            want = "wrong"
        assert got["verdict"] == want, (row["id"], answer, sure)
        verdicts.append(want)
    for key, verdict in (("pc", "correct"), ("pw", "wrong"), ("pr", "refused")):
        assert result[key] == pytest.approx(verdicts.count(verdict) / len(verdicts))
    assert result["pc"] + result["pw"] + result["pr"] == pytest.approx(1.0)
    # the checks above are not vacuous: the questions give different distributions
    assert len({tuple(round(p, 6) for p in preds[r["id"]]["option_probs"]) for r in rows}) > 1


# --------------------------------------------------------------------------- refusal phrases
# (issue 15 item 6: R-Tuning's phrases match without their trailing period)
@pytest.mark.parametrize(
    ("answer", "answer_correct"),
    [
        ("I'm not sure, but it could be Paris", True),
        ("Paris. It is not known", True),
        ("We do not know, sadly", False),
        ("The answer is unknown", False),
    ],
)
def test_answer_with_a_refusal_phrase_is_refused_even_when_correct(answer, answer_correct):
    verdict = classify(answer, oe(), "contains", PHRASES)
    assert (verdict.verdict, verdict.refused) == ("refused", True)
    assert verdict.answer_correct is answer_correct


def test_mcqa_answer_with_a_refusal_phrase_is_refused_even_when_correct():
    verdict = classify("B. Paris, I'm not sure", mc(gold=1), "contains", PHRASES)
    assert (verdict.verdict, verdict.parsed, verdict.answer_correct) == ("refused", "B", True)


@pytest.mark.parametrize("answer", ["Paris, I am sure", "The summit is not known: Paris"])
def test_phrase_fragment_does_not_turn_a_correct_answer_into_a_refusal(answer):
    verdict = classify(answer, oe(), "contains", PHRASES)
    assert (verdict.verdict, verdict.refused, verdict.answer_correct) == ("correct", False, True)
