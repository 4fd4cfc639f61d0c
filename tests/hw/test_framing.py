"""The top level's stream edges (hw/framing.py) under random valid gaps and backpressure,
each against a plain-Python reference written here: the input framer's framing rules (early
and late ``tlast``), the weight loader's writes and CRC (``zlib``), the output framer's beats."""
from __future__ import annotations

import random
import zlib

import pytest
from amaranth.sim import Simulator

from bitplane.core import weightimage as wimg
from bitplane.hw.framing import LOADER_CYCLES_PER_WORD, InputFramer, OutputFramer, WeightLoader


def _beats(words, word_bits, n):
    """Reference packing: ``n`` words per beat, word k at bits (k % n) * word_bits, zero padding."""
    out = []
    for k in range(0, len(words), n):
        out.append(sum(w << (j * word_bits) for j, w in enumerate(words[k:k + n])))
    return out


def _run(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


class _Source:
    """A stream source that holds each beat until taken (AXI rule) and idles randomly."""

    def __init__(self, port, items, rng, gap, payload):
        self.port, self.items, self.rng, self.gap, self.payload = port, list(items), rng, gap, payload
        self.k, self.offering = 0, False

    def drive(self, ctx):
        if not self.offering and self.k < len(self.items) and self.rng.random() >= self.gap:
            self.offering = True
            self.payload(ctx, self.items[self.k])
        ctx.set(self.port.valid, int(self.offering))

    def sample(self, ctx):
        if self.offering and ctx.get(self.port.ready):
            self.offering = False
            self.k += 1

    @property
    def done(self):
        return self.k == len(self.items)


# ------------------------------------------------------------------------------------------ input framer

def ref_input_framer(beats, n, wb, B):
    """Words per frame and framing-error count for ``beats`` ((data, last) pairs)."""
    mask = (1 << wb) - 1
    frames, errs, i = [], 0, 0
    while i < len(beats):
        words = []
        while True:
            d, last = beats[i]
            i += 1
            ws = [(d >> (j * wb)) & mask for j in range(n)]
            words += ws[:B - len(words)]
            if len(words) == B:
                if not last:                            # late tlast: drop through the next last beat
                    errs += 1
                    while i < len(beats) and not beats[i][1]:
                        i += 1
                    i += 1
                break
            if last:                                    # early tlast: complete with zeros
                errs += 1
                words += [0] * (B - len(words))
                break
        frames.append(words)
    return frames, errs


@pytest.mark.parametrize("beat_bits,word_bits,B", [(8, 8, 5), (32, 8, 6), (64, 24, 7), (128, 24, 10),
                                                   (512, 64, 9)])
@pytest.mark.parametrize("seed", [1, 2])
def test_input_framer_matches_reference(beat_bits, word_bits, B, seed):
    rng = random.Random(seed)
    n = beat_bits // word_bits
    beats = []
    for f in range(8):          # good frames, early and late tlast
        words = [rng.getrandbits(word_bits) for _ in range(B)]
        fb = _beats(words, word_bits, n)
        kind = f % 4
        if kind == 1 and len(fb) > 1:
            fb = fb[:rng.randrange(1, len(fb))]         # early
        elif kind == 2:
            fb = fb + [rng.getrandbits(beat_bits) for _ in range(rng.randrange(1, 3))]   # late
        beats += [(d, int(k == len(fb) - 1)) for k, d in enumerate(fb)]
    want, want_errs = ref_input_framer(beats, n, word_bits, B)
    dut = InputFramer(beat_bits, word_bits, B)
    got, errs, done = [], [0], [0]

    def put(ctx, item):
        ctx.set(dut.i.payload.data, item[0])
        ctx.set(dut.i.payload.last, item[1])

    async def tb(ctx):
        src = _Source(dut.i, beats, rng, 0.3, put)
        for _ in range(40 * len(beats) * n + 100):
            src.drive(ctx)
            ctx.set(dut.o.ready, int(rng.random() >= 0.3))
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                got.append(ctx.get(dut.o.payload))
            errs[0] += ctx.get(dut.framing_error)
            done[0] += ctx.get(dut.frame_done)
            src.sample(ctx)
            await ctx.tick()
            if src.done and len(got) >= B * len(want):
                break
        assert ctx.get(dut.idle)

    _run(dut, tb)
    assert [got[k:k + B] for k in range(0, len(got), B)] == want
    assert errs[0] == want_errs and done[0] == len(want)


def test_input_framer_hold_stops_at_a_frame_boundary():
    dut = InputFramer(32, 8, 4)

    async def tb(ctx):
        ctx.set(dut.hold, 1)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload.data, 0x04030201)
        ctx.set(dut.i.payload.last, 1)
        for _ in range(3):
            assert ctx.get(dut.idle) and not ctx.get(dut.i.ready) and not ctx.get(dut.o.valid)
            await ctx.tick()
        ctx.set(dut.hold, 0)
        seen = []
        for _ in range(4):
            assert ctx.get(dut.o.valid)
            seen.append(ctx.get(dut.o.payload))
            await ctx.tick()
        assert seen == [1, 2, 3, 4] and ctx.get(dut.idle)

    _run(dut, tb)


