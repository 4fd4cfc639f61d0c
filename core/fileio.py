"""Every file bitplane reads from a user or writes for one goes through here.

One definition of:

* :func:`write_file` — an output file, written atomically (temporary sibling + rename). A
  symlink is written through (its target is replaced, the link stays); a target that is not
  a regular file (a directory, ``/dev/null``, a FIFO) is refused; a new file gets the mode
  the umask allows (``0666 & ~umask``), an existing one keeps its mode.
* :func:`replace_folder` — an output folder, built in a temporary sibling and swapped in.
  An existing folder is replaced only when it is empty or recognisably one that bitplane
  wrote (``is_ours`` says so, e.g. its manifest parses and names its format); anything else
  is refused, so a user's files are never deleted.
* :func:`read_bytes` / :func:`read_text` — a bounded read of a regular file (a size limit;
  ``/dev/zero``, FIFOs and directories are refused instead of being read forever).
* :func:`load_npy` / :func:`load_npz` — NumPy arrays with their headers checked before any
  data is read: element count x item size against :data:`MAX_ARRAY_BYTES`, members of an
  archive checked before decompression, a ``.npy`` where an archive is expected (and the
  reverse) named as such, objects never unpickled.

Temporary files and folders are removed on any exception, including ``KeyboardInterrupt``
and ``SystemExit`` (the CLI turns SIGTERM into ``SystemExit``), so nothing partial is left.
Every failure is an :class:`~bitplane.core.errors.InputError` with one line naming the file.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from bitplane.core.errors import InputError

#: Largest file read whole (spec YAML, manifest, weight image, input arrays): 2 GiB.
MAX_FILE_BYTES = 2 << 30
#: Largest text file parsed as YAML/JSON (specs, fold files, manifests): 64 MiB.
MAX_TEXT_BYTES = 64 << 20
#: Largest array materialised from an .npy/.npz (header shape x item size): 2 GiB.
MAX_ARRAY_BYTES = 2 << 30


def _why(e: OSError) -> str:
    return e.strerror or str(e)


# ---------------------------------------------------------------------------------- reading
def regular_file(path, what: str = "file", limit: int | None = None) -> Path:
    """``path`` as an existing regular file of at most ``limit`` bytes, else a clear error."""
    limit = MAX_FILE_BYTES if limit is None else limit
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: file not found ({what})") from None
    except NotADirectoryError:
        raise InputError(f"{p}: file not found ({what}; a parent is not a folder)") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read {what}: {_why(e)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{p}: is a folder, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p}: not a regular file (device, FIFO or socket); expected a {what}")
    if st.st_size > limit:
        raise InputError(f"{p}: {what} of {st.st_size:,} bytes exceeds the limit of {limit:,} bytes")
    return p


def read_bytes(path, what: str = "file", limit: int | None = None) -> bytes:
    """The bytes of a regular file no larger than ``limit`` (never reads past it)."""
    limit = MAX_FILE_BYTES if limit is None else limit
    p = regular_file(path, what, limit)
    try:
        with open(p, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise InputError(f"{p}: cannot read {what}: {_why(e)}") from None
    if len(data) > limit:
        raise InputError(f"{p}: {what} exceeds the limit of {limit:,} bytes")
    return data


def read_text(path, what: str = "file", limit: int | None = None) -> str:
    """A UTF-8 text file (one-line error for other encodings)."""
    limit = MAX_TEXT_BYTES if limit is None else limit
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InputError(f"{path}: {what} is not UTF-8 text (byte 0x{data[e.start]:02X} at line {line})") from None


def read_json(path, what: str = "JSON file", limit: int | None = None):
    text = read_text(path, what, limit)
    try:
        return json.loads(text, parse_constant=lambda c: _bad_constant(path, c))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply") from None


def _bad_constant(path, c):
    raise InputError(f"{path}: JSON holds the non-finite number {c}")


# ---------------------------------------------------------------------------------- arrays
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"


def _npy_header(f, name: str, limit: int):
    """Read and check an .npy header from ``f``; returns ``(shape, dtype, nbytes)``."""
    try:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
    except Exception as e:          # numpy's header parser raises many kinds (tokenize, syntax, value)
        raise InputError(f"{name}: not a valid .npy array (malformed header: {str(e)[:200]})") from None
    if dtype.hasobject:
        raise InputError(f"{name}: holds pickled Python objects, which are never unpickled; store plain numeric arrays")
    count = 1
    for d in shape:
        count *= int(d)
    nbytes = count * dtype.itemsize
    if nbytes > limit:
        raise InputError(f"{name}: array header claims shape {list(shape)} of {dtype} ({nbytes:,} bytes), "
                         f"more than the limit of {limit:,} bytes")
    return tuple(shape), dtype, nbytes


def load_npy(path, what: str = "array", limit: int | None = None) -> np.ndarray:
    """A single ``.npy`` array, its header checked (size, objects, truncation) before reading."""
    limit = MAX_ARRAY_BYTES if limit is None else limit
    p = regular_file(path, what)
    with open(p, "rb") as f:
        head = f.read(6)
        if head.startswith(_ZIP_MAGIC[:4]):
            raise InputError(f"{p}: is an .npz archive, expected a single .npy array")
        if head != _NPY_MAGIC:
            raise InputError(f"{p}: not an .npy array (expected a file written by numpy.save)")
        f.seek(0)
        shape, dtype, nbytes = _npy_header(f, str(p), limit)
        if p.stat().st_size - f.tell() < nbytes:
            raise InputError(f"{p}: truncated: header claims {nbytes:,} data bytes, the file holds "
                             f"{p.stat().st_size - f.tell():,}")
        f.seek(0)
        try:
            return np.load(f, allow_pickle=False)
        except Exception as e:                   # the header was checked; anything else is a damaged file
            raise InputError(f"{p}: not a valid .npy array ({str(e)[:200]})") from None


def load_npz(path, what: str = "archive", limit: int | None = None, keys=None) -> dict:
    """The arrays of an ``.npz`` archive (only ``keys`` when given), each member's header and
    uncompressed size checked before it is decompressed; the total is bounded by ``limit``."""
    limit = MAX_ARRAY_BYTES if limit is None else limit
    p = regular_file(path, what)
    with open(p, "rb") as f:
        head = f.read(6)
    if head == _NPY_MAGIC:
        raise InputError(f"{p}: is a single .npy array, expected an .npz archive of named arrays")
    if head[:1] == b"\x80":
        raise InputError(f"{p}: is a pickled Python object, which is never loaded; expected an .npz archive")
    if not head.startswith(_ZIP_MAGIC):
        raise InputError(f"{p}: not a valid .npz archive (expected a zip file written by numpy.savez)")
    out, total = {}, 0
    try:
        with zipfile.ZipFile(p) as z:
            infos = z.infolist()
            names = [i.filename[:-4] if i.filename.endswith(".npy") else i.filename for i in infos]
            for info, name in zip(infos, names):
                if keys is not None and name not in keys:
                    continue
                label = f"{p}: member '{name[:100]}'"
                if not info.filename.endswith(".npy"):
                    raise InputError(f"{label} is not an .npy array")
                if info.file_size > limit + 10_000:
                    raise InputError(f"{label} of {info.file_size:,} bytes uncompressed exceeds the limit of "
                                     f"{limit:,} bytes")
                with z.open(info) as f:
                    if f.read(6) != _NPY_MAGIC:
                        raise InputError(f"{label} is not an .npy array")
                    with z.open(info) as g:
                        shape, dtype, nbytes = _npy_header(g, label, limit - total)
                        if info.file_size - g.tell() < nbytes:
                            raise InputError(f"{label} is truncated: header claims {nbytes:,} bytes")
                        total += nbytes
                with z.open(info) as f:
                    out[name] = np.lib.format.read_array(f, allow_pickle=False)
    except InputError:
        raise
    except Exception as e:                       # zipfile / zlib / numpy on a damaged archive
        raise InputError(f"{p}: not a valid .npz archive ({str(e)[:200]})") from None
    return out


def load_codes(path, what: str = "input") -> np.ndarray:
    """An input batch: ``.npy``, or ``.npz`` holding an array ``x``."""
    p = Path(path)
    if p.suffix == ".npz":
        z = load_npz(p, what, keys={"x"})
        if "x" not in z:
            raise InputError(f"{p}: an .npz input needs an array 'x'")
        return z["x"]
    return load_npy(p, what)


# ---------------------------------------------------------------------------------- writing
def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def output_target(path, what: str = "output") -> Path:
    """The file an output at ``path`` replaces: a symlink's target; refuses non-regular ones."""
    p = Path(path)
    if p.is_symlink():
        try:
            p = p.resolve(strict=True)
        except (OSError, RuntimeError):
            raise InputError(f"{path}: {what} is a symlink to a missing file or a loop; refusing to write") from None
    try:
        st = p.stat()
    except FileNotFoundError:
        return p
    except NotADirectoryError:
        raise InputError(f"{path}: cannot write {what}: a parent is a file, not a folder") from None
    except OSError as e:
        raise InputError(f"{path}: cannot write {what}: {_why(e)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a folder; give a file name for the {what}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file (device, FIFO or socket); refusing to replace it "
                         f"with the {what}")
    return p


