"""``fluorecon train``: train a restoration network (CARE, Noise2Noise, self-supervised) into a bundle."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from fluorecon._atomic import check_output
from fluorecon.cli.common import EXIT_OK, emit_json, expand_inputs, handle_errors
from fluorecon.cli.options import (
    AxesOpt,
    DeviceOpt,
    InputArg,
    JsonOpt,
    OptionalBudgetOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    SeedOpt,
)
from fluorecon.io import read_image
from fluorecon.learn.patches import to_internal

EPILOG = """Examples:

  fluorecon train noisy/ --target gt/ --scheme care -o care_model --steps 4000

  fluorecon train frames_a/ --target frames_b/ --scheme n2n -o n2n_model --budget 600

  fluorecon train stack.tif --axes ZYX --scheme n2v2 -o n2v_model --budget 300

  fluorecon train new_images/ --target new_gt/ --scheme care --init-from pretrained_model -o tuned --steps 500

  fluorecon train noisy/ --scheme n2v -o m --steps 2000 --deterministic     (then --resume after an interruption)

Pairs are matched by file name (input folder vs --target folder). Self-supervised schemes (n2v, n2v2,
structn2v, nb2nb) need only the noisy images. The bundle folder holds safetensors weights and a
bundle.json with the normaliser, the config and the provenance (data hashes, seed, versions, curves).
"""

SchemeOpt = Annotated[str, typer.Option("--scheme", help="care | n2n | n2v | n2v2 | structn2v | nb2nb")]
TargetOpt = Annotated[Path | None, typer.Option("--target", help="Folder of targets with the same file names (care: clean; n2n: second noisy frames).")]
StepsOpt = Annotated[int | None, typer.Option("--steps", help="Number of training steps (default 2000 unless --budget is given).")]
PatchOpt = Annotated[int, typer.Option("--patch-size", help="Patch size in pixels (per spatial axis).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Patches per step.")]
DetOpt = Annotated[bool, typer.Option("--deterministic", help="Bit-identical results on CPU (slower).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its checkpoint.")]
InitOpt = Annotated[Path | None, typer.Option("--init-from", help="Fine-tune: start from this bundle's weights.")]
CkptOpt = Annotated[Path | None, typer.Option("--checkpoint-dir", help="Checkpoint folder (default: <output>.checkpoint).")]
CkptEveryOpt = Annotated[int, typer.Option("--checkpoint-every", help="Save a checkpoint every N steps (0 = never).")]
LrOpt = Annotated[float, typer.Option("--lr", help="Peak learning rate (cosine schedule with warm-up).")]
DepthOpt = Annotated[int, typer.Option("--depth", help="U-Net depth (down-sampling steps).")]
WidthOpt = Annotated[int, typer.Option("--width", help="U-Net channels at the top level.")]
HeadOpt = Annotated[str | None, typer.Option("--head", help="Probabilistic head: laplace | gaussian (uncertainty maps).")]
Dim3Opt = Annotated[bool, typer.Option("--3d", help="Train a 3D network on ZYX data (default: 2D over planes).")]
ValOpt = Annotated[float, typer.Option("--val-fraction", help="Fraction of the data held out for validation.")]
PatienceOpt = Annotated[int | None, typer.Option("--patience", help="Early stopping after N validation checks without improvement.")]
MembersOpt = Annotated[int, typer.Option("--members", help="Train an ensemble of N members (different seeds).")]


def _read_all(spec: str, axes: str | None):

    files = expand_inputs(spec)
    arrays, used = [], axes
    for f in files:
        im = read_image(f, axes=axes)
        arrays.append(im.data)
        used = used or im.axes
    return arrays, files, used


def register(app: typer.Typer) -> None:
    @app.command("train", epilog=EPILOG)
    def train_cmd(
        input: InputArg,
        output: OutputOpt,
        scheme: SchemeOpt = "n2v",
        target: TargetOpt = None,
        axes: AxesOpt = None,
        budget: OptionalBudgetOpt = None,
        steps: StepsOpt = None,
        patch_size: PatchOpt = 64,
        batch_size: BatchOpt = 16,
        lr: LrOpt = 2e-3,
        depth: DepthOpt = 2,
        width: WidthOpt = 32,
        head: HeadOpt = None,
        three_d: Dim3Opt = False,
        val_fraction: ValOpt = 0.1,
        patience: PatienceOpt = None,
        members: MembersOpt = 1,
        seed: SeedOpt = 0,
        deterministic: DetOpt = False,
        resume: ResumeOpt = False,
        init_from: InitOpt = None,
        checkpoint_dir: CkptOpt = None,
        checkpoint_every: CkptEveryOpt = 500,
        device: DeviceOpt = "auto",
        overwrite: OverwriteOpt = False,
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Train a network and write a model bundle folder (-o)."""
        with handle_errors():
            from fluorecon.errors import FluoreconError
            from fluorecon.learn.bundle import MAX_MEMBERS, Bundle
            from fluorecon.learn.patches import load_pairs
            from fluorecon.learn.schemes import SCHEMES, SUPERVISED
            from fluorecon.learn.train import TrainConfig, train

            check_output(output, overwrite=overwrite, kind="dir", label="bundle")
            if scheme not in SCHEMES:
                raise FluoreconError(f"unknown --scheme {scheme!r}", hint=f"use one of {', '.join(SCHEMES)}")
            if not 1 <= members <= MAX_MEMBERS:
                raise FluoreconError(f"--members must be between 1 and {MAX_MEMBERS}, got {members}",
                                     hint="e.g. --members 5 for an ensemble")
            if scheme in SUPERVISED:
                if target is None:
                    raise FluoreconError(f"--scheme {scheme} needs --target (a folder of targets with matching names)",
                                         hint="e.g. fluorecon train noisy/ --target gt/ --scheme care -o model")
                xs, ys, files, used_axes = load_pairs(input, target, axes)
            else:
                if target is not None:
                    raise FluoreconError(f"--scheme {scheme} is self-supervised and takes no --target",
                                         hint="use --scheme care or n2n for pairs")
                xs, files, used_axes = _read_all(input, axes)
                ys = None
            dim = 3 if three_d else 2
            ckpt = checkpoint_dir or Path(str(output) + ".checkpoint")
            model = {"depth": depth, "width": width, "head": head}
            cfg = dict(scheme=scheme, axes=used_axes, steps=steps if (steps is not None or budget is not None) else 2000, budget_s=budget,
                       patch_size=[patch_size] * dim if dim == 3 else patch_size, dim=dim, batch_size=batch_size,
                       lr=lr, model=model, val_fraction=val_fraction, patience=patience, seed=seed,
                       deterministic=deterministic, resume=resume, checkpoint_dir=str(ckpt),
                       checkpoint_every=checkpoint_every or None, device=device.value if hasattr(device, "value") else device,
                       progress=not quiet)
            bundles = []
            for k in range(members):
                c = TrainConfig(**{**cfg, "seed": seed + k,
                                   "checkpoint_dir": str(ckpt) + (f"-{k}" if members > 1 else "")})
                bundles.append(train(c, xs, ys, axes=used_axes, data_files=files, init_from=init_from))
            b = bundles[0]
            if members > 1:
                b = Bundle([x.model for x in bundles], b.normalizer, config=b.config, provenance=b.provenance,
                           training_stats=b.training_stats, forward=b.forward)
                b.provenance["member_seeds"] = [seed + k for k in range(members)]
            b.provenance["command"] = "fluorecon " + " ".join(shlex.quote(a) for a in sys.argv[1:])
            crop = _first_crop(xs[0], used_axes, dim)
            sp_axes = "ZYX" if dim == 3 else "YX"
            b.make_test_tensors(crop, axes=("C" + sp_axes) if crop.ndim > dim else sp_axes)
            out = b.save(output)
            summary = {"output": str(out), "scheme": scheme, "steps": b.provenance["steps"],
                       "wall_s": b.provenance["wall_s"], "stop_reason": b.provenance["stop_reason"],
                       "members": members}
            if json_out:
                emit_json(summary)
            elif not quiet:
                typer.echo(f"wrote bundle {out} ({b.provenance['steps']} steps, {b.provenance['wall_s']:.1f} s, "
                           f"{b.provenance['stop_reason']})", err=True)
        raise typer.Exit(EXIT_OK)


def _first_crop(x, axes: str, dim: int):
    """A single 2D (or 3D) plane of the first training image, for the bundle's test tensors."""
    import numpy as np


    s = to_internal(np.asarray(x, np.float32), axes, dim)[0]
    return s if s.shape[0] > 1 else s[0]
