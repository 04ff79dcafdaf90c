"""CSBDeep CARE as the peer of the learned super-resolution benchmark (``benchmarks/learned_sr.py``).

Run with the *peer* venv's interpreter (see ``csbdeep_setup.sh``), never with fluorecon's::

    PEER=$(benchmarks/peers/csbdeep_setup.sh)
    $PEER/bin/python benchmarks/peers/csbdeep_care_sr.py DATA.npz OUT.npz --cpu-seconds 600 --seed 0

Input ``DATA.npz`` (plain arrays, read with ``allow_pickle=False``): ``train_x`` (N, C, P, P) and
``train_y`` (N, P, P) training patches already normalised by the benchmark (the same fields and
normalisation our U-Nets train on), and ``test_0``, ``test_1``, ... (C, Y, X) images to predict.

Method: ``csbdeep.models.CARE`` with CSBDeep's default 2D ``Config`` (U-Net depth 2, 32 first filters,
kernel 5, batch 16, Adam lr 4e-4, MAE loss, ReduceLROnPlateau, residual when input and output have one
channel each) except ``train_steps_per_epoch`` (``--steps-per-epoch``) and an open-ended number of epochs:
a Keras callback stops training once the process has used ``--cpu-seconds`` of CPU time since
``model.train`` was called. 10 % of the patches (at most 16) are held out for validation. The *last*
weights are used (no ``basedir``: nothing is written to disk). Prediction: ``model.predict(img, 'YXC',
normalizer=None)`` (the inputs are normalised already; the output is in the targets' units).

Output ``OUT.npz``: ``pred_0``, ``pred_1``, ... (Y, X) float32; one JSON line on stdout with versions,
steps, CPU and wall seconds. Exit status 2 with a message on stderr for bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _fail(msg: str) -> None:
    print(f"csbdeep_care_sr: error: {msg}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="input .npz (train_x, train_y, test_0, ...)")
    p.add_argument("out", help="output .npz (pred_0, ...)")
    p.add_argument("--cpu-seconds", type=float, default=600.0, help="training budget in process CPU time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads")
    p.add_argument("--steps-per-epoch", type=int, default=50)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    import numpy as np

    if not os.path.isfile(args.data):
        _fail(f"input file not found: {args.data}")
    if not args.cpu_seconds > 0:
        _fail(f"--cpu-seconds must be > 0 (got {args.cpu_seconds})")
    with np.load(args.data, allow_pickle=False) as d:
        tx, ty = d["train_x"].astype(np.float32), d["train_y"].astype(np.float32)
        tests = [d[f"test_{i}"].astype(np.float32) for i in range(sum(k.startswith("test_") for k in d.files))]
    if tx.ndim != 4 or ty.shape != (tx.shape[0], *tx.shape[2:]):
        _fail(f"train_x must be (N, C, P, P) and train_y (N, P, P), got {tx.shape} and {ty.shape}")
    if any(t.ndim != 3 or t.shape[0] != tx.shape[1] for t in tests):
        _fail(f"test images must be (C, Y, X) with C = {tx.shape[1]}")

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(args.seed)
    tf.get_logger().setLevel("ERROR")

    import csbdeep
    from csbdeep.models import CARE, Config

    xs = np.moveaxis(tx, 1, -1)                 # 'SYXC'
    ys = ty[..., None]
    perm = np.random.default_rng(args.seed).permutation(len(xs))
    n_val = min(16, max(1, round(0.1 * len(xs))))
    val, trn = perm[:n_val], perm[n_val:]
    config = Config("YXC", n_channel_in=tx.shape[1], n_channel_out=1, train_steps_per_epoch=args.steps_per_epoch,
                    train_epochs=100000)
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CARE(config, name="peer_care_sr", basedir=None)

    class _Budget(tf.keras.callbacks.Callback):
        steps = 0
        c0 = 0.0

        def on_train_batch_end(self, batch, logs=None):
            _Budget.steps += 1
            if time.process_time() - _Budget.c0 >= args.cpu_seconds:
                self.model.stop_training = True

    model.prepare_for_training()
    model.callbacks.append(_Budget())
    t0 = time.perf_counter()
    _Budget.c0 = time.process_time()
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = model.train(xs[trn], ys[trn], validation_data=(xs[val], ys[val]), epochs=config.train_epochs,
                           steps_per_epoch=args.steps_per_epoch)
    train_cpu = time.process_time() - _Budget.c0
    train_s = time.perf_counter() - t0
    preds = {}
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, t in enumerate(tests):
            preds[f"pred_{i}"] = np.asarray(model.predict(np.moveaxis(t, 0, -1), "YXC", normalizer=None),
                                            np.float32)[..., 0]
    np.savez(args.out, **preds)
    val_loss = hist.history.get("val_loss", [float("nan")])
    print(json.dumps({"peer": "csbdeep-care", "version": csbdeep.__version__, "tensorflow": tf.__version__,
                      "steps": _Budget.steps, "batch": config.train_batch_size, "train_cpu_s": round(train_cpu, 1),
                      "train_s": round(train_s, 1), "patches": int(len(trn)), "val_loss_last": float(val_loss[-1]),
                      "unet": {"depth": config.unet_n_depth, "first": config.unet_n_first,
                               "kernel": config.unet_kern_size, "residual": bool(config.unet_residual)}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
