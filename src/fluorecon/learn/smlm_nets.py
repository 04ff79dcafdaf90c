"""Learned single-molecule localization: DECODE-style and Deep-STORM-style networks trained on simulations.

**DECODE-style** (Speiser et al., Nat. Methods 2021): a U-Net sees three consecutive frames (the
frame to localize and its neighbours, as context for blinking emitters) and predicts, per camera
pixel, the probability that an emitter's centre lies in it, its sub-pixel offsets, photons,
background, and the standard deviations of offsets and photons. It is trained with DECODE's loss:
a Gaussian-mixture likelihood of the ground-truth emitters (one mixture component per pixel,
weighted by its probability) plus a Gaussian approximation of the count likelihood plus a
background MSE. Detections are local maxima of the probability map whose 3×3 sum exceeds a
threshold; each carries its predicted uncertainty.

**Deep-STORM-style** (Nehme et al., Optica 2018): one frame → a super-resolved density image on a
grid ``upsample``× finer, trained with ``MSE(G∗pred, G∗truth) + λ·‖pred‖₁`` (G a Gaussian of one
fine pixel); localizations are local maxima of the density with a centroid refinement.

Both are trained on the fly on simulations matched to the user's camera, PSF, photon count,
background and density (:class:`SimConfig`), within a time budget or a fixed number of steps, and
saved as a folder (``localizer.json`` + ``weights.safetensors``, sha256-checked on load).

Examples
--------
>>> import torch
>>> cfg = SimConfig(pixel_size=100.0, psf_sigma=130.0, density=1.0, photons=2000.0, background=20.0)
>>> model = train_localizer("decode", cfg, steps=2, size=16, batch=2, seed=0)
>>> frames, _ = cfg.simulate_movie(4, (16, 16), seed=1)
>>> locs = model.localize(frames)
>>> {"frame", "x [nm]", "y [nm]", "uncertainty [nm]"} <= set(locs)
True
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from scipy import ndimage

from fluorecon._atomic import atomic_path
from fluorecon.errors import FluoreconError
from fluorecon.learn.nets import UNet
from fluorecon.physics.smlm import Blinking, SMLMCamera, render_expected, simulate_movie

__all__ = ["LocalizerModel", "SimConfig", "decode_loss", "train_localizer"]

_SCHEMA = "smlm-localizer/1"


@dataclass
class SimConfig:
    """Simulation matched to the user's data (training set of the learned localizers).

    Attributes: ``pixel_size`` (nm), ``psf_sigma`` (nm), ``density`` (active emitters per µm² per
    frame), ``photons`` (mean photons per full on-frame), ``background`` (photons per pixel),
    ``camera`` (an :class:`SMLMCamera` as a dict), ``on_frames`` (mean on-time in frames: sets how
    often an emitter is also on in the neighbouring frames).
    """

    pixel_size: float = 100.0
    psf_sigma: float = 130.0
    density: float = 1.0
    photons: float = 2000.0
    background: float = 20.0
    camera: dict[str, Any] = field(default_factory=lambda: SMLMCamera.smlm2016().model_dump(mode="json"))
    on_frames: float = 2.0

    @property
    def cam(self) -> SMLMCamera:
        return SMLMCamera(**self.camera)

    @property
    def sigma_px(self) -> float:
        return self.psf_sigma / self.pixel_size

    @property
    def in_scale(self) -> float:
        """Input normalisation (photons per pixel): background + peak of a mean emitter."""
        return self.background + self.photons / (2 * math.pi * self.sigma_px**2)

    def simulate_movie(self, n_frames: int, shape: tuple[int, int], seed: int | None = None) -> tuple[np.ndarray, dict]:
        """A blinking movie with these settings (for tests and benchmarks)."""
        kin = Blinking(on_time=self.on_frames, off_time=self.on_frames * 20, photons=self.photons)
        return simulate_movie(n_frames, shape, self.pixel_size, density=self.density, kinetics=kin,
                              psf=self.psf_sigma, camera=self.cam, background=self.background, seed=seed)

    def batch(self, n: int, size: int, gen: np.random.Generator) -> dict[str, torch.Tensor]:
        """``n`` training windows of 3 frames: inputs (n, 3, S, S) normalised photons and targets.

        Emitters of the middle frame are also on in each neighbour with probability
        ``on_frames / (1 + on_frames)``; other emitters appear only in a neighbour. A frame an
        emitter is only partly on in gets a uniform fraction of its photons.
        """
        area = (size * self.pixel_size / 1000.0) ** 2
        q = self.on_frames / (1.0 + self.on_frames)
        fr, xs, ys, ph, mids = [], [], [], [], []
        pad = 2.0
        for b in range(n):
            m = gen.poisson(self.density * area * (1 + 4 * pad / size))
            xy = gen.uniform(-pad, size + pad, (m, 2))
            base = self.photons * np.exp(gen.normal(-0.5 * 0.3**2, 0.3, m))
            for t in range(3):
                if t == 1:
                    on = np.ones(m, bool)
                else:
                    on = gen.random(m) < q
                frac = np.where(gen.random(m) < 0.5, 1.0, gen.uniform(0.05, 1.0, m))
                fr.append(np.full(on.sum(), 3 * b + t + 1))
                xs.append(xy[on, 0])
                ys.append(xy[on, 1])
                ph.append(base[on] * frac[on])
                if t == 1:
                    mids.append((b, xy, base * frac))
            extra = gen.poisson(self.density * area * (1 - q) * 2)
            exy = gen.uniform(-pad, size + pad, (extra, 2))
            ets = gen.choice([0, 2], extra)
            fr.append(3 * b + ets + 1)
            xs.append(exy[:, 0])
            ys.append(exy[:, 1])
            ph.append(self.photons * np.exp(gen.normal(-0.045, 0.3, extra)) * gen.uniform(0.05, 1.0, extra))
        bg = self.background * gen.uniform(0.6, 1.4, n)
        exp = render_expected(np.concatenate(fr), np.concatenate(xs) * self.pixel_size,
                              np.concatenate(ys) * self.pixel_size, np.concatenate(ph), 3 * n, (size, size),
                              self.pixel_size, self.psf_sigma, np.repeat(bg, 3))
        adu = self.cam.simulate(exp, gen)
        x = torch.as_tensor(self.cam.to_photons(adu) / self.in_scale, dtype=torch.float32).reshape(n, 3, size, size)
        mmax = max(1, max(int(((xy[:, 0] >= 0) & (xy[:, 0] < size) & (xy[:, 1] >= 0) & (xy[:, 1] < size)).sum())
                          for _, xy, _ in mids))
        gt = torch.zeros(n, mmax, 3)
        mask = torch.zeros(n, mmax, dtype=torch.bool)
        for b, xy, p in mids:
            inside = (xy[:, 0] >= 0) & (xy[:, 0] < size) & (xy[:, 1] >= 0) & (xy[:, 1] < size)
            k = int(inside.sum())
            gt[b, :k, 0] = torch.as_tensor(xy[inside, 0])
            gt[b, :k, 1] = torch.as_tensor(xy[inside, 1])
            gt[b, :k, 2] = torch.as_tensor(p[inside] / self.photons)
            mask[b, :k] = True
        bgt = torch.as_tensor(bg / self.in_scale, dtype=torch.float32)[:, None, None].expand(n, size, size)
        return {"x": x, "gt": gt, "mask": mask, "bg": bgt, "expected": torch.as_tensor(exp).reshape(n, 3, size, size)}


# ------------------------------------------------------------------------------------------------ DECODE
def _decode_outputs(raw: torch.Tensor) -> dict[str, torch.Tensor]:
    """Channels → probability, offsets (pixels, from the pixel centre), photons, sigmas, background."""
    return {"p": torch.sigmoid(raw[:, 0]).clamp(1e-6, 1 - 1e-6), "logit": raw[:, 0],
            "photons": F.softplus(raw[:, 1]),
            "dx": torch.tanh(raw[:, 2]), "dy": torch.tanh(raw[:, 3]),
            "s_photons": 3 * torch.sigmoid(raw[:, 4]) + 0.01, "s_x": 3 * torch.sigmoid(raw[:, 5]) + 0.01,
            "s_y": 3 * torch.sigmoid(raw[:, 6]) + 0.01, "bg": F.softplus(raw[:, 7])}


def decode_loss(out: dict[str, torch.Tensor], gt: torch.Tensor, mask: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """DECODE's loss: −log GMM likelihood of the true emitters − log count likelihood + background MSE.

    ``gt`` (B, M, 3): x, y (pixels, pixel k spans [k, k+1)) and photons (normalised) of the middle
    frame's emitters, ``mask`` (B, M) which rows are real.
    """
    b, h, w = out["p"].shape
    p = out["p"].reshape(b, -1)
    total = p.sum(1)
    var = (p * (1 - p)).sum(1) + 1e-3
    n_true = mask.sum(1).float()
    count_nll = 0.5 * (n_true - total) ** 2 / var + 0.5 * torch.log(2 * math.pi * var)
    jj, ii = torch.meshgrid(torch.arange(h, dtype=p.dtype), torch.arange(w, dtype=p.dtype), indexing="ij")
    mx = (ii + 0.5).reshape(1, -1) + out["dx"].reshape(b, -1)
    my = (jj + 0.5).reshape(1, -1) + out["dy"].reshape(b, -1)
    mn = out["photons"].reshape(b, -1)
    sx, sy, sn = out["s_x"].reshape(b, -1), out["s_y"].reshape(b, -1), out["s_photons"].reshape(b, -1)
    lg = -0.5 * (((gt[:, :, None, 0] - mx[:, None]) / sx[:, None]) ** 2
                 + ((gt[:, :, None, 1] - my[:, None]) / sy[:, None]) ** 2
                 + ((gt[:, :, None, 2] - mn[:, None]) / sn[:, None]) ** 2) \
        - torch.log(sx * sy * sn)[:, None] - 1.5 * math.log(2 * math.pi)
    logmix = torch.logsumexp(lg + torch.log(p / total[:, None])[:, None], dim=2)
    gmm_nll = -(logmix * mask).sum(1)
    bg_mse = ((out["bg"] - bg) ** 2).mean((1, 2))
    return (gmm_nll + count_nll + 10.0 * bg_mse).mean()


def _decode_extract(out: dict[str, torch.Tensor], threshold: float) -> list[dict[str, np.ndarray]]:
    """Per frame: local maxima of p whose 3×3 sum ≥ threshold → emitters (pixels / normalised photons)."""
    p = out["p"][:, None]
    mx = F.max_pool2d(p, 3, 1, 1)
    psum = F.avg_pool2d(p, 3, 1, 1, count_include_pad=False) * 9
    det = (p == mx) & (psum >= threshold) & (p > 0.05)
    res = []
    for b in range(p.shape[0]):
        idx = det[b, 0].nonzero()
        i, j = idx[:, 0], idx[:, 1]
        res.append({"x": (j + 0.5 + out["dx"][b, i, j]).numpy(), "y": (i + 0.5 + out["dy"][b, i, j]).numpy(),
                    "photons": out["photons"][b, i, j].numpy(), "s_x": out["s_x"][b, i, j].numpy(),
                    "s_y": out["s_y"][b, i, j].numpy(), "s_photons": out["s_photons"][b, i, j].numpy(),
                    "p": psum[b, 0, i, j].clamp(max=1).numpy(), "bg": out["bg"][b, i, j].numpy()})
    return res


# --------------------------------------------------------------------------------------------- Deep-STORM
class _DeepStormNet(torch.nn.Module):
    """U-Net on the camera grid, then a pixel-shuffle head to an ``upsample``× finer density map."""

    def __init__(self, upsample: int = 4, width: int = 16):
        super().__init__()
        self.up = upsample
        self.body = UNet(dim=2, in_channels=1, out_channels=width, depth=2, width=width, residual=False)
        self.head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv2d(width, upsample**2, 3, padding=1),
                                        torch.nn.PixelShuffle(upsample))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.head(self.body(x)))


def _gauss_kernel(sigma: float) -> torch.Tensor:
    r = int(math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    return (k[:, None] * k[None, :])[None, None]


def _spikes(gt: torch.Tensor, mask: torch.Tensor, size: int, up: int) -> torch.Tensor:
    n = gt.shape[0]
    out = torch.zeros(n, 1, size * up, size * up)
    for b in range(n):
        g = gt[b, mask[b]]
        i = (g[:, 1] * up).long().clamp(0, size * up - 1)
        j = (g[:, 0] * up).long().clamp(0, size * up - 1)
        out[b, 0].index_put_((i, j), torch.ones(len(i)), accumulate=True)
    return out


# ------------------------------------------------------------------------------------------------- model
class LocalizerModel:
    """A trained learned localizer (``kind`` "decode" or "deepstorm") with its simulation settings.

    :meth:`localize` takes a movie in ADU and returns a localization table (dict of columns, nm,
    ThunderSTORM names). :meth:`save` / :meth:`load` use a folder with ``localizer.json`` and
    ``weights.safetensors`` (sha256 checked).
    """

    def __init__(self, kind: str, net: torch.nn.Module, sim: SimConfig, *, net_config: dict[str, Any],
                 training: dict[str, Any] | None = None, threshold: float = 0.5):
        self.kind = kind
        self.net = net.eval()
        self.sim = sim
        self.net_config = net_config
        self.training = training or {}
        self.threshold = threshold

    # --------------------------------------------------------------------------------------- files
    def save(self, folder: str | Path) -> Path:
        """Write the model folder atomically."""
        folder = Path(folder)
        with atomic_path(folder, is_dir=True) as tmp:
            tmp = Path(tmp)
            tmp.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(tmp / "weights.safetensors"))
            digest = hashlib.sha256((tmp / "weights.safetensors").read_bytes()).hexdigest()
            meta = {"schema": _SCHEMA, "kind": self.kind, "sim": asdict(self.sim), "net": self.net_config,
                    "training": self.training, "threshold": self.threshold, "sha256": digest}
            (tmp / "bundle.json").write_text(json.dumps({"fluorecon": "smlm-localizer"}))
            (tmp / "localizer.json").write_text(json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LocalizerModel:
        """Read a model folder written by :meth:`save` (refuses tampered weights)."""
        folder = Path(folder)
        mf = folder / "localizer.json"
        if not mf.is_file():
            raise FluoreconError(f"{folder} is not a localizer model (no localizer.json)",
                                 hint="train one with `fluorecon train-localizer` or omit --model")
        meta = json.loads(mf.read_text())
        if meta.get("schema") != _SCHEMA:
            raise FluoreconError(f"{folder}: unknown localizer schema {meta.get('schema')!r}")
        wf = folder / "weights.safetensors"
        if hashlib.sha256(wf.read_bytes()).hexdigest() != meta["sha256"]:
            raise FluoreconError(f"{wf} does not match its recorded sha256", hint="the model folder was modified")
        net = _build(meta["kind"], meta["net"])
        net.load_state_dict(load_file(str(wf)))
        return cls(meta["kind"], net, SimConfig(**meta["sim"]), net_config=meta["net"], training=meta["training"],
                   threshold=meta["threshold"])

    # ------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def localize(self, frames: np.ndarray, *, batch: int = 32, threshold: float | None = None,
                 progress: Any = None) -> dict[str, np.ndarray]:
        """Localize emitters in a movie ``(T, Y, X)`` in ADU; returns a table (dict of columns)."""
        x = np.asarray(frames, np.float32)
        if x.ndim != 3:
            raise FluoreconError(f"a movie must be (T, Y, X), got shape {x.shape}")
        if x.shape[0] == 0:
            raise FluoreconError("the movie has no frames", hint="give a movie with at least one frame")
        if self.kind == "decode" and x.shape[0] < 2:
            raise FluoreconError("the DECODE-style localizer uses neighbouring frames as context: the movie has "
                                 "one frame", hint="give a movie with ≥ 2 frames, or use --method mle")
        thr = self.threshold if threshold is None else float(threshold)
        sim = self.sim
        ph = torch.as_tensor(sim.cam.to_photons(x) / sim.in_scale, dtype=torch.float32)
        report = progress if callable(progress) else (lambda f, m: None)
        t = ph.shape[0]
        cols: dict[str, list[np.ndarray]] = {}
        px = sim.pixel_size
        for s in range(0, t, batch):
            idx = torch.arange(s, min(s + batch, t))
            if self.kind == "decode":
                prev = (idx - 1).clamp(min=0)
                nxt = (idx + 1).clamp(max=t - 1)
                inp = torch.stack([ph[prev], ph[idx], ph[nxt]], 1)
                out = _decode_outputs(self.net(inp))
                dets = _decode_extract(out, thr)
                for k, d in enumerate(dets):
                    n = len(d["x"])
                    unc = np.sqrt((d["s_x"] ** 2 + d["s_y"] ** 2) / 2) * px
                    part = {"frame": np.full(n, int(idx[k]) + 1), "x [nm]": d["x"] * px, "y [nm]": d["y"] * px,
                            "sigma [nm]": np.full(n, sim.psf_sigma),
                            "intensity [photon]": d["photons"] * sim.photons,
                            "offset [photon]": d["bg"] * sim.in_scale,
                            "bkgstd [photon]": np.sqrt(np.maximum(d["bg"] * sim.in_scale, 0) * sim.cam.excess),
                            "uncertainty [nm]": unc, "crlb_x [nm]": d["s_x"] * px, "crlb_y [nm]": d["s_y"] * px,
                            "crlb_intensity [photon]": d["s_photons"] * sim.photons, "probability": d["p"]}
                    for c, v in part.items():
                        cols.setdefault(c, []).append(np.asarray(v))
            else:
                dens = self.net(ph[idx][:, None])[:, 0].numpy()
                up = self.net_config["upsample"]
                for k in range(len(idx)):
                    part = _deepstorm_extract(dens[k], up, thr)
                    n = len(part["x"])
                    for c, v in {"frame": np.full(n, int(idx[k]) + 1), "x [nm]": part["x"] * px,
                                 "y [nm]": part["y"] * px, "sigma [nm]": np.full(n, sim.psf_sigma),
                                 "intensity [photon]": part["mass"] * sim.photons,
                                 "uncertainty [nm]": np.full(n, px / up / math.sqrt(12))}.items():
                        cols.setdefault(c, []).append(np.asarray(v))
            report(min(1.0, (s + batch) / t), f"localized {min(s + batch, t)}/{t} frames")
        # every frame appends all columns (length 0 when nothing is detected), so an empty movie result
        # has the same columns and dtypes as a non-empty one
        out = {k: np.concatenate(v) for k, v in cols.items()}
        out["frame"] = out["frame"].astype(np.int64)
        return out

    @torch.no_grad()
    def density(self, frames: np.ndarray) -> np.ndarray:
        """Deep-STORM: the super-resolved density summed over frames ``(Y·up, X·up)``."""
        if self.kind != "deepstorm":
            raise FluoreconError("density() is the Deep-STORM output")
        ph = torch.as_tensor(self.sim.cam.to_photons(np.asarray(frames, np.float32)) / self.sim.in_scale)
        acc = None
        for s in range(0, ph.shape[0], 32):
            d = self.net(ph[s:s + 32, None].float())[:, 0].sum(0)
            acc = d if acc is None else acc + d
        return acc.numpy().astype(np.float32)


def _deepstorm_extract(dens: np.ndarray, up: int, threshold: float) -> dict[str, np.ndarray]:
    mx = ndimage.maximum_filter(dens, size=3)
    mass = ndimage.uniform_filter(dens, size=3) * 9
    pk = np.argwhere((dens == mx) & (mass >= threshold) & (dens > 0))
    if len(pk) == 0:
        # mass in the density's dtype, as ``ws`` below, so empty and non-empty tables agree
        return {"x": np.zeros(0), "y": np.zeros(0), "mass": np.zeros(0, dens.dtype)}
    pad = np.pad(dens, 1)
    i, j = pk[:, 0] + 1, pk[:, 1] + 1
    w = np.stack([pad[i + di, j + dj] for di in (-1, 0, 1) for dj in (-1, 0, 1)], 1)
    di = np.array([d for d in (-1, 0, 1) for _ in (-1, 0, 1)], np.float64)
    dj = np.array([d for _ in (-1, 0, 1) for d in (-1, 0, 1)], np.float64)
    ws = w.sum(1)
    yc = pk[:, 0] + 0.5 + (w * di).sum(1) / ws
    xc = pk[:, 1] + 0.5 + (w * dj).sum(1) / ws
    return {"x": xc / up, "y": yc / up, "mass": ws}


def _build(kind: str, cfg: dict[str, Any]) -> torch.nn.Module:
    if kind == "decode":
        return UNet(dim=2, in_channels=3, out_channels=8, depth=cfg.get("depth", 2), width=cfg.get("width", 16),
                    residual=False)
    if kind == "deepstorm":
        return _DeepStormNet(cfg.get("upsample", 4), cfg.get("width", 16))
    raise FluoreconError(f"unknown learned localizer {kind!r}", hint="use decode or deepstorm")


def train_localizer(kind: str, sim: SimConfig, *, budget_s: float = 60.0, steps: int | None = None, size: int = 32,
                    batch: int = 8, lr: float = 2e-3, seed: int = 0, width: int | None = None,
                    progress: Any = None) -> LocalizerModel:
    """Train a DECODE-style (``"decode"``) or Deep-STORM-style (``"deepstorm"``) localizer on simulations.

    Parameters
    ----------
    kind : {"decode", "deepstorm"}
    sim : SimConfig
        Camera, PSF, photons, background and density to simulate.
    budget_s : float
        Wall-time budget (ignored when ``steps`` is given).
    steps : int, optional
        Exactly this many optimiser steps (reproducible).
    size, batch : int
        Training window size (pixels) and batch size.
    lr : float
    seed : int
    width : int, optional
        Network width (default 16).
    progress : callable(fraction, message), optional
        Called every step (may raise to cancel).
    """
    if kind not in ("decode", "deepstorm"):
        raise FluoreconError(f"unknown learned localizer {kind!r}", hint="use decode or deepstorm")
    torch.manual_seed(seed)
    gen = np.random.default_rng(seed)
    cfg: dict[str, Any] = {"width": width or 16, "depth": 2}
    if kind == "deepstorm":
        cfg["upsample"] = 4
    net = _build(kind, cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    total = steps if steps is not None else None
    sched_steps = total or max(200, int(budget_s * 8))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=sched_steps + 1, pct_start=0.1)
    report = progress if callable(progress) else (lambda f, m: None)
    kern = _gauss_kernel(1.0)
    t0 = time.perf_counter()
    losses: list[float] = []
    step = 0
    net.train()
    while True:
        elapsed = time.perf_counter() - t0
        if (total is not None and step >= total) or (total is None and (elapsed >= budget_s or step >= sched_steps)):
            break
        data = sim.batch(batch, size, gen)
        if kind == "decode":
            loss = decode_loss(_decode_outputs(net(data["x"])), data["gt"], data["mask"], data["bg"])
        else:
            pred = net(data["x"][:, 1:2])
            tgt = _spikes(data["gt"], data["mask"], size, cfg["upsample"])
            loss = F.mse_loss(F.conv2d(pred, kern, padding="same"), F.conv2d(tgt, kern, padding="same")) * 100 \
                + 1e-3 * pred.abs().mean() * 100
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        if step < sched_steps:
            sched.step()
        losses.append(float(loss.detach()))
        step += 1
        frac = step / total if total else (time.perf_counter() - t0) / budget_s
        report(min(frac, 1.0), f"training {kind} step {step} (loss {losses[-1]:.4g})")
    net.eval()
    training = {"steps": step, "seconds": round(time.perf_counter() - t0, 2), "final_loss": float(np.mean(losses[-20:]))
                if losses else None, "batch": batch, "size": size, "seed": seed}
    thr = 0.3
    return LocalizerModel(kind, net, sim, net_config=cfg, training=training, threshold=thr)
