"""Sample data: a widefield acquisition simulated by fluorecon's forward model (nothing downloaded)."""

from __future__ import annotations

from typing import Any

from fluorecon.physics.simulate import default_acquisition


def _layers(acq: dict[str, Any], label: str) -> list[tuple]:
    scale = tuple(acq["voxel_size"])
    meta = {"fluorecon": {"simulation": acq["params"]}, "fluorecon_psf": acq["psf"]}
    return [
        (acq["truth"], {"name": f"{label} specimen (truth)", "scale": scale, "visible": False, "colormap": "gray",
                        "metadata": meta}, "image"),
        (acq["observed"], {"name": f"{label} widefield (observed)", "scale": scale, "colormap": "gray",
                           "metadata": meta}, "image"),
    ]


def sample_2d() -> list[tuple]:
    """A 2D widefield image (filaments, puncta, nuclei) and its ground truth; scale in µm."""
    return _layers(default_acquisition(quick=False, seed=0), "2D")


def sample_3d() -> list[tuple]:
    """A small 3D widefield stack and its ground truth; scale in µm (z, y, x)."""
    return _layers(default_acquisition(seed=0, shape=(24, 128, 128)), "3D")
