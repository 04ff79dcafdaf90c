"""Helpers every command uses: error handling, JSON output, batch expansion.

Exit codes: 0 success; 1 a processing failure (e.g. one file of a batch failed); 2 bad input or bad
parameters (missing file, invalid PSF, ...). Errors are printed as one line on stderr, no traceback.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from fluorecon._atomic import check_output
from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.io import IMAGE_FILE_SUFFIXES, WRITE_SUFFIXES, read_image
from fluorecon.utils import to_json
from fluorecon.validation import as_image

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

# Suffixes treated as image files when a folder is given.
IMAGE_SUFFIXES = IMAGE_FILE_SUFFIXES


def error_exit(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``error: message`` on stderr and return the ``typer.Exit`` to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def handle_errors() -> Iterator[None]:
    """Turn known exceptions into a one-line message and a non-zero exit code.

    Use as ``with handle_errors(): ...`` around a command body. NumPy's ``RuntimeWarning`` lines
    (empty slices, 0/0 inside library code) are kept off the terminal: a command reports problems
    as ``error:``/``warning:`` lines of its own.
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            yield
    except typer.Exit:
        raise
    except FluoreconError as e:
        raise error_exit(str(e), EXIT_BAD_INPUT) from None
    except FileNotFoundError as e:
        raise error_exit(f"file not found: {e.filename or e}. Fix: check the path", EXIT_BAD_INPUT) from None
    except ValueError as e:
        # pydantic's ValidationError is a ValueError with a multi-line message: keep it to one line.
        raise error_exit(_one_line(e), EXIT_BAD_INPUT) from None
    except OSError as e:
        raise error_exit(f"{type(e).__name__}: {e}", EXIT_BAD_INPUT) from None
    except KeyboardInterrupt:
        raise error_exit("interrupted", 130) from None
    except Exception as e:
        if os.environ.get("FLUORECON_DEBUG"):
            raise
        raise error_exit(f"internal error ({type(e).__name__}: {e}). Set FLUORECON_DEBUG=1 for the traceback "
                         "and please report it", EXIT_FAILED) from None


def _one_line(e: ValueError) -> str:
    """Condense an exception (pydantic ValidationError included) into one readable line."""
    errors = getattr(e, "errors", None)
    if callable(errors):
        try:
            parts = []
            for err in errors():
                loc = ".".join(str(x) for x in err.get("loc", ()))
                msg = str(err.get("msg", "")).removeprefix("Value error, ")
                parts.append(f"{loc}: {msg}" if loc else msg)
            return "invalid parameter(s): " + "; ".join(parts)
        except Exception:  # fall back to the plain text
            pass
    text = " ".join(str(e).split())
    return text if isinstance(e, FluoreconError) else f"{type(e).__name__}: {text}"


def load_image(path: str | Path, axes: str | None = None, name: str | None = None):
    """Read ``path`` and validate it (``as_image``): returns ``(ImageData, float32 array, axes)``.

    The error messages name the file. NaN/Inf, empty arrays and axes that do not match raise
    :class:`FluoreconError`.
    """

    img = read_image(path, axes=axes)
    arr, ax = as_image(img.data, img.axes, name=name or str(path))
    return img, arr, ax


