"""The AXI4-Lite control/status register map: the one definition.

The host driver, the testbenches and the manifest read this table (through
:func:`regmap_dict`); no address is written anywhere else. Pure Python, no numpy.

Access kinds:

* ``ro``    — read-only, driven by the hardware.
* ``rw``    — read/write storage (byte strobes honoured).
* ``w1c``   — sticky flags: the hardware sets bits, writing 1 clears them.
* ``pulse`` — write-only command bits: each written 1 is a one-cycle pulse; reads as 0.

Writes to ``ro`` registers are ignored (OKAY, as Xilinx IP does); any access outside the
map answers DECERR.
"""
from __future__ import annotations

from dataclasses import dataclass, field

ID_MAGIC = 0x4250_4C4E          # "BPLN"
REGMAP_VERSION = 2              # bump on any incompatible change of this table
STREAM_VERSION = 1              # bump on any incompatible change of core/packing.py's stream formats
DATA_BITS = 32


@dataclass(frozen=True)
class Field:
    name: str
    lsb: int
    width: int = 1
    desc: str = ""

    @property
    def mask(self) -> int:
        return ((1 << self.width) - 1) << self.lsb


@dataclass(frozen=True)
class Register:
    name: str
    offset: int
    access: str
    desc: str
    fields: tuple = field(default_factory=tuple)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"register {self.name} has no field {name}")


REGISTERS = (
    Register("ID", 0x00, "ro", f"constant 0x{ID_MAGIC:08X} ('BPLN')"),
    Register("VERSION", 0x04, "ro", "register-map version (bits 15:0) and stream-format version (31:16)"),
    Register("BUILD_ID", 0x08, "ro", "32-bit hash of the compiled design; the driver compares it with the "
                                     "manifest to detect a bitstream from another build"),
    Register("CTRL", 0x0C, "pulse", "commands",
             (Field("SOFT_RESET", 0, desc="flush the datapath and counters (weights are kept)"),
              Field("CLEAR_COUNTERS", 1, desc="zero the frame and cycle counters"),
              Field("CLEAR_CHECKSUM", 2, desc="zero the weight checksum and word count before a load"),
              Field("LOAD_WEIGHTS", 3, desc="the next s_axis frame (up to tlast) is a weight image "
                                            "(core/weightimage.py), not pixels"))),
    Register("STATUS", 0x10, "ro", "state",
             (Field("BUSY", 0, desc="a frame is inside the pipeline"),
              Field("WEIGHTS_LOADING", 1, desc="the input stream currently carries a weight image"),
              Field("ERROR", 2, desc="any ERROR flag is set"))),
    Register("ERROR", 0x14, "w1c", "sticky error flags (write 1 to clear)",
             (Field("FRAMING", 0, desc="tlast early or late on the input stream: the frame is completed with "
                                       "zero words or cut at its length (beats up to tlast dropped); it "
                                       "still yields one (meaningless) result frame"),
              Field("OVERFLOW", 1, desc="a frame counter wrapped past 2**32-1 (accumulator widths are proven "
                                        "at compile time and cannot overflow)"),
              Field("WEIGHT_FORMAT", 2, desc="malformed weight image (bad magic, header, section size, or "
                                             "tlast before the end word); the rest of that frame is dropped"),
              Field("ABORTED", 3, desc="SOFT_RESET while a frame was in flight: its result is lost"))),
    Register("FRAMES_IN", 0x18, "ro", "frames accepted on s_axis since the last counter clear"),
    Register("FRAMES_OUT", 0x1C, "ro", "frames emitted on m_axis since the last counter clear"),
    Register("CYCLES_LO", 0x20, "ro", "free-running cycle counter, low word (latched HI on read of LO)"),
    Register("CYCLES_HI", 0x24, "ro", "cycle counter, high word"),
    Register("WEIGHT_CHECKSUM", 0x28, "ro", "CRC-32 (as zlib.crc32 computes it) of the weight-image words loaded since "
                                            "CLEAR_CHECKSUM, each word as 4 little-endian bytes"),
    Register("WEIGHT_WORDS", 0x2C, "ro", "number of weight-image words loaded since CLEAR_CHECKSUM"),
    Register("SCRATCH", 0x30, "rw", "free for software (driver self-test)"),
)

SPAN = 0x40                      # size of the register window in bytes (power of two)


def by_name(name: str) -> Register:
    for r in REGISTERS:
        if r.name == name:
            return r
    raise KeyError(name)


def offset(name: str) -> int:
    """Byte offset of register ``name``."""
    return by_name(name).offset


def mask(reg: str, field: str) -> int:
    """Bit mask of ``field`` in register ``reg``."""
    return by_name(reg).field(field).mask


def regmap_dict() -> dict:
    """The register map as plain data, for the manifest and the host driver."""
    return {
        "version": REGMAP_VERSION, "stream_version": STREAM_VERSION, "id_magic": ID_MAGIC, "data_bits": DATA_BITS, "span": SPAN,
        "registers": [
            {"name": r.name, "offset": r.offset, "access": r.access, "desc": r.desc,
             "fields": [{"name": f.name, "lsb": f.lsb, "width": f.width, "desc": f.desc} for f in r.fields]}
            for r in REGISTERS
        ],
    }


def _check():
    offs = [r.offset for r in REGISTERS]
    assert len(set(offs)) == len(offs) and all(o % 4 == 0 and o < SPAN for o in offs)
    assert SPAN & (SPAN - 1) == 0


_check()
