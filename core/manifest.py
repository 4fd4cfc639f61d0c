"""The compiled folder's manifest: its one schema, one writer and one reader.

``gen.compile`` builds the manifest as a plain dict and writes it with :func:`write_manifest`;
the driver, ``bitplane sim``, ``synth`` and ``project`` read it with :func:`load_manifest`
(the checked dict) or :func:`read_manifest` (a typed :class:`Manifest`). Both directions go
through :func:`validate`, which checks every field the tools use — types, ranges, the
register map (must be this bitplane's table), stream formats consistent with each other and
with :mod:`core.packing`, finite constants, file names, hashes — so a damaged or edited
manifest is one line naming the field, never a wrong result or a traceback. Kept free of the
compiler's dependencies so a board with only the host side installed can load it.

Version 2: the weight checksum is CRC-32 (zlib's) instead of version 1's rotate-xor.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitplane.core import regmap
from bitplane.core.errors import InputError, short_repr
from bitplane.core.fileio import read_bytes, read_json, regular_file
from bitplane.core.packing import RESULT_BITS, check_stream_bits, input_layout, word_layout

MANIFEST_FORMAT = "bitplane-accelerator"
MANIFEST_VERSION = 2
FILES = ("accelerator.v", "weights.bin", "testvectors.npz")
MAX_FRAME_WORDS = 1 << 28        # words of one input or output frame (a 1 GiB DMA transfer)


class ManifestError(InputError):
    """A manifest field is missing, of the wrong type or out of range."""


@dataclass(frozen=True)
class StreamFormat:
    shape: tuple
    bits: int                # input code bits (input) / 32 (output words)
    lanes: int               # codes per first-block word (input) / 1 (output)
    words_per_frame: int     # first-block words / 32-bit result words of one frame
    words_per_value: int = 1
    layout: object = None    # its beats: bitplane.core.packing.BeatLayout


@dataclass(frozen=True)
class Manifest:
    """The fields of a checked manifest that the host side uses (``raw``: the whole dict)."""
    folder: Path
    name: str
    top: str
    build_id: int
    embedded_weights: bool
    clock_mhz: float
    cycles_per_frame: int
    input: StreamFormat
    output: StreamFormat
    weight_words: int
    weight_checksum: int
    output_scale: tuple
    output_bias: tuple
    regmap: dict
    files: dict
    raw: dict


# ---------------------------------------------------------------------------------- checks
class _Ctx:
    def __init__(self, where: str):
        self.where = where

    def fail(self, field: str, msg: str):
        raise ManifestError(f"{self.where}: field '{field}': {msg}")

    def get(self, d: dict, key: str, path: str):
        if not isinstance(d, dict):
            self.fail(path.rsplit(".", 1)[0] if "." in path else path, "must be a mapping")
        if key not in d:
            self.fail(path, "is missing")
        return d[key]

    def int(self, d, key, path, lo=None, hi=None):
        v = self.get(d, key, path)
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(path, f"must be an integer, got {_show(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            self.fail(path, f"{v} is out of range {lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}")
        return v

    def num(self, d, key, path, positive=True, optional=False):
        if optional and d.get(key) is None:
            return None
        v = self.get(d, key, path)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
            self.fail(path, f"must be a {'positive ' if positive else ''}finite number, got {_show(v)}")
        return float(v)

    def str(self, d, key, path, pattern=None):
        v = self.get(d, key, path)
        if not isinstance(v, str) or (pattern and not re.fullmatch(pattern, v)):
            self.fail(path, f"must be a string{' matching ' + pattern if pattern else ''}, got {_show(v)}")
        return v

    def eq(self, d, key, path, want):
        v = self.get(d, key, path)
        if v != want or type(v) is not type(want):
            self.fail(path, f"must be {want!r} (this bitplane's format), got {_show(v)}")
        return v

    def shape(self, d, key, path, ndim=None):
        v = self.get(d, key, path)
        if (not isinstance(v, list) or not v or (ndim and len(v) != ndim)
                or not all(isinstance(s, int) and not isinstance(s, bool) and 0 < s <= MAX_FRAME_WORDS for s in v)):
            self.fail(path, f"must be a list of {ndim or 'some'} positive integers, got {_show(v)}")
        return tuple(v)


def _show(v, n: int = 60) -> str:
    return short_repr(v, n)


def validate(m, where: str = "manifest.json") -> Manifest:
    """Check every field of manifest dict ``m``; returns the typed view (``folder`` unset)."""
    c = _Ctx(where)
    if not isinstance(m, dict):
        raise ManifestError(f"{where}: must be a JSON object")
    fmt, ver = m.get("format"), m.get("version")
    if fmt != MANIFEST_FORMAT or ver != MANIFEST_VERSION or isinstance(ver, bool):
        raise ManifestError(f"{where}: unsupported manifest (format {_show(fmt)} version {_show(ver)}; this "
                            f"bitplane reads {MANIFEST_FORMAT!r} version {MANIFEST_VERSION}): recompile the "
                            f"network with this bitplane")
    name = c.str(m, "name", "name")
    top = c.str(m, "top", "top", r"[A-Za-z_][A-Za-z0-9_]{0,200}")
    build_id = c.int(m, "build_id", "build_id", 0, 0xFFFF_FFFF)
    emb = c.get(m, "embedded_weights", "embedded_weights")
    if not isinstance(emb, bool):
        c.fail("embedded_weights", f"must be true or false, got {_show(emb)}")
    clock = c.num(m, "clock_mhz", "clock_mhz")
    cpf = c.int(m, "cycles_per_frame", "cycles_per_frame", 1, 1 << 40)
    c.num(m, "frames_per_second", "frames_per_second")
    rm = c.get(m, "regmap", "regmap")
    if not isinstance(rm, dict):
        c.fail("regmap", f"must be a mapping, got {_show(rm)}")
    if rm.get("version") != regmap.REGMAP_VERSION or rm.get("stream_version") != regmap.STREAM_VERSION:
        c.fail("regmap", f"compiled for register map v{_show(rm.get('version'))} / streams "
                         f"v{_show(rm.get('stream_version'))}, this bitplane speaks v{regmap.REGMAP_VERSION} / "
                         f"v{regmap.STREAM_VERSION}: recompile with this bitplane")
    if rm != regmap.regmap_dict():
        want = regmap.regmap_dict()
        bad = sorted(k for k in set(want) | set(rm) if rm.get(k) != want.get(k))
        c.fail(f"regmap.{bad[0]}", "differs from the register map of this version (the manifest was edited)")
    streams = c.get(m, "streams", "streams")
    si = c.get(streams, "input", "streams.input")
    so = c.get(streams, "output", "streams.output")
    tdata = c.int(si, "tdata_bits", "streams.input.tdata_bits")
    try:
        check_stream_bits(tdata)
    except ValueError as e:
        c.fail("streams.input.tdata_bits", str(e))
    c.eq(si, "bytes_per_beat", "streams.input.bytes_per_beat", tdata // 8)
    c.eq(si, "order", "streams.input.order", "HWC")
    ishape = c.shape(si, "shape", "streams.input.shape", 3)
    bits = c.int(si, "bits", "streams.input.bits", 1, 16)
    codes = int(np.prod(ishape))
    lanes = c.int(si, "lanes", "streams.input.lanes", 1, tdata // bits)
    if codes % lanes:
        c.fail("streams.input.lanes", f"{lanes} codes per word do not divide the {codes} input codes of shape "
                                      f"{list(ishape)}")
    ilay = input_layout(ishape, bits, lanes, tdata)
    c.eq(si, "codes_per_beat", "streams.input.codes_per_beat", ilay.per_beat)
    c.eq(si, "beats_per_frame", "streams.input.beats_per_frame", ilay.beats)
    c.eq(so, "tdata_bits", "streams.output.tdata_bits", tdata)
    c.eq(so, "bytes_per_beat", "streams.output.bytes_per_beat", tdata // 8)
    c.eq(so, "signed", "streams.output.signed", True)
    oshape = c.shape(so, "shape", "streams.output.shape")
    wpv = c.int(so, "words_per_value", "streams.output.words_per_value", 1, 2)
    owords = c.int(so, "words_per_frame", "streams.output.words_per_frame", 1, MAX_FRAME_WORDS)
    if owords != int(np.prod(oshape)) * wpv:
        c.fail("streams.output.words_per_frame", f"{owords} does not match shape {list(oshape)} at {wpv} word(s) "
                                                 f"per value")
    olay = word_layout(owords, tdata)
    c.eq(so, "words_per_beat", "streams.output.words_per_beat", olay.per_beat)
    c.eq(so, "beats_per_frame", "streams.output.beats_per_frame", olay.beats)
    order = c.get(so, "order", "streams.output.order")
    if order not in ("HWC", "features"):
        c.fail("streams.output.order", f"must be 'HWC' or 'features', got {_show(order)}")
    aff = c.get(m, "output_affine", "output_affine")
    out_ch = oshape[0] if order == "features" and len(oshape) == 1 else oshape[0]
    consts = {}
    for k in ("scale", "bias"):
        v = c.get(aff, k, f"output_affine.{k}")
        if (not isinstance(v, list) or len(v) not in (1, out_ch)
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v)):
            c.fail(f"output_affine.{k}", f"must be a list of {out_ch} finite numbers, got {_show(v)}")
        consts[k] = tuple(float(x) for x in v)
    w = c.get(m, "weights", "weights")
    c.eq(w, "file", "weights.file", "weights.bin")
    words = c.int(w, "words", "weights.words", 2, 1 << 30)
    crc = c.int(w, "checksum", "weights.checksum", 0, 0xFFFF_FFFF)
    secs = c.get(w, "sections", "weights.sections")
    if not isinstance(secs, list):
        c.fail("weights.sections", "must be a list")
    tv = c.get(m, "testvectors", "testvectors")
    c.eq(tv, "file", "testvectors.file", "testvectors.npz")
    c.int(tv, "frames", "testvectors.frames", 1, 1 << 20)
    files = c.get(m, "files", "files")
    if not isinstance(files, dict):
        c.fail("files", "must be a mapping of file name to SHA-256")
    for n in FILES:
        c.str(files, n, f"files.{n}", r"[0-9a-f]{64}")
    layers = c.get(m, "layers", "layers")
    if not isinstance(layers, list) or not all(isinstance(r, dict) for r in layers):
        c.fail("layers", "must be a list of mappings")
    return Manifest(Path("."), name, top, build_id, emb, clock, cpf,
                    StreamFormat(ishape, bits, lanes, codes // lanes, 1, ilay),
                    StreamFormat(oshape, RESULT_BITS, 1, owords, wpv, olay),
                    words, crc, consts["scale"], consts["bias"], rm, dict(files), m)


# ---------------------------------------------------------------------------------- reading / writing
def load_manifest(folder) -> dict:
    """Read and check a compiled folder's manifest (and that its files are present); the dict."""
    return read_manifest(folder).raw


