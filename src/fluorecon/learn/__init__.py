"""The learned restoration engine: U-Nets, training schemes, tiled prediction and model bundles.

Modules: ``nets`` (UNet), ``patches`` (normalisation, sampling, pairs), ``schemes`` (care, n2n, n2v,
n2v2, structn2v, nb2nb), ``train`` (TrainConfig, train), ``predict`` (tiled prediction), ``bundle``
(Bundle), ``single_image`` (denoise_single_image). Import the submodules directly; this package
imports nothing heavy on its own.
"""
