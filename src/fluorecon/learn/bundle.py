"""Model bundles: a versioned folder with safetensors weights and a JSON description. Never unpickles.

Layout (schema ``1.0``)::

    bundle.json               # schema_version, model config, normaliser, provenance, optional fields
    weights.safetensors       # member 0 (the model)
    member-1.safetensors ...  # optional further ensemble members
    test_tensors.safetensors  # optional: small input + expected output (see Bundle.verify)

``bundle.json`` keys (required): ``schema_version`` ("1.0"), ``kind`` ("fluorecon-bundle"),
``model`` (``UNet.config()``), ``normalizer`` (``PercentileNormalizer.to_dict()``), ``config``
(axes, scheme, training configuration), ``provenance`` (data file sha256 hashes, seed, package
versions, scheme, steps, validation curve, wall time, date), ``files`` (name → sha256 of every
weight/tensor file, checked on load). Optional, documented fields:

- ``members``: list of weight files, one per ensemble member (default ``["weights.safetensors"]``).
- ``training_stats``: statistics of the training data for shift detection, e.g.
  ``{"histogram": {"edges": [...], "counts": [...]}, "noise_sigma": float,
  "bottleneck": {"mean": [...], "std": [...]}}`` (free-form JSON; written by ``train`` and the trust layer).
- ``forward``: ``Forward.to_dict()`` of the forward model used to simulate training data.
- ``test_tensors``: ``{"file": "test_tensors.safetensors", "axes": "YX", "atol": float}``; the file holds
  ``input`` and ``expected`` arrays; :meth:`Bundle.verify` recomputes and compares.

Readers refuse an unknown **major** schema version; unknown minor versions and unknown extra keys
are accepted (forward compatible).
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fluorecon._atomic import atomic_path
from fluorecon.errors import FluoreconError
from fluorecon.learn.nets import UNet
from fluorecon.learn.normalize import PercentileNormalizer

SCHEMA_VERSION = "1.0"
BUNDLE_KIND = "fluorecon-bundle"
MAX_MEMBERS = 64  # ensemble size limit (a bundle naming more is refused, not loaded for minutes)
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".h5", ".hdf5")

__all__ = ["Bundle", "MAX_MEMBERS", "SCHEMA_VERSION", "sha256_file", "package_versions", "write_safetensors"]


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file (or of all files of a folder, in sorted order, e.g. a zarr store).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a"; _ = p.write_bytes(b"x")
    >>> sha256_file(p)[:8]
    '2d711642'
    """
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    for f in files:
        with open(f, "rb") as fh:
            while True:
                b = fh.read(chunk)
                if not b:
                    break
                h.update(b)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of the packages that determine a bundle's numbers."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name in ("fluorecon", "safetensors", "scipy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file with byte-identical output for identical tensors and metadata.

    ``safetensors`` serialises its metadata map in an arbitrary order; the header is rewritten here
    with sorted keys (same data offsets, padded to 8 bytes as the format requires).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "w.safetensors"
    >>> write_safetensors({"w": torch.ones(2)}, p, {"b": "1", "a": "2"})
    >>> p.read_bytes()[8:41]
    b'{"__metadata__":{"a":"2","b":"1"}'
    """
    import struct

    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    raw = Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.dumps(json.loads(raw[8:8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(header)) + header + raw[8 + n:])


def _inside(folder: Path, name: Any, what: str) -> Path:
    """``folder / name`` for a plain relative name that stays inside ``folder`` (no ``..``, no absolute)."""
    if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts or "\\" in name:
        raise FluoreconError(f"bundle {folder} names {what} {name!r} outside its folder",
                             hint="a bundle may only reference files inside its own folder; re-save it with fluorecon")
    p = folder / name
    try:
        p.resolve().relative_to(folder.resolve())
    except ValueError:
        raise FluoreconError(f"bundle {folder} names {what} {name!r} that resolves outside its folder",
                             hint="a bundle may only reference files inside its own folder (no links out)") from None
    return p


def _state_to_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


class Bundle:
    """A trained model with everything needed to reuse, verify and trust it.

    Parameters
    ----------
    model : UNet or list of UNet
        The network; a list is an ensemble (member 0 is ``.model``).
    normalizer : PercentileNormalizer
        Fitted normaliser (inputs are normalised with it, outputs denormalised).
    config : dict, optional
        ``{"axes": "YX", "scheme": "n2v", "train": {...}}`` and anything else describing the model's use.
    provenance : dict, optional
        Data hashes, seed, versions, steps, validation curve...
    training_stats, forward : dict, optional
        See the module docstring.
    test_tensors : dict, optional
        ``{"input": array, "expected": array, "axes": str, "atol": float}``.

    Attributes
    ----------
    model : UNet
        Member 0, in eval mode.
    members : list of UNet
        All members (length 1 for a single model).

    Examples
    --------
    >>> import tempfile
    >>> b = Bundle(UNet(depth=1, width=4), PercentileNormalizer().fit(np.arange(10.0)), config={"axes": "YX"})
    >>> d = b.save(tempfile.mkdtemp() + "/m")
    >>> Bundle.load(d).config["axes"]
    'YX'
    """

    def __init__(self, model: UNet | list[UNet], normalizer: PercentileNormalizer, config: dict | None = None,
                 provenance: dict | None = None, training_stats: dict | None = None, forward: dict | None = None,
                 test_tensors: dict | None = None, schema_version: str = SCHEMA_VERSION):
        members = list(model) if isinstance(model, (list, tuple)) else [model]
        if not members:
            raise FluoreconError("a bundle needs at least one model", hint="pass a UNet")
        for m in members:
            if not hasattr(m, "config"):
                raise FluoreconError(f"bundle members must be fluorecon UNets (with .config()), got {type(m).__name__}",
                                     hint="build the network with fluorecon.learn.nets.UNet")
            m.eval()
        self.members: list[UNet] = members
        self.normalizer = normalizer
        self.config: dict[str, Any] = dict(config or {})
        self.provenance: dict[str, Any] = dict(provenance or {})
        self.training_stats = training_stats
        self.forward = forward
        self.test_tensors = test_tensors
        self.schema_version = schema_version

    @property
    def model(self) -> UNet:
        return self.members[0]

    @property
    def axes(self) -> str:
        return str(self.config.get("axes", "YX"))

    # ----------------------------------------------------------------------------------------- save
    def save(self, path: str | Path) -> Path:
        """Write the bundle folder atomically (replacing an existing one) and return its path."""
        final = Path(path)
        if final.exists() and final.is_file():
            raise FluoreconError(f"bundle path {final} is an existing file", hint="give a folder path for the bundle")
        self.check_finite()
        with atomic_path(final, is_dir=True) as tmp:
            files: dict[str, str] = {}
            names = []
            for k, m in enumerate(self.members):
                name = "weights.safetensors" if k == 0 else f"member-{k}.safetensors"
                write_safetensors(_state_to_cpu(m), tmp / name, metadata={"format": "pt", "schema": SCHEMA_VERSION})
                files[name] = sha256_file(tmp / name)
                names.append(name)
            tt_meta = None
            if self.test_tensors is not None:
                tt = self.test_tensors
                write_safetensors({"input": torch.as_tensor(np.ascontiguousarray(tt["input"], np.float32)),
                                   "expected": torch.as_tensor(np.ascontiguousarray(tt["expected"], np.float32))},
                                  tmp / "test_tensors.safetensors")
                files["test_tensors.safetensors"] = sha256_file(tmp / "test_tensors.safetensors")
                tt_meta = {"file": "test_tensors.safetensors", "axes": tt.get("axes", self.axes),
                           "atol": float(tt.get("atol", 1e-4)), "tta": bool(tt.get("tta", False))}
            doc = {
                "schema_version": SCHEMA_VERSION,
                "kind": BUNDLE_KIND,
                "model": self.model.config(),
                "normalizer": self.normalizer.to_dict(),
                "config": self.config,
                "provenance": self.provenance,
                "members": names,
                "files": files,
                "training_stats": self.training_stats,
                "forward": self.forward,
                "test_tensors": tt_meta,
            }
            (tmp / "bundle.json").write_text(json.dumps(_jsonable(doc), indent=2, sort_keys=True))
        return final

    # ----------------------------------------------------------------------------------------- load
    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        """Read a bundle folder; verifies file hashes; never unpickles.

        Raises
        ------
        FluoreconError
            Missing folder/files, a pickle-based checkpoint, corrupt JSON or weights, hash mismatch,
            or an unknown major schema version.
        """
        p = Path(path)
        if p.is_file():
            if p.suffix.lower() in _PICKLE_SUFFIXES:
                raise FluoreconError(f"{p.name} looks like a pickle/PyTorch checkpoint; fluorecon never loads pickles",
                                     hint="convert the weights to safetensors and save a fluorecon bundle folder")
            if p.name == "bundle.json":
                p = p.parent
            else:
                raise FluoreconError(f"{p} is a file, not a bundle folder", hint="give the folder containing bundle.json")
        if not p.is_dir():
            raise FluoreconError(f"bundle folder {p} not found", hint="check the path (a folder with bundle.json)")
        jp = p / "bundle.json"
        if not jp.exists():
            pickles = [q.name for q in p.iterdir() if q.suffix.lower() in _PICKLE_SUFFIXES]
            if pickles:
                raise FluoreconError(f"{p} holds {pickles[0]} but no bundle.json; fluorecon never loads pickles",
                                     hint="convert the weights to safetensors in a fluorecon bundle")
            raise FluoreconError(f"{p} has no bundle.json", hint="is this a fluorecon bundle folder?")
        try:
            doc = json.loads(jp.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise FluoreconError(f"{jp} is not valid JSON ({e})", hint="the bundle is corrupt; save it again") from None
        except RecursionError:
            raise FluoreconError(f"{jp} is nested too deeply to be a bundle description",
                                 hint="the bundle is corrupt or hostile; save it again with fluorecon") from None
        if not isinstance(doc, dict) or doc.get("kind", BUNDLE_KIND) != BUNDLE_KIND:
            raise FluoreconError(f"{jp} is not a fluorecon bundle description", hint="check the folder")
        ver = str(doc.get("schema_version", ""))
        major = ver.split(".")[0]
        if major != SCHEMA_VERSION.split(".")[0]:
            raise FluoreconError(f"bundle schema version {ver!r} is not supported (this fluorecon reads {SCHEMA_VERSION.split('.')[0]}.x)",
                                 hint="use the fluorecon version that wrote the bundle, or retrain")
        for key in ("model", "normalizer", "members"):
            if key not in doc:
                raise FluoreconError(f"{jp} lacks the required field {key!r}", hint="the bundle is corrupt; save it again")
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        files = doc.get("files", {})
        names = doc["members"]
        if not isinstance(files, dict):
            raise FluoreconError(f"{jp}: 'files' must map file names to sha256 hashes", hint="the bundle is corrupt")
        if not isinstance(names, list) or not 1 <= len(names) <= MAX_MEMBERS:
            raise FluoreconError(f"{jp}: 'members' must list 1 to {MAX_MEMBERS} weight files",
                                 hint="the bundle is corrupt; save it again")
        # Imported here: train builds bundles (train → bundle → train would be a cycle).
        from fluorecon.learn.train import check_model_size

        if not isinstance(doc["model"], dict):
            raise FluoreconError(f"{jp}: 'model' must be a network configuration", hint="the bundle is corrupt")
        try:
            check_model_size(doc["model"])
        except ValueError as e:
            raise FluoreconError(f"{jp}: model {e}", hint="the bundle is corrupt or hostile; fluorecon supports "
                                                        "depth 1-8 and width 1-1024") from None
        members = []
        for name in names:
            wp = _inside(p, name, "weight file")
            if Path(name).suffix != ".safetensors":
                raise FluoreconError(f"weight file {name!r} is not safetensors; fluorecon never loads pickles",
                                     hint="store weights as .safetensors")
            if name not in files:
                raise FluoreconError(f"bundle weight file {name!r} has no recorded sha256 in {jp}",
                                     hint="every file a bundle names must be covered by its hashes; re-save the bundle")
            if not wp.exists():
                raise FluoreconError(f"bundle weight file {wp} is missing", hint="copy the whole bundle folder")
            if name in files and sha256_file(wp) != files[name]:
                raise FluoreconError(f"bundle weight file {wp} is corrupt (sha256 mismatch)",
                                     hint="copy the bundle again from its source")
            try:
                net = UNet.from_config(doc["model"])
            except (TypeError, ValueError) as e:
                raise FluoreconError(f"{jp}: invalid model configuration ({e})", hint="the bundle is corrupt") from None
            try:
                state = load_file(str(wp))
            except (SafetensorError, OSError, ValueError) as e:
                raise FluoreconError(f"cannot read weights {wp}: {e}", hint="the bundle is corrupt") from None
            try:
                net.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise FluoreconError(f"weights {wp} do not match the model config ({str(e)[:200]})",
                                     hint="the bundle is corrupt or from an incompatible version") from None
            members.append(net.eval())
        tt = None
        meta = doc.get("test_tensors")
        if meta:
            if not isinstance(meta, dict):
                raise FluoreconError(f"{jp}: 'test_tensors' must be an object", hint="the bundle is corrupt")
            tname = meta.get("file", "test_tensors.safetensors")
            tp = _inside(p, tname, "test tensor file")
            if not tp.exists():
                raise FluoreconError(f"bundle test tensors {tp} are missing", hint="copy the whole bundle folder")
            if tname not in files:
                raise FluoreconError(f"bundle test tensors {tname!r} have no recorded sha256 in {jp}",
                                     hint="every file a bundle names must be covered by its hashes; re-save the bundle")
            if sha256_file(tp) != files[tname]:
                raise FluoreconError(f"bundle test tensors {tp} are corrupt (sha256 mismatch)", hint="copy the bundle again")
            try:
                t = load_file(str(tp))
                if "input" not in t or "expected" not in t:
                    raise KeyError("'input' and 'expected' tensors are required")
            except (SafetensorError, OSError, ValueError, KeyError) as e:
                raise FluoreconError(f"cannot read bundle test tensors {tp}: {e}",
                                     hint="the bundle is corrupt; copy it again or re-save it") from None
            tt = {"input": t["input"].numpy(), "expected": t["expected"].numpy(), "axes": meta.get("axes", "YX"),
                  "atol": float(meta.get("atol", 1e-4)), "tta": bool(meta.get("tta", False))}
        try:
            norm = PercentileNormalizer.from_dict(doc["normalizer"])
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise FluoreconError(f"{jp}: invalid normaliser ({e})", hint="the bundle is corrupt") from None
        b = cls(members, norm, config=doc.get("config"), provenance=doc.get("provenance"),
                training_stats=doc.get("training_stats"), forward=doc.get("forward"), test_tensors=tt, schema_version=ver)
        b.check_finite(str(p))
        return b

    def check_finite(self, name: str = "bundle") -> None:
        """Raise :class:`FluoreconError` if any weight or normaliser value is NaN or infinite.

        Examples
        --------
        >>> from fluorecon.learn.nets import UNet
        >>> Bundle(UNet(width=4), PercentileNormalizer()).check_finite()
        """
        for k, m in enumerate(self.members):
            for pname, t in m.state_dict().items():
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    raise FluoreconError(f"{name}: member {k} has non-finite weights ({pname})",
                                         hint="training diverged or the file is corrupt; retrain (e.g. with a lower --lr)")
        for key in ("lo", "hi"):
            vals = getattr(self.normalizer, key, None)
            if vals is not None and not np.all(np.isfinite(np.asarray(vals, np.float64))):
                raise FluoreconError(f"{name}: the intensity normaliser has non-finite values ({key}={vals})",
                                     hint="the training data held NaN/Inf or the bundle is corrupt; retrain on finite data")

    # ------------------------------------------------------------------------------------ verification
    def make_test_tensors(self, image: np.ndarray | None = None, axes: str | None = None, size: int = 32,
                          seed: int = 0, atol: float = 1e-4) -> dict:
        """Store a small input and this bundle's prediction of it (for :meth:`verify` elsewhere)."""
        # Imported here: predict accepts bundles (predict → bundle → predict would be a cycle).
        from fluorecon.learn.predict import predict

        axes = axes or ("ZYX" if self.model.dim == 3 else "YX")
        if image is None:
            rng = np.random.default_rng(seed)
            lo, hi = self.normalizer.lo[0], self.normalizer.hi[0]
            shape = (8, size, size) if self.model.dim == 3 else (size, size)
            cin = self.model.config()["in_channels"]
            if cin > 1:
                shape = (cin, *shape)
                axes = "C" + axes
            image = (lo + (hi - lo) * rng.random(shape)).astype(np.float32)
        else:
            sl = tuple(slice(0, min(s, size)) for s in image.shape)
            image = np.ascontiguousarray(image[sl], np.float32)
        expected = predict(self, image, axes, tile=None, device="cpu")
        self.test_tensors = {"input": image, "expected": expected, "axes": axes, "atol": atol}
        return self.test_tensors

    def verify(self, device: str = "cpu") -> dict[str, Any]:
        """Recompute the stored test tensors and compare.

        Returns
        -------
        dict
            ``{"ok": bool, "max_abs_error": float, "atol": float}``.

        Raises
        ------
        FluoreconError
            If the bundle has no test tensors.
        """
        # Imported here: predict accepts bundles (predict → bundle → predict would be a cycle).
        from fluorecon.learn.predict import predict

        if not self.test_tensors:
            raise FluoreconError("this bundle has no test tensors", hint="call make_test_tensors() before save()")
        tt = self.test_tensors
        got = predict(self, tt["input"], tt["axes"], tile=None, device=device, tta=bool(tt.get("tta", False)))
        scale = float(np.abs(tt["expected"]).max()) or 1.0
        err = float(np.abs(got - tt["expected"]).max())
        atol = float(tt.get("atol", 1e-4)) * max(1.0, scale)
        return {"ok": bool(err <= atol), "max_abs_error": err, "atol": atol}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
