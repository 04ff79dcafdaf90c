"""The training loop: seeded, deterministic on request, checkpointed and resumable, budgeted.

Checkpoints are a folder with ``checkpoint.safetensors`` (model weights, Adam moments, torch RNG
state) and ``checkpoint.json`` (step, curves, NumPy RNG state, elapsed time) — no pickles. In
deterministic mode with a fixed number of ``steps``, an interrupted and resumed run ends with
bit-identical weights to an uninterrupted one (the learning-rate schedule depends on the step only).
With a wall-time ``budget_s`` the schedule follows elapsed time instead, so runs are not bit-identical.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fluorecon._atomic import atomic_path
from fluorecon.errors import FluoreconError
from fluorecon.learn.bundle import Bundle, package_versions, sha256_file
from fluorecon.learn.nets import UNet
from fluorecon.learn.normalize import PercentileNormalizer
from fluorecon.learn.patches import PatchSampler, check_pair, split_train_val, to_internal
from fluorecon.learn.schemes import BLIND_SPOT, SCHEMES, SUPERVISED, get_scheme
from fluorecon.trust.shift import training_statistics

__all__ = ["TrainConfig", "train", "load_checkpoint"]


MIN_PATCH, MAX_PATCH = 4, 4096
MAX_DEPTH, MAX_WIDTH = 8, 1024


def check_model_size(model: dict[str, Any]) -> None:
    """Refuse U-Net sizes outside the supported range (``depth`` 1–8, ``width`` 1–1024).

    Examples
    --------
    >>> check_model_size({"depth": 2, "width": 32})
    >>> check_model_size({"depth": 50})
    Traceback (most recent call last):
    ...
    ValueError: depth 50 outside [1, 8]
    """
    for key, hi in (("depth", MAX_DEPTH), ("width", MAX_WIDTH)):
        val = model.get(key)
        if val is None:
            continue
        if isinstance(val, bool) or not isinstance(val, int | float) or int(val) != val or not 1 <= val <= hi:
            raise ValueError(f"{key} {val} outside [1, {hi}]")


def estimate_training_memory(model_cfg: dict[str, Any], patch: Sequence[int], batch_size: int) -> int:
    """Rough upper estimate (bytes) of the memory one training step needs.

    Parameters and Adam state (4 copies of float32 weights) plus activations: per level, the
    feature maps of a batch of patches kept for the backward pass (about 12 maps of ``width·2^l``
    channels, encoder and decoder). The network is built on torch's ``meta`` device, so nothing is
    allocated to count its parameters.

    Examples
    --------
    >>> estimate_training_memory({"dim": 2, "depth": 2, "width": 8}, (32, 32), 2) < 2**27
    True
    """
    cfg = {k: v for k, v in model_cfg.items()}
    dim = int(cfg.get("dim", len(patch)))
    with torch.device("meta"):
        n_params = sum(p.numel() for p in UNet(**cfg).parameters())
    width, depth = int(cfg.get("width", 32)), int(cfg.get("depth", 2))
    vox = math.prod(int(p) for p in patch)
    act = sum(width * 2**lev * vox / (2**lev) ** dim for lev in range(depth + 1)) * 12 * batch_size
    return int(4 * (4 * n_params + act))


def _check_memory(model_cfg: dict[str, Any], patch: Sequence[int], batch_size: int, dev: torch.device) -> None:
    need = estimate_training_memory(model_cfg, patch, batch_size)
    if dev.type == "cuda":
        avail = int(torch.cuda.mem_get_info(dev)[0])
    else:
        import psutil

        avail = int(psutil.virtual_memory().available)
    if need > avail:
        raise FluoreconError(f"training this network needs about {need / 2**30:.1f} GiB but only "
                             f"{avail / 2**30:.1f} GiB is available on {dev}",
                             hint="use a smaller --width/--depth, --patch-size or --batch-size")


def data_digest(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray] | None = None) -> str:
    """SHA-256 of training arrays (bytes, shapes and dtypes): identifies the data of a run.

    Examples
    --------
    >>> data_digest([np.zeros((2, 2))]) == data_digest([np.zeros((2, 2))])
    True
    """
    import hashlib

    h = hashlib.sha256()
    for group in (xs, ys or []):
        for a in group:
            a = np.ascontiguousarray(a)
            h.update(repr((a.shape, str(a.dtype))).encode())
            h.update(a.tobytes())
        h.update(b"|")
    return h.hexdigest()


# Settings that may differ between an interrupted run and its resume (they do not change the result).
_RESUME_FREE = ("resume", "progress", "checkpoint_dir", "checkpoint_every", "device", "threads", "budget_s")


class TrainConfig(BaseModel):
    """Everything that defines a training run (stored in the bundle).

    Examples
    --------
    >>> TrainConfig(scheme="n2v", steps=10).model.get("residual") is None
    True
    """

    model_config = ConfigDict(extra="forbid")

    scheme: Literal["care", "n2n", "n2v", "n2v2", "structn2v", "nb2nb"] = "n2v"
    axes: str = "YX"
    dim: int | None = Field(None, description="2 or 3; default: 3 for axes with Z and a 3D patch, else 2")
    model: dict[str, Any] = Field(default_factory=dict, description="UNet arguments (depth, width, residual, norm, head, pool, skip_top)")
    patch_size: int | list[int] = 64
    batch_size: int = Field(16, le=4096)
    steps: int | None = Field(2000, ge=1, le=100_000_000, description="≥ 1 (None: train for budget_s)")
    budget_s: float | None = Field(None, gt=0, description="wall-time budget in seconds (> 0)")
    lr: float = Field(2e-3, gt=0, le=10)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup: float = 0.05
    clip_grad: float | None = Field(None, gt=0, description="clip the gradient's global norm to this value (None: off)")
    weight_decay: float = 0.0
    mask_grid: int = 4
    replace: Literal["median", "uniform"] = "median"
    struct_axis: int = -1
    struct_span: int = 2
    nb2nb_gamma: float = 1.0
    foreground_bias: float = 0.5
    augment: bool = True
    val_fraction: float = Field(0.1, ge=0, lt=1)
    val_every: int = 100
    val_patches: int = 32
    patience: int | None = None
    keep_best: bool = True
    norm_low: float = 1.0
    norm_high: float = 99.8
    seed: int = 0
    deterministic: bool = False
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    device: str = "auto"
    threads: int | None = None
    progress: bool = True

    @field_validator("batch_size", "mask_grid", "val_every", "val_patches")
    @classmethod
    def _pos(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be ≥ 1")
        return v

    @field_validator("patch_size")
    @classmethod
    def _patch(cls, v: int | list[int]) -> int | list[int]:
        for p in ([v] if isinstance(v, int) else v):
            if not MIN_PATCH <= int(p) <= MAX_PATCH:
                raise ValueError(f"patch size {p} outside [{MIN_PATCH}, {MAX_PATCH}]")
        return v

    @field_validator("model")
    @classmethod
    def _model(cls, v: dict[str, Any]) -> dict[str, Any]:
        check_model_size(v)
        return v

    def resolved_model(self, dim: int, channels: int) -> dict[str, Any]:
        """UNet arguments with scheme-dependent defaults filled in."""
        m = dict(self.model)
        m.setdefault("depth", 2)
        m.setdefault("width", 32)
        if m.get("residual") is None:
            # Non-residual by default for every scheme: on our tests and the FMD data a residual U-Net
            # starts at the identity and needs many more steps to start denoising at low SNR.
            m["residual"] = False
        if self.scheme == "n2v2":
            m.setdefault("pool", "maxblur")
            m.setdefault("skip_top", False)
        m.update(dim=dim, in_channels=channels, out_channels=channels)
        return m


# ------------------------------------------------------------------------------------------ helpers
def _lr_factor(progress: float, cfg: TrainConfig) -> float:
    p = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "constant":
        return 1.0
    if p < cfg.warmup:
        return max(p / cfg.warmup, 0.02)
    q = (p - cfg.warmup) / max(1e-9, 1 - cfg.warmup)
    floor = 0.02
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * q))


def _as_list(data: Any) -> list[np.ndarray]:
    if data is None:
        return []
    if isinstance(data, np.ndarray) or hasattr(data, "__array__") and not isinstance(data, (list, tuple)):
        return [np.asarray(data)]
    return [np.asarray(d) for d in data]


def _patch_shape(cfg: TrainConfig, dim: int) -> tuple[int, ...]:
    ps = cfg.patch_size
    if isinstance(ps, int):
        return (ps,) * dim
    if len(ps) != dim:
        raise FluoreconError(f"patch_size {ps} must have {dim} values for a {dim}D network", hint="e.g. 64 or [16, 64, 64]")
    return tuple(int(p) for p in ps)


def _state_tensors(net: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> tuple[dict, dict]:
    tensors: dict[str, torch.Tensor] = {}
    for k, v in net.state_dict().items():
        tensors[f"model.{k}"] = v.detach().cpu().contiguous().clone()
    meta: dict[str, Any] = {"opt_scalars": {}}
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"opt.{pid}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                meta["opt_scalars"][f"{pid}.{k}"] = v
    meta["param_groups"] = sd["param_groups"]
    tensors["rng.torch"] = gen.get_state().clone()
    return tensors, meta


def _save_checkpoint(path: Path, net, opt, gen, np_rng: np.random.Generator, info: dict) -> None:
    from safetensors.torch import save_file

    tensors, meta = _state_tensors(net, opt, gen)
    meta.update(info)
    meta["numpy_rng"] = np_rng.bit_generator.state
    with atomic_path(path, is_dir=True) as tmp:
        save_file(tensors, str(tmp / "checkpoint.safetensors"))
        (tmp / "checkpoint.json").write_text(json.dumps(meta, default=_json_default))


def _check_resume(meta: dict, cfg: TrainConfig, digest: str, ckpt: Path) -> None:
    """A resume must continue the same run: same settings (but runtime ones) and the same data."""
    old = meta.get("config")
    if not isinstance(old, dict) or "data_sha256" not in meta:
        raise FluoreconError(f"checkpoint {ckpt} does not record its run's settings and data",
                             hint="start a fresh run (without --resume) or delete the checkpoint folder")
    new = cfg.model_dump()
    diff = sorted(k for k in set(old) | set(new) if k not in _RESUME_FREE and old.get(k) != new.get(k))
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in diff[:4])
        raise FluoreconError(f"--resume with other settings than the checkpoint in {ckpt} ({shown})",
                             hint="resume with the same command, or start fresh without --resume")
    if meta["data_sha256"] != digest:
        raise FluoreconError(f"--resume with other training data than the checkpoint in {ckpt}",
                             hint="resume with the same images, or start fresh without --resume")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    raise TypeError(type(o).__name__)


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a training checkpoint folder (safetensors + JSON)."""
    from safetensors.torch import load_file

    p = Path(path)
    if not (p / "checkpoint.json").exists() or not (p / "checkpoint.safetensors").exists():
        raise FluoreconError(f"no checkpoint in {p}", hint="train with --checkpoint-dir (API: checkpoint_dir=) first, or drop --resume")
    try:
        meta = json.loads((p / "checkpoint.json").read_text())
        tensors = load_file(str(p / "checkpoint.safetensors"))
    except Exception as e:
        raise FluoreconError(f"checkpoint {p} is corrupt ({e})", hint="delete it and train from scratch") from None
    return tensors, meta


