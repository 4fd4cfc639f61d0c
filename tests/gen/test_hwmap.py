"""Hardware mapping: weight column order matches the stream/window order exactly."""
import numpy as np
from hypothesis import given, settings

from bitplane.gen import hwmap
from bitplane.gen.golden import Golden
from bitplane.gen.lower import MatmulStage
from bitplane.gen.spec import load_network
from bitplane.core.packing import stream_order
from tests.support.netgen import network_plans, random_inputs, write_network


def windows_in_stream_order(vals, k, s, pads, pad):
    """[N, C, H, W] -> [N, OH*OW, K*K*C]: for each output pixel, (kh, kw, c) order."""
    t, b, l, r = pads
    x = np.pad(vals, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=pad)
    N, C, H, W = x.shape
    oh, ow = (H - k) // s + 1, (W - k) // s + 1
    out = np.empty((N, oh * ow, k * k * C), dtype=vals.dtype)
    for i in range(oh):
        for j in range(ow):
            win = x[:, :, i * s:i * s + k, j * s:j * s + k]          # N, C, k, k
            out[:, i * ow + j] = win.transpose(0, 2, 3, 1).reshape(N, -1)
    return out


@settings(max_examples=25)
@given(network_plans(max_convs=2))
def test_matrix_times_stream_equals_golden_accumulators(tmp_path_factory, plan):
    d = tmp_path_factory.mktemp("hw")
    net = load_network(write_network(plan, d))
    g = Golden(net)
    idx = g.check_input(random_inputs(net, 4))
    for st in g.lowered.stages:
        if isinstance(st, MatmulStage) and not (st.kind == "conv" and st.groups > 1):
            Wi = hwmap.weight_ints(st)                               # [R, N], stream column order
            codes_in, out = hwmap.stage_io(st, idx)
            vals = st.in_act.int_basis.int_values(codes_in)          # from plane codes, as the HW does
            assert np.array_equal(vals, st.in_act.level_ints[idx])
            acc = g.stage_acc(st, idx)
            if st.kind == "conv":
                pad = int(st.in_act.int_basis.int_values(np.array([hwmap.pad_code(st)]))[0])
                win = windows_in_stream_order(vals, st.kernel, st.stride, st.pads, pad)
                got = np.einsum("npk,rk->npr", win, Wi)              # N, pixels, R
                assert np.array_equal(got, stream_order(acc).reshape(got.shape))
            else:
                flat = stream_order(vals) if vals.ndim == 4 else vals
                assert np.array_equal(flat @ Wi.T, acc)
            if not st.raw:
                assert out.max() < (1 << st.out_act.planes)
        idx = g.run_stage(st, idx)
