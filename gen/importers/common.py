"""What every importer shares: the result type, file checks, the atomic spec writer, format detection."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from bitplane.core.errors import BitplaneError, InputError, SpecError
from bitplane.gen.spec import load_network


FORMATS = ("tensorpack", "state-dict", "qonnx")
DEFAULT_INPUT_SCALE = 1 / 255
PARAM_FIELDS = ("W", "b", "gamma", "beta", "mean", "var", "Wp", "Wn", "basis")


@dataclass
class Imported:
    """A spec (without ``weights``) and its arrays, before writing."""
    source: Path
    fmt: str
    spec: dict
    arrays: dict
    notes: list = field(default_factory=list)
    layer_source: Path | None = None        # --spec file, for errors in the layer list


# =========================================================================== architectures


def _input_file(path) -> Path:
    """``path`` as a Path, or a clear error when it is not an existing file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    return path


def _optional_module(name: str, what: str):
    """Import an optional dependency (installed by ``make install-train``) or say how to get it."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError:
        raise BitplaneError(f"{what} needs the '{name}' package: `make install-train` "
                            f"(pip install {'torch==2.13.0' if name == 'torch' else name})") from None


# =========================================================================== writing

def _store(a):
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


def _valid_name(name: str) -> bool:
    return bool(name) and name.replace("-", "_").replace(".", "_").isidentifier()


def write_imported(imp: Imported, out_yaml, name: str | None = None) -> dict:
    """Validate with :func:`load_network` in a temporary folder, then move YAML + NPZ into place."""
    out_yaml = Path(out_yaml)
    npz = out_yaml.with_suffix(".npz")
    if npz == out_yaml:
        raise InputError(f"{out_yaml}: the output must be a .yaml file (the weights go to a .npz beside it)")
    for p in (out_yaml, npz):
        if p.exists() and p.resolve() == imp.source.resolve():
            raise InputError(f"{p}: writing there would overwrite the model being imported; choose another -o")
    if name is not None and not _valid_name(name):
        raise InputError(f"--name {name!r}: a spec name is letters, digits, '-', '_' and '.', not starting "
                         f"with a digit")
    spec_name = name or imp.spec.get("name")
    if not spec_name:
        spec_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", out_yaml.stem).strip("-.")
        spec_name = spec_name if _valid_name(spec_name) else f"net-{spec_name}".rstrip("-")
    spec = {"name": spec_name, "weights": npz.name, "input": imp.spec["input"], "layers": imp.spec["layers"]}
    header = f"# imported from {imp.source.name} ({imp.fmt}) by `bitplane import`\n"
    text = header + yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=110)
    arrays = {k: _store(v) for k, v in imp.arrays.items()}
    with tempfile.TemporaryDirectory(prefix="bitplane-import-") as td:
        ty, tn = Path(td) / out_yaml.name, Path(td) / npz.name
        ty.write_text(text)
        with open(tn, "wb") as f:
            np.savez(f, **arrays)
        try:
            net = load_network(ty)
        except SpecError as e:
            tensor_field = e.field in PARAM_FIELDS
            src = imp.source if tensor_field or imp.layer_source is None else imp.layer_source
            raise SpecError(src, f"the imported spec is invalid: {e.detail}", e.layer, e.index, e.field) from None
        out_yaml.parent.mkdir(parents=True, exist_ok=True)
        for src, dst in ((tn, npz), (ty, out_yaml)):
            tmp = dst.parent / f".{dst.name}.{os.getpid()}.tmp"
            try:
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
    return {"name": net.name, "yaml": out_yaml, "npz": npz, "layers": len(net.layers),
            "params": int(sum(np.asarray(a).size for a in arrays.values())),
            "input": list(net.input_shape), "output": list(net.output_shape)}


def detect_format(path) -> str:
    """``tensorpack`` (an .npz), ``state-dict`` (a torch.save file) or ``qonnx`` (anything else)."""
    path = _input_file(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise SpecError(path, f"unreadable zip archive: {e}") from None
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "state-dict"
        if names and all(n.endswith(".npy") for n in names):
            return "tensorpack"
        raise SpecError(path, "a zip archive that is neither an .npz nor a PyTorch checkpoint")
    with open(path, "rb") as f:
        head = f.read(2)
    return "state-dict" if head[:1] == b"\x80" else "qonnx"


