"""Progress bars for long jobs (driver batches, training epochs, bulk simulation): tqdm's."""
from __future__ import annotations

import sys


def progress_bar(total: int, unit: str = "frames", stream=None, min_total: int = 64, prefix: str = ""):
    """``update(done, final=False, note="")`` driving a :class:`tqdm.tqdm` bar on ``stream``
    (stderr); ``None`` when ``total < min_total`` (short jobs print nothing). ``note`` is
    shown after the bar (e.g. the running loss); ``final=True`` closes it."""
    from tqdm import tqdm
    if total < min_total:
        return None
    bar = tqdm(total=total, unit=f" {unit}", desc=prefix.strip() or None, file=stream or sys.stderr,
               dynamic_ncols=True, leave=True, mininterval=0.2)

    def update(done: int, final: bool = False, note: str = ""):
        if note:
            bar.set_postfix_str(note.strip(), refresh=False)
        bar.update(done - bar.n)
        if final:
            bar.close()
    return update
