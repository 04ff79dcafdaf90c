"""Box 5 of Belthangady & Royer (2019): when can a learned restorer *discover* what it never saw?

A U-Net restores text degraded so strongly that a generic reader fails on the recording: a reader
that knows the glyphs and the blur (blur-matched templates, whole-line least squares,
``fluorecon.evaluate.reading.TemplateReader``) misreads it. Four training sets (``fluorecon.physics.glyphs``):

  (a) latin   — 3-letter substrings of the 5,000 most frequent English words (never the test words);
  (b) no_ae   — the same without any trigram containing a or e;
  (c) chinese — GB2312 hanzi rendered with a CJK font (procedural stroke characters if none exists);
  (d) mix     — 50 % (a) + 50 % (c).

Each condition is trained for every seed until its validation loss plateaus (or the CPU budget runs
out), then restores ``--realisations`` noise realisations of each unseen test word (the same
realisations for every condition and seed: paired). Restorations are read with the same reader, with
the template blur chosen per image (blur-invariant), and scored by the character error rate (edit
distance / length). CIs: nested bootstrap (seeds, then realisations). ``fluorecon verify`` maps of one
realisation per condition are shown beside the restoration, and over all realisations of the first
seed we count how often verify flags a restoration whose reading is wrong.

Usage::

    python examples/box5_discovery.py --quick                       # seconds (the test runs this)
    python examples/box5_discovery.py --minutes-per-condition 60 --seeds 0 1 2   # full strength
    python examples/box5_discovery.py --conditions latin no_ae      # a subset; --assemble rebuilds outputs

``--minutes-per-condition`` is CPU time (process time, all threads) per condition, split evenly over
the seeds. Writes ``DIR/box5_<condition>.json|npz`` and ``DIR/models/*.safetensors`` per condition,
then ``DIR/box5_results.json`` and ``DIR/box5_figure.png`` (default DIR: ``examples/box5``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from fluorecon._atomic import atomic_path
from fluorecon.evaluate.reading import (
    SequenceReader,
    TemplateReader,
    TrigramPrior,
    character_error_rate,
    nested_bootstrap_ci,
    position_errors,
)
from fluorecon.learn.nets import UNet
from fluorecon.physics.glyphs import (
    CONDITIONS,
    GlyphGrid,
    cjk_font,
    latin_trigrams,
    text_forward,
    training_set,
)
from fluorecon.trust.verify import verify
from fluorecon.utils import array_hash, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _provenance import file_sha256, finish, provenance

WORDS = ("Witenagemot", "Palimpsest", "Hagiography", "Bathysphere", "Quadrennial")
DEGRADATION = {"blur_sigma_px": 2.5, "peak_photons": 12.0, "background_photons": 2.0, "noise": "poisson"}
READ_SIGMAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)  # template blurs tried on restorations (px)
WIDTH = 128  # canvas of the test words (≤ 11 letters)
EVAL_SEED = 1000
PRIOR_EPS = 0.01  # pseudo-count of the reference readers' trigram priors (fixed before any result was seen)
LABELS = {"latin": "(a) English trigrams", "no_ae": "(b) without a, e", "chinese": "(c) Chinese",
          "mix": "(d) 50/50 mix"}
FULL = {"n_words": 5000, "max_items": None, "n_val": 256, "batch": 32, "width": 32, "depth": 3, "lr": 1e-3,
        "val_every": 100, "patience": 6, "min_delta": 0.01}
QUICK = {"n_words": 300, "max_items": 64, "n_val": 16, "batch": 8, "width": 8, "depth": 2, "lr": 2e-3,
         "val_every": 5, "patience": 2, "min_delta": 0.01}


_READERS: dict[tuple, TemplateReader] = {}


def reader_for(n: int, sigmas: tuple[float, ...], grid: GlyphGrid) -> TemplateReader:
    """Readers are reused across conditions and seeds (building the blurred templates costs seconds)."""
    key = (n, tuple(sigmas), grid)
    if key not in _READERS:
        _READERS[key] = TemplateReader(grid, n, WIDTH, sigmas=sigmas)
    return _READERS[key]


def forward():
    d = DEGRADATION
    return text_forward(d["blur_sigma_px"], d["peak_photons"], d["background_photons"])


def normalise(x: np.ndarray) -> np.ndarray:
    """Photons → network input on the object's scale (≈ blurred intensity in [0, 1])."""
    return ((x - DEGRADATION["background_photons"]) / DEGRADATION["peak_photons"]).astype(np.float32)


