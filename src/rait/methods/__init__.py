"""The data-construction methods, one module each, registered by name (``rait build --method``).

=================  ===========================  ==========================================
name               module                       paper
=================  ===========================  ==========================================
van-tuning         :mod:`.van_tuning`           CRaFT/GRAIT baseline
cor-rait           :mod:`.cor_rait`             CRaFT section 2 (correctness only)
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

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        van_tuning.SPEC,
        cor_rait.SPEC,
        rtuning.PADDING,
        rtuning.REPLACE,
        rtuning.UNSUPERVISED,
        craft.CORCER_RAIT,
        craft.CRAFT,
        craft.CRAFT_NO_FLOW,
        craft.CRAFT_NO_CER,
        grait.GRAIT,
        grait.GRAIT_NO_O1,
        grait.GRAIT_NO_O2,
    )
}


def get_method(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None