@contextlib.contextmanager
def echo_warnings(quiet: bool = False) -> Iterator[None]:
    """Show each :class:`FluoreconWarning` raised inside as one ``warning: ...`` line on stderr.

    Other warnings are re-issued *after* the recording context has closed: re-issuing them inside it
    would append to the list being read (an endless loop).
    """
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always", FluoreconWarning)
            try:
                yield
            finally:
                caught = list(rec)
    finally:
        seen = set()
        for w in caught:
            if issubclass(w.category, FluoreconWarning):
                msg = str(w.message)
                if msg not in seen and not quiet:
                    typer.echo(f"warning: {msg}", err=True)
                seen.add(msg)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def emit_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (NaN/numpy values made serialisable)."""
    typer.echo(json.dumps(to_jsonable(obj), indent=2, sort_keys=True))


def to_jsonable(obj: Any) -> Any:
    """JSON-friendly values (:func:`fluorecon.utils.to_json`: NaN/Inf → null, numpy → Python)."""
    return to_json(obj)


def expand_inputs(spec: str) -> list[Path]:
    """Expand a file, folder or glob into a sorted list of image paths.

    Raises
    ------
    FluoreconError
        If nothing matches.
    """
    p = Path(spec)
    if p.is_dir() and p.suffix != ".zarr":
        files = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and not q.name.startswith("."))
    elif p.exists():
        files = [p]
    else:
        files = sorted(Path(s) for s in glob.glob(spec))
    if not files:
        if p.is_dir():
            raise FluoreconError(f"folder {spec} has no images",
                                 hint=f"put image files ({', '.join(IMAGE_SUFFIXES)}) in it, or give a file or a glob")
        if not any(c in spec for c in "*?["):
            raise FluoreconError(f"file not found: {spec}", hint="check the path (a file, a folder of images or a glob such as 'data/*.tif')")
        raise FluoreconError(f"no input found for {spec!r}", hint="give an existing file, a folder of images or a glob such as 'data/*.tif'")
    return files


def is_batch(spec: str) -> bool:
    """True when ``spec`` names several inputs (a folder or a glob pattern)."""
    p = Path(spec)
    return (p.is_dir() and p.suffix != ".zarr") or (not p.exists() and any(c in spec for c in "*?["))


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def output_for(input_path: Path, output: Path | None, n_inputs: int, suffix: str = ".tif", tag: str = "") -> Path:
    """Choose the output path for one input of a (possibly batch) run.

    With one input, ``output`` is the file to write. With several, ``output`` is a folder and each
    result is ``<output>/<input stem><tag><suffix>``.
    """
    stem = input_path.name
    for ext in (".ome.tif", ".ome.tiff", ".ome.zarr", ".tif", ".tiff", ".npy", ".png", ".zarr", ".jpg", ".jpeg"):
        if stem.lower().endswith(ext):
            stem = stem[: -len(ext)]
            break
    if n_inputs == 1 and output is not None:
        return output
    folder = output if output is not None else input_path.parent
    return Path(folder) / f"{stem}{tag}{suffix}"


def plan_outputs(files: list[Path], output: Path | None, *, overwrite: bool, suffix: str = ".tif", tag: str = "",
                 scheduler: str | None = None) -> dict[Path, Path]:
    """Choose and check every output of a (possibly batch) run before anything is computed.

    Applies :func:`fluorecon._atomic.check_output` to each output (``.zarr`` outputs and
    ``--scheduler`` runs are resumable stores). With several inputs ``output`` must be a folder; an
    input that is itself one of this command's outputs in that folder (``<stem><tag><suffix>``) is
    skipped, so that ``denoise dir -o dir`` never re-processes its own results.

    Parameters
    ----------
    files : list of Path
        The inputs (from :func:`expand_inputs`).
    output : Path or None
        ``-o``: a file for one input, a folder for several (None: next to each input).
    overwrite : bool
        ``--overwrite``.
    suffix, tag : str
        Output naming in batch mode (see :func:`output_for`).
    scheduler : str, optional
        ``--scheduler`` (out-of-core run: the output is an OME-Zarr store).

    Returns
    -------
    dict
        Input path → output path, in input order (may hold fewer inputs than ``files``).

    Raises
    ------
    FluoreconError
        A folder where a file is expected, an existing output without ``--overwrite``, an
        unwritable folder, an unknown extension, an output that is an input.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> plan_outputs([d / "a.tif"], d / "b.tif", overwrite=False)[d / "a.tif"].name
    'b.tif'
    """

    output = None if output is None else Path(output)
    if len(files) > 1 or output is None:
        if output is not None and output.exists() and not output.is_dir():
            raise FluoreconError(f"several inputs need an output folder, but {output} is a file",
                                 hint="give -o a folder (created if missing)")
        if output is not None and output.suffix.lower() in WRITE_SUFFIXES and not output.is_dir():
            raise FluoreconError(f"{len(files)} inputs but -o {output} looks like a file",
                                 hint="give an output folder for several inputs")
        own = tag + suffix

        def _own(f: Path) -> bool:
            folder = f.parent.resolve() if output is None else output.resolve()
            return bool(tag) and f.parent.resolve() == folder and f.name.endswith(own)

        kept = [f for f in files if not _own(f)]
        if not kept:
            raise FluoreconError(f"every input in {output} is already an output of this command (*{own})",
                                 hint="give the folder of original images, or another -o folder")
        files = kept
    plan: dict[Path, Path] = {}
    inputs = {f.resolve() for f in files}
    for f in files:
        out = output_for(f, output, len(files), suffix=suffix, tag=tag)
        if out.resolve() in inputs:
            raise FluoreconError(f"output {out} is an input file", hint="choose another -o; inputs are never modified")
        store = scheduler is not None or str(out).lower().rstrip("/").endswith(".zarr")
        if store:
            check_output(out, overwrite=overwrite, kind="store", resumable=True)
        else:
            check_output(out, overwrite=overwrite, kind="file", suffixes=WRITE_SUFFIXES)
        plan[f] = out
    return plan


def run_batch(files: list[Path], process, *, quiet: bool = False, json_out: bool = False, label: str = "processing") -> int:
    """Run ``process(path) -> dict`` on each file with one progress bar and a summary table.

    A file that fails is reported and the others still run. Returns the exit code: 0 if all
    succeeded, ``EXIT_FAILED`` (or ``EXIT_BAD_INPUT`` for a single bad input) otherwise.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console(stderr=True, quiet=quiet)
    results: list[dict] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, disable=quiet or len(files) == 1) as progress:
        task = progress.add_task(label, total=len(files))
        for f in files:
            row: dict = {"input": str(f)}
            try:
                row.update(process(f) or {})
                row["status"] = "ok"
            except FluoreconError as e:
                row.update(status="error", error=str(e))
            except (ValueError, OSError) as e:
                row.update(status="error", error=f"{type(e).__name__}: {e}")
            results.append(row)
            progress.advance(task)
    failed = [r for r in results if r["status"] != "ok"]
    if json_out:
        emit_json(results if len(results) > 1 else results[0])
    if len(files) > 1 and not quiet:
        table = Table(title=f"{label}: {len(files) - len(failed)} ok, {len(failed)} failed")
        table.add_column("input")
        table.add_column("status")
        table.add_column("output / error")
        for r in results:
            table.add_row(r["input"], r["status"], str(r.get("output", r.get("error", ""))))
        console.print(table)
    for r in failed:
        typer.echo(f"error: {r['input']}: {r['error']}", err=True)
    if not failed:
        return EXIT_OK
    return EXIT_BAD_INPUT if len(files) == 1 else EXIT_FAILED
