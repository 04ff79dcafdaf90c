"""Geometry: registration, stitching and fusion, stabilization against a template, optical flow.

Modules: :mod:`~fluorecon.geometry.transforms` (transform JSON, applying transforms),
:mod:`~fluorecon.geometry.pairwise` (phase correlation with confidence, rigid/affine refinement),
:mod:`~fluorecon.geometry.deformable` (learned voxelmorph-style deformable registration),
:mod:`~fluorecon.geometry.layout` (grids, Fiji ``TileConfiguration.txt``),
:mod:`~fluorecon.geometry.stitch` (pairwise offsets, global optimisation, blending fusion, out of core),
:mod:`~fluorecon.geometry.flow` (TV-L1 / iLK baselines, CNN optical flow),
:mod:`~fluorecon.geometry.stabilize` (register a time-lapse to a template).
See docs/geometry.md.
"""
