"""Question representations (last layer, last prompt token) and `rait crss`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rait.cli import main
from rait.data.records import QARecord
from rait.data.sources import DataSource
from rait.errors import ConfigError, DataError
from rait.metrics import crss
from rait.models import ModelConfig, load_model
from rait.prompts import build_messages
from rait.representations import CrssConfig, question_representations, run_crss


def records(n):
    return [
        QARecord(
            id=f"q{i}",
            question=f"Which country is city {i} in?" + " really" * i,
            answers=(f"C{i}",),
        )
        for i in range(n)
    ]


def test_batched_representations_equal_one_question_at_a_time(tiny_model_dir):
    lm = load_model(ModelConfig(name=str(tiny_model_dir)))
    recs = records(5)
    batched = question_representations(lm, recs, batch_size=3)
    assert batched.shape == (5, lm.model.config.hidden_size)
    for i, record in enumerate(recs):
        text = lm.render(build_messages(record, "refuse"))
        ids = torch.tensor([lm.tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.inference_mode():
            hidden = lm.model(input_ids=ids, output_hidden_states=True).hidden_states[-1]
        np.testing.assert_allclose(batched[i], hidden[0, -1].numpy(), atol=1e-4)


def test_the_prompt_matters(tiny_model_dir):
    lm = load_model(ModelConfig(name=str(tiny_model_dir)))
    recs = records(2)
    refuse = question_representations(lm, recs, refuse_prompt=True)
    basic = question_representations(lm, recs, refuse_prompt=False)
    assert not np.allclose(refuse, basic)


def _data(tmp_path, n=6):
    rows = [{"id": r.id, "question": r.question, "answers": list(r.answers)} for r in records(n)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_crss_of_a_cor_rait_split_matches_the_metric(tiny_model_dir, tmp_path):
    data = _data(tmp_path)
    knowledge = tmp_path / "knowledge.jsonl"
    mus = [0.9, 0.1, 0.6, 0.0, 0.5, 0.2]
    knowledge.write_text(
        "".join(json.dumps({"id": f"q{i}", "mu": mu}) + "\n" for i, mu in enumerate(mus))
    )
    model = ModelConfig(name=str(tiny_model_dir))
    cfg = CrssConfig(model=model, data=DataSource(path=data), knowledge=str(knowledge), tau_sim=0.5)
    result = run_crss(cfg)
    assert (result["n_van"], result["n_idk"]) == (3, 3)  # µ ≥ 0.5 is vanilla
    lm = load_model(model)
    reps = question_representations(lm, records(6))
    van = reps[[0, 2, 4]]
    idk = reps[[1, 3, 5]]
    assert result["crss"] == pytest.approx(crss(idk, van, 0.5))


def test_crss_from_a_built_set(tiny_model_dir, tmp_path):
    data = _data(tmp_path, 4)
    built = tmp_path / "built.jsonl"
    built.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "kind": k}) + "\n"
            for i, k in enumerate(["van", "idk", "van", "idk"])
        )
    )
    out = tmp_path / "crss.json"
    code = main(
        [
            "crss",
            "--data",
            data,
            "--built",
            str(built),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert (result["n_van"], result["n_idk"]) == (2, 2) and 0 <= result["crss"] <= 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "q0", "mu": 0.9}\n{"id": "zz", "mu": 0.1}\n', r":2, record 'zz'.*not in the data"),
        ('{"id": "q0", "mu": 0.9}\n{"id": "q1"}\n', r":2, field 'mu'"),
        ('{"id": "q0", "mu": 0.9}\n{"id": "q1", "mu": NaN}\n', r":2, record 'q1'.*mu must be"),
        ('{"id": "q0", "mu": 0.9}\n{"id": "q1", "mu": 0.8}\n', "needs both vanilla and IdK"),
        ('{"id": "q0", "mu": 0.9}\nnot json\n', r":2: not valid JSON"),
        ("", "no rows"),
    ],
)
def test_bad_knowledge_files_are_clear_errors(tmp_path, content, message):
    data = _data(tmp_path, 2)
    knowledge = tmp_path / "k.jsonl"
    knowledge.write_text(content)
    cfg = CrssConfig(data=DataSource(path=data), knowledge=str(knowledge))
    with pytest.raises(DataError, match=message):
        run_crss(cfg)


def test_exactly_one_split_source(tmp_path):
    with pytest.raises(ConfigError, match="exactly one"):
        CrssConfig(knowledge="a", built="b").validate()
    with pytest.raises(ConfigError, match="exactly one"):
        CrssConfig().validate()
    with pytest.raises(ConfigError, match="tau_sim"):
        CrssConfig(knowledge="a", tau_sim=2).validate()


def test_built_kind_must_be_van_or_idk(tmp_path):
    data = _data(tmp_path, 2)
    built = tmp_path / "b.jsonl"
    built.write_text('{"id": "q0", "kind": "van"}\n{"id": "q1", "kind": "refuse"}\n')
    with pytest.raises(DataError, match=r"b\.jsonl:2.*kind must be"):
        run_crss(CrssConfig(data=DataSource(path=data), built=str(built)))