def _restore(net, opt, gen, tensors: dict, meta: dict) -> None:
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for k, v in meta.get("opt_scalars", {}).items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    gen.set_state(tensors["rng.torch"])


def _noise_sigma(img: np.ndarray) -> float:
    """Robust noise σ from the MAD of a Laplacian-like second difference along the last axis."""
    d = img[..., 2:] - 2 * img[..., 1:-1] + img[..., :-2]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(6))


def _training_stats(net: UNet, samples: list[np.ndarray], sampler_patch: tuple[int, ...], device, seed: int) -> dict:
    flat = np.concatenate([s[0].ravel() for s in samples])
    if flat.size > 2_000_000:
        flat = np.random.default_rng(seed).choice(flat, 2_000_000, replace=False)
    counts, edges = np.histogram(np.clip(flat, -1, 3), bins=64, range=(-1, 3))
    stats: dict[str, Any] = {
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        "normalized_mean": float(flat.mean()), "normalized_std": float(flat.std()),
        "noise_sigma": float(np.median([_noise_sigma(s[0]) for s in samples[:16]])),
    }
    try:
        sampler = PatchSampler([s[None] for s in samples], sampler_patch, foreground_bias=0, seed=seed, augment_data=False)
        x = torch.as_tensor(sampler.sample(16)[:, 0], device=device)
        with torch.inference_mode():
            net.eval()
            net(x)
            feat = net._bottleneck.float()
            red = (0, *range(2, feat.ndim))
            stats["bottleneck"] = {"mean": feat.mean(red).cpu().tolist(), "std": feat.std(red).cpu().tolist()}
    except FluoreconError:
        pass
    return stats


