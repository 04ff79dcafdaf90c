"""Atomic file and directory writes, and the one rule for output paths.

Writes go to a temporary sibling that is renamed onto the destination only on success, so an
interrupted run never leaves a half-written file that looks complete. Temporary names are
recognisable (``.<name>.tmp-<pid>-<random><suffix>``): a later write to the same destination removes
the ones left behind by runs that are no longer alive.

:func:`check_output` is the single rule every command applies to its output *before* computing:
a folder where a file is expected is an error, an existing output is kept unless ``overwrite``, an
existing folder is replaced only when fluorecon wrote it, and the parent folder must be writable.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from fluorecon.errors import FluoreconError

__all__ = ["atomic_path", "check_output", "is_ours", "sweep_stale_temps", "umask"]

_TMP_RE = re.compile(r"\.tmp-(\d+)-[a-z0-9_]{8}(\..*)?$")


def umask() -> int:
    """The process umask (read without changing it where the platform allows).

    Examples
    --------
    >>> 0 <= umask() <= 0o777
    True
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def sweep_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove temporary siblings of ``path`` left by fluorecon runs that are no longer alive.

    Only names of fluorecon's own pattern (``.<name>.tmp-<pid>-<random><suffix>``) whose process is
    gone are removed; nothing else is touched.

    Parameters
    ----------
    path : path-like
        The final destination whose leftovers to remove.

    Returns
    -------
    list of Path
        What was removed.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / ".a.tif.tmp-999999999-abcd1234.tif").write_text("x")
    >>> [p.name for p in sweep_stale_temps(d / "a.tif")]
    ['.a.tif.tmp-999999999-abcd1234.tif']
    """
    final = Path(path)
    parent = final.parent
    if not parent.is_dir():
        return []
    prefix = f".{final.name}"
    removed = []
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    for name in names:
        if not name.startswith(prefix):
            continue
        m = _TMP_RE.match(name[len(prefix):])
        if m is None or _pid_alive(int(m.group(1))):
            continue
        p = parent / name
        try:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def is_ours(path: str | os.PathLike) -> bool:
    """True when the folder ``path`` was written by fluorecon (a bundle or one of our zarr stores).

    A bundle holds ``bundle.json`` (a training checkpoint ``checkpoint.json``); a zarr store has a ``fluorecon`` or ``fluorecon_writer`` key in
    its group attributes (``zarr.json`` or ``.zattrs``). An empty folder counts as ours (nothing to
    lose).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> is_ours(d)
    True
    >>> _ = (d / "notes.txt").write_text("mine")
    >>> is_ours(d)
    False
    """
    p = Path(path)
    if not p.is_dir() or p.is_symlink():
        return False
    if not any(p.iterdir()):
        return True
    if (p / "bundle.json").is_file() or (p / "checkpoint.json").is_file():
        return True
    for meta in ("zarr.json", ".zattrs"):
        f = p / meta
        if f.is_file():
            try:
                d = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            attrs = d.get("attributes", d) if isinstance(d, dict) else {}
            if isinstance(attrs, dict) and ("fluorecon" in attrs or "fluorecon_writer" in attrs):
                return True
    return False


def _writable_parent(final: Path, label: str) -> None:
    """The first existing ancestor of ``final`` must be a writable folder."""
    anc = final.parent
    while not anc.exists():
        if anc.parent == anc:
            break
        anc = anc.parent
    if anc.exists() and not anc.is_dir():
        raise FluoreconError(f"cannot write {label} {final}: {anc} is a file, not a folder",
                             hint="choose an output inside an existing folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise FluoreconError(f"cannot write {label} {final}: folder {anc} is not writable",
                             hint="choose an output in a folder you can write to (check its permissions)")


def check_output(path: str | os.PathLike, *, overwrite: bool = False,
                 kind: Literal["file", "dir", "store"] = "file", suffixes: Sequence[str] | None = None,
                 resumable: bool = False, label: str = "output") -> Path:
    """Check an output path before any computation; raise :class:`FluoreconError` if it may not be written.

    The one rule for every output kind: a path of the wrong kind (a folder where a file is expected,
    or a file where a folder is) is always refused; an existing output is refused unless
    ``overwrite``; an existing non-empty folder is replaced only when fluorecon wrote it
    (:func:`is_ours`); the first existing parent folder must be writable; the suffix must be one of
    ``suffixes`` when given.

    Parameters
    ----------
    path : path-like
        The output.
    overwrite : bool
        Allow replacing an existing output (CLI ``--overwrite``).
    kind : {"file", "dir", "store"}
        A file; a folder such as a model bundle; an OME-Zarr store (folder).
    suffixes : sequence of str, optional
        Accepted name endings (case-insensitive), e.g. ``(".tif", ".npy")``.
    resumable : bool
        ``kind="store"`` only: an existing store of ours is accepted without ``overwrite`` (the
        caller resumes it or refuses it by fingerprint).
    label : str
        How messages name the path (``"output"``, ``"bundle"``, ...).

    Returns
    -------
    Path

    Raises
    ------
    FluoreconError
        With a ``Fix:`` naming the CLI option to use.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> check_output(d / "out.tif", suffixes=(".tif",)).name
    'out.tif'
    >>> check_output(d, kind="file")
    Traceback (most recent call last):
    ...
    fluorecon.errors.FluoreconError: ... is a folder, but a file is expected here. Fix: ...
    """
    final = Path(path)
    if kind not in ("file", "dir", "store"):
        raise FluoreconError(f"unknown output kind {kind!r}", hint="use 'file', 'dir' or 'store'")
    if str(final) in ("", ".") and kind == "file":
        raise FluoreconError("the output is the current folder, but a file is expected here", hint="give -o a file name")
    if suffixes:
        name = final.name.lower()
        if not any(name.endswith(s.lower()) for s in suffixes):
            raise FluoreconError(f"{label} {final}: unknown extension {final.suffix or '(none)'!r}",
                                 hint=f"use a name ending in {', '.join(suffixes)}")
    if final.exists() or final.is_symlink():
        if kind == "file":
            if final.is_dir():
                raise FluoreconError(f"{label} {final} is a folder, but a file is expected here",
                                     hint="give a file name (nothing in that folder is touched)")
            if not overwrite:
                raise FluoreconError(f"{label} {final} already exists",
                                     hint="pass --overwrite to replace it, or choose another name")
        else:
            if not final.is_dir():
                raise FluoreconError(f"{label} {final} is a file, but a folder is expected here",
                                     hint="choose another name (the file is not touched)")
            empty = not any(final.iterdir())
            if not empty:
                ours = is_ours(final)
                if not ours:
                    raise FluoreconError(f"{label} {final} is a folder that fluorecon did not write",
                                         hint="choose a new or empty folder; fluorecon never replaces other folders")
                if not overwrite and not (resumable and kind == "store"):
                    raise FluoreconError(f"{label} {final} already exists",
                                         hint="pass --overwrite to replace it, or choose another name")
    _writable_parent(final, label)
    return final


def _chmod_umask(p: Path, is_dir: bool) -> None:
    with contextlib.suppress(OSError):
        os.chmod(p, (0o777 if is_dir else 0o666) & ~umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    An existing *file* at ``path`` is replaced (check first with :func:`check_output`). A folder is
    never deleted unless it is fluorecon's own (:func:`is_ours`) and ``is_dir``; a folder where a
    file is expected raises :class:`FluoreconError` before anything is written. Permissions follow
    the umask (not ``mkstemp``'s 0600). Leftover temporaries of dead runs are removed first.

    Parameters
    ----------
    path : path-like
        Final destination (file or directory).
    is_dir : bool
        Create a temporary directory instead of reserving a file name (for zarr stores, bundles).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("hi")
    >>> (d / "a.txt").read_text()
    'hi'
    """
    final = Path(path)
    if final.exists() or final.is_symlink():
        if not is_dir and final.is_dir():
            raise FluoreconError(f"{final} is a folder, but a file is expected here",
                                 hint="give a file name (nothing in that folder is touched)")
        if is_dir and not final.is_dir():
            raise FluoreconError(f"{final} is a file, but a folder is expected here", hint="choose another name")
        if is_dir and not is_ours(final):
            raise FluoreconError(f"{final} is a folder that fluorecon did not write",
                                 hint="choose a new or empty folder; fluorecon never replaces other folders")
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(final)
    # The suffix is kept so that libraries choosing a format by extension still work on the temp path.
    prefix = f".{final.name}.tmp-{os.getpid()}-"
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=final.suffix, dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=final.suffix, dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    _chmod_umask(tmp, is_dir)
    try:
        yield tmp
        if is_dir:
            old = None
            if final.exists():
                if not is_ours(final):  # something appeared meanwhile: never delete it
                    raise FluoreconError(f"{final} is a folder that fluorecon did not write",
                                         hint="choose a new or empty folder")
                old = Path(tempfile.mkdtemp(prefix=prefix, suffix=".old", dir=final.parent))
                os.replace(final, old / "x")
            os.replace(tmp, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            if final.is_dir():
                raise FluoreconError(f"{final} is a folder, but a file is expected here",
                                     hint="give a file name (nothing in that folder is touched)")
            os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
