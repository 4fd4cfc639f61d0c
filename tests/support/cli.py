"""Checks of the command's behaviour on bad input shared by the importer tests."""
from __future__ import annotations

from pathlib import Path

from bitplane.cli.main import main


def cli_rejects(argv, capsys, *needles):
    """Exit 1, exactly one error line naming the problem, and no output files."""
    out = Path(argv[argv.index("-o") + 1])
    before = set(out.parent.iterdir()) if out.parent.exists() else set()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bitplane: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    after = set(out.parent.iterdir()) if out.parent.exists() else set()
    assert after == before, after - before
    assert not out.exists() and not out.with_suffix(".npz").exists()
    return lines[0]
