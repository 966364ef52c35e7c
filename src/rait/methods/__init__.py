"""The data-construction methods, one module each, registered by name (``rait build --method``).

=================  ===========================  ==========================================
name               module                       paper
=================  ===========================  ==========================================
van-tuning         :mod:`.van_tuning`           CRaFT/GRAIT baseline
cor-rait           :mod:`.cor_rait`             CRaFT §3.1 (correctness only)
rtuning-padding    :mod:`.rtuning`              R-Tuning eq. (1), the main method
rtuning-replace    :mod:`.rtuning`              R-Tuning-R (appendix A.5 expressions)
rtuning-u          :mod:`.rtuning`              R-Tuning-U (section 5.1, entropy split)
corcer-rait        :mod:`.craft`                CRaFT w/o Flow (correctness + certainty)
craft              :mod:`.craft`                CRaFT Algorithm 1 (with rehearsal)
craft-no-flow      :mod:`.craft`                ablation, = corcer-rait
craft-no-cer       :mod:`.craft`                ablation: flow filter, random draws
grait              :mod:`.grait`                GRAIT Algorithm 1 (with ``rait influence``)
grait-no-o1        :mod:`.grait`                ablation: random draws, with weights
grait-no-o2        :mod:`.grait`                ablation: influence selection, no weights
=================  ===========================  ==========================================
"""

from __future__ import annotations

from rait.errors import ConfigError
from rait.methods import cor_rait, craft, grait, rtuning, van_tuning
from rait.methods.base import MethodSpec

#: the rows evaluated on the base model, before any method: Init-Basic (basic prompt; every
#: THS is measured against it) and Init-Refuse (REFUSE prompt), docs/methods.md §7
BASELINES = ("init-basic", "init-refuse")

#: every data-construction method by name, in the papers' row order (the results table's
#: order): each family of methods followed by its ablations. The only list of methods: the
#: pipeline, the results table, the demo, the CLI's choices and the docs read it.
METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Add ``spec`` to :data:`METHODS` (after the methods already there); a name already
    registered is refused unless ``replace``. Returns ``spec``."""
    if not isinstance(spec, MethodSpec):
        raise ConfigError(f"register_method: expected a MethodSpec, got {type(spec).__name__}")
    if spec.name in METHODS and not replace:
        raise ConfigError(f"method {spec.name!r} is already registered")
    if spec.name in BASELINES:
        raise ConfigError(f"method {spec.name!r}: the name of a baseline")
    if spec.alias_of is not None and spec.alias_of not in METHODS:
        raise ConfigError(f"method {spec.name!r}: alias of unknown method {spec.alias_of!r}")
    METHODS[spec.name] = spec
    return spec


for _spec in (
    van_tuning.SPEC,
    cor_rait.SPEC,
    rtuning.PADDING,
    rtuning.REPLACE,
    rtuning.UNSUPERVISED,
    craft.CORCER_RAIT,
    craft.CRAFT_NO_CER,
    craft.CRAFT_NO_FLOW,
    craft.CRAFT,
    grait.GRAIT_NO_O1,
    grait.GRAIT_NO_O2,
    grait.GRAIT,
):
    register_method(_spec)


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


def method_names(aliases: bool = True) -> list[str]:
    """The registered names in row order; without ``aliases``, one name per rule (the demo's
    and the default method list)."""
    return [name for name, spec in METHODS.items() if aliases or spec.alias_of is None]


def row_order() -> list[str]:
    """The results table's row order: the baselines, then :data:`METHODS`."""
    return [*BASELINES, *METHODS]