def recordings(word: str, index: int, n: int, grid: GlyphGrid) -> tuple[np.ndarray, np.ndarray]:
    """Truth and ``n`` Poisson recordings of a test word; the noise depends only on (EVAL_SEED, index)."""
    truth = grid.render(word, width=WIDTH)
    lam = np.asarray(forward().expected(truth), np.float64)
    rng = np.random.default_rng([EVAL_SEED, index])
    return truth, rng.poisson(lam, size=(n, *lam.shape)).astype(np.float32)


# ------------------------------------------------------------------------------------------------ training
def _mse(net: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 64) -> float:
    with torch.no_grad():
        tot = 0.0
        for i in range(0, len(x), batch):
            p = net(torch.from_numpy(x[i:i + batch, None]))
            tot += float(torch.sum((p - torch.from_numpy(y[i:i + batch, None])) ** 2))
    return tot / y.size


class Plateau:
    """Validation-plateau rule: progress is a relative gain of ``min_delta`` over the last progress point.

    After ``patience`` evaluations without progress the first time: ``"drop"`` (learning rate ÷10), the
    second time: ``"stop"``. The reference moves only on progress, so a slow steady decline
    (e.g. 0.5 % per evaluation with ``min_delta`` = 1 %) is progress every other evaluation and never
    a plateau.

    Examples
    --------
    >>> rule = Plateau(0.01, 3)
    >>> [rule.update(v) for v in (1.0, 0.995, 0.990, 0.985, 0.984, 0.984, 0.984)]
    ['continue', 'continue', 'continue', 'continue', 'continue', 'continue', 'drop']
    """

    def __init__(self, min_delta: float, patience: int):
        self.min_delta, self.patience = min_delta, patience
        self.ref, self.since, self.dropped = np.inf, 0, False

    def update(self, v: float) -> str:
        if v < self.ref * (1 - self.min_delta):
            self.ref, self.since = v, 0
            return "continue"
        self.since += 1
        if self.since < self.patience:
            return "continue"
        self.since = 0
        if self.dropped:
            return "stop"
        self.dropped = True
        return "drop"


