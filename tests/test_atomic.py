"""`fluorecon._atomic`: never delete what fluorecon did not write; one output rule; umask; no stale temps."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from fluorecon._atomic import atomic_path, check_output, is_ours, sweep_stale_temps
from fluorecon.errors import FluoreconError
from fluorecon.io import write_image


def test_atomic_file_over_a_folder_never_deletes_it(tmp_path):  # issue 11 item 1
    folder = tmp_path / "results.tif"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    with pytest.raises(FluoreconError, match="is a folder"):
        with atomic_path(folder) as tmp:
            tmp.write_text("x")
    assert (folder / "precious.txt").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_atomic_dir_refuses_a_foreign_folder(tmp_path):  # issue 11 item 1 (train -o .)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FluoreconError, match="did not write"):
        with atomic_path(tmp_path, is_dir=True) as tmp:
            (tmp / "bundle.json").write_text("{}")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_atomic_dir_replaces_our_own_bundle(tmp_path):
    b = tmp_path / "model"
    b.mkdir()
    (b / "bundle.json").write_text("{}")
    (b / "old.safetensors").write_text("old")
    with atomic_path(b, is_dir=True) as tmp:
        (tmp / "bundle.json").write_text('{"new": 1}')
    assert (b / "bundle.json").read_text() == '{"new": 1}' and not (b / "old.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_check_output_rules(tmp_path):  # issue 11 items 1-3
    f = tmp_path / "a.tif"
    f.write_bytes(b"x")
    with pytest.raises(FluoreconError, match="already exists.*--overwrite"):
        check_output(f, overwrite=False)
    assert check_output(f, overwrite=True) == f
    with pytest.raises(FluoreconError, match="is a folder"):
        check_output(tmp_path, overwrite=True, kind="file")
    with pytest.raises(FluoreconError, match="unknown extension"):
        check_output(tmp_path / "a.bmp", suffixes=(".tif",))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "x.txt").write_text("x")
    with pytest.raises(FluoreconError, match="did not write"):
        check_output(tmp_path / "mine", overwrite=True, kind="dir")
    with pytest.raises(FluoreconError, match="is a file"):
        check_output(f, overwrite=True, kind="dir")
    store = tmp_path / "s.ome.zarr"
    write_image(store, np.zeros((8, 8), np.float32), axes="YX")
    assert is_ours(store)
    with pytest.raises(FluoreconError, match="already exists"):
        check_output(store, kind="store")
    assert check_output(store, kind="store", resumable=True) == store


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_check_output_unwritable_folder_fails_fast(tmp_path):  # issue 11 item 3
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(FluoreconError, match="not writable.*Fix"):
            check_output(ro / "sub" / "out.tif")
    finally:
        ro.chmod(0o700)


def test_stale_temps_of_dead_runs_are_swept(tmp_path):  # issue 11 item 3
    dead = tmp_path / ".out.tif.tmp-999999999-abcd1234.tif"
    dead.write_bytes(b"half")
    alive = tmp_path / f".out.tif.tmp-{os.getpid()}-abcd1234.tif"
    alive.write_bytes(b"in flight")
    other = tmp_path / ".out.tif.notes"
    other.write_text("not ours")
    write_image(tmp_path / "out.tif", np.ones((4, 4), np.float32))
    assert not dead.exists() and alive.exists() and other.exists()
    assert sweep_stale_temps(tmp_path / "out.tif") == []


def test_outputs_honour_the_umask(tmp_path):  # issue 11 item 13
    old = os.umask(0o022)
    try:
        write_image(tmp_path / "a.tif", np.ones((4, 4), np.float32))
        with atomic_path(tmp_path / "b", is_dir=True) as tmp:
            (tmp / "bundle.json").write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.tif").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o755


def test_check_output_unwritable_folder_message(tmp_path, monkeypatch):  # item 3, also when run as root
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(FluoreconError, match=r"folder .* is not writable\. Fix: choose an output"):
        check_output(tmp_path / "new" / "out.tif")
