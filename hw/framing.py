"""The accelerator's stream edges: input framer, weight loader, output framer.

The top level (:mod:`bitplane.hw.top`) puts these three components between its AXI4-Stream
ports and the block chain (docs/design.md section 6)::

    s_axis -> InputFramer  -> first block's input words
           \\-> WeightLoader (while loading) -> the blocks' memory write ports
    last block's output -> OutputFramer -> m_axis

A *beat* is one AXI4-Stream transfer of ``beat_bits`` bits. Every stream carries *words*
(an input word: ``lanes`` codes of the first block; an output or weight-image word: 32 bits)
packed :func:`bitplane.core.packing.words_per_beat` to a beat, word ``k`` of a frame in beat
``k // n`` at bits ``[(k % n) * word_bits, ...)``, the last beat of a frame zero-padded
(:class:`bitplane.core.packing.BeatLayout`, the one definition the host side packs with).

The beat-side ports are ``amaranth.lib.stream`` streams of ``{data, last}`` (``last`` is
``tlast``); the top maps them to its flat ``s_axis_*``/``m_axis_*`` ports.
"""
from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitplane.core import weightimage as wimg
from bitplane.core.packing import RESULT_BITS, words_per_beat

from .stream_blocks import StreamFIFO, WidthConverter


def beat_signature(beat_bits: int) -> stream.Signature:
    """An AXI4-Stream beat as an ``amaranth.lib.stream``: ``tdata`` and ``tlast``."""
    return stream.Signature(data.StructLayout({"data": beat_bits, "last": 1}))


def _xor(bits):
    """XOR of a list of 1-bit values (the CRC-32 taps)."""
    out = bits[0]
    for b in bits[1:]:
        out = out ^ b
    return out


def _and(values):
    """AND of a list of 1-bit values."""
    out = values[0]
    for v in values[1:]:
        out = out & v
    return out


def _or(values):
    """OR of a list of values (0 for none)."""
    out = Const(0)
    for v in values:
        out = out | v
    return out


#: Cycles the weight loader (:class:`WeightLoader`) takes per 32-bit image word.
LOADER_CYCLES_PER_WORD = 6


