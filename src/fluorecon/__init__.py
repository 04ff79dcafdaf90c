"""fluorecon: fluorescence image reconstruction.

The package follows the review's Box 2: a forward model ``f`` (``fluorecon.physics``) maps a true
image to what the microscope records; a pseudo-inverse ``g`` — classical (``fluorecon.classical``) or
learned (``fluorecon.learn``) — reconstructs it; the trust layer (``fluorecon.trust``) checks the
result against ``f`` and reports uncertainty. Task modules (``fluorecon.tasks``) compose these.
"""

from fluorecon.errors import FluoreconError, FluoreconWarning

__version__ = "0.1.0"
__all__ = ["FluoreconError", "FluoreconWarning", "__version__"]