# ------------------------------------------------------------------------------------------ weight loader

SECTIONS = [(0, wimg.MEM_WEIGHTS, 6, 40), (0, wimg.MEM_CONSTANTS, 3, 20), (1, wimg.MEM_THRESHOLDS, 4, 64),
            (1, wimg.MEM_WEIGHTS, 2, 96)]


def _image(rng, max_count=wimg.MAX_COUNT):
    data = [[rng.getrandbits(w) for _ in range(e)] for _, _, e, w in SECTIONS]
    return data, wimg.pack_image([(lay, kind, d, w) for (lay, kind, _, w), d in zip(SECTIONS, data)], max_count)


def _load(beat_bits, frames, seed, max_count=wimg.MAX_COUNT, clear_at=None, gap=0.3):
    """Stream weight-image frames (lists of 32-bit words) into a WeightLoader; returns the
    writes (sel, addr, data), format-error pulses, checksum, words. ``clear_at``: pulse
    ``clear`` in that cycle of the first frame's stream; ``gap``: the source's chance of an idle cycle."""
    rng = random.Random(seed)
    n = beat_bits // 32
    dut = WeightLoader(beat_bits, SECTIONS, max_count)
    writes, errs, regs = [], [0], {}

    def put(ctx, item):
        ctx.set(dut.i.payload.data, item[0])
        ctx.set(dut.i.payload.last, item[1])

    async def tb(ctx):
        ctx.set(dut.idle, 1)
        for words in frames:
            fb = _beats(words, 32, n)
            ctx.set(dut.load, 1)
            await ctx.tick()
            ctx.set(dut.load, 0)
            while not ctx.get(dut.loading):
                await ctx.tick()
            src = _Source(dut.i, [(d, int(k == len(fb) - 1)) for k, d in enumerate(fb)], rng, gap, put)
            cycle = 0
            while not src.done:
                ctx.set(dut.clear, cycle == clear_at)
                cycle += 1
                src.drive(ctx)
                if ctx.get(dut.wr.valid):
                    writes.append((ctx.get(dut.wr.payload.sel), ctx.get(dut.wr.payload.addr),
                                   ctx.get(dut.wr.payload.data)))
                errs[0] += ctx.get(dut.format_error)
                src.sample(ctx)
                await ctx.tick()
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.clear, 0)
            for _ in range(2):
                if ctx.get(dut.wr.valid):
                    writes.append((ctx.get(dut.wr.payload.sel), ctx.get(dut.wr.payload.addr),
                                   ctx.get(dut.wr.payload.data)))
                await ctx.tick()
            assert not ctx.get(dut.loading)
        regs["checksum"], regs["words"] = ctx.get(dut.checksum), ctx.get(dut.words)

    _run(dut, tb)
    return writes, errs[0], regs


def _crc(frames):
    return zlib.crc32(b"".join(w.to_bytes(4, "little") for f in frames for w in f))


