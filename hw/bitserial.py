"""Bit-serial matrix-vector-threshold unit (MVTU) for any bit-plane bases.

Integer math (docs/design.md section 5): the weight of row ``r``, column ``k`` is a code with
bit-planes ``beta^w_i`` (``i < Pw``) worth ``W = sum_i cw[i][r] beta^w_i + ow[r]``; an
activation code with planes ``beta^a_j`` (``j < Pa``) is worth ``A = sum_j ca[j] beta^a_j +
oa``. For each input vector the unit computes the exact dot product of every row::

    acc[r] = sum_i sum_j cw[i][r] ca[j] popcount(beta^w_i & beta^a_j)      (bit-serial part)
           + ow[r] * S_a                                                  (S_a = sum_j ca[j] popcount(beta^a_j))
           + K[r]                                                         (K = oa sum_i cw[i][r] popcount(beta^w_i) + N ow oa)

``S_a`` is accumulated once per vector (during the first row fold, with its own popcount
tree); ``K`` depends only on the weights and is loaded with them (the compiler computes it:
:func:`row_constants`). With ``xnor`` (both sides a single +-1 plane) the unit uses
``acc = 2 popcount(xnor(beta^w, beta^a)) - N`` instead; with weights symmetric about zero
(:attr:`EngineConfig.bipolar`) ``2 acc = sum_i sum_j cw[i][r] ca[j] popcount(xnor(beta^w_i,
beta^a_j)) + C[r]``: no ``S_a`` (docs/design.md section 5.2).

Then either ``T`` thresholds per row with a direction bit each (``level = #{t: acc >=
thr_t if dir_t else acc <= thr_t}``) and a level -> code table, or the raw accumulator.

The single definitions used by the compiler, the host and the tests live here:
:func:`engine_cycles` (cycle formula), :func:`pack_weights`, :func:`pack_thresholds`
(:func:`pack_threshold_words`),
:func:`pack_constants` (memory layouts).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from bitplane.core.intmath import signed_bits
from .memory import (BLOCK_RAM_18K_SHAPES, block_memory, block_tiles, in_lut_ram, loadable_ports, placed_style,
                     splittable, tiled_read, TILED_READ_LATENCY)
from .popcount import CompressorPopcount, popcount_latency
from .stream_blocks import CREDIT_RETURN, StreamFIFO, counter_step, credit_room, nested_lasts_after, ready_copies




#: Weight-memory styles (FINN's ``ram_style``): the synthesis tool's choice, block RAM, or
#: distributed (LUT) RAM; set per layer in a fold file (gen.plan) and written as the memory's
#: ``ram_style`` attribute, which yosys (xc7, ECP5) honours.
RAM_STYLES = ("auto", "block", "distributed")
#: How the per-PE popcounts are built: ``adder`` a balanced adder tree of 4-lane chunks (any
#: device; the smaller choice on 4-input-LUT devices such as ECP5), ``lut6`` a registered tree of
#: 6-input-LUT compressors (:mod:`bitplane.hw.popcount`; about 1.4 instead of 2.1 LUT6 per lane
#: on Xilinx 7-series/UltraScale, a few more cycles of latency). ``bitplane compile --device``
#: picks it from the device's LUT size.
POPCOUNT_STYLES = ("adder", "lut6")
#: PEs fed by one register of the selected activation plane (adder popcounts; more PEs get
#: copies, :func:`_pe_group_registers`). The 1-bit sign registers a Horner term, a coefficient
#: table or the outer sums apply come one per PE.
ACT_FANOUT = 4
#: Lanes whose activation-plane multiplexers one register of the plane index drives (more lanes
#: get copies; :meth:`BitSerialMVTU._plane_select`).
SEL_FANOUT = 16


def _pe_group_registers(m, value, width: int, pe: int, name: str, first=None,
                        per: int = ACT_FANOUT, init=None) -> list:
    """``value`` registered once per ``per`` of ``pe`` PEs (or lanes: the plane index per
    :data:`SEL_FANOUT`), the copies kept apart (``keep``, which
    the synthesis flow carries onto their flip-flops: ``synth.flow.KEEP_REGISTERS``): one
    register driving every PE was an ECP5 critical path (the activation plane, the terms' and
    the outer sums' signs; a sign copy shared by four PEs still was, placed 3.7 ns of routing
    from one of them). Returns PE ``p``'s register at index ``p``. ``first``: a register of
    ``value`` the engine has anyway, copy 0; the others are named ``name`` and their index and
    have no reset (every use is data beside a valid flag: planes, plane indices, signs), or,
    with ``init``, reset to it (control: the accumulators' clear)."""
    start = 0 if first is None else 1
    copies = [Signal(width, name=f"{name}{k}", attrs={"keep": 1}, reset_less=init is None, init=init or 0)
              for k in range(start, -(-pe // per))]
    m.d.sync += [r.eq(value) for r in copies]
    regs = ([] if first is None else [first]) + copies
    return [regs[p // per] for p in range(pe)]


def xnor_compatible(w_coefs, w_offset, a_coefs, a_offset) -> bool:
    """The XNOR/popcount fast path applies: one weight and one activation plane, both +-1
    (coefficient 2, offset -1 on both sides: ``w*a = 2*xnor(bw, ba) - 1``)."""
    return (len(w_coefs) == 1 and len(a_coefs) == 1 and {int(c) for c in w_coefs[0]} == {2}
            and {int(o) for o in w_offset} == {-1} and [int(c) for c in a_coefs] == [2] and int(a_offset) == -1)


@dataclass(frozen=True)
class EngineConfig:
    """Parameters of a :class:`BitSerialMVTU` (plain ints and tuples)."""
    rows: int
    cols: int
    pe: int
    simd: int
    w_coefs: tuple            # [Pw][rows] integer plane coefficients
    w_offset: tuple           # [rows]
    a_coefs: tuple            # [Pa]
    a_offset: int
    n_thresholds: int = 0     # 0: raw accumulator output
    levels: int = 0           # output levels (default n_thresholds + 1)
    out_lut: tuple = ()       # level -> output code (default identity)
    raw_width: int = 32
    xnor: bool = False
    init_weights: tuple = ()  # optional power-on contents: [rows][cols] codes
    init_thresholds: tuple = ()   # [rows][T]
    init_dirs: tuple = ()         # [rows][T] (1: acc >= thr counts, 0: acc <= thr counts)
    init_consts: tuple = ()       # [rows] K values
    weight_ram_style: str = "auto"  # weight memory: "auto" (the synthesis tool's choice), "block", "distributed"
    popcount: str = "adder"         # POPCOUNT_STYLES
    shared_address: bool = False    # loadable memories read and written at one address (hw.memory.loadable_ports)
    weight_lutram_bits: int = 0     # the weight word's top bits in LUT RAM, the rest in block RAM (split_weights)

    def __post_init__(self):
        R, N = self.rows, self.cols
        if self.pe < 1 or R % self.pe:
            raise ValueError(f"PE={self.pe} must divide rows={R}")
        if self.simd < 1 or N % self.simd:
            raise ValueError(f"SIMD={self.simd} must divide cols={N}")
        if len(self.w_coefs) < 1 or any(len(c) != R for c in self.w_coefs):
            raise ValueError("w_coefs must be [Pw][rows]")
        if len(self.w_offset) != R:
            raise ValueError("w_offset must have one entry per row")
        if self.xnor and not xnor_compatible(self.w_coefs, self.w_offset, self.a_coefs, self.a_offset):
            raise ValueError("the XNOR path needs +-1 weights and activations (c=[2], o=-1 on both sides)")
        if self.weight_ram_style not in RAM_STYLES:
            raise ValueError(f"weight_ram_style must be one of {', '.join(RAM_STYLES)}, not {self.weight_ram_style!r}")
        if self.weight_lutram_bits and (self.weight_ram_style != "block" or not
                                        0 < self.weight_lutram_bits < self.pe * self.simd or
                                        not splittable(self.weight_entries)):
            raise ValueError(f"weight_lutram_bits={self.weight_lutram_bits} needs weight_ram_style 'block', fewer "
                             f"bits than the weight word ({self.pe * self.simd}) and 2..{BLOCK_RAM_18K_SHAPES[0][1]} "
                             f"weight words (not {self.weight_entries})")
        if self.popcount not in POPCOUNT_STYLES:
            raise ValueError(f"popcount must be one of {', '.join(POPCOUNT_STYLES)}, not {self.popcount!r}")
        if self.init_thresholds and not self.xnor and len(self.init_consts) != R:
            raise ValueError("power-on thresholds need the row constants (init_consts): K is folded into them")
        # Raw mode outputs the low ``raw_width`` bits of the exact dot product. The engine's
        # internal width (``final_width``) bounds every partial term and can exceed the final
        # value's proven range; the compiler checks that range fits ``raw_width``
        # (gen.hwmap.engine_config), so the truncation is exact.

    @property
    def w_planes(self) -> int:
        return len(self.w_coefs)

    @property
    def a_planes(self) -> int:
        return len(self.a_coefs)

    @property
    def nf(self) -> int:
        return self.rows // self.pe

    @property
    def sf(self) -> int:
        return self.cols // self.simd

    @property
    def raw(self) -> bool:
        return self.n_thresholds == 0

    @property
    def n_levels(self) -> int:
        return self.levels or self.n_thresholds + 1

    @property
    def out_bits(self) -> int:
        if self.raw:
            return self.raw_width
        top = max(self.out_lut) if self.out_lut else self.n_levels - 1
        return max(1, ceil_log2(top + 1))

    @property
    def bipolar(self) -> bool:
        """Weights symmetric about zero on every row (``ow[r] = -sum_i cw[i][r] / 2``: sign/BWN,
        DoReFa, LQ-Nets' symmetric bases) outside the XNOR path: every plane is counted as +-1
        against the activation planes read as +-1 too (XNOR popcounts), which leaves no
        ``ow x S_a`` term (:func:`row_constants`): ``2 dot = Y + C[r]`` with ``Y = sum_i sum_j
        cw[i][r] ca[j] popcount(xnor(beta^w_i, beta^a_j))``. No activation-sum popcount, no
        offset adder per PE."""
        return not self.xnor and all(2 * self.w_offset[r] == -sum(c[r] for c in self.w_coefs)
                                     for r in range(self.rows))

    @property
    def counts_xnor(self) -> bool:
        """The lane matches are XNORs (the XNOR path and :attr:`bipolar`), else ANDs."""
        return self.xnor or self.bipolar

    @property
    def needs_sa(self) -> bool:
        """The dot product has an ``ow x S_a`` term (the activation sum is counted)."""
        return not self.counts_xnor and any(self.w_offset)

    @property
    def acc_width(self) -> int:
        """Width holding every partial sum of the bit-serial part."""
        B = self.cols * max(sum(abs(c[r]) for c in self.w_coefs) for r in range(self.rows)) \
            * sum(abs(c) for c in self.a_coefs)
        return signed_bits(-B, B) if not self.xnor else signed_bits(0, self.cols)

    @property
    def memory_words(self) -> dict:
        """Word width in bits of each run-time loadable memory (the one definition; the
        engine's ``w_wr``/``t_wr``/``k_wr`` ports and memories use these). The row-constant
        memory exists in raw mode only: with thresholds, K is folded into them
        (:func:`fold_thresholds`)."""
        words = {"weights": self.pe * self.simd,
                 "thresholds": max(1, self.pe * self.n_thresholds * (self.threshold_width + 1))}
        if self.raw:
            words["constants"] = self.pe * self.final_width
        return words

    @property
    def compare_bounds(self) -> tuple[int, int]:
        """Range of the value the thresholds are compared with (threshold mode): the popcount
        of the matches on the XNOR path (``0..N``), ``Y`` on the :attr:`bipolar` path, else the
        bit-serial part plus ``o_w x S_a`` (the row constant, K or C, and the XNOR path's ``2x - N``
        are folded into the thresholds)."""
        if self.xnor:
            return 0, self.cols
        ow = (lambda r: 0) if self.bipolar else (lambda r: abs(self.w_offset[r]))
        B = self.cols * max(sum(abs(c[r]) for c in self.w_coefs) + ow(r) for r in range(self.rows)) \
            * sum(abs(c) for c in self.a_coefs)
        B >>= self.compare_shift            # (a multiple of g*h where the shift is taken out)
        return -B, B

    @property
    def compare_shift(self) -> int:
        """Horner mode compared with thresholds and no ``S_a`` term: the accumulator is compared
        as it is, without the result's shift ``log2(g*h)`` (:attr:`horner_shift`), which the
        thresholds take instead (:func:`fold_thresholds`): comparators that many bits narrower,
        and no constant zero bits under them. 0 otherwise."""
        if self.raw or self.needs_sa or self.horner_shift is None:
            return 0
        return self.horner_shift

    @property
    def threshold_width(self) -> int:
        """Width of a stored threshold: the compared value's range plus one beyond each end
        (a threshold outside the range means "always" or "never")."""
        lo, hi = self.compare_bounds
        return signed_bits(lo - 1, hi + 1)

    @property
    def horner_doubles_always(self) -> bool:
        """Horner mode where every issue of a sum but its first doubles the accumulator: one
        column fold (``SF = 1``) and the plane exponent falling at every step (two-level Horner's
        inner sums, or one plane in the inner or the outer plane loop)."""
        if self.horner_shift is None or self.sf != 1:
            return False
        n_in, n_out = (self.w_planes, self.a_planes) if self.weights_inner else (self.a_planes, self.w_planes)
        return self.horner_levels == 2 or n_in == 1 or n_out == 1

    @property
    def weights_inner(self) -> bool:
        """Issue the weight planes inside the activation planes (Horner order for two weight
        planes under more than two activation planes, e.g. W2 x 8-bit input codes)."""
        return self._horner_bases() and self.w_planes == 2 and self.a_planes > 2

    def _horner_bases(self) -> bool:
        if self.xnor or any(len(set(col)) != 1 for col in self.w_coefs):
            return False
        g, h = abs(self.w_coefs[0][0]), abs(self.a_coefs[0])
        return g > 0 and h > 0 and all(abs(col[0]) == g << i for i, col in enumerate(self.w_coefs)) \
            and all(abs(c) == h << j for j, c in enumerate(self.a_coefs)) and (g * h) & (g * h - 1) == 0

    @property
    def horner_shift(self):
        """Shift-accumulate over planes (Horner order) applies: every weight plane coefficient is
        ``+-g * 2^i`` on every row and every activation plane coefficient ``+-h * 2^j`` (``g, h >
        0``, ``g*h`` a power of two: DoReFa, BWN, unsigned activations, and two's-complement codes
        whose top plane is negative). The plane pairs are issued from the top planes down; the
        accumulator doubles where the exponent ``i + j`` falls and adds or subtracts each popcount
        as it is (the sign of the pair's coefficient): no coefficient multiplexer. Returns
        ``log2(g*h)`` (the result's shift), or None. :attr:`horner_levels` says how."""
        if not self._horner_bases():
            return None
        return (abs(self.w_coefs[0][0]) * abs(self.a_coefs[0])).bit_length() - 1

    @property
    def horner_levels(self) -> int:
        """0: no Horner mode (a coefficient multiplexer); 1: one accumulator (the exponent of the
        issued pairs never rises: ``Pw = 1``, ``Pa <= 2``, or two weight planes issued inside
        the activation planes, :attr:`weights_inner`); 2: more planes on both sides, an inner
        accumulator over the activation planes of a weight plane and an outer one that doubles
        per weight plane and adds or subtracts the inner sum (one pipeline stage more,
        :func:`engine_latency`)."""
        if self.horner_shift is None:
            return 0
        return 1 if self.w_planes == 1 or self.a_planes <= 2 or self.weights_inner else 2

    def plane_signs(self) -> tuple[tuple[bool, ...], tuple[bool, ...]]:
        """Whether each weight plane's and each activation plane's coefficient is negative, in
        issue order (top plane first; Horner mode: one sign per plane)."""
        return (tuple(self.w_coefs[p][0] < 0 for p in reversed(range(self.w_planes))),
                tuple(self.a_coefs[p] < 0 for p in reversed(range(self.a_planes))))

    @property
    def split_weights(self) -> tuple[int, int] | None:
        """``(block RAM bits, LUT RAM bits)`` of each weight word when the weight memory is split
        by columns (:attr:`weight_lutram_bits`): one address reads both parts in the same cycle,
        the low bits from block RAM, the top ``weight_lutram_bits`` from LUT RAM. A wide, shallow
        memory uses a block RAM's port width, not its depth (72 bits a cycle from a RAMB36):
        when a network's weight bandwidth exceeds the device's block RAM ports (FINN's LFC-W1A1
        at its published rate), the part that does not fit goes to LUT RAM instead of the whole
        layer (``gen.devices.relieve_block_ram``). None when not split."""
        if not self.weight_lutram_bits:
            return None
        return self.pe * self.simd - self.weight_lutram_bits, self.weight_lutram_bits

    @property
    def weight_tiles(self) -> tuple[int, int] | None:
        """``(column width, bank depth)`` of a weight memory built as tiles of one block RAM each
        (:func:`hw.memory.block_tiles`: in block RAM, deeper than one block RAM, not split), else
        None. A tiled memory's read data takes two register stages more (:func:`hw.memory.tiled_read`,
        :func:`engine_latency`)."""
        ww, we = self.memory_words["weights"], self.weight_entries
        if in_lut_ram(self.weight_ram_style, we) or we == 1 or self.split_weights:
            return None
        tiles = block_tiles(ww, we)
        return None if tiles == (ww, we) else tiles

    @property
    def weights_in_block_ram(self) -> bool:
        """The weight memory (or its low bits, :attr:`split_weights`) is block RAM: its read data
        is registered twice, once as it leaves the memory (the block RAM's own output register
        on ECP5, :mod:`bitplane.synth.ecp5_outreg`; :func:`hw.memory.tiled_read` for tiles) and
        once in the fabric, near the PEs, so the route from a block RAM column to the PEs ends
        in a flip-flop (CNV-W1A1's ECP5 path: conv1's weight DP16KD output register -> the
        popcount, 3.6 ns of routing across 45 rows, 8.1 ns). It is read a stage earlier for
        that, so the latency stays (a tiled memory's four registers take two stages more:
        :func:`engine_latency`); delaying the activation word instead put three registers in a
        row after the activation buffer, which yosys maps to SRL16E on the xc7 (a LUT each)."""
        we = self.weight_entries
        return we > 1 and not in_lut_ram(self.weight_ram_style, we)

    @property
    def thresholds_in_block_ram(self) -> bool:
        """The threshold memory (one word per row fold) is block RAM: its read data is registered
        twice as the weights' (:attr:`weights_in_block_ram`), read a stage earlier, so the
        latency stays (CNV-W1A1's ECP5 path: block 7's threshold DP16KD output register -> the
        compare, 5.2 ns of routing across 45 rows)."""
        return self.nf > 1 and self.n_thresholds > 0 and not in_lut_ram("auto", self.nf)

    @property
    def weight_entries(self) -> int:
        """Depth of the weight memory: one word per (row fold, column fold, weight plane), so
        the plane is selected by the address, not by a multiplexer (:func:`pack_weights`)."""
        return self.nf * self.sf * self.w_planes

    @property
    def final_width(self) -> int:
        """Width holding the exact dot product, any constant K and thresholds +-1 (:attr:`bipolar`:
        ``Y``, ``C`` and their sum ``2 dot``: ``|C| <= |Y| + 2 |dot|``)."""
        B = self.cols * max(sum(abs(c[r]) for c in self.w_coefs) + abs(self.w_offset[r]) for r in range(self.rows)) \
            * (sum(abs(c) for c in self.a_coefs) + abs(self.a_offset))
        if self.bipolar:
            B = (self.compare_bounds[1] << self.compare_shift) + 2 * B
        return signed_bits(-B - 1, B + 1)


def mvtu_cycles(rows: int, cols: int, pe: int, simd: int, w_planes: int, a_planes: int) -> int:
    """Cycles per output vector in steady state: (R/PE)(N/SIMD)·P_w·P_a (the one definition)."""
    return (rows // pe) * (cols // simd) * w_planes * a_planes


def engine_cycles(cfg: EngineConfig) -> int:
    """:func:`mvtu_cycles` of a configured engine."""
    return mvtu_cycles(cfg.rows, cfg.cols, cfg.pe, cfg.simd, cfg.w_planes, cfg.a_planes)


ENGINE_LATENCY = 12   # cycles from the last issue of a row fold to its output word, with two popcount stages


POP_CHUNK = 4   # lanes per chunk popcount of the adder tree (AND/XNOR pairs, one add: two logic levels)
POP_FANIN = 4   # chunk counts added per registered stage of the adder tree (two adder levels)


def sum_stages(n: int) -> int:
    """Registered stages that add ``n`` chunk counts, :data:`POP_FANIN` at a time (at least one)."""
    k = 1
    while POP_FANIN ** k < n:
        k += 1
    return k


def popcount_stages(cfg: EngineConfig) -> int:
    """Pipeline stages of the engine's popcounts: for the adder tree the chunk counts of
    :data:`POP_CHUNK` lanes, then :func:`sum_stages` of their sums; for ``lut6`` the longer
    :func:`~bitplane.hw.popcount.popcount_latency` of the lane matches and (where it is counted,
    :attr:`EngineConfig.needs_sa`) of the activation plane (``S_a``)."""
    if cfg.popcount == "adder":
        return 1 + sum_stages(-(-cfg.simd // POP_CHUNK))
    return max(popcount_latency(cfg.simd, "xnor" if cfg.counts_xnor else "and"),
               popcount_latency(cfg.simd, "ones") if cfg.needs_sa else 0)


def output_credits(cfg: EngineConfig) -> int:
    """Words of the engine's output FIFO (its credits): enough for the row folds issued during a
    credit's round trip (its fold's last issue, :func:`engine_latency` cycles to the output
    register, one into the FIFO, taken, returned: ``engine_latency + 2 + CREDIT_RETURN``
    cycles, :func:`~bitplane.hw.stream_blocks.credit_room`), so that a consumer always ready
    never sees a gap (one fewer does: tests/hw/test_bitserial.py)."""
    per_fold = cfg.sf * cfg.w_planes * cfg.a_planes
    return max(2, -(-(engine_latency(cfg) + 1 + CREDIT_RETURN) // per_fold) + 1)


def engine_latency(cfg: EngineConfig) -> int:
    """Cycles from the last issue of a row fold to its output word (one more for the outer
    accumulator of two-level Horner mode, :attr:`EngineConfig.horner_levels`, and two more for
    a weight memory in tiles, :attr:`EngineConfig.weight_tiles`: ``TILED_READ_LATENCY - 2``)."""
    return ENGINE_LATENCY - 2 + popcount_stages(cfg) + (cfg.horner_levels == 2) + \
        (TILED_READ_LATENCY - 2) * (cfg.weight_tiles is not None)


def row_constants(cfg: EngineConfig, codes) -> list[int]:
    """The per-row constant the engine's sum misses: ``K[r] = oa * sum_i cw[i][r]
    popcount(beta^w_i of row r) + N * ow[r] * oa``; on the :attr:`~EngineConfig.bipolar` path
    ``C[r]`` with ``2 dot = Y + C[r]``.

    Bipolar: with ``beta = (s + 1)/2`` (``s = +-1``) on both sides, ``popcount(beta^w & beta^a) =
    (2 popcount(xnor) + sum s^w + sum s^a) / 4``; summed with the coefficients, the ``sum s^a``
    part is ``(sum_i cw[i][r]) S_a / 2`` minus a constant, which cancels ``ow[r] S_a`` exactly
    when ``ow[r] = -sum_i cw[i][r] / 2``, leaving ``C[r] = (sum ca + 2 oa) sum_i cw[i][r]
    popcount(beta^w_i) - N (sum_i cw[i][r]) (sum ca + oa)``."""
    out = []
    sca = sum(cfg.a_coefs)
    for r in range(cfg.rows):
        s = 0
        for i in range(cfg.w_planes):
            s += cfg.w_coefs[i][r] * sum((int(c) >> i) & 1 for c in codes[r])
        if cfg.bipolar:
            scw = sum(c[r] for c in cfg.w_coefs)
            out.append((sca + 2 * cfg.a_offset) * s - cfg.cols * scw * (sca + cfg.a_offset))
        else:
            out.append(cfg.a_offset * s + cfg.cols * cfg.w_offset[r] * cfg.a_offset)
    return out


def pack_weights(cfg: EngineConfig, codes) -> list[tuple[int, int]]:
    """``[(addr, data)]`` for the weight memory; ``codes[r][k]`` are plane codes.

    Address ``(nf*Pw + Pw-1-plane)*SF + sf`` (the issue order: row fold, weight plane from the
    top, column fold); bit ``pe*SIMD + lane`` holds plane ``plane`` of row ``nf*PE + pe``, column
    ``sf*SIMD + lane`` (each plane at its own address: the engine selects a plane by addressing
    it, :attr:`EngineConfig.weight_entries` words).
    """
    Pw, SF, out = cfg.w_planes, cfg.sf, []
    for nf in range(cfg.nf):
        words = [[0] * SF for _ in range(Pw)]
        for pe in range(cfg.pe):
            r = nf * cfg.pe + pe
            for k in range(cfg.cols):
                c = int(codes[r][k])
                if not 0 <= c < 1 << Pw:
                    raise ValueError(f"weight code {c} does not fit {Pw} planes")
                sf, lane = divmod(k, cfg.simd)
                for plane in range(Pw):
                    words[plane][sf] |= ((c >> plane) & 1) << (pe * cfg.simd + lane)
        for ii in range(Pw):
            out.extend(((nf * Pw + ii) * SF + sf, w) for sf, w in enumerate(words[Pw - 1 - ii]))
    return out


def pack_threshold_words(rows: int, pe: int, n_thresholds: int, width: int, thr, dirs) -> list[tuple[int, int]]:
    """``[(addr, data)]`` of a threshold memory: address ``nf`` holds, per PE lane ``pe`` (row
    ``nf*PE + pe``) and threshold ``t``, a ``width``-bit two's-complement value followed by its
    direction bit, at bit ``(pe*T + t)*(width + 1)``. Used by the MVTU and :class:`ThresholdUnit`.

    The hardware has one comparator per threshold, ``x >= v`` (:func:`_threshold_code`): a
    ``>=`` threshold ``t`` (direction 1) is stored as ``t``, a ``<=`` threshold (direction 0) as
    ``t + 1``, its test being ``not (x >= t + 1)``. ``t + 1`` beyond the width's largest value
    is stored as that value: every compared value lies below it (the widths hold the compared
    range plus one beyond each end: :attr:`EngineConfig.threshold_width`,
    ``gen.hwmap.threshold_width``), so ``x <= t`` holds for all of them either way."""
    T, tw = n_thresholds, width
    lo, hi = -(1 << (tw - 1)), (1 << (tw - 1)) - 1
    out = []
    for nf in range(rows // pe):
        word = 0
        for p in range(pe):
            r = nf * pe + p
            for t in range(T):
                v, d = int(thr[r][t]), int(dirs[r][t]) & 1
                if not lo <= v <= hi:
                    raise ValueError(f"threshold {v} of row {r} does not fit {tw} bits")
                if not d:
                    v = min(v + 1, hi)
                word |= ((v & ((1 << tw) - 1)) | (d << tw)) << ((p * T + t) * (tw + 1))
        out.append((nf, word))
    return out


def fold_thresholds(cfg: EngineConfig, thr, dirs, consts) -> list[list[int]]:
    """Thresholds on the exact dot product -> thresholds on the value the engine compares
    (:attr:`EngineConfig.compare_bounds`), the same decisions for every input:

    * general path, ``dot = x + K[r]``: ``dot >= t  <=>  x >= t - K[r]`` (and ``<=`` alike);
    * bipolar path, ``2 dot = x + C[r]``: ``dot >= t  <=>  x >= 2t - C[r]`` (and ``<=`` alike);
    * XNOR path, ``dot = 2 p - N`` (``p`` the match count): ``dot >= t  <=>  p >= ceil((t + N)/2)``,
      ``dot <= t  <=>  p <= floor((t + N)/2)``;

    divided by ``2^compare_shift`` (:attr:`EngineConfig.compare_shift`: rounded up for ``>=``,
    down for ``<=``), and clipped to one beyond the compared range (still "always"/"never"
    there), so a threshold fits :attr:`EngineConfig.threshold_width` bits."""
    lo, hi = cfg.compare_bounds
    out = []
    for r in range(cfg.rows):
        row = []
        for t in range(cfg.n_thresholds):
            v, up = int(thr[r][t]), bool(int(dirs[r][t]))
            if cfg.xnor:
                u = v + cfg.cols
                x = -(-u // 2) if up else u // 2
            elif cfg.bipolar:
                x = 2 * v - int(consts[r])
            else:
                x = v - int(consts[r])
            cs = cfg.compare_shift      # the accumulator is x / 2^cs: x >= v <=> acc >= ceil(v / 2^cs)
            x = -(-x >> cs) if up else x >> cs
            row.append(min(max(x, lo - 1), hi + 1))
        out.append(row)
    return out


def pack_thresholds(cfg: EngineConfig, thr, dirs, consts) -> list[tuple[int, int]]:
    """The MVTU's threshold memory: :func:`fold_thresholds` (K = ``consts``, :func:`row_constants`)
    packed by :func:`pack_threshold_words` at :attr:`EngineConfig.threshold_width`."""
    return pack_threshold_words(cfg.rows, cfg.pe, cfg.n_thresholds, cfg.threshold_width,
                                fold_thresholds(cfg, thr, dirs, consts), dirs)


def pack_constants(cfg: EngineConfig, consts) -> list[tuple[int, int]]:
    """``[(addr, data)]`` for the per-row constant memory (K), ``final_width`` bits per PE."""
    kw = cfg.final_width
    out = []
    for nf in range(cfg.nf):
        word = 0
        for pe in range(cfg.pe):
            word |= (int(consts[nf * cfg.pe + pe]) & ((1 << kw) - 1)) << (pe * kw)
        out.append((nf, word))
    return out


def _popcount(bits: list):
    """Balanced adder tree over single bits."""
    level = [b for b in bits]
    if not level:
        return Const(0, 1)
    while len(level) > 1:
        nxt = [level[k] + level[k + 1] for k in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _signed_table(m: Module, pop, vals, idx, simd: int, name: str, neg=None):
    """Register ``pop * vals[idx]`` for constant coefficients ``vals`` as a magnitude (a
    multiplexer of ``pop * |v|``, shifts for powers of two) and a sign bit (``neg``: pass another
    table's sign register to share it when the signs depend on ``idx`` only). The sign is applied
    by the accumulator's adder (:func:`_accumulate_term`): a product by a negative constant
    written as such is a multiply by its two's-complement pattern, which yosys maps to DSP blocks
    (the demo's critical path on ECP5)."""
    mag = Signal(max(1, ceil_log2(max(abs(v) for v in vals) * simd + 1)), name=name, reset_less=True)
    m.d.sync += mag.eq(Array([pop * abs(v) for v in vals])[idx])
    if neg is None and any(v < 0 for v in vals):
        neg = Signal(name=f"{name}_neg", reset_less=True)
        m.d.sync += neg.eq(Array([Const(int(v < 0), 1) for v in vals])[idx])
    return SimpleNamespace(mag=mag, neg=neg)


def _accumulate_term(base, term, width: int):
    """``base + term`` for a registered product (a :func:`_signed_table` pair or a signed or
    unsigned signal), ``width`` bits signed; a negative table entry is subtracted in the same
    carry chain: ``(2 base + 1 + 2 (mag ^ neg) + neg) >> 1`` (``mag`` unsigned, or signed and
    sign-extended)."""
    if not isinstance(term, SimpleNamespace):
        return base + term
    if term.neg is None:
        return base + term.mag
    mag, neg = term.mag, term.neg
    top = mag[-1] if mag.shape().signed else Const(0, 1)      # sign-extended or zero-extended
    assert len(mag) < width or (mag.shape().signed and len(mag) == width)
    flipped = Cat(*(mag[b] ^ neg for b in range(len(mag))), (top ^ neg).replicate(width - len(mag)))
    return (Cat(Const(1, 1), base[:width]) + Cat(neg, flipped))[1:width + 1].as_signed()


def _threshold_code(m: Module, x, tdata, pe: int, T: int, width: int, lut, out_bits: int, en=None):
    """Threshold stage of lane ``pe`` (MVTU and :class:`ThresholdUnit`): ``x`` compared with the
    lane's ``T`` thresholds in ``tdata`` (:func:`pack_threshold_words` layout), ``x >= v``
    registered with the direction bit (while ``en``, if given); then, combinationally, the hit (the
    compare for a ``>=`` threshold, its negation for a ``<=`` one, stored as ``t + 1``), the level
    count and its code through ``lut``."""
    hits = Signal(max(1, T), name=f"hits{pe}")
    for t in range(T):
        base = (pe * T + t) * (width + 1)
        thr = tdata[base:base + width].as_signed()
        # one comparison registered (a carry chain, nothing after it); the direction applied
        # after the register
        ge, d = Signal(name=f"ge{pe}_{t}", reset_less=True), Signal(name=f"dir{pe}_{t}", reset_less=True)
        with m.If(en if en is not None else Const(1)):
            m.d.sync += [ge.eq(x >= thr), d.eq(tdata[base + width])]
        m.d.comb += hits[t].eq(~(ge ^ d))
    level = Signal(range(T + 1), name=f"level{pe}")
    m.d.comb += level.eq(_popcount([hits[t] for t in range(T)]))
    table = list(lut) + [0] * (T + 1 - len(lut))
    code = Signal(out_bits, name=f"code{pe}")
    m.d.comb += code.eq(Array([Const(v, out_bits) for v in table])[level])
    return code


class BitSerialMVTU(wiring.Component):
    """Bit-serial matrix-vector-threshold unit.

    Ports
    -----
    ``act``: In(stream of ``SIMD*Pa`` bits)
        Activation codes, lane ``l`` at bits ``[l*Pa, (l+1)*Pa)``; ``N/SIMD`` words per
        vector, vectors back to back. Buffered in two banks, so the next vector streams in
        while the current one is computed.
    ``out``: Out(stream of ``PE*out_bits`` bits)
        ``R/PE`` words per vector in row order; lane ``p`` of word ``nf`` is row
        ``nf*PE + p``: an output code, or (raw mode) the signed accumulator sign-extended to
        ``raw_width`` bits.
    ``w_wr``, ``t_wr``, ``k_wr``: In(stream of ``{addr, data}``, ``always_ready``)
        Run-time writes of the weight, threshold and row-constant memories (layouts:
        :func:`pack_weights`, :func:`pack_thresholds`, :func:`pack_constants`). Write them
        while no vector is in flight. ``k_wr`` exists in raw mode only (with thresholds, the
        row constants are folded into them: :func:`fold_thresholds`).

    Timing: one (weight plane, activation plane) pair per cycle; a vector takes
    :func:`engine_cycles` cycles and vectors follow each other without bubbles when the
    next one has arrived. Latency from the last input word to the first output word of a
    row fold is at most ``(N/SIMD)`` plus :func:`engine_latency` cycles.

    Backpressure: the compute pipeline never stops (no clock enables). Its words go into an
    output FIFO of :func:`output_credits` words, and a row fold is issued only while a word of
    the FIFO is free for it (counting the folds in flight): ``out`` not ready stops the issue
    once the FIFO's words are all spoken for, and no data is lost. The consumer's ``ready``
    reaches the FIFO's read side and the credit count only, whose "room" flag is a register.
    ``act`` is ready while a buffer bank is free.
    """

    def __init__(self, cfg: EngineConfig):
        self.cfg = c = cfg
        self._aw = max(1, ceil_log2(c.weight_entries))
        self._tw = max(1, ceil_log2(c.nf))
        super().__init__({
            "act": In(stream.Signature(c.simd * c.a_planes)),
            "out": Out(stream.Signature(c.pe * c.out_bits)),
            "w_wr": In(stream.Signature(data.StructLayout(
                {"addr": self._aw, "data": c.memory_words["weights"]}), always_ready=True)),
            "t_wr": In(stream.Signature(data.StructLayout(
                {"addr": self._tw, "data": c.memory_words["thresholds"]}), always_ready=True)),
            **({"k_wr": In(stream.Signature(data.StructLayout(
                {"addr": self._tw, "data": c.memory_words["constants"]}), always_ready=True))} if c.raw else {}),
        })

    # The pipeline (docs/design.md section 6): memories and the input double buffer, then
    # S0 issue (counters, memory addresses), S1 memory data registered, S1a plane select,
    # S1b AND/XNOR + chunk popcounts, S1c popcount sums, S2 coefficient x popcount,
    # S3 accumulate (and the activation sum S_a), S4/S5 + row constant K and offset x S_a,
    # S6/S7 thresholds -> code -> output register -> output FIFO. Each stage is one method
    # below; every stage moves at every cycle (the issue waits for a credit instead).

    def elaborate(self, platform):
        m = Module()
        mems = self._memories(m)
        full, clr_full = self._input_buffer(m, mems.abuf)
        # the output leaves through a FIFO with a credit for every word it can hold: a row fold is
        # issued only with a credit in hand, so the pipeline never stops (no clock enables)
        m.submodules.out_fifo = q = StreamFIFO(len(self.out.payload), output_credits(self.cfg))
        wiring.connect(m, q.o, wiring.flipped(self.out))
        ctl, wrp, arp = self._issue(m, full, clr_full, mems, q)
        delay = self._delayer(m)
        a_sel, a_next, w_sel, ctl = self._plane_select(m, delay, ctl, wrp, arp)
        if self.cfg.popcount == "lut6":
            pa2, p2, ctl = self._compressor_popcounts(m, delay, ctl, a_sel, a_next, w_sel)
        else:
            part_a, part_w, ctl = self._chunk_popcounts(m, delay, ctl, a_sel, a_next, w_sel)
            pa2, p2, ctl = self._popcount_sums(m, delay, ctl, part_a, part_w)
        sprod3, prod3, ctl3 = self._coefficients(m, delay, ctl, pa2, p2)
        res4, s4, v4, nf4, k4, t6 = self._accumulate(m, delay, ctl3, sprod3, prod3, mems)
        dots, v6 = self._dot_products(m, res4, s4, v4, nf4, k4)
        self._output(m, delay, dots, v6, t6, q.i)
        return m

    def _memories(self, m):
        """Weight, threshold and (raw mode) row-constant memories (run-time writable through
        ``w_wr``, ``t_wr``, ``k_wr``, always ready) and the two-bank activation buffer.

        A memory of one word (e.g. every row in one fold: ``NF = 1``) is read at the constant
        address 0 and marked ``ram_style = "logic"``: plain registers, where yosys would
        otherwise build a two-word distributed RAM (0.67 LUT6 per bit on xc7). A weight memory
        in block RAM deeper than 512 words is built as tiles of one 18-Kbit block RAM each
        (:func:`hw.memory.block_tiles`, :func:`hw.memory.tiled_read`). The activation buffer
        deeper than :data:`hw.memory.LUTRAM_DEPTH` words is marked block RAM (``ram_style =
        "block"``). With
        :attr:`EngineConfig.shared_address` those in LUT RAM (:func:`hw.memory.in_lut_ram`) are
        read and written at one address (:func:`hw.memory.loadable_ports`: single-port LUT RAM
        on Xilinx)."""
        c = self.cfg
        NF, SF, T = c.nf, c.sf, c.n_thresholds
        words = c.memory_words

        def memory(shape, entries, init, style="auto"):
            # (depth >= 2 keeps address ports at least one bit wide)
            attrs = {"ram_style": "logic"} if entries == 1 else {"ram_style": style} if style != "auto" else None
            return block_memory(shape, max(2, entries), init, attrs)
        winit = [d for _, d in pack_weights(c, c.init_weights)] if c.init_weights else []
        # a deep block-RAM weight memory as tiles of one block RAM each (hw.memory.block_tiles),
        # read one stage earlier (at wa, not wa1) and each bank registered twice before its
        # multiplexer, its read address registered per tile (the activation buffer's read address,
        # its word and the controls two stages more: _issue, _plane_select)
        ww, we = words["weights"], c.weight_entries
        w_lut = in_lut_ram(c.weight_ram_style, we)
        split = c.split_weights
        wtiled = c.weight_tiles is not None
        cw, bd = c.weight_tiles or (ww, we)
        if split:                   # (a key only) block-RAM low bits, LUT-RAM top bits, one address
            wmem = "split weights"
            wb = split[0]
            m.submodules.wmem_block = wblock = memory(wb, we, [d & ((1 << wb) - 1) for d in winit], "block")
            m.submodules.wmem_lut = wlut = memory(ww - wb, we, [d >> wb for d in winit], "distributed")
        else:
            wmem = "weight tiles" if wtiled else memory(ww, we, winit, c.weight_ram_style)  # (a key only when tiled)
        wcols = [(lo, min(ww, lo + cw)) for lo in range(0, ww, cw)]
        wtiles = []
        if wtiled:
            for b in range(0, we, bd):
                words_b = winit[b:b + bd]
                row = [memory(hi - lo, min(bd, we - b), [(d >> lo) & ((1 << (hi - lo)) - 1) for d in words_b],
                              c.weight_ram_style) for lo, hi in wcols]
                for k, t in enumerate(row):
                    m.submodules[f"wmem_b{b // bd}_c{k}"] = t
                wtiles.append(row)
        elif not split:
            m.submodules.wmem = wmem
        tinit = [d for _, d in pack_thresholds(c, c.init_thresholds, c.init_dirs, c.init_consts)] \
            if c.init_thresholds and T else []
        m.submodules.tmem = tmem = memory(words["thresholds"], NF, tinit, placed_style(NF))
        pairs = [(wmem, self.w_wr), (tmem, self.t_wr)]
        kmem = None
        if c.raw:
            kinit = [d for _, d in pack_constants(c, c.init_consts)] if c.init_consts else []
            m.submodules.kmem = kmem = memory(words["constants"], NF, kinit, placed_style(NF))
            pairs.append((kmem, self.k_wr))
        # the activation buffer deeper than LUTRAM_DEPTH in block RAM, its read data registered as
        # it is (_plane_select): left to yosys, CNV-W1A1's fc1 buffer (256 x 4) was ECP5 LUT RAM
        # read through a 16-way multiplexer in 5 levels (7.05 ns, CNV-W1A1's ECP5 path at one
        # placement). (LUT RAM banks of LUTRAM_DEPTH words, each read registered, cost CNV-W1A1
        # 2,000 more LUT4 on ECP5 for 5 fewer DP16KD)
        deep = placed_style(2 * SF) == "block"
        m.submodules.abuf = abuf = block_memory(c.simd * c.a_planes, 2 * SF,
                                                attrs={"ram_style": "block"} if deep else None)
        ports = dict(pairs)
        lut_ram = {wmem: w_lut, tmem: in_lut_ram("auto", NF),
                   **({kmem: in_lut_ram("auto", NF)} if kmem is not None else {})}

        def read(mem, addr):
            # the loadable memory's write port and a read port: one address for both
            # (EngineConfig.shared_address) where the memory is LUT RAM (single-port LUT RAM on
            # Xilinx; in block RAM the multiplexer would cost LUTs and save none). A tiled weight
            # memory: its tiles' ports, the read data four registers after the address.
            if mem is wmem and wtiled:
                return SimpleNamespace(data=tiled_read(m, wtiles, self.w_wr, addr, bd, wcols))
            if mem is wmem and split:
                wr = self.w_wr
                parts = [SimpleNamespace(valid=wr.valid, payload=SimpleNamespace(addr=wr.payload.addr, data=d))
                         for d in (wr.payload.data[:wb], wr.payload.data[wb:])]
                rb = loadable_ports(m, wblock, parts[0], addr)
                rl = loadable_ports(m, wlut, parts[1], addr, c.shared_address)
                return SimpleNamespace(data=Cat(rb.data, rl.data))
            return loadable_ports(m, mem, ports[mem], addr, c.shared_address and lut_ram[mem])
        return SimpleNamespace(wmem=wmem, wtiled=wtiled, tmem=tmem, kmem=kmem, abuf=abuf, read=read)

    def _input_buffer(self, m, abuf):
        """``act`` words into the free bank; ``full`` per bank, ``clr_full`` pulses (from S0)
        release a bank after its last row fold."""
        SF = self.cfg.sf
        full = Signal(2)
        wbank, wptr = Signal(), Signal(range(max(SF, 2)))
        wlast = Signal(init=int(SF == 1))              # wptr == SF - 1, a register kept with it
        wa_in = Signal(range(2 * SF))                   # = wbank*SF + wptr, counted (no multiplier)
        # act.ready is a register: "the bank written next cycle is not full" from the next
        # values of `full` and `wbank` (the same value the decode of the registers would give a
        # cycle later), so the producer's width converter and FIFO see a flip-flop, not a
        # multiplexer of the engine's flags (CNV's and TFC's ECP5 paths started there)
        # (two kept copies, :func:`~bitplane.hw.stream_blocks.ready_copies`)
        # The port's copy, which the producer sees, also gates the buffer's write (its enable
        # and address), the other copy the bank flags and pointers: one copy for both put the
        # gate beside the LUT RAM and the flags' route through it (CNV-W1A1's ECP5 path at one
        # placement: conv0's converter valid -> the gate 3.4 ns away -> `full` 3.3 ns back)
        ready_nx = Signal()
        ready, ready_own = ready_copies(m, "ready", ready_nx)
        # The memory is written whenever the port is ready, a word offered or not: the address is
        # the next one of the bank being filled (not full, so not read), written again with the
        # word that advances it; the producer's ``valid`` reaches the address counter and the
        # flags, not the LUT RAM's write enables (the same in the two-bank converter,
        # hw.stream_blocks.WidthConverter._banks)
        fire, fire_mem = self.act.valid & ready_own, self.act.valid & ready
        awp = abuf.write_port()
        m.d.comb += [self.act.ready.eq(ready), awp.addr.eq(wa_in),
                     awp.data.eq(self.act.payload), awp.en.eq(ready)]
        set_full, clr_full, full_nx = Signal(2), Signal(2), Signal(2)
        wend = fire & wlast
        with m.If(fire_mem):
            m.d.sync += wa_in.eq(Mux(wa_in == 2 * SF - 1, 0, wa_in + 1))
        with m.If(fire):
            with m.If(wlast):
                m.d.sync += [wptr.eq(0), wlast.eq(SF == 1), wbank.eq(~wbank)]
                m.d.comb += set_full.eq(Mux(wbank, 0b10, 0b01))
            with m.Else():
                m.d.sync += [wptr.eq(wptr + 1), wlast.eq(wptr == SF - 2)]
        m.d.comb += full_nx.eq((full | set_full) & ~clr_full)
        # a bank's release (clr_full: the issue logic's last row fold) is seen a cycle later where
        # the engine's pass over a vector (NF*Pw*Pa*SF cycles) leaves the writer (SF words) a
        # cycle to spare, so `ready` does not wait on the issue logic (the demo's ECP5 path at one
        # placement, 7.8 ns through five levels); without one it would cost a cycle a vector
        spare = (self.cfg.nf * self.cfg.w_planes * self.cfg.a_planes - 1) * SF
        # (with one to spare: the bank written next is this one unless this word ends it, and this
        # word sets only this one's flag, so the next `ready` is one of two flags chosen by `wend`:
        # two LUT levels from the producer's valid; through set_full and the bank's index, three,
        # TFC's ECP5 path at one placement, ready_own -> ready_own, 5.8 ns of routing)
        m.d.comb += ready_nx.eq(Mux(wend, ~full.bit_select(~wbank, 1), ~full.bit_select(wbank, 1)) if spare >= 1 else
                                ~full_nx.bit_select(wbank ^ wend, 1))
        m.d.sync += full.eq(full_nx)
        return full, clr_full

    def _issue(self, m, full, clr_full, mems, q):
        """S0: the (row fold, weight plane, activation plane, column fold) counters, column fold
        innermost and planes from the top (``i``, ``j`` count issue steps: plane ``Pw-1-i``,
        ``Pa-1-j``), the weight and activation memory addresses as counters, and the S1
        control registers."""
        c = self.cfg
        NF, SF, Pw, Pa = c.nf, c.sf, c.w_planes, c.a_planes
        rbank = Signal()
        # counters are at least one bit wide (zero-width signals lint as [-1:0] ranges)
        nf, sf, i, j = (Signal(range(max(n, 2)), name=nm) for n, nm in ((NF, "nf"), (SF, "sf"), (Pw, "i"), (Pa, "j")))
        run = Signal()
        m.d.comb += run.eq(full.bit_select(rbank, 1))
        issue = Signal()
        # each counter's "at its last value" is a register kept with it (counter_step)
        last_j, last_i, last_sf, last_nf = (Signal(name=f"{nm}_last", init=int(n == 1))
                                            for n, nm in ((Pa, "j"), (Pw, "i"), (SF, "sf"), (NF, "nf")))
        # "the next issue ends a row fold" and "... ends the vector" as registers too, set from the
        # flags' values after this cycle, so the credit's spend and the bank's release are
        # `issue` and one register (with the four flags ANDed after `issue`, the demo's ECP5 path
        # at one placement ran sf_last -> room -> ... -> full, four levels, 7.1 ns)
        fold_end = Signal(name="fold_end", init=int(SF == Pw == Pa == 1))
        vec_end = Signal(name="vec_end", init=int(SF == Pw == Pa == NF == 1))
        # a row fold's last issue spends a credit of the output FIFO (stream_blocks.credit_room)
        m.d.comb += issue.eq(run & credit_room(m, q, issue & fold_end))
        counts = {id(j): (last_j, Pa), id(i): (last_i, Pw), id(sf): (last_sf, SF), id(nf): (last_nf, NF)}

        def step(ctr):
            return counter_step(ctr, *counts[id(ctr)])
        # memory addresses as counters (no multiplier/adder in front of the block RAMs):
        # wa = (nf*Pw + i)*SF + sf (the weight plane by address; back to the (nf, i) group's base
        # wa0 for each activation plane), ra = rbank*SF + sf
        wa = Signal(range(max(2, c.weight_entries)))
        wa0 = Signal.like(wa)
        ra = Signal(range(2 * SF))
        # the plane loops: activation planes inside weight planes, or (weights_inner) the reverse;
        # the weights are read again from wa0 whenever a sweep of them ends before the row fold's
        # last activation plane
        w_in = c.weights_inner
        (inner, last_in, n_in), (outer, last_out) = ((i, last_i, Pw), (j, last_j)) if w_in else \
            ((j, last_j, Pa), (i, last_i))
        sweep_end = last_sf & last_i if w_in else last_sf
        sf_nx, in_nx, out_nx, nf_nx = nested_lasts_after(issue, [(ctr, *counts[id(ctr)])
                                                                 for ctr in (sf, inner, outer, nf)])
        fold_nx = sf_nx & in_nx & out_nx
        m.d.sync += [fold_end.eq(fold_nx), vec_end.eq(fold_nx & nf_nx)]
        # "the next issue ends a weight sweep at the last activation plane" (wa0 loads then; a
        # vector's end implies it) a register too, so wa0's clock enable is `issue` and it (with
        # the flags ANDed after `issue`, the demo's ECP5 path at one placement ran from the
        # bank's `full` through three levels to wa0's enable)
        i_nx, j_nx = (in_nx, out_nx) if w_in else (out_nx, in_nx)
        wa0_ld = Signal(name="wa0_load", init=int(SF == 1 and Pa == 1 and (Pw == 1 or not w_in)))
        m.d.sync += wa0_ld.eq((sf_nx & i_nx if w_in else sf_nx) & j_nx)
        m.d.comb += clr_full.eq(Mux(issue & vec_end, Mux(rbank, 0b10, 0b01), 0))
        with m.If(issue):
            m.d.sync += [*step(sf), wa.eq(wa + 1), ra.eq(ra + 1)]
            with m.If(last_sf):
                m.d.sync += [*step(inner), ra.eq(Mux(rbank, SF, 0))]
                with m.If(last_in):
                    m.d.sync += step(outer)
                    with m.If(last_out):
                        m.d.sync += step(nf)
            with m.If(sweep_end & ~last_j):
                m.d.sync += wa.eq(wa0)
            with m.If(vec_end):
                m.d.sync += [rbank.eq(~rbank), wa.eq(0), ra.eq(Mux(rbank, 0, SF))]
        with m.If(issue & wa0_ld):
            m.d.sync += wa0.eq(Mux(vec_end, 0, wa + 1))
        # the weight address is registered once more (wa1): the weight word arrives one stage
        # after the activation word, in the stage where the activation plane is selected, and
        # the memory output register is the only register on it (no plane multiplexer)
        wa1 = Signal.like(wa)
        m.d.sync += wa1.eq(wa)
        # (a weight memory in block RAM registers its read data once more instead: read at wa,
        # EngineConfig.weights_in_block_ram)
        wrp = mems.read(mems.wmem, wa if c.weights_in_block_ram else wa1 if c.weight_entries > 1 else 0)
        arp = mems.abuf.read_port()
        if mems.wtiled:     # the tiles' read addresses are registers (tiled_read): this one too
            ra_t = Signal.like(ra, name="ra_t")
            m.d.sync += ra_t.eq(ra)
            m.d.comb += arp.addr.eq(ra_t)
        else:
            m.d.comb += arp.addr.eq(ra)

        # control pipeline S1 (aligned with the memory read data); dbl: the Horner accumulator
        # doubles (a new column-fold sweep whose plane exponent i + j is one lower); two-level
        # Horner: dbl refers to the inner (activation-plane) accumulator, which restarts at
        # each weight plane, and iend marks a weight plane's last issue
        v1 = Signal()
        nf1, i1, j1 = Signal.like(nf), Signal.like(i), Signal.like(j)
        last1, dbl1, iend1 = (Signal() for _ in range(3))
        # no S_a counted: its controls are constants, no registers
        sa1, sa_first1, sa_last1 = (Signal() for _ in range(3)) if c.needs_sa else (Const(0),) * 3
        # exponent of the pair issued: (Pw-1-i) + (Pa-1-j); it falls by one from the previous
        # sweep at each step of the inner plane loop, and at a step of the outer one when the
        # inner loop has one plane (two: unchanged there; more: two-level Horner or none,
        # :attr:`EngineConfig.horner_levels`)
        two = c.horner_levels == 2
        down = (j != 0) if two else (outer != 0) if n_in == 1 else (inner != 0)
        m.d.sync += [v1.eq(issue), nf1.eq(nf), i1.eq(i), j1.eq(j),
                     last1.eq(last_sf & last_i & last_j),
                     *([sa1.eq((nf == 0) & (i == 0)),
                        sa_first1.eq((nf == 0) & (sf == 0) & (i == 0) & (j == 0)),
                        sa_last1.eq((nf == 0) & last_sf & (i == 0) & last_j)] if c.needs_sa else []),
                     dbl1.eq((sf == 0) & down),
                     iend1.eq(last_sf & last_j)]
        return [v1, nf1, i1, j1, last1, sa1, sa_first1, sa_last1, dbl1, iend1], wrp, arp

    @staticmethod
    def _delayer(m):
        def delay(sigs, tag):
            """Control signals one stage later (constants stay constants)."""
            out = [x if isinstance(x, Const) else Signal.like(x, name=f"{x.name}_{tag}") for x in sigs]
            m.d.sync += [o.eq(x) for o, x in zip(out, sigs) if o is not x]
            return out
        return delay

    def _plane_select(self, m, delay, ctl, wrp, arp):
        """S1: activation memory data registered (block RAM outputs are slow: ECP5 DP16KD
        clock-to-out ~5.8 ns without its output register, so nothing but a register follows them,
        with no reset so that ``synth.ecp5_outreg`` can move it into the block RAM); S1a: activation plane ``j`` selected and registered, and the
        weight word (plane ``i`` by address, read one stage later) registered as it is. Returns the
        registered plane, the selection it registers (for a second register), the weight planes and
        the control signals one stage on."""
        c = self.cfg
        PE, SIMD, Pa = c.pe, c.simd, c.a_planes
        aword = Signal.like(arp.data, name="aword", reset_less=True)
        if c.weight_tiles:          # the tiled weight memory's word comes two stages later (tiled_read):
            # the activation buffer read a stage later (its address registered: _issue) and its
            # word registered once more
            aword0 = Signal.like(arp.data, name="aword0", reset_less=True)
            m.d.sync += [aword0.eq(arp.data), aword.eq(aword0)]
            ctl = delay(delay(ctl, "t"), "t2")
        else:
            m.d.sync += aword.eq(arp.data)
        wdata = wrp.data
        if c.weights_in_block_ram and not c.weight_tiles:   # read a stage earlier, registered again
            wdata = Signal.like(wrp.data, name="wword", reset_less=True)
            m.d.sync += wdata.eq(wrp.data)
        ctl1 = delay(ctl, "r")
        a_planes = [Cat(*[aword[l * Pa + p] for l in range(SIMD)]) for p in reversed(range(Pa))]   # issue order
        a_sel = Signal(SIMD, reset_less=True)
        w_sel = [Signal(SIMD, name=f"wplane{pe}", reset_less=True) for pe in range(PE)]
        # the plane index (j1) as a kept register per SEL_FANOUT lanes, each choosing its lanes'
        # plane: one register into every lane's multiplexer was TFC's ECP5 path (98 lanes x 8
        # planes, 1.6 + 1.9 ns of routing in its first two hops)
        groups = [(lo, min(SIMD, lo + SEL_FANOUT)) for lo in range(0, SIMD, SEL_FANOUT)]
        if Pa > 1 and len(groups) > 1:
            j_lane = _pe_group_registers(m, ctl[3], len(ctl1[3]), SIMD, "j_sel", per=SEL_FANOUT)
            a_next = Cat(*(Array([pl[lo:hi] for pl in a_planes])[j_lane[lo]] for lo, hi in groups))
        else:
            a_next = Array(a_planes)[ctl1[3]]
        m.d.sync += a_sel.eq(a_next)
        for pe in range(PE):
            m.d.sync += w_sel[pe].eq(wdata[pe * SIMD:(pe + 1) * SIMD])
        return a_sel, a_next, w_sel, delay(ctl1, "b")

    def _chunk_popcounts(self, m, delay, ctl, a_sel, a_next, w_sel):
        """S1b: AND (XNOR on the +-1 and bipolar paths) of the selected planes, popcounts of
        :data:`POP_CHUNK`-lane chunks; the activation plane's own popcount for S_a (None where
        there is no ``ow x S_a`` term: :attr:`EngineConfig.needs_sa`). The selected plane is registered once per
        :data:`ACT_FANOUT` PEs (copies kept apart by ``keep``, which the synthesis flow carries onto
        their flip-flops: ``synth.flow.KEEP_REGISTERS``): one register driving every PE was the
        demo's ECP5 critical path."""
        c = self.cfg
        CH = POP_CHUNK
        a_pe = _pe_group_registers(m, a_next, c.simd, c.pe, "a_sel", first=a_sel)
        chunks = [(lo, min(c.simd, lo + CH)) for lo in range(0, c.simd, CH)]
        part_a = [Signal(range(hi - lo + 1), name=f"popa_{lo}", reset_less=True)
                  for lo, hi in chunks] if c.needs_sa else None
        part_w = [[Signal(range(hi - lo + 1), name=f"pop{pe}_{lo}", reset_less=True) for lo, hi in chunks]
                  for pe in range(c.pe)]
        # one named signal per PE: slicing the expression itself makes the Verilog repeat the whole
        # SIMD-wide XNOR/AND for every lane (8.4 Mbit of wires for 4 x 1,024 lanes: more than wasm
        # yosys' 4 GB can hold)
        match = [Signal(c.simd, name=f"match{pe}") for pe in range(c.pe)]
        for pe in range(c.pe):
            a = a_pe[pe]
            m.d.comb += match[pe].eq(~(w_sel[pe] ^ a) if c.counts_xnor else (w_sel[pe] & a))
        for (lo, hi), pa in zip(chunks, part_a or []):
            m.d.sync += pa.eq(_popcount([a_sel[l] for l in range(lo, hi)]))
        for pe in range(c.pe):
            for (lo, hi), pw_ in zip(chunks, part_w[pe]):
                m.d.sync += pw_.eq(_popcount([match[pe][l] for l in range(lo, hi)]))
        return part_a, part_w, delay(ctl, "c")

    def _compressor_popcounts(self, m, delay, ctl, a_sel, a_next, w_sel):
        """S1b..: the popcounts as registered trees of 6-input-LUT compressors
        (:class:`~bitplane.hw.popcount.CompressorPopcount`, ``popcount = "lut6"``), all
        :func:`popcount_stages` long. Their carry LUTs read ``a_copy``, the selected activation
        plane registered a second time (reset to ones, so yosys keeps both registers)."""
        c = self.cfg
        L = popcount_stages(c)
        a_copy = Signal(c.simd, init=(1 << c.simd) - 1, name="a_copy")
        m.d.sync += a_copy.eq(a_next)
        pa2 = None
        if c.needs_sa:
            m.submodules.pop_a = pop_a = CompressorPopcount(c.simd, "ones", latency=L)
            m.d.comb += pop_a.a.eq(a_sel)
            pa2 = pop_a.count
        p2 = []
        for pe in range(c.pe):
            m.submodules[f"pop{pe}"] = pop = CompressorPopcount(c.simd, "xnor" if c.counts_xnor else "and", latency=L)
            m.d.comb += [pop.a.eq(a_sel), pop.a_copy.eq(a_copy), pop.w.eq(w_sel[pe])]
            p2.append(pop.count)
        for k in range(L):
            ctl = delay(ctl, f"p{k}")
        return pa2, p2, ctl

    def _popcount_sums(self, m, delay, ctl, part_a, part_w):
        """S1c..: the chunk counts summed per PE (and for the activation plane), :data:`POP_FANIN`
        at a time per registered stage (:func:`sum_stages`)."""
        c = self.cfg
        pw = ceil_log2(c.simd + 1)
        for k in range(sum_stages(len(part_w[0]))):
            last = len(part_w[0]) <= POP_FANIN

            def add(parts, name):
                out = []
                for g in range(0, len(parts), POP_FANIN):
                    grp = parts[g:g + POP_FANIN]
                    r = Signal(pw if last else range(sum(1 << len(p) for p in grp)), name=f"{name}_s{k}_{g}",
                               reset_less=True)
                    m.d.sync += r.eq(_popcount(grp))
                    out.append(r)
                return out
            part_a = part_a and add(part_a, "popa")
            part_w = [add(pw_, f"pop{pe}") for pe, pw_ in enumerate(part_w)]
            ctl = delay(ctl, f"2{k}")
        return part_a and part_a[0], [pw_[0] for pw_ in part_w], ctl

    def _coefficients(self, m, delay, ctl, pa2, p2):
        """S2: plane coefficient x popcount per PE (constant coefficient tables: a mux of
        constant multiples, i.e. shifts for DoReFa/int), or the popcount as it is in Horner
        mode (:attr:`EngineConfig.horner_shift`: the accumulator applies the powers of two) and on
        the XNOR path; and c_a[j] x popcount(a plane). Tables are in issue order (planes from
        the top)."""
        c = self.cfg
        PE, SIMD, Pw, Pa, NF = c.pe, c.simd, c.w_planes, c.a_planes, c.nf
        v2, nf2, i2, j2, last2, sa2, sa_first2, sa_last2, dbl2, iend2 = ctl
        v3, nf3 = Signal(), Signal.like(nf2)
        last3, dbl3, iend3 = (Signal() for _ in range(3))
        sa3, sa_first3, sa_last3 = delay([sa2, sa_first2, sa_last2], "3")     # (constants without S_a)
        m.d.sync += [v3.eq(v2), nf3.eq(nf2), last3.eq(last2), dbl3.eq(dbl2), iend3.eq(iend2)]
        # a sum's last issue (valid), or the cycle after a reset (the copies reset to 1): the
        # accumulators' clear (_accumulate), a copy per ACT_FANOUT PEs (one net to every bit of
        # every PE's accumulator was the demo's ECP5 path, 5.4 ns of routing)
        vend3 = _pe_group_registers(m, v2 & (iend2 if c.horner_levels == 2 else last2), 1, PE, "acc_clear", init=1)
        # Horner mode: the sign of each issued pair's coefficient (a register per PE,
        # _pe_group_registers: one register driving every PE's accumulator was the demo's ECP5
        # path, 3.7 ns of routing; two-level: the activation plane's sign here, the weight
        # plane's for the outer sum)
        levels = c.horner_levels
        ws, as_ = c.plane_signs()
        term_neg, outer_neg = None, None
        if levels:
            negs = [ws[ii] ^ as_[jj] if levels == 1 else as_[jj] for ii in range(Pw) for jj in range(Pa)]
            if any(negs):
                term_neg = _pe_group_registers(m, Array([Const(int(v), 1) for v in negs])[i2 * Pa + j2], 1, PE,
                                               "term_neg", per=1)
            if levels == 2 and any(ws):
                outer_neg = Signal(name="outer_neg", reset_less=True)
                m.d.sync += outer_neg.eq(Array([Const(int(v), 1) for v in ws])[i2])
        ca_vals = list(reversed(c.a_coefs))
        sprod3 = None if pa2 is None else _signed_table(m, pa2, ca_vals, j2, SIMD, "sprod")
        uniform = all(len(set(col)) == 1 for col in c.w_coefs)
        plain = c.xnor or c.horner_shift is not None      # the popcount as it is, no coefficient table
        prod3 = []
        uneg = None          # uniform tables: the sign depends on the issue only, a copy per PE
        if not plain and uniform:
            u_vals = [c.w_coefs[ii][0] * c.a_coefs[jj] for ii in reversed(range(Pw)) for jj in reversed(range(Pa))]
            if any(v < 0 for v in u_vals):
                uneg = _pe_group_registers(m, Array([Const(int(v < 0), 1) for v in u_vals])[i2 * Pa + j2], 1, PE,
                                           "prod_neg", per=1)
        for pe in range(PE):
            if plain:
                pr = Signal(ceil_log2(SIMD + 1), name=f"prod{pe}", reset_less=True)
                m.d.sync += pr.eq(p2[pe])
                if term_neg is not None:
                    pr = SimpleNamespace(mag=pr, neg=term_neg[pe])
            else:
                vals = []
                for f in range(NF if not uniform else 1):
                    for ii in reversed(range(Pw)):
                        for jj in reversed(range(Pa)):
                            vals.append(c.w_coefs[ii][f * PE + pe] * c.a_coefs[jj])
                idx = (i2 * Pa + j2) if uniform else ((nf2 * Pw + i2) * Pa + j2)
                if uniform or len(vals) <= 16:
                    pr = _signed_table(m, p2[pe], vals, idx, SIMD, f"prod{pe}",
                                       neg=None if uneg is None else uneg[pe])
                else:               # per-row coefficients of many row folds: one multiplier
                    pr = Signal(signed(signed_bits(min(0, min(vals) * SIMD), max(0, max(vals) * SIMD))),
                                name=f"prod{pe}", reset_less=True)
                    cw = signed_bits(min(vals + [0]), max(vals + [0]))
                    m.d.sync += pr.eq(Array([Const(v, signed(cw)) for v in vals])[idx] * p2[pe])
            prod3.append(pr)
        return sprod3, prod3, SimpleNamespace(v=v3, nf=nf3, last=last3, sa=sa3, sa_first=sa_first3,
                                              sa_last=sa_last3, nf2=nf2, dbl=dbl3, iend=iend3, vend=vend3,
                                              outer_neg=outer_neg)

    def _accumulate(self, m, delay, ctl3, sprod3, prod3, mems):
        """S3: per-PE accumulators over a row fold (``res`` on its last pair; in Horner mode the
        accumulator doubles where the plane exponent falls and ``res`` is shifted by
        ``log2(g*h)``) and the activation-sum S_a of the vector; the K and threshold memory reads,
        addressed by the row fold whose dot product is in flight."""
        c = self.cfg
        AW, FW = c.acc_width, c.final_width
        k = ctl3
        acc = [Signal(signed(AW), name=f"acc{pe}", reset_less=True) for pe in range(c.pe)]
        res4 = [Signal(signed(AW), name=f"res{pe}", reset_less=True) for pe in range(c.pe)]
        v4 = Signal()
        nf4 = Signal.like(k.nf)
        # Horner's shift log2(g*h) applied to the result, but not where the thresholds take it
        # (EngineConfig.compare_shift)
        horner = c.horner_shift is not None
        sh = (c.horner_shift or 0) - c.compare_shift
        two = c.horner_levels == 2
        # two-level Horner: `acc` is the inner sum of a weight plane (restarting at each), `res4`
        # its value at the plane's last issue, `outer` the sum over the weight planes, doubled per
        # plane, `res4` added or subtracted (the plane's sign) one stage later (S3b)
        # the accumulator is cleared at a sum's last issue and in the cycle after any reset
        # (`vend`: its copies reset to 1, whether by the domain's reset or by a reset the block is
        # wrapped in, e.g. the top's SOFT_RESET; no vector is in flight then), through a register
        # on its flip-flops' synchronous reset (the accumulator itself has no reset:
        # yosys does not merge a second reset into it), so no "first" multiplexer stands before
        # the adder: on xc7 that made every bit a LUT; without it the bits above the term's are
        # the carry chain alone. In Horner mode the doubling is unconditional when every issue
        # but a sum's first doubles (:attr:`EngineConfig.horner_doubles_always`; 0 doubled is 0).
        # The clear is a register (`vend`: valid and last, registered together), a copy per
        # ACT_FANOUT PEs; `res` is loaded by it too (also in the cycle after a reset, harmless:
        # nothing is in flight then, and `v4` is low).
        for pe in range(c.pe):
            nxt = Signal(signed(AW), name=f"accn{pe}")
            prev = acc[pe] if not horner else acc[pe] << 1 if c.horner_doubles_always else \
                Mux(k.dbl, acc[pe] << 1, acc[pe])
            m.d.comb += nxt.eq(_accumulate_term(prev, prod3[pe], AW))
            with m.If(k.vend[pe]):
                m.d.sync += acc[pe].eq(0)
            with m.Elif(k.v):
                m.d.sync += acc[pe].eq(nxt)
            with m.If(k.vend[pe]):
                m.d.sync += res4[pe].eq(nxt if not sh or two else nxt << sh)
        m.d.sync += [v4.eq(k.v & k.last), nf4.eq(k.nf)]
        nf_early = k.nf                 # the row fold nf4 will hold a cycle later
        s4 = None
        if sprod3 is not None:          # S_a (EngineConfig.needs_sa)
            sa, sa_final, s4 = Signal(signed(FW)), Signal(signed(FW)), Signal(signed(FW))
            sa_next = Signal(signed(FW))
            m.d.comb += sa_next.eq(_accumulate_term(Mux(k.sa_first, 0, sa), sprod3, FW))
            with m.If(k.v & k.sa):
                m.d.sync += sa.eq(sa_next)
                with m.If(k.sa_last):
                    m.d.sync += sa_final.eq(sa_next)
            with m.If(k.v & k.last):
                m.d.sync += s4.eq(Mux(k.v & k.sa_last, sa_next, sa_final))
        k_nf = k.nf2                  # the row fold whose K is read (data registered with res4)
        if two:
            dv = Signal()
            m.d.sync += dv.eq(k.v & k.iend)
            # (a row's last issue is its last weight plane's last: v4 implies dv); the outer sums'
            # clear: v4 or the cycle after a reset, a copy per ACT_FANOUT PEs as `vend`
            oclear = _pe_group_registers(m, k.v & k.last, 1, c.pe, "outer_clear", init=1)
            # the weight plane's sign a stage on, a copy per PE: one register driving
            # every PE's add/subtract was the demo's ECP5 path at two placements (block 0's
            # outer_neg -> an outer accumulator, 6.3 ns routing)
            dneg = None if k.outer_neg is None else _pe_group_registers(m, k.outer_neg, 1, c.pe, "outer_neg_b", per=1)
            outer = [Signal(signed(AW), name=f"outer{pe}", reset_less=True) for pe in range(c.pe)]
            res_o = [Signal(signed(AW), name=f"reso{pe}", reset_less=True) for pe in range(c.pe)]
            for pe in range(c.pe):
                onxt = Signal(signed(AW), name=f"outern{pe}")
                term = res4[pe] if dneg is None else SimpleNamespace(mag=res4[pe], neg=dneg[pe])
                m.d.comb += onxt.eq(_accumulate_term(outer[pe] << 1, term, AW))
                with m.If(oclear[pe]):              # at the row's end and by the reset, as acc
                    m.d.sync += outer[pe].eq(0)
                with m.Elif(dv):
                    m.d.sync += outer[pe].eq(onxt)
                with m.If(v4):
                    m.d.sync += res_o[pe].eq(onxt << sh)
            # everything that travels with the result one stage later: valid, row fold, S_a, and
            # the row fold whose K is read
            nf_early = nf4
            v4, nf4, k_nf = delay([v4, nf4, k.nf2], "b")
            s4 = s4 if s4 is None else delay([s4], "b")[0]
            res4 = res_o
        # K (raw mode) is read for row fold nf2 (data in S3, registered into S4), thresholds for
        # nf4 (data in S5, registered into S6, compared with the dot product of S6): no arithmetic
        # right after a block RAM output. The address must be the fold whose dot product is in
        # flight, one stage per cycle: with one cycle per row fold (SF = Pw = Pa = 1) the fold
        # changes every cycle, so an address one stage late reads the previous fold's thresholds.
        # (Two-level Horner: all of these one stage later.)
        one = c.nf == 1              # one-word memories: constant address (registers)
        if c.thresholds_in_block_ram:   # read at the fold a stage earlier, registered twice
            trp = mems.read(mems.tmem, nf_early)
            t5 = Signal.like(trp.data, reset_less=True, name="t5")
            m.d.sync += t5.eq(trp.data)
        else:
            t5 = mems.read(mems.tmem, 0 if one else nf4).data
        t6 = Signal.like(t5, reset_less=True, name="t6")
        m.d.sync += t6.eq(t5)
        k4 = None
        if mems.kmem is not None:
            krp = mems.read(mems.kmem, 0 if one else k_nf)
            k4 = Signal.like(krp.data, reset_less=True)
            m.d.sync += k4.eq(krp.data)
        return res4, s4, v4, nf4, k4, t6

    def _dot_products(self, m, res4, s4, v4, nf4, k4):
        """Raw mode, S4: ``res + K`` and ``o_w x S_a`` registered apart; S5: their sum, the exact
        dot product (XNOR path: ``2*res - N``; bipolar path: ``res + C`` in S4, halved in S5).
        Threshold mode: the value the thresholds are compared with
        (:attr:`EngineConfig.compare_bounds`: ``res + o_w x S_a``, or ``res`` on the XNOR and
        bipolar paths and when every ``o_w`` is 0), K or C being folded into the thresholds; the
        same stages, one adder fewer per PE (none on the XNOR and bipolar paths)."""
        c = self.cfg
        PE, NF = c.pe, c.nf
        FW = c.final_width if c.raw else c.threshold_width
        v5, v6 = Signal(), Signal()
        dots = []
        for pe in range(PE):
            full_acc = Signal(signed(FW), name=f"dot{pe}", reset_less=True)
            rk = Signal(signed(FW), name=f"rk{pe}", reset_less=True)
            so = Signal(signed(FW), name=f"so{pe}", reset_less=True)
            offs = [c.w_offset[f * PE + pe] for f in range(NF)]
            if c.xnor:
                m.d.sync += rk.eq(2 * res4[pe] if c.raw else res4[pe])
                if c.raw:
                    m.d.sync += so.eq(-c.cols)
            else:                       # (bipolar: 2 dot = Y + C, raw: C from the constant memory)
                m.d.sync += rk.eq(res4[pe] + k4[pe * FW:(pe + 1) * FW].as_signed() if c.raw else res4[pe])
                if not c.bipolar:
                    if not any(offs):
                        prod = 0
                    elif len(set(offs)) == 1:
                        prod = s4 * offs[0]
                    else:
                        ow_tab = Array([Const(o, signed(signed_bits(min(offs + [0]), max(offs + [0])))) for o in offs])
                        prod = ow_tab[nf4] * s4
                    m.d.sync += so.eq(prod)
            if c.bipolar and c.raw:
                m.d.sync += full_acc.eq(rk >> 1)        # (2 dot is even)
            else:
                m.d.sync += full_acc.eq(rk + so if c.raw or (not c.counts_xnor and any(offs)) else rk)
            dots.append(full_acc)
        m.d.sync += [v5.eq(v4), v6.eq(v5)]
        return dots, v6

    def _output(self, m, delay, dots, v6, t6, out):
        """S6: threshold compares (registered); S7: level count -> code (or the raw dot
        product) -> the output register."""
        c = self.cfg
        outs = []
        for pe in range(c.pe):
            full_acc = dots[pe]
            if c.raw:
                o = Signal(c.raw_width, name=f"raw{pe}", reset_less=True)
                m.d.sync += o.eq(full_acc.as_signed() if c.raw_width >= c.final_width else full_acc)
                outs.append(o)
            else:
                outs.append(_threshold_code(m, full_acc, t6, pe, c.n_thresholds, c.threshold_width,
                                            c.out_lut or range(c.n_levels), c.out_bits))
        v7 = delay([v6], "7")[0]
        word = Signal.like(out.payload, name="out_word", reset_less=True)
        m.d.sync += out.valid.eq(v7)
        m.d.comb += out.payload.eq(word)
        with m.If(v7):
            m.d.sync += word.eq(Cat(*outs))


@dataclass(frozen=True)
class ThresholdParams:
    """Parameters of a :class:`ThresholdUnit`: ``rows`` channels, ``pe`` per word, ``T``
    thresholds of ``width`` bits per channel over ``in_bits``-bit signed inputs."""
    rows: int
    pe: int
    in_bits: int
    n_thresholds: int
    width: int
    levels: int
    out_lut: tuple = ()            # level -> output code (default identity)
    init_thresholds: tuple = ()    # [rows][T]
    init_dirs: tuple = ()          # [rows][T]
    in_signed: bool = True         # False: the inputs are unsigned (e.g. the network's input codes)

    def __post_init__(self):
        if self.pe < 1 or self.rows % self.pe:
            raise ValueError(f"PE={self.pe} must divide rows={self.rows}")
        if self.width < self.in_bits + (not self.in_signed):
            raise ValueError("threshold width must hold every input value")

    @property
    def nf(self) -> int:
        return self.rows // self.pe

    @property
    def out_bits(self) -> int:
        top = max(self.out_lut) if self.out_lut else self.levels - 1
        return max(1, ceil_log2(top + 1))

    @property
    def memory_word(self) -> int:
        """Width of the threshold memory word (the one definition; port and memory use it)."""
        return self.pe * self.n_thresholds * (self.width + 1)

    def init_words(self) -> list[tuple[int, int]]:
        """``(address, word)`` of the threshold memory holding ``init_thresholds``/``init_dirs``."""
        return pack_threshold_words(self.rows, self.pe, self.n_thresholds, self.width, self.init_thresholds,
                                    self.init_dirs)


THRESHOLD_LATENCY = 3   # cycles from an accepted input word to its output word


class ThresholdUnit(wiring.Component):
    """Multi-threshold activation on a stream of integers (pooled accumulators, sums, or the
    network's input codes).

    Ports
    -----
    ``i``: In(stream of ``PE*in_bits``): word ``k`` of a pixel carries channels
        ``(k mod NF)*PE + lane``, ``NF = rows/PE`` words per pixel; signed, or unsigned when
        ``in_signed`` is False.
    ``o``: Out(stream of ``PE*out_bits``): ``code = out_lut[#{t: x >= thr_t if dir_t else
        x <= thr_t}]`` per lane, same order.
    ``t_wr``: In(stream of ``{addr, data}``, ``always_ready``): the threshold memory
        (layout :func:`pack_threshold_words`); write it while no data is in flight.

    Throughput one word per cycle; latency :data:`THRESHOLD_LATENCY`; ``o`` not ready stalls
    the whole pipeline and ``i.ready`` with it (no data is lost).
    """

    def __init__(self, p: ThresholdParams):
        self.p = p
        super().__init__({
            "i": In(stream.Signature(p.pe * p.in_bits)),
            "o": Out(stream.Signature(p.pe * p.out_bits)),
            "t_wr": In(stream.Signature(data.StructLayout(
                {"addr": max(1, ceil_log2(p.nf)), "data": p.memory_word}), always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.p
        PE, T, TW, B = p.pe, p.n_thresholds, p.width, p.in_bits
        tinit = [d for _, d in p.init_words()] if p.init_thresholds else []
        m.submodules.tmem = tmem = block_memory(p.memory_word, max(2, p.nf), tinit, {"ram_style": placed_style(p.nf)})
        wp = tmem.write_port()
        m.d.comb += [wp.addr.eq(self.t_wr.payload.addr), wp.data.eq(self.t_wr.payload.data),
                     wp.en.eq(self.t_wr.valid)]
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance)]
        ch = Signal(range(max(2, p.nf)))
        fire = self.i.valid & advance
        with m.If(fire):
            m.d.sync += ch.eq(Mux(ch == p.nf - 1, 0, ch + 1))
        rp = tmem.read_port()
        m.d.comb += [rp.addr.eq(ch), rp.en.eq(advance)]
        # stage A: input word and its thresholds (block RAM output)
        xa, va = Signal(PE * B), Signal()
        # stage B: comparisons (registered), then level -> code into the output register
        vb = Signal()
        with m.If(advance):
            m.d.sync += [xa.eq(self.i.payload), va.eq(self.i.valid), vb.eq(va), self.o.valid.eq(vb)]
        lane = [xa[pe * B:(pe + 1) * B] for pe in range(PE)]
        codes = [_threshold_code(m, lane[pe].as_signed() if p.in_signed else lane[pe], rp.data, pe, T, TW,
                                 p.out_lut or range(p.levels), p.out_bits, en=advance) for pe in range(PE)]
        with m.If(advance):
            m.d.sync += self.o.payload.eq(Cat(*codes))
        return m
