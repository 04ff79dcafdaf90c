"""Box 5 diagnostics: is a failure the data's, the prior's or the network's?

Two checks beside ``examples/box5_discovery.py`` (same recordings, same readers):

``grid``
    The generic reader and the exact Bayes references (``SequenceReader``: no prior; the trigram prior of
    training set (a); that of (b)) on recordings over a grid of blur widths and photon counts. Where
    the prior of (a) lowers the error of an *exact* reader, the recordings hold enough for a prior to
    matter — the precondition of Box 5's claim (a). No network involved: seconds per cell.
``vocabulary``
    The trained networks of one condition on words *from their own training vocabulary* (all of whose
    trigrams they saw) against the same readers. A network that fails on these as badly as on the
    unseen test words does not fail at *discovery*: it fails at restoring text at this degradation.

Usage::

    python examples/box5_diagnostics.py grid --realisations 30
    python examples/box5_diagnostics.py vocabulary --condition latin --realisations 20

Writes ``examples/box5/diagnostics_<check>.json`` (with a provenance record).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from fluorecon._atomic import atomic_path
from fluorecon.evaluate.reading import character_error_rate
from fluorecon.learn.nets import UNet
from fluorecon.physics.glyphs import GlyphGrid

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import box5_discovery as b5
from _provenance import file_sha256, finish, provenance

# 11-letter words among the 5,000 most frequent English words: in condition (a)'s training vocabulary
VOCABULARY = ("Information", "Development", "Environment", "Performance", "Association")
SIGMAS = (1.5, 2.0, 2.5)  # wider blurs reach three cells: the exact reader refuses them
PHOTONS = (8.0, 15.0, 30.0)


def _readers(words, n_real: int, grid: GlyphGrid) -> dict:
    ref = b5.reference_readers(words, n_real, grid)
    gen = b5.generic_reader(words, n_real, grid)
    out = {"generic_reader": {"cer": round(float(gen["cer"].mean()), 4),
                              "letters": b5._letter_split(gen["pos"], words)}}
    for k, v in ref.items():
        out[k] = {"cer": round(float(np.mean(v["cer"])), 4), "letters": v["letters"], "example_read": v["example_read"]}
    return out


def grid_check(n_real: int, sigmas=SIGMAS, photons=PHOTONS) -> dict:
    grid, rows = GlyphGrid(), {}
    saved = dict(b5.DEGRADATION)
    try:
        for s in sigmas:
            for p in photons:
                b5.DEGRADATION.update(blur_sigma_px=float(s), peak_photons=float(p))
                rows[f"sigma={s:g},photons={p:g}"] = _readers(b5.WORDS, n_real, grid)
                r = rows[f"sigma={s:g},photons={p:g}"]
                print(f"σ {s:g} px, {p:g} photons: generic {r['generic_reader']['cer']:.3f}  exact {r['exact_ml']['cer']:.3f}"
                      f"  + prior (a) {r['trigram_map_latin']['cer']:.3f}  + prior (b) {r['trigram_map_no_ae']['cer']:.3f}",
                      flush=True)
    finally:
        b5.DEGRADATION.update(saved)
    return {"words": list(b5.WORDS), "realisations": n_real, "rows": rows}


def vocabulary_check(condition: str, n_real: int, models: Path, words=VOCABULARY) -> dict:
    from wordfreq import top_n_list

    top = set(top_n_list("en", 5000))
    if not all(w.lower() in top for w in words):
        raise SystemExit(f"not all of {words} are among the 5,000 most frequent words")
    cfg = json.loads((models.parent / "box5__common.json").read_text())["config"]
    cond = json.loads((models.parent / f"box5_{condition}.json").read_text())
    grid = GlyphGrid()
    nets = {}
    for s, info in cond["seeds"].items():
        path = models / info["weights"]
        if file_sha256(path) != info["weights_sha256"]:
            raise SystemExit(f"{path} differs from the weights recorded in box5_{condition}.json")
        net = UNet(dim=2, depth=cfg["depth"], width=cfg["width"], residual=True)
        net.load_state_dict(load_file(str(path)))
        nets[s] = net.eval()
    out = {}
    for label, ws in (("training_vocabulary", tuple(words)), ("unseen_test_words", tuple(b5.WORDS))):
        part = {"words": list(ws), "readers": _readers(ws, n_real, grid), "network": {}}
        wrong: Counter[str] = Counter()
        for s, net in nets.items():
            cer = []
            for w, word in enumerate(ws):
                _, x = b5.recordings(word, w, n_real, grid)
                cells, _ = b5.reader_for(len(word), b5.READ_SIGMAS, grid).read_cells(b5.restore(net, x))
                cer += [character_error_rate(c.replace(" ", ""), word) for c in cells]
                wrong.update(r for c in cells for r, t in zip(c, word, strict=True) if r != t)
            part["network"][s] = round(float(np.mean(cer)), 4)
            print(f"{condition} seed {s}: CER {np.mean(cer):.3f} on {label.replace('_', ' ')}", flush=True)
        total = sum(wrong.values())
        # what the wrong letters are: an MSE restorer regresses ambiguous letters to the mean letter shape
        part["network_wrong_letters_top"] = [[ch, round(k / total, 3)] for ch, k in wrong.most_common(6)] if total else []
        print(f"  readers: {json.dumps({k: v['cer'] for k, v in part['readers'].items()})}; network's wrong letters: "
              f"{part['network_wrong_letters_top']}", flush=True)
        out[label] = part
    return {"realisations": n_real, "condition": condition, **out}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("check", choices=("grid", "vocabulary"))
    p.add_argument("--realisations", type=int, default=30)
    p.add_argument("--condition", default="latin", choices=b5.CONDITIONS)
    p.add_argument("--models", type=Path, default=Path(__file__).parent / "box5" / "models")
    p.add_argument("--out", type=Path, default=None, help="JSON output (default examples/box5/diagnostics_<check>.json)")
    a = p.parse_args(argv)
    if a.realisations < 1:
        p.error("--realisations must be ≥ 1")
    if a.check == "vocabulary":
        need = [a.models.parent / "box5__common.json", a.models.parent / f"box5_{a.condition}.json"]
        missing = [str(f) for f in need if not f.exists()]
        if missing or not a.models.is_dir():
            p.error(f"no saved Box 5 run for condition {a.condition!r} next to {a.models} (missing: "
                    f"{', '.join(missing) or a.models}); train it first with examples/box5_discovery.py "
                    f"--conditions {a.condition} or pass --models <out>/models")
    torch.set_num_threads(1)
    t0 = time.time()
    record = provenance(seeds=[b5.EVAL_SEED], params={"check": a.check, "realisations": a.realisations,
                                                      "condition": a.condition, "prior_eps": b5.PRIOR_EPS},
                        argv=None if argv is None else ["examples/box5_diagnostics.py", *argv])
    res = grid_check(a.realisations) if a.check == "grid" else vocabulary_check(a.condition, a.realisations, a.models)
    res["provenance"] = finish(record, t0)
    out = a.out or Path(__file__).parent / "box5" / f"diagnostics_{a.check}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
