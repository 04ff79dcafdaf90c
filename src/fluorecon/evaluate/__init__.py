"""Evaluation: image-quality metrics with and without ground truth (see ``fluorecon.evaluate.metrics``)."""

from fluorecon.evaluate.metrics import (
    FRCResult,
    bootstrap_ci,
    checkerboard_split,
    frc,
    nrmse,
    psnr,
    ri_psnr,
    single_image_frc,
    ssim,
    summary_table,
)

__all__ = ["FRCResult", "bootstrap_ci", "checkerboard_split", "frc", "nrmse", "psnr", "ri_psnr",
           "single_image_frc", "ssim", "summary_table"]
