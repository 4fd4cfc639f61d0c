"""Test-suite configuration: deterministic hypothesis runs (same examples on every CI run).

Set HYPOTHESIS_PROFILE=explore to draw fresh random examples locally.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("explore", deadline=None, max_examples=200,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


import pytest  # noqa: E402


def _compile_tiny(tmp_path_factory, embed_weights: bool):
    from bitplane.gen.compile import compile_network
    from bitplane.gen.spec import load_network
    from tests.support.netgen import write_network
    from tests.support.networks import TINY
    tmp = tmp_path_factory.mktemp("tiny")
    net = load_network(write_network(TINY, tmp, seed=4))
    m = compile_network(net, tmp / "out", target_fps=100000, embed_weights=embed_weights, progress=lambda s: None)
    return net, tmp / "out", m


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """``(net, folder, manifest)``: the tiny conv network (tests/support/networks.TINY) compiled
    once per test process, weights also embedded in the bitstream."""
    return _compile_tiny(tmp_path_factory, True)


@pytest.fixture(scope="session")
def tiny_loadable(tmp_path_factory):
    """The same network compiled without embedded weights (the host must load them)."""
    return _compile_tiny(tmp_path_factory, False)
