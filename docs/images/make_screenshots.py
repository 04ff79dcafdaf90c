"""Regenerate the screenshots in docs/images (napari plugin, HTML report).

Run from the repository root under a display (or Xvfb)::

    xvfb-run -a .venv/bin/python docs/images/make_screenshots.py [DEMO_REPORT.html]

The report screenshot is taken with headless Chromium from a demo report (default
``fluorecon_demo/report.html``; run ``make demo`` first).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def napari_screenshot(dest: Path) -> None:
    import numpy as np
    from napari.settings import get_settings
    from qtpy.QtWidgets import QApplication

    import napari
    from fluorecon.napari._widgets import DenoiseWidget, LearnWidget, TrustWidget

    get_settings().application.gui_notification_level = "none"  # no toasts over the canvas
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1800, 1000)
    viewer.open_sample("fluorecon", "widefield-2d")
    obs = viewer.layers["2D widefield (observed)"]
    w = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(w, name="fluorecon: Denoise", area="right")
    t = TrustWidget(viewer)
    viewer.window.add_dock_widget(t, name="fluorecon: Trust maps", area="right")
    w.layer_w.value = obs
    w.method.value = "nlm"
    w.run()
    app = QApplication.instance()
    while w.worker is not None:
        app.processEvents()
    den = viewer.layers[-1]
    t.reset_choices()
    t.layer_w.value = obs
    t.prediction_w.value = den
    t.use_shift.value = False
    t.run()
    while t.worker is not None:
        app.processEvents()
    t.prediction_w.value = den  # adding the map layers refreshed the choices
    # Train / predict: a short self-supervised training, to show the live loss curve and the export button
    lw = LearnWidget(viewer)
    viewer.window.add_dock_widget(lw, name="fluorecon: Train / predict", area="right")
    lw.layer_w.value = obs
    lw.budget.value = 8.0
    lw.run()
    while lw.worker is not None:
        app.processEvents()
    for layer in list(viewer.layers):
        if layer.name.endswith("(self-supervised)"):
            viewer.layers.remove(layer)
    cons = viewer.layers[f"{den.name} consistency"]
    for layer in viewer.layers:
        layer.visible = layer in (obs, den, cons)
    cons.blending = "translucent"

    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid
    grid.enabled = True
    viewer.reset_view()
    for _ in range(20):
        app.processEvents()
    t.prediction_w.value = den
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    for _ in range(10):
        app.processEvents()
    img = viewer.screenshot(canvas_only=False, flash=False)
    import imageio.v3 as iio

    iio.imwrite(dest, np.asarray(img))
    viewer.close()


def report_screenshot(report: Path, dest: Path) -> None:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    with tempfile.TemporaryDirectory() as td:
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                        f"--user-data-dir={td}", "--virtual-time-budget=5000", "--window-size=1280,2200",
                        f"--screenshot={dest}", report.resolve().as_uri()], check=True, capture_output=True)


if __name__ == "__main__":
    report = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("fluorecon_demo/report.html")
    if report.exists():
        report_screenshot(report, HERE / "report.png")
        print(HERE / "report.png")
    napari_screenshot(HERE / "napari.png")
    print(HERE / "napari.png")
