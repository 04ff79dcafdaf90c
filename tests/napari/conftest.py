"""napari tests never read or write the user's napari settings (the fluorecon widgets record a reader
preference there): a private settings file for the session, set before napari.settings is imported."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

if "napari.settings" not in sys.modules:
    os.environ.setdefault("NAPARI_CONFIG", str(Path(tempfile.mkdtemp(prefix="fluorecon-napari-")) / "settings.yaml"))