def read_manifest(folder) -> Manifest:
    """Read and check a compiled folder's manifest: the typed :class:`Manifest`."""
    from dataclasses import replace
    folder = Path(folder)
    mf = folder / "manifest.json"
    if not folder.is_dir() or not mf.exists():
        raise InputError(f"{folder}: not a compiled accelerator folder (no manifest.json; run `bitplane compile`)")
    typed = validate(read_json(mf, "manifest"), str(mf))
    for n in ("accelerator.v", "weights.bin"):
        if not (folder / n).exists():
            raise InputError(f"{folder}: {n} is missing")
        regular_file(folder / n, n)
    return replace(typed, folder=folder)


def manifest_json(m: dict) -> str:
    """The manifest's text (validated first: the compiler cannot write one the tools refuse)."""
    validate(m, "manifest being written")
    return json.dumps(m, indent=2, allow_nan=False) + "\n"


def check_frames(m: dict, x, single_ok: bool = False) -> np.ndarray:
    """Input frames for the design of manifest ``m``: uint8 ``[N, C, H, W]`` codes within the
    input bit width (``single_ok``: a lone ``[C, H, W]`` frame becomes a batch of one)."""
    shape = tuple(m["streams"]["input"]["shape"])
    bits = int(m["streams"]["input"]["bits"])
    x = np.asarray(x)
    if single_ok and x.ndim == 3 and tuple(x.shape) == shape:
        x = x[None]
    if x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise InputError(f"input must be [N, {', '.join(map(str, shape))}] codes, got shape {list(x.shape)}")
    if len(x) == 0:
        raise InputError("the input batch is empty (no frames)")
    if x.dtype != np.uint8:
        raise InputError(f"input must be uint8 codes, got dtype {x.dtype}")
    if x.size and int(x.max()) >= (1 << bits):
        raise InputError(f"input codes must be < {1 << bits} ({bits}-bit input), got {int(x.max())}")
    return x