@pytest.mark.parametrize("beat_bits", [32, 64, 96, 128, 512])
def test_weight_loader_writes_every_entry(beat_bits):
    rng = random.Random(beat_bits)
    data, image = _image(rng)
    writes, errs, regs = _load(beat_bits, [image], seed=beat_bits)
    want = [(k, a, v) for k, d in enumerate(data) for a, v in enumerate(d)]
    assert [(s, a, v & ((1 << SECTIONS[s][3]) - 1)) for s, a, v in writes] == want
    assert errs == 0
    assert regs == {"checksum": _crc([image]), "words": len(image)}


@pytest.mark.parametrize("clear_at", range(30, 30 + LOADER_CYCLES_PER_WORD))
def test_weight_loader_checksum_cleared_mid_image(clear_at):
    """A clear at each of a word's cycles (a source never idle: a word taken every sixth
    cycle): the checksum and the word count restart together (the CRC's registered state part
    stands in for the state only when no clear came in between)."""
    rng = random.Random(7)
    data, image = _image(rng)
    writes, errs, regs = _load(32, [image], seed=clear_at, clear_at=clear_at, gap=0)
    assert errs == 0 and 0 < regs["words"] < len(image)
    assert regs["checksum"] == _crc([image[len(image) - regs["words"]:]])