def train_condition(clean: np.ndarray, val: np.ndarray, cfg: dict, *, seed: int, cpu_seconds: float,
                    max_steps: int | None = None, log=print) -> tuple[torch.nn.Module, dict]:
    """Train one restorer until the validation MSE plateaus or the CPU budget (or ``max_steps``) is spent.

    With ``max_steps`` the CPU budget is ignored, so that a recorded run can be regenerated bit for bit
    (deterministic kernels, same seed, same step count) on any machine.

    Plateau criterion (``Plateau``): the validation loss (fixed held-out images, fixed noise) has not
    improved by a relative ``min_delta`` on its last progress point for ``patience`` evaluations; the
    first time, the learning rate drops 10×, the second time training stops. The weights with the best
    validation loss are returned.
    """
    rng = seed_everything(seed, deterministic=True)
    fw = forward()
    net = UNet(dim=2, depth=cfg["depth"], width=cfg["width"], residual=True)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    lam = np.asarray(fw.expected(clean), np.float32)  # the blur is fixed; only the noise is redrawn
    vx = normalise(np.random.default_rng([seed, 7]).poisson(np.asarray(fw.expected(val), np.float64)).astype(np.float32))
    best, best_state, drops, step = np.inf, None, 0, 0
    plateau = Plateau(cfg["min_delta"], cfg["patience"])
    curve: list[list[float]] = []
    c0, t0 = time.process_time(), time.time()
    reason = "budget"
    while (step < max_steps) if max_steps is not None else (time.process_time() - c0 < cpu_seconds):
        net.train()
        idx = rng.integers(0, len(clean), cfg["batch"])
        x = torch.from_numpy(normalise(rng.poisson(lam[idx]).astype(np.float32))[:, None])
        loss = torch.mean((net(x) - torch.from_numpy(clean[idx][:, None])) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % cfg["val_every"] == 0:
            net.eval()
            v = _mse(net, vx, val)
            curve.append([step, round(time.process_time() - c0, 2), loss.item(), v])
            if v < best:  # the weights kept are the best seen, however small the gain
                best = v
                best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
            action = plateau.update(v)
            if action == "stop":
                reason = "plateau"
                break
            if action == "drop":
                drops = 1
                for gr in opt.param_groups:
                    gr["lr"] *= 0.1
            if len(curve) % 10 == 0:
                log(f"      step {step}  train {loss.item():.4f}  val {v:.4f}  ({time.process_time() - c0:.0f} CPU-s)")
    if best_state is not None:
        net.load_state_dict(best_state)
    return net.eval(), {"steps": step, "stop": reason, "lr_dropped": bool(drops), "best_val_mse": float(best),
                        "cpu_s": round(time.process_time() - c0, 1), "wall_s": round(time.time() - t0, 1),
                        "curve": curve}


def restore(net: torch.nn.Module, x: np.ndarray, batch: int = 50) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(net(torch.from_numpy(normalise(x[i:i + batch])[:, None]))[:, 0].numpy())
    return np.concatenate(out)


# --------------------------------------------------------------------------------------------- evaluation
def evaluate_net(net, words, n_real: int, grid: GlyphGrid, verify_seed: bool) -> dict:
    """CER per (word, realisation), per-letter errors, verify statistics and one example restoration."""
    fw = forward()
    cer = np.zeros((len(words), n_real))
    pos: list[np.ndarray] = []
    ver = {"n": 0, "flagged": 0, "wrong": 0, "wrong_flagged": 0, "right": 0, "right_flagged": 0,
           "wrong_letters_in_region": 0, "wrong_letters": 0}
    example = None
    for w, word in enumerate(words):
        truth, x = recordings(word, w, n_real, grid)
        y = restore(net, x)
        reader = reader_for(len(word), READ_SIGMAS, grid)
        cells, _ = reader.read_cells(y)
        cer[w] = [character_error_rate(c.replace(" ", ""), word) for c in cells]
        pos.append(np.stack([position_errors(c, word) for c in cells]))
        if verify_seed and w == 0:
            for r in range(n_real):
                res = verify(x[r], np.clip(y[r], 0, None), fw)
                wrong = pos[0][r]
                ver["n"] += 1
                ver["flagged"] += int(res.flagged)
                key = "wrong" if wrong.any() else "right"
                ver[key] += 1
                ver[key + "_flagged"] += int(res.flagged)
                cols = np.zeros(WIDTH, bool)
                for reg in res.regions:
                    cols[reg["bbox"][1][0]:reg["bbox"][1][1]] = True
                for i in np.flatnonzero(wrong):
                    ver["wrong_letters"] += 1
                    a = grid.margin + i * grid.cell
                    ver["wrong_letters_in_region"] += int(cols[a:a + grid.cell].any())
                if r == 0:
                    example = {"restored": y[0], "z": res.maps["z"], "regions": res.regions, "read": cells[0],
                               "flagged": res.flagged}
    return {"cer": cer, "pos": pos, "verify": ver, "example": example}


def generic_reader(words, n_real: int, grid: GlyphGrid) -> dict:
    """The generic reader on the degraded recordings: blur-matched templates (the true σ)."""
    cer = np.zeros((len(words), n_real))
    pos = []
    for w, word in enumerate(words):
        _, x = recordings(word, w, n_real, grid)
        reader = reader_for(len(word), (DEGRADATION["blur_sigma_px"],), grid)
        cells, _ = reader.read_cells(normalise(x))
        cer[w] = [character_error_rate(c.replace(" ", ""), word) for c in cells]
        pos.append(np.stack([position_errors(c, word) for c in cells]))
    return {"cer": cer, "pos": pos, "example_read": cells[0] if len(words) == 1 else None}


def reference_readers(words, n_real: int, grid: GlyphGrid, n_words: int = 5000) -> dict:
    """Exact readers of the recordings (no network): what the information in them allows.

    ``exact_ml``: the best line under the noise model alone (blur-matched templates, Viterbi, no prior)
    — the generic reader without its coordinate-descent approximation. ``trigram_map_latin`` /
    ``trigram_map_no_ae``: the best line when the trigrams of training set (a) / (b) are the prior
    (``TrigramPrior``, pseudo-count ``PRIOR_EPS``) — a Bayes-optimal reader that knows what the network
    of that condition was shown. Noise variance per pixel: the recording smoothed (σ = 2 px, ≥ 0.5
    photons) ÷ P², from the data alone.
    """
    d = DEGRADATION
    priors = {"exact_ml": None,
              "trigram_map_latin": TrigramPrior(latin_trigrams(n_words, exclude=tuple(words)), eps=PRIOR_EPS),
              "trigram_map_no_ae": TrigramPrior(latin_trigrams(n_words, drop="ae", exclude=tuple(words)),
                                                eps=PRIOR_EPS)}
    out = {k: {"cer": np.zeros((len(words), n_real)), "pos": []} for k in priors}
    for w, word in enumerate(words):
        _, x = recordings(word, w, n_real, grid)
        var = np.maximum(ndimage.gaussian_filter(x, (0, 2, 2), mode="nearest"), 0.5) / d["peak_photons"] ** 2
        for name, prior in priors.items():
            cells = SequenceReader(grid, len(word), WIDTH, d["blur_sigma_px"], prior=prior).read_cells(normalise(x), var)
            out[name]["cer"][w] = [character_error_rate(c.replace(" ", ""), word) for c in cells]
            out[name]["pos"].append(np.stack([position_errors(c, word) for c in cells]))
            if w == 0:
                out[name]["example_read"] = cells[0]
    return {k: {"cer": v["cer"].tolist(), "letters": _letter_split(v["pos"], words), "example_read": v["example_read"],
                "prior_eps": None if k == "exact_ml" else PRIOR_EPS} for k, v in out.items()}


def _letter_split(pos: list[np.ndarray], words, letters: str = "ae") -> dict:
    """Error rate on letters in ``letters`` vs the others, over all words and realisations."""
    on = np.concatenate([p[:, [c.lower() in letters for c in w]].ravel() for p, w in zip(pos, words, strict=True)])
    off = np.concatenate([p[:, [c.lower() not in letters for c in w]].ravel() for p, w in zip(pos, words, strict=True)])
    return {"a_e": float(on.mean()), "other": float(off.mean())}


def _ci(v: np.ndarray, seed: int = 0) -> dict:
    c = nested_bootstrap_ci(v, seed=seed)
    return {"mean": round(c.value, 4), "ci95": [round(c.low, 4), round(c.high, 4)]}


# --------------------------------------------------------------------------------------------------- run
def run(out: Path, *, quick: bool = False, minutes: float = 4.0, seeds=(0, 1, 2), conditions=CONDITIONS,
        words=WORDS, n_real: int = 100, threads: int = 1, max_steps: int | None = None,
        width: int | None = None, depth: int | None = None, val_every: int | None = None,
        min_delta: float | None = None, patience: int | None = None) -> dict:
    torch.set_num_threads(threads)
    cfg = dict(QUICK if quick else FULL)
    cfg.update({k: v for k, v in (("width", width), ("depth", depth), ("val_every", val_every),
                                  ("min_delta", min_delta), ("patience", patience)) if v is not None})
    grid = GlyphGrid()
    out.mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    # the generic reader's result does not depend on the condition: once, shared by all rows
    gen = generic_reader(words, n_real, grid)
    truth0, x0 = recordings(words[0], 0, 1, grid)
    gen_cells, _ = reader_for(len(words[0]), (DEGRADATION["blur_sigma_px"],), grid).read_cells(normalise(x0))
    common = {"degradation": DEGRADATION, "words": list(words), "realisations": n_real, "seeds": list(seeds),
              "read_sigmas": READ_SIGMAS, "config": cfg, "quick": quick, "minutes_per_condition": minutes,
              "cjk_font": cjk_font(), "generic_reader": {"cer": gen["cer"].tolist(), "letters": _letter_split(gen["pos"], words),
                                                          "example_read": gen_cells[0]},
              "reference_readers": reference_readers(words, n_real, grid, n_words=cfg["n_words"])}
    _save(out, "_common", common, {"truth": truth0, "degraded": normalise(x0[0])})
    for cond in conditions:
        t_cond = time.time()
        clean, info = training_set(cond, n_words=cfg["n_words"], max_items=cfg["max_items"], exclude=tuple(words),
                                   grid=grid, seed=[0, CONDITIONS.index(cond)])
        perm = np.random.default_rng([1, CONDITIONS.index(cond)]).permutation(len(clean))
        val, tr = clean[perm[:cfg["n_val"]]], clean[perm[cfg["n_val"]:]]
        print(f"[{cond}] {info['kind']}: {len(tr)} training / {len(val)} validation images", flush=True)
        res = {"data": {**info, "n_train": len(tr), "n_val": len(val), "sha256": array_hash(clean)}, "seeds": {}}
        cers, pos_all, ver_tot, example = [], [], None, None
        for s in seeds:
            net, tinfo = train_condition(tr, val, cfg, seed=s, cpu_seconds=60 * minutes / len(seeds),
                                          max_steps=max_steps)
            wpath = out / "models" / f"box5_{cond}_seed{s}.safetensors"
            from safetensors.torch import save_file

            with atomic_path(wpath) as tmp:
                save_file({k: v.contiguous() for k, v in sorted(net.state_dict().items())}, str(tmp))
            ev = evaluate_net(net, words, n_real, grid, verify_seed=s == seeds[0])
            cers.append(ev["cer"])
            pos_all.append(ev["pos"])
            if s == seeds[0]:
                ver_tot, example = ev["verify"], ev["example"]
            res["seeds"][str(s)] = {"training": tinfo, "cer_mean": float(ev["cer"].mean()),
                                    "weights": wpath.name, "weights_sha256": file_sha256(wpath)}
            print(f"[{cond}] seed {s}: {tinfo['steps']} steps, stop={tinfo['stop']}, val MSE {tinfo['best_val_mse']:.4f}, "
                  f"CER {ev['cer'].mean():.3f} ({tinfo['cpu_s']:.0f} CPU-s)", flush=True)
        res["cer"] = np.stack(cers).tolist()  # (seeds, words, realisations)
        res["letters"] = _letter_split([np.concatenate([p[w] for p in pos_all]) for w in range(len(words))], words)
        res["verify"] = ver_tot
        res["example"] = {"read": example["read"], "flagged": example["flagged"],
                          "regions": [{k: r[k] for k in ("kind", "bbox", "z")} for r in example["regions"]]}
        res["seconds"] = round(time.time() - t_cond, 1)
        _save(out, cond, res, {"restored": example["restored"], "z": example["z"]})
    return assemble(out)


def _save(out: Path, name: str, res: dict, arrays: dict) -> None:
    with atomic_path(out / f"box5_{name}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **{k: np.asarray(v, np.float32) for k, v in arrays.items()})
    with atomic_path(out / f"box5_{name}.json") as tmp:
        tmp.write_text(json.dumps(res, indent=1, default=float))


def summarise(common: dict, conds: dict) -> dict:
    """CER with nested-bootstrap CIs; paired differences against the generic reader and against (a)."""
    n_seeds = len(common["seeds"])
    gen = np.asarray(common["generic_reader"]["cer"])[None].repeat(n_seeds, 0)
    table = {"generic_reader_on_recording": {"cer": _ci(gen), "letters": common["generic_reader"]["letters"],
                                             "word_accuracy": round(float((gen[0] == 0).mean()), 4)}}
    refs = {k: np.asarray(v["cer"])[None].repeat(n_seeds, 0) for k, v in common.get("reference_readers", {}).items()}
    for k, v in refs.items():
        table[k] = {"cer": _ci(v), "minus_generic_reader": _ci(v - gen), "letters": common["reference_readers"][k]["letters"],
                    "word_accuracy": round(float((v[0] == 0).mean()), 4)}
    for cond, r in conds.items():
        c = np.asarray(r["cer"])
        row = {"cer": _ci(c), "minus_generic_reader": _ci(c - gen[: len(c)]), "letters": r["letters"],
               "word_accuracy": round(float((c == 0).mean()), 4), "verify": r["verify"],
               "stop": [r["seeds"][s]["training"]["stop"] for s in r["seeds"]],
               "steps": [r["seeds"][s]["training"]["steps"] for s in r["seeds"]]}
        if "latin" in conds and cond != "latin":
            row["minus_latin"] = _ci(c - np.asarray(conds["latin"]["cer"])[: len(c)])
        ref = {"latin": "trigram_map_latin", "no_ae": "trigram_map_no_ae"}.get(cond)
        if ref in refs:
            row["minus_" + ref] = _ci(c - refs[ref][: len(c)])
        table[cond] = row
    return table


ROW_NAMES = {"generic_reader_on_recording": "generic reader on the recording",
             "exact_ml": "exact reader on the recording, no prior (Bayes reference)",
             "trigram_map_latin": "exact reader + trigram prior of (a) (Bayes reference)",
             "trigram_map_no_ae": "exact reader + trigram prior of (b) (Bayes reference)", **LABELS}


def _fmt(c: dict | None, sign: bool = False) -> str:
    if c is None:
        return "—"
    f = "{:+.3f}" if sign else "{:.3f}"
    return f"{f.format(c['mean'])} ({f.format(c['ci95'][0])}, {f.format(c['ci95'][1])})"


def markdown_table(summary: dict) -> str:
    """The summary as a Markdown table (what docs/box5.md and benchmarks/README.md quote).

    Examples
    --------
    >>> row = {"cer": {"mean": 0.5, "ci95": [0.4, 0.6]}, "letters": {"a_e": 0.7, "other": 0.4}}
    >>> print(markdown_table({"latin": row}).splitlines()[2])
    | (a) English trigrams | 0.500 (0.400, 0.600) | — | — | — | — | 0.70 | 0.40 | — | — |
    """
    lines = ["| | CER (95 % CI) | − generic reader | − (a) | − exact reader with its prior | exact word "
             "| error on a/e | on other letters | verify: flagged wrong readings | stop |", "|" + "---|" * 10]
    for k, r in summary.items():
        prior = r.get("minus_trigram_map_latin") or r.get("minus_trigram_map_no_ae")
        v = r.get("verify")
        cells = [ROW_NAMES.get(k, k), _fmt(r["cer"]), _fmt(r.get("minus_generic_reader"), True),
                 _fmt(r.get("minus_latin"), True), _fmt(prior, True),
                 f"{r['word_accuracy']:.2f}" if "word_accuracy" in r else "—",
                 f"{r['letters']['a_e']:.2f}", f"{r['letters']['other']:.2f}",
                 f"{v['wrong_flagged']}/{v['wrong']}" if v else "—", ", ".join(r["stop"]) if "stop" in r else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def assemble(out: Path, argv=None) -> dict:
    """Build ``box5_results.json`` and ``box5_figure.png`` from the conditions saved in ``out``."""
    common = json.loads((out / "box5__common.json").read_text())
    with np.load(out / "box5__common.npz") as z:
        truth, degraded = z["truth"], z["degraded"]
    if "reference_readers" not in common:  # results saved before the exact readers existed: add them once
        saved = dict(DEGRADATION)
        DEGRADATION.update(common["degradation"])
        try:
            common["reference_readers"] = reference_readers(common["words"], common["realisations"], GlyphGrid(),
                                                            n_words=common["config"]["n_words"])
        finally:
            DEGRADATION.update(saved)
        with atomic_path(out / "box5__common.json") as tmp:
            tmp.write_text(json.dumps(common, indent=1, default=float))
    conds, arrays = {}, {}
    for cond in CONDITIONS:
        if (out / f"box5_{cond}.json").exists():
            conds[cond] = json.loads((out / f"box5_{cond}.json").read_text())
            with np.load(out / f"box5_{cond}.npz") as z:
                arrays[cond] = (z["restored"], z["z"])
    results = {"summary": summarise(common, conds), "common": common, "conditions": conds}
    _figure(out / "box5_figure.png", truth, degraded, common, conds, arrays, results["summary"])
    with atomic_path(out / "box5_table.md") as tmp:
        tmp.write_text(markdown_table(results["summary"]))
    with atomic_path(out / "box5_results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1, default=float))
    return results


def _figure(path: Path, truth, degraded, common, conds, arrays, summary) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    word = common["words"][0]
    rows = 1 + len(conds)
    fig, axes = plt.subplots(rows, 4, figsize=(16, 1.9 * rows + 0.4), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 3, 2, 2]})
    g = summary["generic_reader_on_recording"]
    axes[0, 0].imshow(truth, cmap="gray", vmin=0, vmax=1)
    axes[0, 0].set_title(f"truth: '{word}'", fontsize=9)
    axes[0, 1].imshow(degraded, cmap="gray")
    axes[0, 1].set_title(f"recording (σ={DEGRADATION['blur_sigma_px']} px, {DEGRADATION['peak_photons']:.0f} photons); "
                         f"generic reader: '{common['generic_reader']['example_read']}'", fontsize=8)
    axes[0, 2].axis("off")
    refs = common.get("reference_readers", {})
    names = {"exact_ml": "exact reader, no prior", "trigram_map_latin": "exact + prior of (a)",
             "trigram_map_no_ae": "exact + prior of (b)"}
    ref_txt = "".join(f"\n{names[k]}: CER {summary[k]['cer']['mean']:.2f}, reads '{v['example_read']}'"
                      for k, v in refs.items() if k in summary)
    axes[0, 2].text(0, 0.5, f"generic reader (blur-matched templates)\non the recordings: CER {g['cer']['mean']:.2f}\n"
                    f"a/e {g['letters']['a_e']:.2f}, other letters {g['letters']['other']:.2f}"
                    + (f"\nBayes references on the recordings:{ref_txt}" if ref_txt else ""), fontsize=7, va="center")
    ax = axes[0, 3]
    for cond, r in conds.items():
        for s, info in r["seeds"].items():
            c = np.asarray(info["training"]["curve"])
            if len(c):
                ax.plot(c[:, 1] / 60, c[:, 3], lw=0.8, label=LABELS[cond] if s == next(iter(r["seeds"])) else None,
                        color={"latin": "C0", "no_ae": "C1", "chinese": "C2", "mix": "C3"}[cond])
    ax.set_yscale("log")
    ax.set_xlabel("CPU-minutes", fontsize=7)
    ax.set_title("validation MSE (in-distribution)", fontsize=8)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=6)
    for i, (cond, r) in enumerate(conds.items(), start=1):
        restored, zmap = arrays[cond]
        srow = summary[cond]
        axes[i, 0].imshow(restored, cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_ylabel(LABELS[cond], fontsize=9)
        axes[i, 0].set_title(f"restored, read '{r['example']['read']}'; CER over all: {srow['cer']['mean']:.2f} "
                             f"[{srow['cer']['ci95'][0]:.2f}, {srow['cer']['ci95'][1]:.2f}]", fontsize=8)
        lim = max(4.0, float(np.abs(zmap).max()))
        axes[i, 1].imshow(zmap, cmap="RdBu_r", vmin=-lim, vmax=lim)
        for reg in r["example"]["regions"]:
            (y0, y1), (x0, x1) = reg["bbox"]
            axes[i, 1].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, color="k", lw=1))
        v = r["verify"]
        axes[i, 1].set_title(f"verify z (red: missing, blue: added); flagged {v['wrong_flagged']}/{v['wrong']} wrong, "
                             f"{v['right_flagged']}/{v['right']} right readings", fontsize=7)
        axes[i, 2].axis("off")
        axes[i, 2].text(0, 0.5, f"error on a/e {srow['letters']['a_e']:.2f}, other {srow['letters']['other']:.2f}\n"
                        f"CER − generic reader {srow['minus_generic_reader']['mean']:+.2f} "
                        f"[{srow['minus_generic_reader']['ci95'][0]:+.2f}, {srow['minus_generic_reader']['ci95'][1]:+.2f}]"
                        + (f"\nCER − (a) {srow['minus_latin']['mean']:+.2f} [{srow['minus_latin']['ci95'][0]:+.2f}, "
                           f"{srow['minus_latin']['ci95'][1]:+.2f}]" if "minus_latin" in srow else "")
                        + "".join(f"\nCER − exact reader with its prior {srow[k]['mean']:+.2f} [{srow[k]['ci95'][0]:+.2f}, "
                                  f"{srow[k]['ci95'][1]:+.2f}]" for k in ("minus_trigram_map_latin", "minus_trigram_map_no_ae")
                                  if k in srow)
                        + f"\nstop: {', '.join(srow['stop'])}; steps {srow['steps']}", fontsize=8, va="center")
        axes[i, 3].axis("off")
        wrong_in = v["wrong_letters_in_region"] / max(v["wrong_letters"], 1)
        axes[i, 3].text(0, 0.5, f"verify regions cover {wrong_in:.0%}\nof the misread letters\n"
                        f"(seed {common['seeds'][0]}, {v['n']} realisations of '{word}')", fontsize=8, va="center")
    for a in axes[:, :2].ravel():
        a.set_xticks([])
        a.set_yticks([])
    fig.suptitle(f"Box 5: restoring unseen words ({len(common['words'])} words × {common['realisations']} noise "
                 f"realisations × {len(common['seeds'])} seeds; {common['minutes_per_condition']:g} CPU-min of training "
                 f"per condition){' — QUICK smoke run' if common['quick'] else ''}",
                 fontsize=10)
    n_wrong = sum(r["verify"]["wrong"] for r in conds.values())
    n_flag = sum(r["verify"]["wrong_flagged"] for r in conds.values())
    note = (f"fluorecon verify flagged {n_flag} of {n_wrong} wrong readings"
            + (": the invented letters are consistent with the recording through f, so a forward-model check "
               "cannot see them" if n_wrong and n_flag == 0 else ""))
    fig.text(0.5, 0.004, note, ha="center", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny data and network, 2 words × 8 realisations: seconds")
    p.add_argument("--minutes-per-condition", type=float, default=None,
                   help="CPU-minutes per condition, split over the seeds (default 60; quick 0.05)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=CONDITIONS)
    p.add_argument("--words", nargs="+", default=None, help=f"unseen test words (≤ 11 letters; default {' '.join(WORDS)})")
    p.add_argument("--realisations", type=int, default=None, help="noise realisations per word (default 100; quick 8)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop each training after this many steps (or at its plateau) instead of the CPU budget: "
                        "with the recorded step count this regenerates the weights bit for bit")
    p.add_argument("--width", type=int, default=None, help="U-Net width (default 32; quick 8)")
    p.add_argument("--depth", type=int, default=None, help="U-Net depth (default 3; quick 2)")
    p.add_argument("--val-every", type=int, default=None, help="steps between validation evaluations (default 100; quick 5)")
    p.add_argument("--min-delta", type=float, default=None,
                   help="relative validation improvement that counts as progress for the plateau rule (default 0.01)")
    p.add_argument("--patience", type=int, default=None,
                   help="validation evaluations without progress before the learning rate drops / training stops (default 6)")
    p.add_argument("--blur-sigma", type=float, default=None,
                   help=f"Gaussian blur of the degradation in px (default {DEGRADATION['blur_sigma_px']})")
    p.add_argument("--photons", type=float, default=None,
                   help=f"peak photons at intensity 1 (default {DEGRADATION['peak_photons']})")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "box5", help="output folder")
    p.add_argument("--assemble", action="store_true", help="only rebuild results + figure from saved conditions")
    a = p.parse_args(argv)
    words = tuple(a.words or (WORDS[:2] if a.quick else WORDS))
    bad = [w for w in words if not (1 <= len(w) <= 11 and w.isascii() and w.isalpha())]
    if bad:
        p.error(f"test words must be 1–11 ASCII letters, got {bad}")
    n_real = a.realisations or (8 if a.quick else 100)
    minutes = a.minutes_per_condition if a.minutes_per_condition is not None else (0.05 if a.quick else 60.0)
    if minutes <= 0 or n_real < 1:
        p.error("--minutes-per-condition must be > 0 and --realisations ≥ 1")
    if (a.max_steps is not None and a.max_steps < 1) or (a.width is not None and a.width < 2) or \
            (a.depth is not None and not 1 <= a.depth <= 4) or (a.val_every is not None and a.val_every < 1):
        p.error("--max-steps and --val-every must be ≥ 1, --width ≥ 2 and --depth 1–4")
    if (a.min_delta is not None and not 0 <= a.min_delta < 1) or (a.patience is not None and a.patience < 1):
        p.error("--min-delta must be in [0, 1) and --patience ≥ 1")
    if (a.blur_sigma is not None and not 0 < a.blur_sigma <= 5) or (a.photons is not None and a.photons <= 0):
        p.error("--blur-sigma must be in (0, 5] px and --photons > 0")
    saved = dict(DEGRADATION)
    # the degradation is module state read by forward()/normalise(); restored so that a caller importing
    # this module (the tests) sees the documented protocol again afterwards
    try:
        if a.blur_sigma is not None:
            DEGRADATION["blur_sigma_px"] = a.blur_sigma
        if a.photons is not None:
            DEGRADATION["peak_photons"] = a.photons
        return _run_main(a, argv, words, n_real, minutes)
    finally:
        DEGRADATION.clear()
        DEGRADATION.update(saved)


def _run_main(a: argparse.Namespace, argv: list[str] | None, words: tuple[str, ...], n_real: int,
              minutes: float) -> int:
    t0 = time.time()
    record = provenance(seeds=a.seeds, params={"words": words, "realisations": n_real, "minutes_per_condition": minutes,
                                               "quick": a.quick, "threads": a.threads,
                                               "max_steps": a.max_steps, "width": a.width, "depth": a.depth,
                                               "val_every": a.val_every, "min_delta": a.min_delta,
                                               "patience": a.patience, "degradation": dict(DEGRADATION)},
                        argv=None if argv is None else ["examples/box5_discovery.py", *argv])
    if a.assemble:
        res = assemble(a.out)
    else:
        res = run(a.out, quick=a.quick, minutes=minutes, seeds=tuple(a.seeds), conditions=tuple(a.conditions),
                  words=words, n_real=n_real, threads=a.threads, max_steps=a.max_steps, width=a.width,
                  depth=a.depth, val_every=a.val_every, min_delta=a.min_delta, patience=a.patience)
    res["provenance"] = finish(record, t0)
    with atomic_path(a.out / "box5_results.json") as tmp:
        tmp.write_text(json.dumps(res, indent=1, default=float))
    for k, v in res["summary"].items():
        print(f"{k:>28}: CER {v['cer']['mean']:.3f} [{v['cer']['ci95'][0]:.3f}, {v['cer']['ci95'][1]:.3f}]  "
              f"a/e {v['letters']['a_e']:.2f}  other {v['letters']['other']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
