"""Shared checks of the reliability suite (issue #14): a CLI call must end in one bounded
error line naming what is wrong, with a user-error exit status, no traceback, nothing left
on disk and no user file changed."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bitplane.cli.main import main
from bitplane.core.errors import MAX_ERROR_CHARS


def cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def snapshot(folder) -> dict:
    """Every entry under ``folder`` (hidden ones too): kind, mode and content hash."""
    out = {}
    folder = Path(folder)
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            st = p.lstat()
            h = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else None
            out[str(p.relative_to(folder))] = (st.st_mode, h, os.readlink(p) if p.is_symlink() else None)
    return out


def key_paths(doc, prefix=(), max_items=None):
    """Every path (tuple of keys and list indices) into a JSON/YAML document, parents first;
    of each list only the first ``max_items`` items when given."""
    if isinstance(doc, dict):
        items = doc.items()
    elif isinstance(doc, list):
        items = enumerate(doc[:max_items])
    else:
        return
    for k, v in items:
        yield prefix + (k,)
        yield from key_paths(v, prefix + (k,), max_items)


def assert_clean_error(rc: int, err: str, *names: str, status=(1,)) -> str:
    """The last stderr line is ``bitplane: error: ...`` (bounded, naming ``names``); no stack."""
    assert "Traceback" not in err, err[-2000:]
    assert "internal error" not in err, err[-2000:]
    assert rc in status, (rc, err[-2000:])
    last = err.rstrip("\n").splitlines()[-1] if err.strip() else ""
    assert last.startswith("bitplane: error: "), err[-2000:]
    assert len(last) <= MAX_ERROR_CHARS + 80, len(last)
    for n in names:
        assert n in last, (n, last)
    return last