@pytest.mark.parametrize("beat_bits", [32, 128])
def test_weight_loader_refuses_bad_images_and_recovers(beat_bits):
    rng = random.Random(7)
    data, image = _image(rng)
    bad_magic = [image[0] ^ 1] + image[1:]
    unknown = image[:1] + [wimg.header(3, 0, 4)] + [0] * 4 + [wimg.END_WORD]
    truncated = image[:len(image) // 2]
    frames = [bad_magic, unknown, truncated, image]
    writes, errs, regs = _load(beat_bits, frames, seed=3)
    assert errs == 3
    good = [(k, a, v) for k, d in enumerate(data) for a, v in enumerate(d)]
    got = [(s, a, v & ((1 << SECTIONS[s][3]) - 1)) for s, a, v in writes]
    assert got[-len(good):] == good                   # the good image after the bad ones loads whole
    # a refused frame is dropped whole: the zero padding of its last beat is counted too
    n = beat_bits // 32
    seen = [f + [0] * (-len(f) % n) for f in frames[:3]] + [image]
    assert regs == {"checksum": _crc(seen), "words": sum(map(len, seen))}


@pytest.mark.parametrize("beat_bits", [32, 128])
def test_weight_loader_refuses_short_and_overlong_frames(beat_bits):
    """The FSM's other error exits: a frame of the magic alone, one ending on a section header,
    and an end word followed by more beats (then dropped to the frame's end); a good image loads
    after them."""
    rng = random.Random(11)
    data, image = _image(rng)
    n = beat_bits // 32
    magic_only = image[:1]
    ends_on_header = image[:2]
    overlong = image + [0] * (2 * n)
    frames = [magic_only, ends_on_header, overlong, image]
    writes, errs, regs = _load(beat_bits, frames, seed=5)
    assert errs == 3
    good = [(k, a, v) for k, d in enumerate(data) for a, v in enumerate(d)]
    got = [(s, a, v & ((1 << SECTIONS[s][3]) - 1)) for s, a, v in writes]
    assert got[-len(good):] == good
    seen = [f + [0] * (-len(f) % n) for f in frames[:3]] + [image]
    assert regs == {"checksum": _crc(seen), "words": sum(map(len, seen))}


def _sections(image):
    """(start, end) word indices of each section of an image, header included."""
    out, i = [], 1
    while image[i] != wimg.END_WORD:
        n = wimg.parse_header(image[i])[2]
        out.append((i, i + 1 + n))
        i += 1 + n
    return out


@pytest.mark.parametrize("beat_bits", [32, 128])
def test_weight_loader_takes_memories_split_into_continuation_sections(beat_bits):
    """With 5-word sections every memory but the 20-bit one spans 2-3 sections (``chunks``):
    each continuation lands at the address where the section before it ended."""
    rng = random.Random(11)
    data, image = _image(rng, max_count=5)
    assert len(_sections(image)) == 8
    assert wimg.unpack_image(image) == wimg.unpack_image(_image(random.Random(11))[1])
    writes, errs, regs = _load(beat_bits, [image], seed=beat_bits, max_count=5)
    assert [(s, a, v & ((1 << SECTIONS[s][3]) - 1)) for s, a, v in writes] == \
        [(k, a, v) for k, d in enumerate(data) for a, v in enumerate(d)]
    assert errs == 0 and regs == {"checksum": _crc([image]), "words": len(image)}


def test_weight_loader_refuses_a_continuation_out_of_place():
    """A continuation section is taken only right after the section of the same memory that it
    continues: one too many, after another memory, or first in an image, it is a format error
    and nothing of it is written."""
    rng = random.Random(12)
    data, image = _image(rng, max_count=5)
    secs = _sections(image)                   # memory 0: sections 0, 1, 2 (2 entries each); memory 1: 3
    body = lambda *ks: image[:1] + [w for k in ks for w in image[secs[k][0]:secs[k][1]]] + [wimg.END_WORD]
    too_many, after_other, first = body(0, 1, 2, 2), body(3, 1), body(1)
    for bad in (after_other, first):
        with pytest.raises(ValueError, match="not the section before it"):
            wimg.unpack_image(bad)
    writes, errs, regs = _load(32, [too_many, after_other, first, image], seed=5, max_count=5)
    assert errs == 3
    masked = [(s, a, v & ((1 << SECTIONS[s][3]) - 1)) for s, a, v in writes]
    whole = [(k, a, v) for k, d in enumerate(data) for a, v in enumerate(d)]
    assert masked == whole[:6] + whole[6:9] + whole       # memory 0, memory 1, then the good image


# ------------------------------------------------------------------------------------------ output framer

@pytest.mark.parametrize("raw_width,lanes,values,beat_bits", [(32, 1, 7, 32), (32, 4, 8, 32), (64, 2, 6, 32),
                                                              (32, 2, 10, 128), (64, 1, 5, 96),
                                                              (32, 5, 10, 512)])
def test_output_framer_matches_reference(raw_width, lanes, values, beat_bits):
    rng = random.Random(raw_width * beat_bits + lanes)
    n = beat_bits // 32
    wpv = raw_width // 32
    frames = [[rng.getrandbits(raw_width) for _ in range(values)] for _ in range(4)]
    want = []
    for f in frames:
        words = [(v >> (32 * j)) & 0xFFFF_FFFF for v in f for j in range(wpv)]
        fb = _beats(words, 32, n)
        want += [(d, int(k == len(fb) - 1)) for k, d in enumerate(fb)]
    in_words = [sum(v << (raw_width * j) for j, v in enumerate(f[k:k + lanes]))
                for f in frames for k in range(0, values, lanes)]
    dut = OutputFramer(raw_width, lanes, values * wpv, 4, beat_bits)
    got, done = [], [0]

    def put(ctx, item):
        ctx.set(dut.i.payload, item)

    async def tb(ctx):
        src = _Source(dut.i, in_words, rng, 0.3, put)
        for _ in range(60 * len(want) + 100):
            src.drive(ctx)
            ctx.set(dut.o.ready, int(rng.random() >= 0.4))
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                got.append((ctx.get(dut.o.payload.data), ctx.get(dut.o.payload.last)))
            done[0] += ctx.get(dut.frame_done)
            src.sample(ctx)
            await ctx.tick()
            if len(got) == len(want):
                break

    _run(dut, tb)
    assert got == want and done[0] == len(frames)


def test_output_framer_full_rate():
    """Without backpressure a frame of W words leaves in ceil(W/n) beats at one word per cycle."""
    dut = OutputFramer(32, 1, 8, 4, 128)
    beats = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        for cyc in range(40):
            ctx.set(dut.i.payload, cyc)
            if ctx.get(dut.o.valid):
                beats.append(cyc)
            await ctx.tick()

    _run(dut, tb)
    gaps = {b - a for a, b in zip(beats, beats[1:])}
    assert gaps == {4}, beats