def read_weight_image(folder, m: dict, path=None) -> bytes:
    """The weight image bytes to stream: the folder's ``weights.bin`` (its SHA-256 must match
    the manifest's) or another image ``path``; a whole number of 32-bit words either way."""
    import hashlib
    p = Path(path) if path else Path(folder) / m["weights"]["file"]
    data = read_bytes(p, "weight image", 4 << 30)
    if path is None and hashlib.sha256(data).hexdigest() != m["files"]["weights.bin"]:
        raise InputError(f"{p}: does not match the manifest's SHA-256 (corrupted, or from another build); "
                         f"recompile or restore it")
    if len(data) % 4 or not data:
        raise InputError(f"{p}: weight image of {len(data)} bytes is not a whole number of 32-bit words")
    return data


def identity_problem(m: dict, read, where: str, folder) -> str | None:
    """What is wrong with the device's ``ID``, ``VERSION`` and ``BUILD_ID`` registers for
    manifest ``m`` (``read(name)`` reads one), checked in that order; None when they match.
    The one check of the driver and of ``bitplane sim``."""
    rm = m["regmap"]
    ident = read("ID")
    if ident != rm["id_magic"]:
        return (f"no bitplane accelerator at {where}: ID register reads 0x{ident:08X}, expected "
                f"0x{rm['id_magic']:08X} (wrong device or base address, or not programmed)")
    ver, want = read("VERSION"), (rm["stream_version"] << 16) | rm["version"]
    if ver != want:
        return (f"{where}: VERSION register reads 0x{ver:08X}, the manifest expects 0x{want:08X}: driver and "
                f"bitstream come from different bitplane versions")
    build = read("BUILD_ID")
    if build != m["build_id"]:
        return (f"{where}: BUILD_ID 0x{build:08X} differs from the manifest's 0x{m['build_id']:08X}: the device "
                f"runs another build than {folder}; program the bitstream generated from this folder")
    return None


def error_flags(m: dict, value: int) -> list[str]:
    """Names of the ``ERROR`` flags set in ``value``, by the manifest's register map (the
    device's version). The one decoding of the driver and of ``bitplane sim``."""
    reg = next(r for r in m["regmap"]["registers"] if r["name"] == "ERROR")
    return [f["name"] for f in reg["fields"] if (value >> f["lsb"]) & ((1 << f["width"]) - 1)]


def weights_problem(m: dict, checksum: int, words: int, sent_words: int, errors=()) -> str | None:
    """What is wrong with a weight load: the device's CRC-32 and word count against the image
    sent and the manifest, and any ERROR flags; None when the load is good."""
    want = m["weights"]["checksum"]
    if errors or checksum != want or words != sent_words:
        return (f"weight image not accepted: checksum 0x{checksum:08X} over {words} words, expected 0x{want:08X} "
                f"over {sent_words}" + (f"; ERROR flags {', '.join(errors)}" if errors else ""))
    return None
