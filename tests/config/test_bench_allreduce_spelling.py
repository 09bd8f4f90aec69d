"""One method spelling in bench files too: ``allreduce: method: aircomp-zf-sdr`` as on the
command line; the old ``method: aircomp`` + ``transceiver: zf_sdr`` (and ``analog_fdma``) load
with a warning naming the new spelling; unknown names are refused with the valid ones."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from testbed.config.bench import TRANSCEIVER_DESIGNS, AllReduceSection
from testbed.errors import DeprecatedSpellingWarning
from testbed.methods import METHOD_NAMES
from testbed.optim.transceiver import METHODS as DESIGNS


def test_the_bench_file_knows_every_design_by_its_one_name():
    assert TRANSCEIVER_DESIGNS == DESIGNS


@pytest.mark.parametrize("name", [*METHOD_NAMES, "aircomp-siso-optimal"])
def test_new_spelling_loads_silently(name, recwarn):
    assert AllReduceSection(method=name).method == name
    assert not [w for w in recwarn if issubclass(w.category, DeprecatedSpellingWarning)]


@pytest.mark.parametrize("old, new", [
    ({"method": "aircomp", "transceiver": "zf_sdr"}, "aircomp-zf-sdr"),
    ({"method": "aircomp", "transceiver": "mmse"}, "aircomp-mmse"),
    ({"method": "aircomp", "transceiver": "siso_optimum"}, "aircomp-siso-optimal"),
    ({"method": "analog_fdma"}, "fdma"),
    ({"method": "exact", "transceiver": "mmse"}, "exact"),
])
def test_old_spelling_loads_and_warns(old, new):
    with pytest.warns(DeprecatedSpellingWarning, match=f"write allreduce: method: {new}"):
        sec = AllReduceSection.model_validate(old)
    assert sec.method == new


def test_unknown_method_is_refused_with_the_valid_names():
    with pytest.raises(ValidationError, match="aircomp-zf-sdr"):
        AllReduceSection(method="carrier-pigeon")
