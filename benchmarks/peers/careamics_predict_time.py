"""Peer timing: careamics N2V prediction of one 2D image, as users call it (``CAREamist.predict``).

Runs in careamics' own venv (``~/.cache/peer-careamics``). Trains careamics' default N2V (UNet depth 2,
32 channels, patch 64, batch 16) for ``--steps`` steps on the image (speed only: the weights do not
matter for the timing), then times ``predict(image, axes="YX")`` ``--repeats`` times on 1 process
with ``--threads`` torch threads. Prints one JSON line: every predict wall/CPU time (the first call
includes careamics' per-call set-up, which a user pays on every call too).

Usage: python careamics_predict_time.py IMAGE.npy [--steps 20] [--repeats 3] [--threads 2]
"""
import argparse
import json
import time

import numpy as np
import torch
from careamics import CAREamist
from careamics.config import create_n2v_config
from pytorch_lightning.callbacks import Callback

ap = argparse.ArgumentParser()
ap.add_argument("image")
ap.add_argument("--steps", type=int, default=20)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
np.random.seed(a.seed)  # noqa: NPY002  (seeds any use of the global numpy RNG inside careamics)
x = np.load(a.image).astype(np.float32)


class Stop(Callback):
    def __init__(self, n):
        self.n, self.k = n, 0

    def on_train_batch_end(self, trainer, *_a, **_k):
        self.k += 1
        if self.k >= self.n:
            trainer.should_stop = True


cfg = create_n2v_config(experiment_name="peer", data_type="array", axes="YX", patch_size=[64, 64], batch_size=16,
                        num_epochs=1000)
cam = CAREamist(cfg, work_dir="/tmp/peer_careamics_predict_work", callbacks=[Stop(a.steps)], enable_progress_bar=False)
cam.train(train_data=x[:256, :256])
walls, cpus = [], []
for _ in range(a.repeats):
    t0, c0 = time.perf_counter(), time.process_time()
    p = cam.predict(x, axes="YX")
    walls.append(time.perf_counter() - t0)
    cpus.append(time.process_time() - c0)
p = np.squeeze(p[0] if isinstance(p, (list, tuple)) else p)
nparam = sum(q.numel() for q in cam.model.parameters())
print(json.dumps({"peer": "careamics-n2v predict", "shape": list(p.shape), "threads": a.threads, "wall_s": walls,
                  "cpu_s": cpus, "params": int(nparam), "torch": torch.__version__}))
