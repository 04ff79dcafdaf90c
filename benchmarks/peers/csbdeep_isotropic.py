"""CSBDeep isotropic CARE as a peer for the isotropic-restoration benchmark.

Run with the *peer* venv's interpreter (see ``csbdeep_setup.sh``), never with fluorecon's::

    PEER=$(benchmarks/peers/csbdeep_setup.sh)
    $PEER/bin/python benchmarks/peers/csbdeep_isotropic.py STACK.npy OUT.npy \
        --z-factor 4 --axial-sigma 3 --seconds 90 --seed 0

Input
    ``STACK.npy``: a (Z, Y, X) float stack whose planes are ``F = --z-factor`` lateral pixels
    apart; its lateral (XY) planes are taken as isotropic-resolution "ground truth" for
    self-supervised training, as in CSBDeep's isotropic reconstruction.
    ``--axial-sigma S``: the *extra* axial blur of the microscope (the anisotropic part of the
    PSF), a 1D Gaussian of standard deviation S lateral pixels.

Method (CSBDeep's own pipeline, as in its isotropic example notebooks)
    1. Training pairs: ``csbdeep.data.anisotropic_distortions(subsample=F, psf=g_S,
       psf_axes='YX', subsample_axis='X')`` applied to the lateral planes, where ``g_S`` is a
       (1, 2*ceil(4S)+1) Gaussian kernel along X. The stack is used twice, as is and with Y/X
       transposed, so both lateral directions are degraded. ``create_patches`` extracts
       (1, P, P) patches (default P=64, shrunk to fit the stack; CSBDeep's default
       background filter and percentile normalisation); 10 % (at most 16, one batch) are
       held out for validation, to keep the per-epoch validation pass cheap.
    2. Model: ``IsotropicCARE`` with CSBDeep's default 2D ``Config`` (U-Net depth 2, 32 first
       filters, kernel 5, batch 16, Adam lr 4e-4, MAE loss, ReduceLROnPlateau) except
       ``train_steps_per_epoch`` (``--steps-per-epoch``, default 50) and an open-ended number
       of epochs: a Keras callback stops training after the first step that ends once
       ``--seconds`` have passed since ``model.train`` was called (so Keras setup and graph
       tracing count; the validation pass of the interrupted epoch still runs after it, so
       ``train_s`` exceeds ``--seconds`` by about one step plus one validation batch).
       ``--clock wall`` (default) measures wall time; ``--clock cpu`` measures the process's CPU
       time over all threads, which is fairer on a shared, loaded machine. The model has no
       ``basedir``, so nothing is written to disk and the *last* weights (not the
       best-validation ones) are used. With ``--until-plateau E`` the run is trained to its own
       convergence instead: it stops once the validation loss has not improved by a relative
       ``--min-delta`` (default 0.5 %) for E epochs, ``--seconds`` becomes a cap, and the
       best-validation weights are kept; the JSON line then reports ``stopped_by`` ("plateau"
       or "budget"), the epochs and the validation-loss curve.
    3. Prediction: ``IsotropicCARE.predict(stack, axes='ZYX', factor=f)`` (zoom along Z with
       linear interpolation, network on the XZ and YZ slices, geometric mean of the two,
       percentile normalisation undone).

Output grid
    CSBDeep upsamples Z with ``scipy.ndimage.zoom(order=1)`` whose output has
    ``round(Z * factor)`` planes with the first and last planes aligned to the first and last
    input planes. Called with ``factor = F`` this gives ``Z*F`` planes spaced
    ``(Z-1)/(Z*F-1)`` input planes apart -- not exactly ``1/F``. We therefore call ``predict``
    with ``factor = ((Z-1)*F + 1) / Z``, which yields exactly ``(Z-1)*F + 1`` planes spaced
    ``1/F`` apart: output plane ``i*F`` lies at input plane ``i`` and no resampling is needed.
    (Should a future CSBDeep produce another length, the result is linearly resampled along Z
    to that grid under the same end-aligned convention; the JSON reports ``"resampled": true``.)
    The network itself is trained for subsample factor ``F``.

Output
    ``OUT.npy``: the restored (Z-1)*F+1, Y, X float32 stack, in the input's intensity units
    (CSBDeep's ``PercentileNormalizer`` with ``do_after=True``). One JSON line on stdout::

        {"peer": "csbdeep-isotropic", "version": "0.8.2", "tensorflow": "2.15.1",
         "train_s": ..., "steps": ..., "predict_s": ..., "shape": [...], ...}

    All progress output of Keras/CSBDeep goes to stderr.

TensorFlow is limited to 2 CPU threads (intra-op 2, inter-op 1); ``--threads`` changes that.
Exit status 2 with a message on stderr for bad input (not 3D, fewer than 2 planes, F < 1, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stack", help="input (Z, Y, X) .npy stack, planes F lateral pixels apart")
    p.add_argument("out", help="output .npy for the restored ((Z-1)*F+1, Y, X) stack")
    p.add_argument("--z-factor", type=float, required=True, help="Z step / lateral pixel size (F)")
    p.add_argument("--axial-sigma", type=float, required=True,
                   help="sigma (lateral pixels) of the extra 1D Gaussian axial blur")
    p.add_argument("--seconds", type=float, default=90.0, help="training time budget")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="budget measured in wall time (default) or process CPU time (all threads)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    p.add_argument("--patch-size", type=int, default=64, help="lateral patch size (mult. of 16)")
    p.add_argument("--n-patches", type=int, default=512, help="patches per stack orientation")
    p.add_argument("--steps-per-epoch", type=int, default=50)
    p.add_argument("--until-plateau", type=int, default=0, metavar="EPOCHS",
                   help="train to convergence: stop once the validation loss has not improved by "
                        "--min-delta for EPOCHS epochs and keep the best-validation weights "
                        "(--seconds is then only a cap); 0 (default) = budget-matched run")
    p.add_argument("--min-delta", type=float, default=0.005,
                   help="relative validation-loss improvement that counts as progress (with --until-plateau)")
    return p.parse_args(argv)


def _fail(msg):
    print(f"csbdeep_isotropic: error: {msg}", file=sys.stderr)
    sys.exit(2)


def _gaussian_psf_x(sigma):
    """(1, K) normalised Gaussian kernel along X (axes 'YX'); a delta for sigma == 0."""
    import numpy as np

    if sigma <= 0:
        return np.ones((1, 1), np.float32)
    r = int(math.ceil(4 * sigma))
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)[None, :]


def _resample_z(arr, n_out):
    """Linear resampling along axis 0, first/last planes aligned (scipy zoom convention)."""
    import numpy as np

    n_in = arr.shape[0]
    coords = np.linspace(0, n_in - 1, n_out)
    lo = np.clip(np.floor(coords).astype(int), 0, n_in - 1)
    hi = np.clip(lo + 1, 0, n_in - 1)
    w = (coords - lo).astype(np.float32)[:, None, None]
    return (1 - w) * arr[lo] + w * arr[hi]


def main(argv=None):
    args = _parse(sys.argv[1:] if argv is None else argv)

    import numpy as np

    F = float(args.z_factor)
    if not (F >= 1):
        _fail(f"--z-factor must be >= 1 (got {args.z_factor})")
    if not (args.axial_sigma >= 0):
        _fail(f"--axial-sigma must be >= 0 (got {args.axial_sigma})")
    if not (args.seconds > 0):
        _fail(f"--seconds must be > 0 (got {args.seconds})")
    if args.until_plateau < 0 or not (0 <= args.min_delta < 1):
        _fail(f"--until-plateau must be >= 0 and --min-delta in [0, 1) (got {args.until_plateau}, {args.min_delta})")
    if not os.path.isfile(args.stack):
        _fail(f"input file not found: {args.stack}")
    stack = np.load(args.stack, allow_pickle=False)
    if stack.ndim != 3:
        _fail(f"expected a (Z, Y, X) stack, got shape {stack.shape}")
    if stack.shape[0] < 2:
        _fail(f"need at least 2 Z planes, got {stack.shape[0]}")
    if not np.issubdtype(stack.dtype, np.number) or not np.all(np.isfinite(stack)):
        _fail("stack must be numeric and finite")
    stack = stack.astype(np.float32, copy=False)
    Z, Y, X = stack.shape
    n_out = int(round((Z - 1) * F)) + 1

    # Lateral patch size: multiple of 16 (U-Net depth 2 needs 4; CSBDeep advises 8+), fitting
    # the stack after anisotropic_distortions crops X to a multiple of F (<= 20 % loss).
    m = min(Y, X)
    m_cropped = m - int(m % F) if F == int(F) else int(0.8 * m)
    P = min(args.patch_size, m_cropped)
    P -= P % 16
    if P < 16:
        _fail(f"lateral size {Y}x{X} too small for CSBDeep patches (need >= 16)")

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(args.seed)
    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)

    import csbdeep
    from csbdeep.data import RawData, create_patches
    from csbdeep.data.transform import anisotropic_distortions
    from csbdeep.models import Config, IsotropicCARE

    t_prep = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = RawData.from_arrays([stack, stack.swapaxes(1, 2).copy()], [stack, stack.swapaxes(1, 2).copy()],
                                  axes="ZYX")
        transform = anisotropic_distortions(
            subsample=F, psf=_gaussian_psf_x(args.axial_sigma), psf_axes="YX", subsample_axis="X",
        )
        try:
            Xp, Yp, axes = create_patches(raw, patch_size=(1, P, P), n_patches_per_image=args.n_patches,
                                          transforms=[transform], verbose=False)
        except ValueError:
            # CSBDeep's default foreground filter finds no region on small/sparse stacks: sample anywhere.
            Xp, Yp, axes = create_patches(raw, patch_size=(1, P, P), n_patches_per_image=args.n_patches,
                                          transforms=[transform], verbose=False, patch_filter=None)
    # (N, C, 1, P, P) with axes 'SCZYX' -> drop the singleton Z: (N, C, P, P), 'SCYX'
    z = axes.index("Z")
    Xp, Yp = np.take(Xp, 0, axis=z), np.take(Yp, 0, axis=z)
    axes = axes.replace("Z", "")
    # to channels-last 'SYXC' for CARE
    c = axes.index("C")
    Xp, Yp = np.moveaxis(Xp, c, -1), np.moveaxis(Yp, c, -1)
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(Xp))
    n_val = min(16, max(1, int(round(0.1 * len(Xp)))))  # one batch: keeps epoch-end cost small
    val, trn = perm[:n_val], perm[n_val:]
    prep_s = time.perf_counter() - t_prep

    config = Config("YXC", n_channel_in=1, n_channel_out=1,
                    train_steps_per_epoch=args.steps_per_epoch, train_epochs=100000)
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = IsotropicCARE(config, name="peer_isotropic", basedir=None)

    clock = time.perf_counter if args.clock == "wall" else time.process_time

    class _Budget(tf.keras.callbacks.Callback):
        steps = 0
        t0 = None  # set just before model.train(): Keras setup and graph tracing count

        def _log(self, what):
            print(f"[budget] {what} at {time.perf_counter() - t0:.1f} s wall", file=sys.stderr)

        def on_train_begin(self, logs=None):
            self._log("fit started")

        def on_test_begin(self, logs=None):
            self._log(f"validation started after {_Budget.steps} steps")

        def on_test_end(self, logs=None):
            self._log("validation ended")

        def on_train_batch_end(self, batch, logs=None):
            _Budget.steps += 1
            if _Budget.steps == 1:
                self._log("first step done")
            if clock() - _Budget.t0 >= args.seconds:
                self.model.stop_training = True

    class _Plateau(tf.keras.callbacks.Callback):
        """Convergence: stop after ``--until-plateau`` epochs without a relative val-loss gain of
        ``--min-delta``; the best-validation weights are restored however training ends."""

        # ``ref`` only moves on real progress, so a slow drift of sub-threshold gains still ends in a plateau;
        # ``best`` tracks the weights to keep.
        ref, best, best_epoch, wait, weights, history, stopped = math.inf, math.inf, -1, 0, None, [], "budget"

        def on_epoch_end(self, epoch, logs=None):
            v = float((logs or {}).get("val_loss", math.inf))
            _Plateau.history.append(round(v, 6))
            if v < _Plateau.best:
                _Plateau.best, _Plateau.best_epoch = v, epoch
                _Plateau.weights = self.model.get_weights()
            if v < _Plateau.ref * (1 - args.min_delta):
                _Plateau.ref, _Plateau.wait = v, 0
            else:
                _Plateau.wait += 1
                if _Plateau.wait >= args.until_plateau:
                    _Plateau.stopped = "plateau"
                    self.model.stop_training = True

        def on_train_end(self, logs=None):
            if _Plateau.weights is not None:
                self.model.set_weights(_Plateau.weights)

    model.prepare_for_training()
    model.callbacks.append(_Budget())
    if args.until_plateau:
        model.callbacks.append(_Plateau())
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    _Budget.t0 = clock()
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.train(Xp[trn], Yp[trn], validation_data=(Xp[val], Yp[val]),
                    epochs=config.train_epochs, steps_per_epoch=args.steps_per_epoch)
    train_s = time.perf_counter() - t0
    train_cpu_s = time.process_time() - cpu0

    t1 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        restored = model.predict(stack, axes="ZYX", factor=((Z - 1) * F + 1) / Z)
    predict_s = time.perf_counter() - t1
    restored = np.asarray(restored, dtype=np.float32)
    resampled = restored.shape[0] != n_out
    if resampled:
        restored = _resample_z(restored, n_out)
    if restored.shape != (n_out, Y, X):
        _fail(f"unexpected CSBDeep output shape {restored.shape}, expected {(n_out, Y, X)}")

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, f".{os.path.basename(args.out)}.{os.getpid()}.tmp.npy")
    np.save(tmp, restored)
    os.replace(tmp, args.out)

    print(json.dumps({
        "peer": "csbdeep-isotropic",
        "version": csbdeep.__version__,
        "tensorflow": tf.__version__,
        "train_s": round(train_s, 2),
        "steps": _Budget.steps,
        "train_cpu_s": round(train_cpu_s, 2),
        "clock": args.clock,
        "predict_s": round(predict_s, 2),
        "prep_s": round(prep_s, 2),
        "shape": list(restored.shape),
        "patch": P,
        "n_train_patches": int(len(trn)),
        "threads": args.threads,
        "resampled": bool(resampled),
        **({"until_plateau_epochs": args.until_plateau, "min_delta": args.min_delta, "stopped_by": _Plateau.stopped,
            "epochs": len(_Plateau.history), "best_epoch": _Plateau.best_epoch + 1, "best_val_loss": _Plateau.best,
            "val_loss": _Plateau.history} if args.until_plateau else {}),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
