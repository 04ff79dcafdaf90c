"""Real-data denoising benchmark: fluorecon's classical and learned denoisers vs careamics N2V.

Data (``../shared/data``, never copied): ``fmd-confocal-pairs`` (5 confocal 512² uint8 pairs: one raw
frame vs the mean of 50) and ``ndhoward-bacteria-pair-16bit`` (one 512² uint16 pair).

Methods (``--methods``, comma-separated; default: everything available):

- ``noisy``: the input itself.
- ``ref-nlm``, ``ref-bm3d``: the issue's reference baselines (scikit-image NLM with h = 0.8σ̂ and BM3D
  with σ̂ from ``estimate_sigma`` on the max-normalised image, as in ``shared/peers/compare_denoise.py``).
- ``nlm``, ``tv``, ``wavelet``, ``bm3d``, ``auto``: ours, J-invariant self-calibrated
  (``fluorecon.tasks.denoise``); ``<name>+vst``: the same after the generalised Anscombe transform
  (noise model estimated from the image), exact unbiased inverse.
- ``careamics-n2v``: the peer (careamics 0.3.5, its N2V defaults) trained ``--budget`` s on the noisy
  image alone, in its own venv (``_peers.py``).
- ``n2v``, ``n2v2``, ``structn2v``, ``nb2nb``, ``best``: our self-supervised schemes (guarded: they fall
  back to the classical result when it scores better on held-out pixels) and ``best`` (classical,
  network or their average, whichever scores best) trained ``--budget`` s (or ``--steps``) on the noisy
  image alone, through the CLI exactly as a user runs it (``fluorecon denoise IN -o OUT --method NAME
  --budget B --seed S``). ``NAME@S`` runs with an S-second budget (time to quality).
- ``care-loo``: CARE (supervised) trained ``--budget`` s leave-one-out on the *other* FMD pairs
  (no CARE for the bacteria: a single pair).

Metrics against the averaged target, outputs in the input's intensity units: plain PSNR (data range 255
for 8-bit, the dtype's range for 16-bit), range-invariant PSNR (CSBDeep-style affine fit of the output
onto the percentile-normalised target), SSIM (same data range as PSNR), wall seconds per image (from
start to output on disk, subprocess start-up included for CLI and peer runs). Means with 95 %
bootstrap CIs over the FMD images.

**Seeds and statistics.** Learned methods and the peer run once per seed (``--seeds 0,1,2``, at least 3
for a reported number); records are per image × method × seed. The table gives, per method, the mean
over images of the per-image mean over seeds, its 95 % bootstrap CI over images, and the mean seed SD;
``--paired A,B`` (default: every learned method against ``careamics-n2v``) prints paired differences
A − B per image (averaged over seeds) with a bootstrap CI and a paired-t CI over images, and the
per-(image, seed) differences' spread.

**Tuning set vs benchmark set.** Nothing here was used to choose defaults: the single-image settings
and the held-out guard were chosen on simulations and on ``../shared/data/fmd-dev-pairs`` (other
fields of view, see its README); this script only reads ``fmd-confocal-pairs`` and the bacteria pair,
and refuses to run on the tuning set.

Results are merged into ``denoise_real.json`` beside this script (one record per image × method, the
newest wins; ``--fresh`` starts over), so the cheap and the expensive parts can run at different times;
every record carries its own timestamp and the machine load when it ran. Each run adds a ``provenance``
record (command, commit, SHA-256 of every image file it read, seeds, parameters, machine, load) to its
entry in ``meta.runs`` and as the top-level ``provenance``; its failure galleries
(``figures/denoise_real_worst_<method>.png``, or ``figures/`` beside a non-default ``--json``) are listed
under ``galleries`` with every case's score. ``--seeds`` takes ``0 1 2`` or ``0,1,2`` (a single number N
means seeds 0…N−1, as before).

Usage::

    .venv/bin/python benchmarks/denoise_real.py                       # everything (~1 h on 2 cores)
    .venv/bin/python benchmarks/denoise_real.py --methods noisy,tv,auto,careamics-n2v --images BPAE_B
    .venv/bin/python benchmarks/denoise_real.py --quick               # 10-s budget, 2 images
    .venv/bin/python benchmarks/denoise_real.py --methods n2v,best,careamics-n2v --seeds 0,1,2 --budget 120
    .venv/bin/python benchmarks/denoise_real.py --table-only --paired n2v,careamics-n2v
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _gallery import Case, save_gallery  # noqa: E402
from _peers import careamics_python, run_careamics_n2v  # noqa: E402
from _provenance import finish, provenance  # noqa: E402

from fluorecon.datasets import shared_data  # noqa: E402
from fluorecon.evaluate.metrics import bootstrap_ci, psnr, ri_psnr, ssim  # noqa: E402
from fluorecon.io import read_image  # noqa: E402

OUT_JSON = HERE / "denoise_real.json"
FIGURES = HERE / "figures"
FMD = ("BPAE_B", "BPAE_G", "BPAE_R", "fish", "mice")
BACTERIA = "bacteria16"
CLASSICAL = ("nlm", "tv", "wavelet", "bm3d", "auto")
LEARNED = ("n2v", "n2v2", "structn2v", "nb2nb", "best")
SEEDED = (*LEARNED, "careamics-n2v", "care-loo")
TUNING_SET = "fmd-dev-pairs"  # used to choose defaults: never benchmarked here
# Issue 3's reference numbers (plain PSNR, data range 255, 5 FMD pairs, measured on this machine class).
REFERENCE = {
    "noisy": {"BPAE_B": 33.27, "BPAE_G": 29.27, "BPAE_R": 32.34, "fish": 22.22, "mice": 31.12, "mean": 29.64},
    "ref-nlm": {"mean": 31.38},
    "ref-bm3d": {"mean": 31.59},
    "careamics-n2v": {"BPAE_B": 38.72, "BPAE_G": 32.87, "BPAE_R": 36.17, "fish": 30.14, "mice": 40.12, "mean": 35.60},
}


def load_pairs(names: list[str] | None) -> list[dict]:
    pairs = []
    fmd = shared_data("fmd-confocal-pairs")
    if fmd is not None:
        for n in FMD:
            pairs.append({"image": n, "dataset": "fmd", "noisy": fmd / "noisy" / f"{n}.tif", "gt": fmd / "gt" / f"{n}.tif"})
    bac = shared_data("ndhoward-bacteria-pair-16bit")
    if bac is not None:
        pairs.append({"image": BACTERIA, "dataset": "bacteria", "noisy": bac / "noisy_avg1_16bit.png",
                      "gt": bac / "target_avg_16bit.png"})
    if names:
        pairs = [p for p in pairs if p["image"] in names]
    tuning = shared_data(TUNING_SET)
    for p in pairs:  # the tuning set must never be reported as a benchmark
        if tuning is not None and Path(p["noisy"]).resolve().is_relative_to(tuning.resolve()):
            raise SystemExit(f"{p['noisy']} belongs to the tuning set {TUNING_SET}")
    for p in pairs:
        x = np.asarray(read_image(p["noisy"]).data).squeeze()
        g = np.asarray(read_image(p["gt"]).data).squeeze()
        if x.ndim == 3 and x.shape[-1] <= 4:
            x, g = x[..., 0], g[..., 0]
        p["x"], p["g"] = x, g
        p["dtype"] = str(x.dtype)
        p["data_range"] = float(np.iinfo(x.dtype).max) if x.dtype.kind in "ui" else float(g.max() - g.min())
    return pairs


def metrics(out: np.ndarray, p: dict) -> dict:
    g = p["g"].astype(np.float64)
    o = np.asarray(out, dtype=np.float64)
    return {"psnr": psnr(o, g, data_range=p["data_range"]), "ri_psnr": ri_psnr(o, g),
            "ssim": ssim(o, g, data_range=p["data_range"])}


def load_avg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


# ------------------------------------------------------------------------------------------ runners


def run_reference(name: str, p: dict) -> tuple[np.ndarray, dict]:
    import bm3d
    from skimage.restoration import denoise_nl_means, estimate_sigma

    x = p["x"].astype(np.float32)
    mx = max(float(x.max()), 1e-9)
    xs = x / mx
    s = float(estimate_sigma(xs))
    if name == "ref-nlm":
        y = denoise_nl_means(xs, h=0.8 * s, sigma=s, fast_mode=True, patch_size=5, patch_distance=6)
    else:
        y = bm3d.bm3d(xs, sigma_psd=s)
    return np.asarray(y, np.float32) * mx, {"sigma": s * mx}


def run_classical(name: str, p: dict) -> tuple[np.ndarray, dict]:
    from fluorecon.tasks.denoise import denoise

    base, vst = (name[:-4], True) if name.endswith("+vst") else (name, False)
    y, info = denoise(p["x"], "YX", method=base, vst=vst, progress=False)
    keep = {k: info.get(k) for k in ("method", "method_params", "losses", "sigma", "vst")}
    return y, keep


def run_cli(name: str, p: dict, budget: float, work: Path, noisy_tif: Path, seed: int = 0,
            steps: int | None = None) -> tuple[np.ndarray, dict]:
    import tifffile

    method, _, b = name.partition("@")
    out = work / f"{p['image']}_{name.replace('@', '_')}_s{seed}.tif"
    exe = Path(sys.executable).with_name("fluorecon")
    cmd = [str(exe), "denoise", str(noisy_tif), "-o", str(out), "--method", method,
           "--budget", str(float(b) if b else budget), "--quiet", "--json", "--device", "cpu", "--seed", str(seed)]
    if steps and not b:
        cmd += ["--steps", str(steps)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not out.exists():
        raise RuntimeError(f"fluorecon denoise failed (rc {r.returncode}): {r.stderr[-1500:]}")
    try:
        info = json.loads(r.stdout)
    except json.JSONDecodeError:
        info = {}
    flat = _flatten_info(info)
    keep = {k: flat.get(k) for k in ("method", "steps", "train_s", "predict_s", "steps_per_s", "requested", "choice",
                                     "fallback", "heldout", "center_gain", "selected_step", "inference", "warnings")
            if k in flat}
    keep["budget_s"] = float(b) if b else budget
    keep["steps_requested"] = steps
    return tifffile.imread(out), keep


def _flatten_info(info: object) -> dict:
    """The CLI's JSON nests the task's info (params_used / results): find the keys wherever they are."""
    out: dict = {}
    stack = [info]
    while stack:
        d = stack.pop()
        if isinstance(d, dict):
            for k, v in d.items():
                out.setdefault(k, v)
                if isinstance(v, (dict, list)):
                    stack.append(v)
        elif isinstance(d, list):
            stack.extend(x for x in d if isinstance(x, dict))
    return out


def run_care_loo(p: dict, pairs: list[dict], budget: float, seed: int = 0) -> tuple[np.ndarray, dict]:
    import torch

    from fluorecon.learn.predict import predict
    from fluorecon.learn.train import train

    torch.set_num_threads(2)
    others = [q for q in pairs if q["dataset"] == "fmd" and q["image"] != p["image"]]
    if not others:
        raise RuntimeError("CARE leave-one-out needs the other FMD pairs")
    cfg = dict(scheme="care", steps=None, budget_s=budget, patch_size=64, batch_size=16, progress=False,
               device="cpu", seed=seed, threads=2)
    t0 = time.perf_counter()
    bundle = train(cfg, [q["x"].astype(np.float32) for q in others], [q["g"].astype(np.float32) for q in others], axes="YX")
    t1 = time.perf_counter()
    y = predict(bundle, p["x"].astype(np.float32), "YX", device="cpu", tta=True)
    t2 = time.perf_counter()
    prov = getattr(bundle, "provenance", {}) or {}
    return np.asarray(y, np.float32), {"train_s": t1 - t0, "predict_s": t2 - t1, "steps": prov.get("steps"),
                                       "trained_on": [q["image"] for q in others]}


# ---------------------------------------------------------------------------------------- the run


def available_learned() -> tuple[str, ...]:
    try:
        from fluorecon.learn.single_image import SINGLE_IMAGE_SCHEMES
    except ImportError:
        return ()
    return tuple(s for s in LEARNED if s in SINGLE_IMAGE_SCHEMES)


def default_methods() -> list[str]:
    ms = ["noisy", "ref-nlm", "ref-bm3d", *CLASSICAL, *(f"{m}+vst" for m in CLASSICAL), "careamics-n2v"]
    ms += list(available_learned())
    try:
        import fluorecon.learn.train  # noqa: F401

        ms.append("care-loo")
    except ImportError:
        pass
    return ms


def load_results(path: Path, fresh: bool) -> dict:
    if fresh or not path.exists():
        return {"records": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"records": {}}


def save_results(path: Path, res: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=1, sort_keys=True, default=float))
    tmp.replace(path)


def _per_image(recs: list[dict], method: str, names: tuple[str, ...], key: str) -> dict[str, list[float]]:
    """{image: [value per seed]} for one method (unseeded methods: one value)."""
    out: dict[str, list[float]] = {}
    for r in recs:
        if r["method"] == method and r["image"] in names and key in r:
            out.setdefault(r["image"], []).append(float(r[key]))
    return out


def summarise(res: dict) -> dict:
    recs = list(res["records"].values())
    methods: list[str] = []
    for r in recs:
        if r["method"] not in methods:
            methods.append(r["method"])
    out = {}
    for m in methods:
        row = {}
        for ds, names in (("fmd", FMD), ("bacteria", (BACTERIA,))):
            per = _per_image(recs, m, names, "psnr")
            if not per:
                continue
            imgs = [n for n in names if n in per]
            d = {"n": len(imgs), "images": imgs, "seeds": [len(per[n]) for n in imgs]}
            for k in ("psnr", "ri_psnr", "ssim", "seconds"):
                pk = _per_image(recs, m, names, k)
                v = [float(np.mean(pk[n])) for n in imgs]
                ci = bootstrap_ci(v, n=2000, seed=0)
                d[k] = {"mean": ci.value, "low": ci.low, "high": ci.high, "per_image": dict(zip(imgs, v, strict=True))}
            sds = [float(np.std(per[n], ddof=1)) for n in imgs if len(per[n]) > 1]
            d["seed_sd_psnr"] = float(np.mean(sds)) if sds else None
            by_seed: dict[str, list[float]] = {}
            for r in recs:
                if r["method"] == m and r["image"] in imgs and "psnr" in r and r.get("seed") is not None:
                    by_seed.setdefault(str(r["seed"]), []).append(float(r["psnr"]))
            if by_seed:  # per seed: mean PSNR over the images that seed ran on
                d["per_seed_psnr"] = {sd: {"mean": float(np.mean(v)), "n_images": len(v)} for sd, v in by_seed.items()}
            row[ds] = d
        out[m] = row
    return out


def paired(res: dict, a: str, b: str, key: str = "psnr", names: tuple[str, ...] = FMD) -> dict | None:
    """Paired differences a − b: per image (each averaged over its seeds) and per (image, seed).

    Returns the mean difference over images with a 95 % bootstrap CI and a paired-t CI, wins, and the
    per-(image, seed) differences' mean and SD (seed-to-seed spread of the comparison).
    """
    from scipy import stats

    recs = list(res["records"].values())
    pa, pb = _per_image(recs, a, names, key), _per_image(recs, b, names, key)
    imgs = [n for n in names if n in pa and n in pb]
    if not imgs:
        return None
    diffs = np.array([np.mean(pa[n]) - np.mean(pb[n]) for n in imgs])
    ci = bootstrap_ci(diffs, n=2000, seed=0)
    out = {"a": a, "b": b, "metric": key, "images": imgs, "per_image": dict(zip(imgs, diffs.tolist(), strict=True)),
           "mean": float(diffs.mean()), "bootstrap_ci": [ci.low, ci.high], "wins": int((diffs > 0).sum()), "n": len(imgs)}
    if len(imgs) > 1:
        h = stats.t.ppf(0.975, len(imgs) - 1) * diffs.std(ddof=1) / np.sqrt(len(imgs))
        out["t_ci"] = [float(diffs.mean() - h), float(diffs.mean() + h)]
        out["p_paired_t"] = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    by_seed = {(r["image"], r.get("seed")): float(r[key]) for r in recs if r["method"] == b and r["image"] in imgs and key in r}
    def partner(r: dict) -> float | None:  # same seed, or B's single unseeded (deterministic) record
        return by_seed.get((r["image"], r.get("seed")), by_seed.get((r["image"], None)))

    sd = [float(r[key]) - partner(r) for r in recs
          if r["method"] == a and r["image"] in imgs and key in r and partner(r) is not None]
    if sd:
        out["per_seed"] = {"n": len(sd), "mean": float(np.mean(sd)), "sd": float(np.std(sd, ddof=1)) if len(sd) > 1 else None}
    return out


def paired_table(res: dict, pairs: list[tuple[str, str]]) -> str:
    lines = ["| A − B (PSNR, dB) | images | mean | 95 % bootstrap CI | paired-t CI | p | wins | per (image, seed): mean ± SD (n) |",
             "|---|---|---|---|---|---|---|---|"]
    for a, b in pairs:
        d = paired(res, a, b)
        if d is None:
            continue
        tci = d.get("t_ci")
        ps = d.get("per_seed")
        lines.append(f"| {a} − {b} | {d['n']} | {d['mean']:+.2f} | [{d['bootstrap_ci'][0]:+.2f}, {d['bootstrap_ci'][1]:+.2f}] | "
                     + (f"[{tci[0]:+.2f}, {tci[1]:+.2f}] | {d['p_paired_t']:.2g}" if tci else "— | —")
                     + f" | {d['wins']}/{d['n']} | "
                     + (f"{ps['mean']:+.2f} ± {ps['sd'] or 0:.2f} ({ps['n']})" if ps else "—") + " |")
    return "\n".join(lines)


def table(res: dict) -> str:
    summ = summarise(res)
    lines = ["| method | FMD PSNR (mean [95% CI]) | FMD RI-PSNR | FMD SSIM | s / image | seeds per image | seed SD | per image PSNR (B, G, R, fish, mice) | bacteria16 PSNR / RI-PSNR / SSIM | ref. (issue) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m, row in summ.items():
        f = row.get("fmd")
        b = row.get("bacteria")
        cells = []
        if f:
            cells.append(f"{f['psnr']['mean']:.2f} [{f['psnr']['low']:.2f}, {f['psnr']['high']:.2f}]" + ("" if f["n"] == 5 else f" (n={f['n']})"))
            cells.append(f"{f['ri_psnr']['mean']:.2f}")
            cells.append(f"{f['ssim']['mean']:.3f}")
            cells.append(f"{f['seconds']['mean']:.1f}")
            cells.append(",".join(str(v) for v in f["seeds"]))
            cells.append("—" if f["seed_sd_psnr"] is None else f"{f['seed_sd_psnr']:.2f}")
            per = [f["psnr"]["per_image"].get(n) for n in FMD]
            cells.append(", ".join("—" if v is None else f"{v:.2f}" for v in per))
        else:
            cells += ["—"] * 7
        if b:
            cells.append(f"{b['psnr']['mean']:.2f} / {b['ri_psnr']['mean']:.2f} / {b['ssim']['mean']:.3f} ({b['seconds']['mean']:.0f} s)")
        else:
            cells.append("—")
        ref = REFERENCE.get(m, {}).get("mean")
        cells.append("—" if ref is None else f"{ref:.2f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _default_pairs(res: dict) -> list[tuple[str, str]]:
    ms = {r["method"] for r in res["records"].values()}
    return [(m, "careamics-n2v") for m in LEARNED if m in ms and "careamics-n2v" in ms]


def _parse_seeds(text: str) -> list[int]:
    if "," in text or not text.isdigit():
        return [int(v) for v in text.split(",") if v.strip()]
    return list(range(int(text)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", help="comma-separated methods (default: all available)")
    ap.add_argument("--images", help=f"comma-separated images among {', '.join(FMD)}, {BACTERIA}")
    ap.add_argument("--budget", type=float, default=120.0, help="training wall-time budget per image, s (learned, peer, CARE)")
    ap.add_argument("--quick", action="store_true", help="10-s budget on BPAE_B and bacteria16 (smoke run)")
    ap.add_argument("--fresh", action="store_true", help="discard earlier results in the JSON")
    ap.add_argument("--json", type=Path, default=OUT_JSON, help="results file (merged)")
    ap.add_argument("--order", choices=("image", "method"), default="image",
                    help="loop images outside (default) or methods outside (complete methods first when time is short)")
    ap.add_argument("--merge-from", type=Path, action="append", default=[],
                    help="merge the records (and run logs) of another results file into --json, then print the table")
    ap.add_argument("--table-only", action="store_true", help="print the table of the existing JSON and exit")
    ap.add_argument("--seeds", nargs="+", default=["0,1,2"],
                    help="seeds of learned methods and the peer: '0 1 2', '0,1,2' or a count (≥ 3 to report)")
    ap.add_argument("--figures", type=Path, default=None,
                    help="gallery folder (default benchmarks/figures; with a non-default --json: figures/ beside it)")
    ap.add_argument("--steps", type=int, default=None,
                    help="our learned methods: train exactly this many steps (deterministic, load-independent) instead of --budget")
    ap.add_argument("--paired", action="append", default=[],
                    help="'A,B': print paired differences A − B (default: each learned method vs careamics-n2v)")
    a = ap.parse_args(argv)
    try:
        seeds = _parse_seeds(",".join(a.seeds))
    except ValueError:
        ap.error(f"--seeds takes integers, e.g. '--seeds 0 1 2'; got {' '.join(a.seeds)!r}")
    if not seeds:
        ap.error("--seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        ap.error("--seeds must be distinct")
    figures = a.figures or (FIGURES if a.json.resolve() == OUT_JSON else a.json.resolve().parent / "figures")
    t_start = time.time()
    command = [__file__, *(sys.argv[1:] if argv is None else argv)]

    res = load_results(a.json, a.fresh)
    if a.merge_from:
        for f in a.merge_from:
            other = load_results(f, False)
            res["records"].update(other.get("records", {}))
            res.setdefault("meta", {}).setdefault("runs", []).extend(other.get("meta", {}).get("runs", []))
        res["summary"] = summarise(res)
        save_results(a.json, res)
        print(table(res))
        return 0
    pair_list = [tuple(x.split(",", 1)) for x in a.paired]
    if a.table_only:
        print(table(res))
        print()
        print(paired_table(res, pair_list or _default_pairs(res)))
        return 0
    budget = 10.0 if a.quick else a.budget
    names = a.images.split(",") if a.images else (["BPAE_B", BACTERIA] if a.quick else None)
    methods = a.methods.split(",") if a.methods else default_methods()
    pairs = load_pairs(names)
    if not pairs:
        print("no data found (../shared/data/fmd-confocal-pairs, ndhoward-bacteria-pair-16bit)", file=sys.stderr)
        return 2
    all_pairs = load_pairs(None) if "care-loo" in methods else pairs
    peer = careamics_python(build=False) if "careamics-n2v" in methods else None
    if "careamics-n2v" in methods and peer is None:
        print("careamics peer venv not found: run ../shared/peers/careamics-setup.sh; skipping careamics-n2v", file=sys.stderr)
        methods = [m for m in methods if m != "careamics-n2v"]

    import torch

    torch.set_num_threads(2)
    res.setdefault("meta", {})
    res["meta"].update({
        "script": "benchmarks/denoise_real.py",
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, {platform.system()}, shared with other jobs during the run",
        "python": platform.python_version(), "torch": torch.__version__, "threads": 2,
        "budget_s": budget, "data_range": "255 (uint8 FMD), 65535 (uint16 bacteria)",
        "reference_issue3": REFERENCE,
    })
    runs = res["meta"].setdefault("runs", [])
    runs.append({"started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "methods": methods,
                 "images": [p["image"] for p in pairs], "budget_s": budget, "steps": a.steps, "seeds": seeds,
                 "load_avg_start": load_avg()})
    work = Path(tempfile.mkdtemp(prefix="fluorecon-denoise-bench-"))
    cases: dict[str, list[Case]] = {}  # method → scored results of this run, for the failure gallery
    try:
        import tifffile

        for p in pairs:
            tifffile.imwrite(work / f"{p['image']}.tif", p["x"])  # peers and CLI read TIFF; the PNG is converted once
        def seeds_of(m: str) -> list[int | None]:
            return list(seeds) if m.partition("@")[0] in SEEDED else [None]

        jobs = ([(p, m, sd) for p in pairs for m in methods for sd in seeds_of(m)] if a.order == "image"
                else [(p, m, sd) for m in methods for sd in seeds_of(m) for p in pairs])
        for p, m, seed in jobs:
            key = f"{p['image']}|{m}" if seed is None else f"{p['image']}|{m}|s{seed}"
            noisy_tif = work / f"{p['image']}.tif"
            if m == "care-loo" and p["dataset"] != "fmd":
                continue
            la0 = load_avg()
            t0 = time.perf_counter()
            try:
                if m == "noisy":
                    out, extra = p["x"], {}
                elif m in ("ref-nlm", "ref-bm3d"):
                    out, extra = run_reference(m, p)
                elif m in CLASSICAL or (m.endswith("+vst") and m[:-4] in CLASSICAL):
                    out, extra = run_classical(m, p)
                elif m == "careamics-n2v":
                    o = work / f"{p['image']}_careamics_s{seed}.tif"
                    extra = run_careamics_n2v(peer, noisy_tif, o, seconds=budget, seed=seed or 0, workdir=work)
                    out = tifffile.imread(o)
                elif m == "care-loo":
                    out, extra = run_care_loo(p, all_pairs, budget, seed=seed or 0)
                else:
                    out, extra = run_cli(m, p, budget, work, noisy_tif, seed=seed or 0, steps=a.steps)
            except Exception as e:  # one failing method must not lose the others' results
                print(f"{p['image']:10s} {m:16s} FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
                res["records"][key] = {"image": p["image"], "method": m, "seed": seed,
                                       "error": f"{type(e).__name__}: {e}"[:2000],
                                       "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
                save_results(a.json, res)
                continue
            sec = time.perf_counter() - t0
            rec = {"image": p["image"], "dataset": p["dataset"], "method": m, "seed": seed, "seconds": sec, **metrics(out, p),
                   "out_mean": float(np.mean(out)), "in_mean": float(np.mean(p["x"])), "extra": extra,
                   "load_avg": [la0, load_avg()], "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
            res["records"][key] = rec
            if m != "noisy":
                gain = rec["psnr"] - psnr(p["x"].astype(np.float64), p["g"].astype(np.float64), data_range=p["data_range"])
                cases.setdefault(m, []).append(Case(
                    f"{p['image']}" + ("" if seed is None else f" seed {seed}"), gain,
                    {"recording": p["x"], "result": np.asarray(out, np.float32), "reference": p["g"]},
                    {"image": p["image"], "seed": seed, "psnr": rec["psnr"]}))
            if seed is not None:  # a single-seed record from before seeds were recorded would count as one more seed
                res["records"].pop(f"{p['image']}|{m}", None)
            print(f"{p['image']:10s} {m:16s} seed {'-' if seed is None else seed} PSNR {rec['psnr']:6.2f}  RI-PSNR {rec['ri_psnr']:6.2f}  "
                  f"SSIM {rec['ssim']:.3f}  {sec:7.1f} s  load {la0:.1f}", flush=True)
            res["summary"] = summarise(res)
            save_results(a.json, res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    # failure cases (review guideline 5): per method, the three results with the smallest PSNR gain over the input
    runs[-1]["worst_cases"] = {
        m: save_gallery(cs, figures / f"denoise_real_worst_{m}.png",
                        f"denoise_real.py: {m}, worst 3 of this run by PSNR gain over the input (score, dB)")
        for m, cs in cases.items()}
    res["galleries"] = {**res.get("galleries", {}), **{
        m: {"path": str(figures / f"denoise_real_worst_{m}.png"), "cases": runs[-1]["worst_cases"][m],
            "scores": {c.label: c.score for c in cs}, "score": "PSNR gain over the input (dB)"}
        for m, cs in cases.items()}}
    runs[-1]["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    runs[-1]["load_avg_end"] = load_avg()
    data = {f"{p['image']}_{k}": p[k] for p in pairs for k in ("noisy", "gt")}
    if "care-loo" in methods:
        data.update({f"{p['image']}_{k}": p[k] for p in all_pairs for k in ("noisy", "gt")})
    prov = provenance(seeds=seeds, data=data, argv=command,
                      params={**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
                              "seeds": seeds, "methods": methods, "budget_s": budget, "torch_threads": 2})
    prov.update(date_utc=runs[-1]["started"], load_average_start=runs[-1]["load_avg_start"])
    runs[-1]["provenance"] = res["provenance"] = finish(prov, t_start)
    res["summary"] = summarise(res)
    res["paired"] = {f"{x} − {y}": paired(res, x, y) for x, y in (pair_list or _default_pairs(res))}
    save_results(a.json, res)
    print()
    print(table(res))
    print()
    print(paired_table(res, pair_list or _default_pairs(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
