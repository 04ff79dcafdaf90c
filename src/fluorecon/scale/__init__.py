"""Out-of-core processing on dask: lazy TIFF/OME-Zarr input, blockwise operations with halos,
resumable OME-Zarr output with pyramids, threads / processes / distributed schedulers.

Examples
--------
>>> from fluorecon.scale import open_lazy, run_out_of_core, map_blocks_halo, write_ome_zarr  # doctest: +SKIP
"""

from fluorecon.scale.blockwise import BlockOp, map_blocks_halo, run_blockwise
from fluorecon.scale.bridge import run_out_of_core, wants_out_of_core
from fluorecon.scale.lazy import LazyImage, open_lazy
from fluorecon.scale.ome_zarr_out import downsample_mean, write_ome_zarr

__all__ = ["BlockOp", "LazyImage", "downsample_mean", "map_blocks_halo", "open_lazy", "run_blockwise",
           "run_out_of_core", "wants_out_of_core", "write_ome_zarr"]
