"""Tests of rait.config: strict dataclass configs from YAML files and ``key=value`` overrides."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from rait.config import (
    apply_overrides,
    build_config,
    config_to_dict,
    load_config,
    load_yaml,
    parse_override,
)
from rait.data.world_facts import WorldFactsConfig
from rait.demo import demo_config_path, load_demo_config
from rait.errors import ConfigError, RaitError
from rait.models import ModelConfig

VALIDATE_CALLS: list[str] = []


@dataclass
class Inner:
    depth: int = 1
    label: str = "inner"
    ratio: float = 0.5

    def validate(self) -> None:
        VALIDATE_CALLS.append("inner")
        if self.depth < 0:
            raise ConfigError(f"inner.depth must be >= 0, got {self.depth}")


@dataclass
class Outer:
    count: int = 3
    rate: float = 0.1
    name: str = "outer"
    flag: bool = False
    note: str | None = None
    tags: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
    inner: Inner = field(default_factory=Inner)

    def validate(self) -> None:
        VALIDATE_CALLS.append("outer")
        if self.count <= 0:
            raise ConfigError(f"count must be positive, got {self.count}")


@pytest.fixture(autouse=True)
def _reset_calls():
    VALIDATE_CALLS.clear()
    yield
    VALIDATE_CALLS.clear()


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- build_config
def test_build_config_defaults_when_no_data():
    cfg = build_config(Outer, None)
    assert cfg == Outer()
    assert build_config(Outer, {}) == Outer()


def test_build_config_fills_every_field_type():
    cfg = build_config(
        Outer,
        {
            "count": 7,
            "rate": 2,  # an int is accepted for a float and becomes a float
            "name": "x",
            "flag": True,
            "note": "hello",
            "tags": ["a", "b"],
            "extra": {"k": "v", "n": 3},  # a number is accepted for a string
            "inner": {"depth": 4, "label": "deep"},
        },
    )
    assert cfg.count == 7
    assert cfg.rate == 2.0 and isinstance(cfg.rate, float)
    assert cfg.name == "x"
    assert cfg.flag is True
    assert cfg.note == "hello"
    assert cfg.tags == ["a", "b"]
    assert cfg.extra == {"k": "v", "n": "3"}
    assert isinstance(cfg.inner, Inner)
    assert cfg.inner == Inner(depth=4, label="deep", ratio=0.5)


def test_build_config_optional_accepts_none():
    assert build_config(Outer, {"note": None}).note is None


def test_build_config_number_for_string_becomes_text():
    assert build_config(Outer, {"name": 12}).name == "12"


def test_build_config_partial_nested_keeps_other_defaults():
    cfg = build_config(Outer, {"inner": {"label": "only"}})
    assert cfg.inner.depth == 1 and cfg.inner.label == "only"


def test_default_factory_gives_independent_instances():
    a = build_config(Outer, {})
    b = build_config(Outer, {})
    a.tags.append("x")
    a.inner.depth = 9
    assert b.tags == [] and b.inner.depth == 1


def test_unknown_top_level_key_names_key_and_origin():
    with pytest.raises(ConfigError) as info:
        build_config(Outer, {"cuont": 3}, origin="my.yaml")
    message = str(info.value)
    assert message.startswith("my.yaml: ")
    assert "cuont" in message
    assert "count" in message  # the known keys are listed


def test_unknown_nested_key_names_full_dotted_key_and_origin():
    with pytest.raises(ConfigError) as info:
        build_config(Outer, {"inner": {"dpeth": 2}}, origin="conf/run.yaml")
    message = str(info.value)
    assert "conf/run.yaml" in message
    assert "inner.dpeth" in message


def test_unknown_key_in_yaml_file_names_the_file(tmp_path):
    path = write(tmp_path / "cfg.yaml", "count: 2\ninner:\n  colour: red\n")
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path)
    assert str(path) in str(info.value)
    assert "inner.colour" in str(info.value)


@pytest.mark.parametrize(
    ("data", "key", "expected"),
    [
        ({"count": "three"}, "count", "integer"),
        ({"count": True}, "count", "integer"),  # bool is not an int
        ({"count": 2.5}, "count", "integer"),
        ({"flag": 1}, "flag", "true or false"),  # int is not a bool
        ({"flag": "yes please"}, "flag", "true or false"),
        ({"rate": "fast"}, "rate", "number"),
        ({"rate": False}, "rate", "number"),
        ({"name": True}, "name", "string"),
        ({"name": ["a"]}, "name", "string"),
        ({"note": ["x"]}, "note", "string"),
        ({"tags": "a,b"}, "tags", "list"),
        ({"extra": ["a"]}, "extra", "mapping"),
        ({"inner": 5}, "inner", "section"),
        ({"inner": {"depth": "deep"}}, "inner.depth", "integer"),
    ],
)
def test_wrong_types_name_the_key(data, key, expected):
    with pytest.raises(ConfigError) as info:
        build_config(Outer, data, origin="f.yaml")
    message = str(info.value)
    assert f"f.yaml: {key}:" in message
    assert expected in message


def test_wrong_type_in_list_item_names_index():
    with pytest.raises(ConfigError, match=r"tags\[1\]"):
        build_config(Outer, {"tags": ["a", True]})


def test_wrong_type_in_mapping_value_names_dotted_key():
    with pytest.raises(ConfigError, match=r"extra\.k"):
        build_config(Outer, {"extra": {"k": False}})


def test_config_error_is_a_rait_error_with_exit_code_2():
    with pytest.raises(RaitError) as info:
        build_config(Outer, {"bogus": 1})
    assert info.value.exit_code == 2


def test_validate_hook_is_called_for_outer_and_nested():
    build_config(Outer, {"inner": {"depth": 2}})
    assert VALIDATE_CALLS == ["inner", "outer"]


def test_validate_hook_errors_propagate():
    with pytest.raises(ConfigError, match="count must be positive"):
        build_config(Outer, {"count": 0})
    with pytest.raises(ConfigError, match=r"inner\.depth must be >= 0"):
        build_config(Outer, {"inner": {"depth": -1}})


def test_config_to_dict_round_trips():
    cfg = build_config(Outer, {"tags": ["t"], "inner": {"depth": 5}})
    data = config_to_dict(cfg)
    assert data["inner"] == {"depth": 5, "label": "inner", "ratio": 0.5}
    assert build_config(Outer, data) == cfg


# --------------------------------------------------------------------------- load_yaml
def test_load_yaml_reads_mapping(tmp_path):
    path = write(tmp_path / "c.yaml", "count: 4\nname: Zoë\ninner:\n  depth: 2\n")
    assert load_yaml(path) == {"count": 4, "name": "Zoë", "inner": {"depth": 2}}


def test_load_yaml_empty_file_is_empty_mapping(tmp_path):
    assert load_yaml(write(tmp_path / "e.yaml", "")) == {}
    assert load_yaml(write(tmp_path / "c.yaml", "# only a comment\n")) == {}


def test_load_yaml_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(path) in str(info.value)
    assert "not found" in str(info.value)


def test_load_yaml_directory_is_not_a_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path)


def test_load_yaml_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.yaml", "count: 1\nname: ok\ntags: [a, b\nrate: 2\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    message = str(info.value)
    assert message.startswith(f"{path}:")
    assert "invalid YAML" in message
    line = int(message[len(str(path)) + 1 :].split(":", 1)[0])
    assert 3 <= line <= 4


def test_load_yaml_invalid_yaml_exact_line(tmp_path):
    # the bad indentation is on line 3
    path = write(tmp_path / "bad.yaml", "a: 1\nb: 2\n  c: 3\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(info.value).startswith(f"{path}:3: invalid YAML")


@pytest.mark.parametrize(
    ("text", "kind"), [("- a\n- b\n", "list"), ("42\n", "int"), ("hi\n", "str")]
)
def test_load_yaml_top_level_must_be_mapping(tmp_path, text, kind):
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(path) in str(info.value)
    assert "mapping" in str(info.value)
    assert kind in str(info.value)


def test_load_yaml_non_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(path) in str(info.value)
    assert "UTF-8" in str(info.value)


# --------------------------------------------------------------------------- overrides
@pytest.mark.parametrize(
    ("text", "parts", "value"),
    [
        ("a=3", ["a"], 3),
        ("a.b=3", ["a", "b"], 3),
        ("a.b.c=x", ["a", "b", "c"], "x"),
        ("flag=true", ["flag"], True),
        ("rate=0.25", ["rate"], 0.25),
        ("note=null", ["note"], None),
        ("tags=[x, y]", ["tags"], ["x", "y"]),
        ("name=", ["name"], ""),
        ("name=a=b", ["name"], "a=b"),
        (" name =value", ["name"], "value"),
        ("name=[unclosed", ["name"], "[unclosed"),  # invalid YAML is kept as text
    ],
)
def test_parse_override(text, parts, value):
    assert parse_override(text) == (parts, value)


@pytest.mark.parametrize("text", ["count", "inner.depth", ""])
def test_parse_override_without_equals(text):
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        parse_override(text)


@pytest.mark.parametrize("text", ["=3", "a..b=3", ".a=1", "a.=1"])
def test_parse_override_empty_key(text):
    with pytest.raises(ConfigError, match="empty key"):
        parse_override(text)


def test_apply_overrides_dotted_keys_and_copy():
    data = {"count": 1, "inner": {"depth": 1, "label": "x"}, "tags": ["a"]}
    out = apply_overrides(data, ["inner.depth=5", "count=2", "tags=[b, c]"])
    assert out == {"count": 2, "inner": {"depth": 5, "label": "x"}, "tags": ["b", "c"]}
    # the input is left untouched (deep copy)
    assert data == {"count": 1, "inner": {"depth": 1, "label": "x"}, "tags": ["a"]}


def test_apply_overrides_later_wins():
    assert apply_overrides({}, ["count=1", "count=2"]) == {"count": 2}


def test_apply_overrides_creates_sections():
    assert apply_overrides({}, ["inner.depth=3", "a.b.c=x"]) == {
        "inner": {"depth": 3},
        "a": {"b": {"c": "x"}},
    }


def test_apply_overrides_fills_empty_section():
    # "inner:" with nothing under it reads as None
    assert apply_overrides({"inner": None}, ["inner.depth=3"]) == {"inner": {"depth": 3}}


def test_apply_overrides_into_non_section():
    with pytest.raises(ConfigError) as info:
        apply_overrides({"count": 3}, ["count.sub=1"])
    assert "count.sub=1" in str(info.value)
    assert "'count' is not a section" in str(info.value)


def test_apply_overrides_malformed():
    with pytest.raises(ConfigError, match=r"must look like key\.path=value"):
        apply_overrides({}, ["count"])


# --------------------------------------------------------------------------- load_config
def test_load_config_without_file_or_overrides():
    assert load_config(Outer) == Outer()


def test_load_config_yaml_plus_overrides(tmp_path):
    path = write(
        tmp_path / "cfg.yaml",
        "count: 2\nname: from-file\ntags: [a]\ninner:\n  depth: 2\n  label: file\n",
    )
    cfg = load_config(Outer, path, ["inner.depth=9", "tags=[x, y]", "flag=true", "extra.k=v"])
    assert cfg.count == 2
    assert cfg.name == "from-file"
    assert cfg.tags == ["x", "y"]
    assert cfg.flag is True
    assert cfg.extra == {"k": "v"}
    assert cfg.inner == Inner(depth=9, label="file", ratio=0.5)
    assert "outer" in VALIDATE_CALLS


def test_load_config_overrides_only():
    cfg = load_config(Outer, None, ["count=5", "note=hi"])
    assert cfg.count == 5 and cfg.note == "hi"


def test_load_config_override_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path / "cfg.yaml", "count: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path, ["inner.nope=1"])
    assert str(path) in str(info.value)
    assert "inner.nope" in str(info.value)
    assert "--set" in str(info.value)


def test_load_config_override_wrong_type_names_key(tmp_path):
    path = write(tmp_path / "cfg.yaml", "count: 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path, ["count=many"])
    assert str(path) in str(info.value)
    assert "count:" in str(info.value)


def test_load_config_yaml_wrong_type_names_file(tmp_path):
    path = write(tmp_path / "cfg.yaml", "flag: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path)
    assert str(info.value).startswith(f"{path}: flag:")


# --------------------------------------------------------------------------- real configs
def test_model_config_defaults_and_valid_values():
    cfg = build_config(ModelConfig, {"dtype": "bfloat16", "chat_template": "never"})
    assert cfg.dtype == "bfloat16" and cfg.chat_template == "never"
    assert cfg.name == "smollm2-135m-instruct"


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("dtype=float8", "model.dtype"),
        ("chat_template=sometimes", "model.chat_template"),
        ("name=''", "model.name is empty"),
        ("trust_remote_code=1", "trust_remote_code"),
    ],
)
def test_model_config_rejects_bad_values(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(ModelConfig, None, [override])


def test_world_facts_config_overrides():
    cfg = load_config(WorldFactsConfig, None, ["task=mcqa", "n_choices=3", "id_test_fraction=0.25"])
    assert cfg.task == "mcqa" and cfg.n_choices == 3 and cfg.id_test_fraction == 0.25


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("task=cloze", "world_facts.task"),
        ("n_choices=1", "world_facts.n_choices"),
        ("n_choices=9", "world_facts.n_choices"),
        ("id_test_fraction=1.0", "world_facts.id_test_fraction"),
        ("n_cities=-1", "world_facts.n_cities"),
        ("id_relations=[no_such_relation]", "unknown relation"),
        ("id_relations=[]", "id_relations is empty"),
        ("ood_relations=[capital_of_country]", "both in-domain and"),
        ("n_cities=lots", "n_cities"),
    ],
)
def test_world_facts_config_rejects_bad_values(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(WorldFactsConfig, None, [override])


def test_demo_config_from_yaml_and_overrides(tmp_path):
    import yaml

    data = yaml.safe_load(demo_config_path().read_text(encoding="utf-8"))
    data.update(run_dir="runs/x", model={"dtype": "float32"})
    data["world_facts"] = {"seed": 3, "n_cities": 50}
    path = write(tmp_path / "demo.yaml", yaml.safe_dump(data))
    cfg = load_demo_config(
        str(path), ["model.device=cpu", "build.n_van=20", "eval.match=em"], n_questions=10
    )
    assert cfg.run_dir == "runs/x"
    assert cfg.build["n_van"] == 20 and cfg.eval["match"] == "em"
    assert [t.data.sample for t in cfg.tests] == [10, 10]
    assert isinstance(cfg.model, ModelConfig)
    assert cfg.model.dtype == "float32" and cfg.model.device == "cpu"
    assert isinstance(cfg.world_facts, WorldFactsConfig)
    assert cfg.world_facts.seed == 3 and cfg.world_facts.n_cities == 50
    assert cfg.world_facts.task == "oeqa"  # default kept


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("eval.batch_size=-2", "batch_size must be positive"),
        ("eval.max_new_tokens=0", "max_new_tokens"),
        ("eval.match=fuzzy", "match must be one of"),
        ("model.dtype=float8", "model.dtype"),
        ("world_facts.n_choices=20", "world_facts.n_choices"),
        ("build.n_van=ten", "build.n_van"),
        ("model.colour=red", "model.colour"),
        ("model=small", "model"),
        ("methods=[craft, crafty]", "unknown method 'crafty'"),
    ],
)
def test_demo_config_rejects_bad_values(override, match):
    with pytest.raises(ConfigError, match=match):
        load_demo_config(None, [override])


def test_demo_n_questions_must_be_positive():
    with pytest.raises(ConfigError, match="--n-questions must be positive"):
        load_demo_config(None, [], n_questions=0)


def test_validate_error_names_origin_file(tmp_path):
    path = write(tmp_path / "demo.yaml", "model:\n  dtype: float8\n")
    with pytest.raises(ConfigError) as info:
        load_demo_config(str(path))
    assert "model.dtype" in str(info.value)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- YAML numbers
FLOAT_SPELLINGS = [
    ("1e-5", 1e-5),
    ("1E-5", 1e-5),
    ("1e-05", 1e-5),  # str(1e-05): what `rait train --learning-rate 1e-5` turns into
    ("2e4", 2e4),
    ("1.5e+3", 1500.0),
    ("1e+20", 1e20),
    (".5", 0.5),
    ("+1.0", 1.0),
    ("-.5e3", -500.0),
    ("1.", 1.0),
    ("2.5", 2.5),
    ("1_000.5", 1000.5),
]


@pytest.mark.parametrize(("text", "value"), FLOAT_SPELLINGS)
def test_every_float_spelling_is_a_number_in_yaml_overrides_and_flags(tmp_path, text, value):
    path = write(tmp_path / "cfg.yaml", f"rate: {text}\ninner:\n  ratio: {text}\n")
    assert load_yaml(path)["rate"] == value
    cfg = load_config(Outer, path)
    assert cfg.rate == value and type(cfg.rate) is float
    assert cfg.inner.ratio == value
    assert parse_override(f"rate={text}") == (["rate"], value)
    assert load_config(Outer, None, [f"inner.ratio={text}"]).inner.ratio == value
    assert parse_override(f"tags=[{text}, x]") == (["tags"], [value, "x"])


def test_the_cli_learning_rate_flag_reaches_the_train_config():
    from rait.train import TrainConfig

    # cli._flag_overrides writes f"{key}={value}" with the float argparse made
    cfg = load_config(TrainConfig, None, [f"learning_rate={1e-5}", f"epochs={2.0}"])
    assert cfg.learning_rate == 1e-5 and cfg.epochs == 2.0


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10),
        ("010", 10),
        ("-3", -3),
        ("+3", 3),
        ("1_000", 1000),
        ("0x1F", 31),
        ("0o17", 15),
        ("0b101", 5),
    ],
)
def test_yaml_integers(tmp_path, text, value):
    # 010 is ten (YAML 1.1 read it as octal eight)
    path = write(tmp_path / "cfg.yaml", f"count: {text}\n")
    assert load_yaml(path) == {"count": value}
    assert parse_override(f"count={text}") == (["count"], value)
    if value > 0:
        cfg = load_config(Outer, path)
        assert cfg.count == value and type(cfg.count) is int


@pytest.mark.parametrize("text", ["1:30", "1e", "e5", "1.2.3", "1__0", "_1", "inf", "nan"])
def test_things_that_are_not_numbers_stay_strings(text):
    assert parse_override(f"name={text}") == (["name"], text)
    assert load_config(Outer, None, [f"name={text}"]).name == text


@pytest.mark.parametrize("text", ["1e5", "007", "1.50", "1_000", "0x1F", "2E-3", "+1"])
def test_a_string_field_gets_a_number_as_it_was_written(tmp_path, text):
    path = write(tmp_path / "cfg.yaml", f"name: {text}\nnote: {text}\ntags: [{text}]\n")
    cfg = load_config(Outer, path)
    assert cfg.name == text and cfg.note == text and cfg.tags == [text]
    assert load_config(Outer, None, [f"name={text}"]).name == text
    model = load_yaml(write(tmp_path / "m.yaml", f"revision: {text}"))
    assert build_config(ModelConfig, model).revision == text


@pytest.mark.parametrize("text", [".inf", "-.inf", "+.inf", ".nan", ".NaN", ".Inf"])
def test_non_finite_floats_are_refused(tmp_path, text):
    path = write(tmp_path / "cfg.yaml", f"rate: {text}\n")
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path)
    assert str(info.value) == f"{path}: rate: expected a finite number, got {text}"


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "Infinity"])
def test_non_finite_words_for_a_float_field_say_finite(text):
    # what argparse's type=float lets through from `--learning-rate inf`
    with pytest.raises(ConfigError) as info:
        load_config(Outer, None, [f"rate={text}"])
    assert str(info.value) == (
        f"config (with --set overrides): rate: expected a finite number, got {text!r}"
    )


def test_a_quoted_number_for_a_float_field_says_to_drop_the_quotes(tmp_path):
    path = write(tmp_path / "cfg.yaml", 'rate: "1e-5"\n')
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path)
    assert str(info.value) == (
        f"{path}: rate: expected a number, got the string '1e-5' (write it without quotes)"
    )


def test_a_float_for_an_integer_field_is_shown_as_written(tmp_path):
    path = write(tmp_path / "cfg.yaml", "count: 1e3\n")
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path)
    assert str(info.value) == f"{path}: count: expected an integer, got 1e3"


def test_yaml_numbers_become_plain_numbers_in_configs_copies_and_dumps(tmp_path):
    import copy
    import json
    import pickle

    import yaml

    from rait.pipeline import PipelineConfig

    data = load_yaml(write(tmp_path / "cfg.yaml", "train: {learning_rate: 2e-4, lora_r: 8}\n"))
    value = data["train"]["learning_rate"]
    assert value == 2e-4
    for plain in (copy.deepcopy(value), pickle.loads(pickle.dumps(value))):
        assert type(plain) is float and plain == 2e-4
    # a section kept as plain data (dict[str, Any]) dumps like any other config
    cfg = build_config(PipelineConfig, {**load_yaml(demo_config_path()), "train": data["train"]})
    dumped = config_to_dict(cfg)
    assert dumped["train"] == {"learning_rate": 2e-4, "lora_r": 8}
    assert type(dumped["train"]["learning_rate"]) is float
    assert yaml.safe_load(yaml.safe_dump(dumped))["train"]["learning_rate"] == 2e-4
    assert json.loads(json.dumps(dumped))["train"]["lora_r"] == 8


# --------------------------------------------------------------------------- duplicate keys
@pytest.mark.parametrize(
    ("text", "line", "key", "first"),
    [
        ("count: 1\nname: a\ncount: 2\n", 3, "count", 1),
        ("inner:\n  depth: 1\n  label: x\n  depth: 2\n", 4, "inner.depth", 2),
        ("inner: {depth: 1, depth: 2}\n", 1, "inner.depth", 1),
        ("a:\n  b:\n    - c: 1\n    - c: 1\n      c: 2\n", 5, "a.b[1].c", 4),
        ("count: 1\n'count': 2\n", 2, "count", 1),  # quoting does not make another key
        ("1: a\n1.0: b\n", 2, "1.0", 1),  # the same number, the same dict key
    ],
)
def test_duplicate_key_names_the_file_the_line_and_the_key(tmp_path, text, line, key, first):
    path = write(tmp_path / "dup.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(info.value) == (
        f"{path}:{line}: duplicate key {key!r} (first given at line {first}); give each key once"
    )


def test_same_key_in_different_sections_and_merge_keys_are_fine(tmp_path):
    path = write(
        tmp_path / "ok.yaml",
        "base: &base {depth: 1, label: x}\ninner:\n  <<: *base\n  depth: 2\nlabel: top\n",
    )
    assert load_yaml(path) == {
        "base": {"depth": 1, "label": "x"},
        "inner": {"depth": 2, "label": "x"},
        "label": "top",
    }


def test_duplicate_key_in_an_override_value():
    with pytest.raises(ConfigError) as info:
        parse_override("inner={depth: 1, depth: 2}")
    assert str(info.value) == (
        "override 'inner={depth: 1, depth: 2}': duplicate key 'depth' (first given at line 1)"
    )


def test_control_character_in_a_yaml_file_is_one_error(tmp_path):
    path = write(tmp_path / "nul.yaml", "count: 1\n\nname: a\x00b\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    assert str(info.value) == (f"{path}:3: invalid YAML (control character #x0000 is not allowed)")


def test_renamed_keys_of_earlier_versions_still_load():
    """A config or a run's stage.json written before the rename (probe/eval `vllm_*`, influence
    `tau_c`) loads into the new keys; the old and the new key together are refused."""
    from rait.evaluate import EvalConfig
    from rait.influence import InfluenceConfig
    from rait.probe import ProbeConfig

    old = {"vllm_tensor_parallel_size": 2, "vllm_gpu_memory_utilization": 0.5}
    for cls in (ProbeConfig, EvalConfig):
        cfg = build_config(cls, old)
        assert (cfg.vllm.tensor_parallel_size, cfg.vllm.gpu_memory_utilization) == (2, 0.5)
    assert build_config(InfluenceConfig, {"probe": "p", "tau_c": 0.25}).tau_mu == 0.25
    with pytest.raises(ConfigError, match="tau_c is the old name of tau_mu"):
        build_config(InfluenceConfig, {"probe": "p", "tau_c": 0.25, "tau_mu": 0.3})
    with pytest.raises(ConfigError, match=r"old name of vllm\.tensor_parallel_size"):
        build_config(ProbeConfig, {**old, "vllm": {"tensor_parallel_size": 1}})
