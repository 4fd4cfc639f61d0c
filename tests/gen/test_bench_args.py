"""bench/networks.py's --nets parser: the default list parses, malformed entries are refused by name."""
import pytest

from bench.networks import DEFAULT_NETS, parse_nets


def test_default_nets_parse():
    nets = parse_nets(DEFAULT_NETS)
    assert ("cnv-w1a1", 1000.0, True, None) in nets and ("tfc-w1a1", 20000.0, True, None) in nets
    assert parse_nets("cnv-w1a1:9000:xc7") == [("cnv-w1a1", 9000.0, False, None)]
    assert parse_nets("cnv-w1a1:9000:xc7:fold=bench/folds/cnv-w1a1-conv1-lutram.yaml") == \
        [("cnv-w1a1", 9000.0, False, "bench/folds/cnv-w1a1-conv1-lutram.yaml")]
    assert len({(n, f) for n, f, _, _ in nets}) == len(nets)


@pytest.mark.parametrize("bad, msg", [("tfc-w1a1", "expected NAME:TARGET_FPS"),
                                      ("tfc-w1a1:1000:ecp5", "expected NAME:TARGET_FPS"),
                                      ("nosuch:1000", "no examples/nosuch.yaml"),
                                      ("tfc-w1a1:fast", "'fast' is not a number"),
                                      ("tfc-w1a1:0", "must be > 0"),
                                      ("tfc-w1a1:1000:xc7:fold=nosuch.yaml", "no fold file nosuch.yaml"),
                                      ("tfc-w1a1:fold=a.yaml", "is not a number")])
def test_bad_entries_name_the_entry(bad, msg):
    with pytest.raises(ValueError, match=msg) as e:
        parse_nets(f"tfc-w2a2:100,{bad}")
    assert repr(bad) in str(e.value)


def test_equal_throughput_rows_are_finns_rates():
    from bench.report import EQUAL_THROUGHPUT, FINN
    nets = parse_nets(EQUAL_THROUGHPUT)
    assert {(n, f) for n, f, _, _ in nets} == {(r["network"], float(r["fps"])) for r in FINN}
    assert not any(ecp5 for _, _, ecp5, _ in nets)


def test_pareto_front_keeps_only_undominated_points():
    """bench/pareto.py: a point stays when no other has at most its LUTs and at least its frames/s."""
    from bench.pareto import pareto_front
    pts = [(10, 5.0), (20, 4.0), (30, 9.0), (5, 1.0), (30, 9.0), (30, 8.0), (40, 9.0)]
    assert pareto_front(pts) == [(5, 1.0), (10, 5.0), (30, 9.0)]
    assert pareto_front([]) == []


def test_pareto_retries_at_the_rate_the_planner_says_is_reachable():
    from bench.pareto import _reachable
    msg = ("layer 'conv0' cannot reach 18300 frames/s at 100 MHz: at its widest fold (PE=64, SIMD=27; memory "
           "words at most 32,768 bits) it needs 7200 cycles/frame (> 5464); lower the target or raise the clock")
    assert 13_860 < _reachable(msg) < 100e6 / 7200
    assert _reachable("LUT budget 100 is too small") is None
    assert 12_330 < _reachable("layer 'conv0' cannot reach the target: its block needs 8,100 cycles/frame (> 7286) "
                               "streaming its input") < 100e6 / 8100