class InputFramer(wiring.Component):
    """Input beats -> the first block's input words, exactly ``words_per_frame`` per frame.

    Parameters: ``beat_bits`` (``tdata`` width), ``word_bits`` (the first block's input word),
    ``words_per_frame``; a beat carries ``n = words_per_beat(beat_bits, word_bits)`` words.

    Ports
    -----
    ``i``: In(:func:`beat_signature`): input beats, ``last`` on a frame's last beat.
    ``o``: Out(stream of ``word_bits``): the words, in order; one frame = ``words_per_frame``.
    ``hold``: In(1): do not start a new frame (``i.ready`` low at a frame boundary).
    ``idle``: Out(1): at a frame boundary (nothing of a frame taken, no fill or drop running).
    ``frame_done``: Out(1): pulse with the frame's last word on ``o``.
    ``framing_error``: Out(1): pulse when a frame's ``last`` is early or late.

    Framing: a beat with ``last`` before the frame's last word ends the frame early: the rest
    is completed with zero words; a frame whose last word is not in a ``last`` beat is cut
    there and the beats up to the next ``last`` are dropped. Either pulses ``framing_error``.
    Words of the last beat after the frame's last word are padding and ignored.

    Latency: combinational (``o`` is the beat's current word). Throughput: one word per
    cycle; ``i.ready`` rises on a beat's last word (or the frame's last word), so a beat
    takes ``n`` cycles. Backpressure: ``o.ready`` low holds the beat; ``i.valid`` low
    leaves ``o.valid`` low.
    """

    def __init__(self, beat_bits: int, word_bits: int, words_per_frame: int):
        self.beat_bits, self.word_bits, self.words_per_frame = beat_bits, word_bits, words_per_frame
        self.n = words_per_beat(beat_bits, word_bits)
        super().__init__({"i": In(beat_signature(beat_bits)), "o": Out(stream.Signature(word_bits)),
                          "hold": In(1), "idle": Out(1), "frame_done": Out(1), "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        B, n, wb = self.words_per_frame, self.n, self.word_bits
        count = Signal(range(max(2, B)))             # word of the frame
        widx = Signal(range(max(2, n)))              # word of the beat
        fill, drop = Signal(), Signal()
        i, o = self.i, self.o
        word = i.payload.data[:wb] if n == 1 else i.payload.data.word_select(widx, wb)
        beat_end = (widx == n - 1) if n > 1 else 1
        # "count is 0" and "count is B - 1" are registers kept with the count, so i.ready and
        # idle (which the top's input slice and the weight loader wait on) compare nothing
        first, frame_end = Signal(init=1), Signal(init=int(B == 1))
        m.d.comb += self.idle.eq(first & ~fill & ~drop)
        with m.If(self.hold & self.idle):
            m.d.comb += i.ready.eq(0)
        with m.Elif(fill):
            m.d.comb += [o.valid.eq(1), o.payload.eq(0)]
        with m.Elif(drop):
            m.d.comb += i.ready.eq(1)
            with m.If(i.valid & i.payload.last):
                m.d.sync += drop.eq(0)
        with m.Else():
            m.d.comb += [o.valid.eq(i.valid), o.payload.eq(word), i.ready.eq(o.ready & (beat_end | frame_end))]
        with m.If(o.valid & o.ready):
            with m.If(frame_end):
                m.d.sync += [count.eq(0), first.eq(1), frame_end.eq(B == 1), fill.eq(0)]
                if n > 1:
                    m.d.sync += widx.eq(0)
                m.d.comb += self.frame_done.eq(1)
                with m.If(~fill & ~i.payload.last):
                    m.d.sync += drop.eq(1)
                    m.d.comb += self.framing_error.eq(1)
            with m.Else():
                m.d.sync += [count.eq(count + 1), first.eq(0), frame_end.eq(count == B - 2)]
                if n > 1:
                    with m.If(~fill):
                        m.d.sync += widx.eq(Mux(beat_end, 0, widx + 1))
                with m.If(~fill & beat_end & i.payload.last):
                    m.d.sync += fill.eq(1)
                    m.d.comb += self.framing_error.eq(1)
        return m


class WeightLoader(wiring.Component):
    """The weight-image parser: a frame of 32-bit words (:mod:`bitplane.core.weightimage`)
    -> writes into the blocks' run-time loadable memories.

    Parameters: ``beat_bits``; ``sections``: ``(layer, kind, entries, width)`` of every
    loadable memory in image order (:func:`bitplane.hw.top.memory_sections`); ``max_count``:
    the longest section in words (a longer memory arrives as the continuation sections of
    :func:`bitplane.core.weightimage.chunks`; each is accepted only right after the one before
    it, at the address where that one ended). A beat carries ``words_per_beat(beat_bits, 32)``
    image words, the last beat zero-padded after the end word.

    Ports
    -----
    ``i``: In(:func:`beat_signature`): the image beats (offered only while ``loading``; a beat
        once offered stays offered until ``i.ready``, as AXI4-Stream requires).
    ``load``: In(1): pulse: the next input frame is a weight image.
    ``idle``: In(1): the input framer is at a frame boundary (the switch to loading waits for it).
    ``pending``: Out(1): a load was requested and waits for ``idle``.
    ``loading``: Out(1): from the cycle after the switch to the image's last beat.
    ``wr``: Out(stream of ``{sel, addr, data}``, always ready): one memory entry written per
        transfer into section ``sel`` at ``addr`` (``data``: the widest entry; a section uses
        its low ``width`` bits); registered, one cycle after the entry's last word.
    ``checksum``: Out(32): CRC-32 (``zlib.crc32``) of every word accepted since ``clear``.
    ``words``: Out(32): words accepted since ``clear``.  ``clear``: In(1): pulse (takes effect one
        cycle later: it is registered first).
    ``format_error``: Out(1): pulse on a bad magic, an unknown or mis-sized section header, an
        end word that is not in the last beat, a continuation section out of place, or an
        image ending inside a section; the rest
        of the frame is then dropped (and still counted and checksummed, the zero padding of
        its last beat included).

    Throughput: one word per :data:`LOADER_CYCLES_PER_WORD` (6) cycles (the first registers
    the word, the second its comparisons with the magic, end and section-header words by
    4-bit pieces and its part of the CRC in 4-bit pieces, the third the whole compares and
    the CRC part, the fourth their header decode and the decision's terms, the fifth the FSM's
    decision: next state, error, which registers to load, next address; the sixth takes the
    word, ``i.ready`` on a beat's last word): an image is loaded once, no cycle has more than
    three LUT levels, and every clock enable of the taking cycle is ``accept`` AND one register.
    Latency: a memory entry is written one cycle after its last word is taken.
    """

    def __init__(self, beat_bits: int, sections, max_count: int = wimg.MAX_COUNT):
        self.beat_bits = beat_bits
        self.sections = [tuple(s) for s in sections]
        self.max_count = max_count
        self.n = words_per_beat(beat_bits, 32)
        self.max_wpe = max(wimg.words_per_entry(s[3]) for s in self.sections)
        max_entries = max(s[2] for s in self.sections)
        wr = data.StructLayout({"sel": range(max(2, len(self.sections))), "addr": range(max(2, max_entries)),
                                "data": 32 * self.max_wpe})
        super().__init__({"i": In(beat_signature(beat_bits)), "load": In(1), "idle": In(1), "pending": Out(1),
                          "loading": Out(1), "wr": Out(stream.Signature(wr, always_ready=True)),
                          "checksum": Out(32), "words": Out(32), "clear": In(1), "format_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        n, secs = self.n, self.sections
        loading, load_pending = self.loading, self.pending
        with m.If(self.load):
            m.d.sync += load_pending.eq(1)
        with m.If(load_pending & self.idle & ~loading):
            m.d.sync += [loading.eq(1), load_pending.eq(0)]

        asm = Signal(32 * self.max_wpe, reset_less=True)
        sel = Signal(range(max(2, len(secs))))
        left = Signal(20)
        wi = Signal(range(max(2, self.max_wpe)))
        wsel = Signal(self.max_wpe, init=1)              # wi one-hot: the assembly slots' enables
        addr = Signal(range(max(2, max(s[2] for s in secs))))
        wr, wr_addr = Signal(), Signal.like(addr, reset_less=True)
        widx = Signal(range(max(2, n)))
        word = self.i.payload.data[:32] if n == 1 else self.i.payload.data.word_select(widx, 32)
        beat_end = (widx == n - 1) if n > 1 else 1
        last = self.i.payload.last & beat_end          # the frame's last word
        # every word takes six cycles (LOADER_CYCLES_PER_WORD): in the first it is registered
        # (`word_r`; the input slice's multiplexer before the 32-bit compares was the demo's ECP5
        # path, 7.0 ns), in the second and third its comparisons with the constants the FSM looks
        # for (flag()), in the fourth what the FSM needs of them (a section header, its section's
        # select and words per entry), in the fifth the FSM's decision, in the sixth it is taken:
        # no 32-bit compare and no wide OR of compares lies before the FSM's clock enables (an
        # image is loaded once; with the header decode in the taking cycle, CNV-W1A1's ECP5 path
        # ran from the flags to the address register's enable, 8.5-8.9 ns)
        # (section, chunk, first entry, header word) of every section header the image may hold
        chunk_headers = []
        for k, (lay, kind, entries, width) in enumerate(secs):
            wpe = wimg.words_per_entry(width)
            for j, (first, count) in enumerate(wimg.chunks(entries, width, self.max_count)):
                chunk_headers.append((k, j, first, wimg.header(lay, kind | (wimg.MEM_CONTINUE if j else 0), count * wpe)))
        consts = list(dict.fromkeys([wimg.IMAGE_MAGIC, wimg.END_WORD] + [h for *_, h in chunk_headers]))
        flags = Signal(len(consts))
        phase = Signal(LOADER_CYCLES_PER_WORD, init=1)  # one-hot: register, compare x2, decode, decide, take
        word_r = Signal(32, reset_less=True)

        def flag(const):
            """The registered ``word == const`` of the word being taken."""
            return flags[consts.index(const)]

        with m.If(loading & self.i.valid):
            m.d.sync += phase.eq(phase.rotate_left(1))
        with m.If(~loading):
            m.d.sync += phase.eq(1)
        # a continuation header counts only right after the previous chunk of its memory: that
        # test is registered in the first cycle, and with the word's compare into its flag in the
        # second (sel and addr change only when a word is taken; the address compare in the same
        # cycle as the word's made the demo's ECP5 path at two placements, 4 levels, 7.4 ns)
        cont_now = {}
        for k, j, first, h in chunk_headers:
            if j:                       # (chunks of one size share their header word)
                cont_now[h] = cont_now.get(h, 0) | ((sel == k) & (addr == first))
        cont = {h: Signal(name=f"cont{i}") for i, h in enumerate(cont_now)}
        wpe_last = Signal(range(max(2, self.max_wpe)))   # the section's words per entry - 1, set with sel
        last_r, entry_done, left_one = Signal(), Signal(), Signal()
        with m.If(phase[0]):
            m.d.sync += [word_r.eq(word), last_r.eq(last), entry_done.eq(wi == wpe_last), left_one.eq(left == 1)]
            m.d.sync += [cont[h].eq(v) for h, v in cont_now.items()]
        # the compares in two steps: each 4-bit piece of the word decoded into the values the
        # constants have there (one LUT each, shared by all constants), then each constant's
        # eight pieces and its continuation test ANDed (two levels; the whole compare in one
        # step, or by 16-bit halves, took four: `word_r` -> `flags` / `halves`, the demo's and
        # TFC's ECP5 path at three placements, 6.2-7.1 ns)
        nib = {(q, v): Signal(name=f"nib{q}_{v:x}", reset_less=True)
               for q in range(8) for v in sorted({(c >> 4 * q) & 0xF for c in consts})}
        with m.If(phase[1]):
            m.d.sync += [r.eq(word_r[4 * q:4 * q + 4] == v) for (q, v), r in nib.items()]
        with m.If(phase[2]):
            m.d.sync += flags.eq(Cat(*[_and([nib[q, (c >> 4 * q) & 0xF] for q in range(8)]) & cont.get(c, 1)
                                       for c in consts]))
        # the header decode of the flags, registered in the fourth cycle: a section header at
        # all (`hdr_hit`), a section's first chunk (`hdr_first`), and that section's select and
        # words per entry - 1 (the flags of first chunks are one-hot: their header words differ)
        hdr_hit, hdr_first = Signal(), Signal()
        sel_n, wpe_n = Signal.like(sel), Signal.like(wpe_last)
        firsts = [(k, flag(h)) for k, j, _, h in chunk_headers if j == 0]
        with m.If(phase[3]):
            m.d.sync += [hdr_hit.eq(_or([flag(h) for *_, h in chunk_headers])),
                         hdr_first.eq(_or([f for _, f in firsts])),
                         sel_n.eq(_or([Mux(f, k, 0) for k, f in firsts])),
                         wpe_n.eq(_or([Mux(f, wimg.words_per_entry(secs[k][3]) - 1, 0) for k, f in firsts]))]
        accept = Signal()
        finish = Signal()                              # end word in the last beat: rest is padding
        # (phase moves on only with a word offered, which stays offered until i.ready, itself only
        # in the taking phase: so that phase implies i.valid, and accept needs no input from
        # outside the loader)
        m.d.comb += [accept.eq(loading & phase[5]), self.i.ready.eq(loading & phase[5] & (beat_end | finish))]
        if n > 1:
            with m.If(accept):
                m.d.sync += widx.eq(Mux(beat_end | finish, 0, widx + 1))
        m.d.sync += wr.eq(0)
        m.d.comb += [self.wr.valid.eq(wr), self.wr.payload.sel.eq(sel), self.wr.payload.addr.eq(wr_addr),
                     self.wr.payload.data.eq(asm)]
        # CRC-32 state (the register reads ~crc, as zlib). The word's own part of each next-state
        # bit (an XOR of its 12-17 taps in the word) is registered in two steps, XORs of up to 4
        # of the registered word's bits in the second cycle and of those in the third, so the
        # taking cycle XORs state bits and one register: with the word's taps there too, the
        # demo's ECP5 path ran from the input slice's read pointer through five levels of XOR
        # (7.3 ns), with them in one cycle from the registered word through five levels (7.0 ns)
        crc = Signal(32, init=wimg.CRC32_INIT)
        taps = wimg.crc32_word_taps()
        quads = [[ws[q:q + 4] for q in range(0, len(ws), 4)] or [[]] for _, ws in taps]
        wquad = [[Signal(name=f"crc_w{i}_{q}", reset_less=True) for q in range(len(qs))] for i, qs in enumerate(quads)]
        wpart = Signal(32, reset_less=True)
        with m.If(phase[1]):
            m.d.sync += [r.eq(_xor([word_r[j] for j in bits] or [Const(0, 1)]))
                         for rs, qs in zip(wquad, quads) for r, bits in zip(rs, qs)]
        with m.If(phase[2]):
            m.d.sync += wpart.eq(Cat(*[_xor(rs) for rs in wquad]))
        # the state's part likewise, registered every cycle (the state changes only when a word is
        # taken, at most every sixth cycle, or by `clear`: in the cycle after a clear the part of
        # CRC32_INIT, a constant, stands in): the taking cycle XORs two registers per bit (with
        # the state's taps there, up to 17, the demo's ECP5 path was `crc` -> `crc`, 4 levels)
        spart, cleared = Signal(32, reset_less=True), Signal()
        m.d.sync += spart.eq(Cat(*[_xor([crc[j] for j in ss] or [Const(0, 1)]) for ss, _ in taps]))
        init_part = [sum((wimg.CRC32_INIT >> j) & 1 for j in ss) & 1 for ss, _ in taps]
        crc_next = Cat(*[Mux(cleared, init_part[i], spart[i]) ^ wpart[i] for i in range(len(taps))])
        m.d.comb += self.checksum.eq(~crc)
        with m.If(accept):
            m.d.sync += [crc.eq(crc_next), self.words.eq(self.words + 1)]
        # the clear pulse (the top's CTRL register, across the device) registered here first
        clear = Signal()
        m.d.sync += [clear.eq(self.clear), cleared.eq(clear)]
        with m.If(clear):
            m.d.sync += [crc.eq(wimg.CRC32_INIT), self.words.eq(0)]
        # the word goes into its slot whenever one is offered in the taking phase, in any state,
        # taken or not: an entry is written only after its words have filled slots 0..wpe-1 in
        # the payload, so a header or an untaken word left in a slot is overwritten first. Each
        # slot's enable is then an AND of two registers (`phase`, the one-hot `wsel`), nothing
        # of the FSM's state before the wide assembly register's clock enables
        for k in range(self.max_wpe):
            with m.If(phase[5] & wsel[k]):
                m.d.sync += asm[32 * k:32 * (k + 1)].eq(word_r)
        err = self.format_error
        # the FSM's decision for the word (next state, error, end of image, which registers the
        # taking cycle loads, the address's next value) is registered in the fifth cycle, from
        # terms of the state, the flags and `last` registered in the fourth (beside the header
        # decode) and that decode: no output of either cycle has more than two LUT levels. The
        # taking cycle only loads it: every clock enable there is `accept` AND one decision
        # register (with the decision in the taking cycle, the flags -> the FSM's state and the
        # state -> the address's enable were the demo's ECP5 path at five placements, 3-4 levels
        # and 6-6.6 ns of routing; with it in one cycle, the flags -> `addr_next`, 3 levels)
        st = Signal(4, init=1)                         # one-hot state: MAGIC, HEADER, PAYLOAD, DROP
        MAGIC, HEADER, PAYLOAD, DROP = st[0], st[1], st[2], st[3]
        is_end, is_magic = flag(wimg.END_WORD), flag(wimg.IMAGE_MAGIC)
        end_ok = self.i.payload.last                   # (an end word not in the last beat is an error)
        terms = {                                      # the fourth cycle's terms
            "m_ok": MAGIC & ~last_r & is_magic,        # a good magic: on to HEADER, address 0
            "h_go": HEADER & ~is_end,                  # a section header (good or not)
            "h_go_nl": HEADER & ~is_end & ~last_r,     # ... not the image's last word
            "h_end_ok": HEADER & is_end & end_ok,      # the end word in the last beat
            "p_inc": PAYLOAD & entry_done,             # an entry complete: written, address + 1
            "p_hdr": PAYLOAD & ~last_r & left_one,     # the section's last word: on to HEADER
            "p_stay": PAYLOAD & ~last_r & ~left_one,
            # on to DROP whatever the decode says (a bad magic, an end word not in the last beat,
            # a dropped word not the last) and an error whatever it says
            "drop_a": (MAGIC & ~last_r & ~is_magic) | (HEADER & is_end & ~end_ok) | (DROP & ~last_r),
            "err_a": (MAGIC & (last_r | ~is_magic)) | (HEADER & is_end & ~end_ok) | (HEADER & ~is_end & last_r)
                     | (PAYLOAD & last_r),
        }
        t = {k: Signal(name=f"dec_{k}", reset_less=True) for k in terms}
        addr_inc = Signal.like(addr, name="addr_inc", reset_less=True)
        with m.If(phase[3]):
            m.d.sync += [t[k].eq(v) for k, v in terms.items()] + [addr_inc.eq(addr + 1)]
        # the fifth cycle: the decision (a header word with no section's header flag is an error)
        st_nx = Signal(4, reset_less=True)
        err_nx, fin_nx, stop_nx = Signal(reset_less=True), Signal(reset_less=True), Signal(reset_less=True)
        do_sel, do_hdr, do_pay, do_entry = (Signal(reset_less=True, name=nm)
                                            for nm in ("do_sel", "do_hdr", "do_pay", "do_entry"))
        addr_nx = Signal.like(addr, name="addr_next", reset_less=True)
        no_hdr = t["h_go_nl"] & ~hdr_hit
        fin = t["h_end_ok"] if n > 1 else Const(0)     # (with one word a beat, last_r says it)
        zero = t["m_ok"] | (t["h_go"] & hdr_first)
        with m.If(phase[4]):
            m.d.sync += [st_nx.eq(Cat(last_r | t["h_end_ok"], t["m_ok"] | t["p_hdr"],
                                      (t["h_go_nl"] & hdr_hit) | t["p_stay"], t["drop_a"] | no_hdr)),
                         err_nx.eq(t["err_a"] | no_hdr), fin_nx.eq(fin), stop_nx.eq(last_r | fin),
                         do_sel.eq(t["h_go"] & hdr_first), do_hdr.eq(t["h_go"]),
                         do_pay.eq(PAYLOAD), do_entry.eq(t["p_inc"]),
                         addr_nx.eq(Mux(zero, 0, Mux(t["p_inc"], addr_inc, addr)))]
        m.d.comb += [finish.eq(fin_nx), err.eq(accept & err_nx)]
        with m.If(accept):
            m.d.sync += [st.eq(st_nx), addr.eq(addr_nx)]
            with m.If(stop_nx):
                m.d.sync += loading.eq(0)
            with m.If(do_sel):
                m.d.sync += [sel.eq(sel_n), wpe_last.eq(wpe_n)]
            with m.If(do_hdr):
                m.d.sync += [left.eq(word_r[:20]), wi.eq(0), wsel.eq(1)]
            with m.If(do_pay):
                m.d.sync += left.eq(left - 1)
                with m.If(do_entry):
                    m.d.sync += [wi.eq(0), wsel.eq(1), wr.eq(1), wr_addr.eq(addr)]
                with m.Else():
                    m.d.sync += [wi.eq(wi + 1), wsel.eq(wsel << 1)]
        return m


class OutputFramer(wiring.Component):
    """The last block's output -> output beats: 32-bit result words, ``last`` per frame.

    Parameters: ``raw_width`` (bits per accumulator: 32, or 64 sent as two words, low first),
    ``lanes`` (accumulators per input word: the last block's PE), ``words_per_frame`` (result
    words per frame), ``fifo_depth`` (the output FIFO), ``beat_bits``; a beat carries
    ``n = words_per_beat(beat_bits, 32)`` words, the last beat of a frame zero-padded.

    Ports
    -----
    ``i``: In(stream of ``lanes * raw_width``): the last block's output words.
    ``o``: Out(:func:`beat_signature`): result beats, ``last`` on each frame's last beat.
    ``frame_done``: Out(1): pulse when a frame's last beat is taken.

    Internals: width converters to one 32-bit word per transfer, the output FIFO, then (for
    ``n > 1``) a beat register. Throughput: one word per cycle into the FIFO. Latency: the
    converters' and FIFO's (1 cycle each), plus 1 for the beat register. Backpressure: any;
    ``o.ready`` low fills the FIFO and then stalls ``i``.
    """

    def __init__(self, raw_width: int, lanes: int, words_per_frame: int, fifo_depth: int, beat_bits: int):
        self.raw_width, self.lanes, self.words_per_frame = raw_width, lanes, words_per_frame
        self.fifo_depth, self.beat_bits = fifo_depth, beat_bits
        self.n = words_per_beat(beat_bits, RESULT_BITS)
        super().__init__({"i": In(stream.Signature(lanes * raw_width)), "o": Out(beat_signature(beat_bits)),
                          "frame_done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        rw, pe, OW, n = self.raw_width, self.lanes, self.words_per_frame, self.n
        src = wiring.flipped(self.i)
        if pe != 1:
            m.submodules.out_conv = oc = WidthConverter(rw, pe, 1)
            wiring.connect(m, src, oc.i)
            src = oc.o
        if rw != RESULT_BITS:                        # 64-bit results: low word, then high word
            m.submodules.out_split = sp = WidthConverter(RESULT_BITS, rw // RESULT_BITS, 1)
            wiring.connect(m, src, sp.i)
            src = sp.o
        m.submodules.out_fifo = of = StreamFIFO(RESULT_BITS, self.fifo_depth)
        wiring.connect(m, src, of.i)
        ocount = Signal(range(max(2, OW)))
        word_last = ocount == OW - 1
        o = self.o
        if n == 1:
            m.d.comb += [o.payload.data.eq(of.o.payload), o.valid.eq(of.o.valid), of.o.ready.eq(o.ready),
                         o.payload.last.eq(word_last)]
            take = of.o.valid & of.o.ready
            with m.If(o.valid & o.ready):
                m.d.comb += self.frame_done.eq(word_last)
        else:
            widx = Signal(range(n))
            full = Signal()
            m.d.comb += [o.valid.eq(full), of.o.ready.eq(~full | o.ready)]
            take = of.o.valid & of.o.ready
            with m.If(o.valid & o.ready):
                m.d.sync += full.eq(0)
                m.d.comb += self.frame_done.eq(o.payload.last)
            with m.If(take):
                with m.If(widx == 0):
                    m.d.sync += o.payload.data.eq(of.o.payload)
                with m.Else():
                    m.d.sync += o.payload.data.word_select(widx, RESULT_BITS).eq(of.o.payload)
                with m.If((widx == n - 1) | word_last):
                    m.d.sync += [full.eq(1), o.payload.last.eq(word_last), widx.eq(0)]
                with m.Else():
                    m.d.sync += widx.eq(widx + 1)
        with m.If(take):
            m.d.sync += ocount.eq(Mux(word_last, 0, ocount + 1))
        return m