# --------------------------------------------------------------------------------------------- train
def train(config: TrainConfig | dict, data: Any, targets: Any = None, *, axes: str | None = None,
          data_files: Sequence[str | Path] | None = None, init_from: Bundle | str | Path | None = None,
          forward: Any = None, callback: Callable[[int, float], None] | None = None,
          normalizer: PercentileNormalizer | None = None,
          monitor: Callable[[torch.nn.Module, PercentileNormalizer], float] | None = None,
          monitor_points: int = 16) -> Bundle:
    """Train a U-Net with a scheme and return a :class:`Bundle`.

    Parameters
    ----------
    config : TrainConfig or dict
        The run's settings (scheme, steps and/or budget_s, patch and batch size, seed, ...).
    data : array or list of arrays
        Inputs in ``axes`` (noisy images; or the first image of each pair).
    targets : array or list of arrays, optional
        Targets for ``care`` (clean) and ``n2n`` (second noisy recording); same shapes as ``data``.
    axes : str, optional
        Axes of every array (default ``config.axes``).
    data_files : list of paths, optional
        Files the data came from: their sha256 hashes go into the provenance.
    init_from : Bundle or path, optional
        Fine-tune: start from this bundle's weights (and normaliser unless ``normalizer`` is given).
    forward : fluorecon.physics.forward.Forward, optional
        The forward model that simulated the data (stored in the bundle).
    callback : callable, optional
        ``callback(step, loss)`` after each step (may raise to interrupt; a checkpoint survives).
    normalizer : PercentileNormalizer, optional
        Use this (fitted) normaliser instead of fitting one on ``data``.
    monitor : callable, optional
        ``monitor(net, normalizer) -> float`` (lower is better), e.g. a loss on held-out pixels that
        the training never sees. Called (net in eval mode, no gradients) at ``monitor_points`` evenly
        spaced points of the run (in steps, or in time with a budget) and at the end; the weights
        with the lowest value are returned (``provenance["monitor"]`` has the curve and the pick).
        Model selection on held-out data: a run that starts to fit the noise ends at its best point.
    monitor_points : int
        How many times ``monitor`` is called before the end.

    Returns
    -------
    Bundle

    Examples
    --------
    >>> x = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    >>> b = train(dict(scheme="n2v", steps=2, batch_size=2, patch_size=32, progress=False,
    ...                model={"depth": 1, "width": 4}, device="cpu"), x, axes="YX")
    >>> b.provenance["steps"]
    2
    """
    from fluorecon.utils import resolve_device, seed_everything

    cfg = config if isinstance(config, TrainConfig) else TrainConfig(**config)
    if cfg.steps is None and cfg.budget_s is None:
        raise FluoreconError("training needs a number of steps or a wall-time budget", hint="set steps=... or budget_s=...")
    if cfg.resume and not cfg.checkpoint_dir:
        raise FluoreconError("resume=True needs a checkpoint_dir", hint="give the folder the interrupted run wrote")
    axes = (axes or cfg.axes).upper()
    cfg = cfg.model_copy(update={"axes": axes})
    xs = _as_list(data)
    ys = _as_list(targets)
    if not xs:
        raise FluoreconError("no training data", hint="pass at least one image")
    if cfg.scheme in SUPERVISED:
        if not ys:
            raise FluoreconError(f"scheme {cfg.scheme!r} needs targets", hint="pass targets=[...] (pairs)")
        if len(ys) != len(xs):
            raise FluoreconError(f"{len(xs)} inputs but {len(ys)} targets", hint="give one target per input")
        for i, (a, b) in enumerate(zip(xs, ys, strict=True)):
            check_pair(a, b, f"input {i}", f"target {i}")
    dim = cfg.dim or (3 if ("Z" in axes and isinstance(cfg.patch_size, list) and len(cfg.patch_size) == 3) else 2)
    patch = _patch_shape(cfg, dim)
    if cfg.scheme == "nb2nb" and any(p % 4 for p in patch[-2:]):
        raise FluoreconError(f"nb2nb needs YX patch sizes divisible by 4, got {patch}", hint="e.g. --patch-size 64")

    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    np_rng = seed_everything(cfg.seed, cfg.deterministic)
    dev = resolve_device(cfg.device)
    gen = torch.Generator().manual_seed(cfg.seed + 1)

    samples_x = [s for a in xs for s in to_internal(a, axes, dim)]
    samples_y = [s for a in ys for s in to_internal(a, axes, dim)] if ys else []
    nc = samples_x[0].shape[0]

    # ---- model, normaliser
    base: Bundle | None = None
    if init_from is not None:
        base = init_from if isinstance(init_from, Bundle) else Bundle.load(init_from)
        net = UNet.from_config(base.model.config())
        net.load_state_dict(base.model.state_dict())
        if net.config()["in_channels"] != nc:
            raise FluoreconError(f"bundle expects {net.config()['in_channels']} channels, data have {nc}",
                                 hint="fine-tune on data with the bundle's channels")
    else:
        mcfg = cfg.resolved_model(dim, nc)
        _check_memory(mcfg, patch, cfg.batch_size, dev)
        net = UNet(**mcfg)
    if normalizer is None:
        normalizer = base.normalizer if base is not None else PercentileNormalizer(cfg.norm_low, cfg.norm_high)
        if base is None:
            normalizer.fit([s for s in samples_x], channel_axis=0)
    samples_x = [normalizer.normalize(s, channel_axis=0) for s in samples_x]
    samples_y = [normalizer.normalize(s, channel_axis=0) for s in samples_y]
    stacked = [np.stack([a, b]) for a, b in zip(samples_x, samples_y, strict=True)] if samples_y else [s[None] for s in samples_x]

    for s in stacked:
        if any(a < b for a, b in zip(s.shape[-dim:], patch, strict=True)):
            raise FluoreconError(f"image of spatial shape {tuple(s.shape[-dim:])} is smaller than the patch size {patch}",
                                 hint="use a smaller --patch-size")
    tr, val = split_train_val(stacked, cfg.val_fraction, seed=cfg.seed, min_size=patch)
    aniso = bool(net.config().get("anisotropic"))
    sampler = PatchSampler(tr, patch, cfg.foreground_bias, seed=np_rng, augment_data=cfg.augment, anisotropic=aniso)
    val_batch = None
    if val:
        vs = PatchSampler(val, patch, 0.0, seed=cfg.seed + 7, augment_data=False)
        val_batch = torch.as_tensor(vs.sample(cfg.val_patches), device=dev)

    net = net.to(dev)
    cl = dev.type == "cpu" and dim == 2
    if cl:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = get_scheme(cfg.scheme)

    step = 0
    curve: list[list[float]] = []
    val_curve: list[list[float]] = []
    elapsed0 = 0.0
    best = (math.inf, None, 0)
    ckpt = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
    digest = data_digest(xs, ys)
    if cfg.resume and ckpt is not None:
        tensors, meta = load_checkpoint(ckpt)
        _check_resume(meta, cfg, digest, ckpt)
        _restore(net, opt, gen, tensors, meta)
        np_rng.bit_generator.state = meta["numpy_rng"]
        step = int(meta["step"])
        curve, val_curve = meta.get("curve", []), meta.get("val_curve", [])
        elapsed0 = float(meta.get("elapsed", 0.0))
        normalizer = PercentileNormalizer.from_dict(meta["normalizer"]) if meta.get("normalizer") else normalizer
        if meta.get("best_loss") is not None:
            best = (float(meta["best_loss"]), None, int(meta.get("best_step", 0)))

    total_steps = cfg.steps
    budget = cfg.budget_s
    pbar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        pbar = tqdm(total=total_steps, initial=step, desc=f"train {cfg.scheme}", unit="step", leave=False,
                    dynamic_ncols=True)
    t_start = time.perf_counter()
    stop_reason = "steps"
    bad_checks = 0
    mon_curve: list[list[float]] = []
    mon_best: tuple[float, dict | None, int] = (math.inf, None, 0)
    mon_next = 1

    def _monitor(at: int) -> None:
        nonlocal mon_best
        net.eval()
        with torch.no_grad():
            v = float(monitor(net, normalizer))
        net.train()
        mon_curve.append([at, v])
        if math.isfinite(v) and v < mon_best[0]:
            mon_best = (v, {k: t.detach().clone() for k, t in net.state_dict().items()}, at)

    run_loss = None
    torch_gen = gen
    try:
        while True:
            elapsed = elapsed0 + time.perf_counter() - t_start
            if total_steps is not None and step >= total_steps:
                stop_reason = "steps"
                break
            if budget is not None and elapsed >= budget:
                stop_reason = "budget"
                break
            prog = step / total_steps if total_steps else 0.0
            if budget is not None:
                prog = max(prog, elapsed / budget) if total_steps else elapsed / budget
            lr = cfg.lr * _lr_factor(prog, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            net.train()
            batch = torch.as_tensor(sampler.sample(cfg.batch_size), device=dev)
            loss = loss_fn(net, batch, torch_gen, cfg)
            if not torch.isfinite(loss):
                raise FluoreconError(f"training diverged at step {step} (loss {float(loss)})",
                                     hint="lower the learning rate (--lr) or check the data")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad:
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
            opt.step()
            step += 1
            if monitor is not None and monitor_points > 0:
                done = step / total_steps if total_steps else 0.0
                if budget is not None:
                    el = elapsed0 + time.perf_counter() - t_start
                    done = max(done, el / budget) if total_steps else el / budget
                if done * (monitor_points + 1) >= mon_next and done < 1.0:
                    _monitor(step)
                    mon_next = int(done * (monitor_points + 1)) + 1
            lv = float(loss.detach())
            run_loss = lv if run_loss is None else 0.95 * run_loss + 0.05 * lv
            if step % 10 == 0 or step == 1:
                curve.append([step, lv])
            if pbar is not None:
                pbar.update(1)
                pbar.set_postfix(loss=f"{run_loss:.4g}", lr=f"{lr:.2g}")
            if val_batch is not None and (step % cfg.val_every == 0 or step == total_steps):
                vl = _validate(net, val_batch, loss_fn, cfg)
                val_curve.append([step, vl])
                if vl < best[0]:
                    best = (vl, {k: v.detach().clone() for k, v in net.state_dict().items()}, step)
                    bad_checks = 0
                else:
                    bad_checks += 1
                if cfg.patience is not None and bad_checks >= cfg.patience:
                    stop_reason = "early_stopping"
                    break
            if ckpt is not None and cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                _save_checkpoint(ckpt, net, opt, torch_gen, np_rng, {
                    "step": step, "curve": curve, "val_curve": val_curve,
                    "elapsed": elapsed0 + time.perf_counter() - t_start, "normalizer": normalizer.to_dict(),
                    "best_loss": None if not math.isfinite(best[0]) else best[0], "best_step": best[2],
                    "config": cfg.model_dump(), "data_sha256": digest})
            if callback is not None:
                callback(step, lv)
    finally:
        if pbar is not None:
            pbar.close()
    wall = elapsed0 + time.perf_counter() - t_start
    if cfg.keep_best and best[1] is not None and stop_reason == "early_stopping":
        net.load_state_dict(best[1])
    mon_info = None
    if monitor is not None:
        if not mon_curve or mon_curve[-1][0] != step:
            _monitor(step)
        if mon_best[1] is not None and mon_best[2] != step:
            net.load_state_dict(mon_best[1])
        mon_info = {"curve": mon_curve, "best_step": mon_best[2],
                    "best": None if not math.isfinite(mon_best[0]) else mon_best[0]}
    net = net.to("cpu").to(memory_format=torch.contiguous_format).eval()
    net_cpu = UNet.from_config(net.config())
    net_cpu.load_state_dict({k: v.contiguous() for k, v in net.state_dict().items()})
    net_cpu.eval()
    hashes = {}
    for f in data_files or []:
        fp = Path(f)
        if fp.exists():
            hashes[fp.name if fp.name not in hashes else str(fp)] = sha256_file(fp)
    provenance = {
        "scheme": cfg.scheme, "steps": step, "seed": cfg.seed, "deterministic": cfg.deterministic,
        "stop_reason": stop_reason, "wall_s": round(wall, 3), "steps_per_s": round(step / max(wall, 1e-9), 3),
        "loss_curve": curve, "validation_curve": val_curve,
        "best_validation": None if not math.isfinite(best[0]) else {"loss": best[0], "step": best[2]},
        "data_sha256": hashes, "n_samples": len(samples_x), "versions": package_versions(),
        "device": str(dev), "threads": torch.get_num_threads(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "init_from": (base.provenance.get("scheme") if base is not None else None),
        "monitor": mon_info,
    }
    stats = _training_stats(net_cpu, [s for s in samples_x], patch, "cpu", cfg.seed)
    if dim == 2:  # trust: shift statistics, calibrated on the validation split (never trained on)
        try:
            stats["shift"] = training_statistics(net_cpu, [s[0][0] for s in tr], None, patch_size=min(64, *patch),
                                                 max_patches=128, seed=cfg.seed,
                                                 calibration_images=[s[0][0] for s in val] or None)
        except FluoreconError:
            pass
    fwd = forward.to_dict() if forward is not None and hasattr(forward, "to_dict") else forward
    bundle = Bundle(net_cpu, normalizer, config={"axes": axes, "scheme": cfg.scheme, "train": cfg.model_dump()},
                    provenance=provenance, training_stats=stats, forward=fwd)
    # Small verification tensors from the training data, so that any bundle can be checked elsewhere
    # (Bundle.verify) and exported to bioimage.io without a user-supplied test image.
    s0 = samples_x[0]
    sp = "ZYX" if dim == 3 else "YX"
    try:
        bundle.make_test_tensors(s0[0] if s0.shape[0] == 1 else s0, sp if s0.shape[0] == 1 else "C" + sp)
    except (FluoreconError, RuntimeError, ValueError):  # optional: never fail a finished training run over it
        bundle.test_tensors = None
    return bundle


def _validate(net, val_batch: torch.Tensor, loss_fn, cfg: TrainConfig) -> float:
    gen = torch.Generator().manual_seed(cfg.seed + 12345)  # same masks at every check
    net.eval()
    with torch.no_grad():
        out = 0.0
        n = 0
        for i in range(0, val_batch.shape[0], cfg.batch_size):
            out += float(loss_fn(net, val_batch[i:i + cfg.batch_size], gen, cfg))
            n += 1
    return out / max(n, 1)


def blind_spot_schemes() -> tuple[str, ...]:
    """Names of the blind-spot schemes."""
    return BLIND_SPOT


def schemes() -> tuple[str, ...]:
    """All scheme names."""
    return SCHEMES
