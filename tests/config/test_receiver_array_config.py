"""A receiver section listing several radios is one array: ``n_antennas`` must be the sum of
their receive channels, checked when the bench loads (with a message saying what to set)."""
import pytest
import yaml
from pydantic import ValidationError

from testbed.config.bench import BenchConfig
from testbed.net.roles.common import resolve_bench


def _with_antennas(n):
    data = resolve_bench("pluto_4node_emulated").model_dump(mode="json")
    data["receiver"]["n_antennas"] = n
    return data


def test_two_2r2t_plutos_are_four_antennas():
    bench = BenchConfig.model_validate(_with_antennas(4))
    assert [r.n_rx_channels for r in bench.receiver.radio] == [2, 2]


@pytest.mark.parametrize("n", [2, 3, 5])
def test_n_antennas_that_the_radios_do_not_have_is_refused(n):
    with pytest.raises(ValidationError, match=r"n_antennas is %d but its radio\(s\) receive on "
                                              r"4 channel\(s\) \(2 \+ 2 n_rx_channels\)" % n):
        BenchConfig.model_validate(_with_antennas(n))


def test_file_references_are_checked_after_loading(tmp_path):
    from testbed.config.loader import load_bench
    radio = resolve_bench("pluto_4node_emulated").receiver.radio[0].model_dump(mode="json")
    (tmp_path / "rx.yaml").write_text(yaml.safe_dump(radio))
    data = _with_antennas(3)
    data["receiver"]["radio"] = ["rx.yaml", "rx.yaml"]
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(Exception, match="n_antennas is 3"):
        load_bench(tmp_path / "b.yaml")
