import pytest

from tests.support.networks import TINY
from tests.support.netgen import write_network


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory):
    """The small conv+pool+dense network of the accelerator tests (YAML + NPZ)."""
    return write_network(TINY, tmp_path_factory.mktemp("rel-spec"), seed=4)


@pytest.fixture(scope="session")
def tiny_build(tiny_spec, tmp_path_factory):
    from bitplane.gen.compile import compile_network
    from bitplane.gen.spec import load_network
    out = tmp_path_factory.mktemp("rel-build") / "tiny"
    compile_network(load_network(tiny_spec), out, target_fps=100000, progress=lambda s: None)
    return out