def _mkdirs(folder: Path, shown) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{shown}: cannot write: {folder} is a file, not a folder") from None
    except NotADirectoryError:
        raise InputError(f"{shown}: cannot write: a parent of it is a file, not a folder") from None
    except OSError as e:
        raise InputError(f"{shown}: cannot create folder {folder}: {_why(e)}") from None


def write_file(path, write, what: str = "output") -> Path:
    """Write ``path`` atomically: ``write(fileobj)`` fills a temporary sibling which then replaces
    the target (see the module docstring for symlinks, modes and refused targets)."""
    target = output_target(path, what)
    _mkdirs(target.parent, path)
    try:
        mode = target.stat().st_mode & 0o7777
    except OSError:
        mode = 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise InputError(f"{path}: cannot write {what}: {_why(e)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            os.fchmod(f.fileno(), mode)
        os.replace(tmp, target)
    except OSError as e:
        _unlink(tmp)
        raise InputError(f"{path}: cannot write {what}: {_why(e)}") from None
    except BaseException:
        _unlink(tmp)
        raise
    return target


def write_bytes(path, data: bytes, what: str = "output") -> Path:
    return write_file(path, lambda f: f.write(data), what)


def save_npy(path, array, what: str = "output") -> Path:
    return write_file(path, lambda f: np.save(f, array, allow_pickle=False), what)


def _unlink(p) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def manifest_names_format(folder: Path, fmt: str, name: str = "manifest.json") -> bool:
    """True when ``folder/name`` is a JSON object whose ``format`` is ``fmt``."""
    try:
        doc = read_json(folder / name)
    except InputError:
        return False
    return isinstance(doc, dict) and doc.get("format") == fmt


def check_replaceable(out, is_ours, what: str = "output folder") -> Path:
    """Refuse (before any work) an output folder :func:`replace_folder` would refuse; its absolute path."""
    out = Path(out)
    shown = str(out)
    if out.is_symlink():
        raise InputError(f"{shown}: is a symlink; give the {what} itself")
    absolute = Path(os.path.abspath(out))
    cwd = Path.cwd()
    if absolute == cwd or absolute in cwd.parents or absolute.parent == absolute:
        raise InputError(f"{shown}: is the working folder or one of its parents; give a new {what} name")
    if out.exists():
        if not out.is_dir():
            raise InputError(f"{shown}: exists and is not a folder; refusing to replace it with the {what}")
        try:
            empty = not any(out.iterdir())
        except OSError as e:
            raise InputError(f"{shown}: cannot read: {_why(e)}") from None
        if not empty and not is_ours(out):
            raise InputError(f"{shown}: exists and is not a folder bitplane wrote (no manifest naming its "
                             f"format); refusing to replace it: remove it or choose another {what}")
    return absolute


def replace_folder(out, fill, is_ours, what: str = "output folder") -> Path:
    """Build a folder with ``fill(tmp_path)`` and put it at ``out`` atomically.

    ``out`` may be missing, an empty folder, or a folder for which ``is_ours(path)`` is true
    (bitplane wrote it); anything else (a file, a symlink, the working folder or one of its
    parents, a user's folder) is refused before ``fill`` runs.
    """
    out = Path(out)
    shown = str(out)
    absolute = check_replaceable(out, is_ours, what)
    parent = absolute.parent
    _mkdirs(parent, shown)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
    except OSError as e:
        raise InputError(f"{shown}: cannot write the {what}: {_why(e)}") from None
    old = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        fill(tmp)
        if out.exists():
            old = parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, absolute)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old, absolute)
        raise InputError(f"{shown}: cannot write the {what}: {_why(e)}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.replace(old, absolute)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out
