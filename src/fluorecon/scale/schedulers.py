"""Pick a dask scheduler: ``threads`` | ``processes`` | ``distributed`` (a LocalCluster) | an address.

:func:`get_compute` is a context manager yielding ``compute(list_of_delayed) -> list`` and closing
whatever it started (a LocalCluster and its client) on exit.

Examples
--------
>>> import dask
>>> with get_compute("threads", n_workers=2) as compute:
...     compute([dask.delayed(sum)([1, 2])])
[3]
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from fluorecon.errors import FluoreconError

__all__ = ["SCHEDULERS", "get_compute", "parse_memory", "torch_threads_per_worker"]

SCHEDULERS = ("threads", "processes", "distributed", "sync")


def parse_memory(value: str | int | float | None) -> int | None:
    """Parse ``"1GB"``, ``"512 MiB"`` or a byte count.

    Examples
    --------
    >>> parse_memory("1GiB")
    1073741824
    """
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        if value <= 0:
            raise FluoreconError(f"memory limit must be positive, got {value}", hint="e.g. '2GB'")
        return int(value)
    from dask.utils import parse_bytes

    try:
        out = int(parse_bytes(str(value)))
    except (ValueError, TypeError):
        raise FluoreconError(f"cannot parse memory limit {value!r}", hint="e.g. '2GB', '512MiB' or a byte count") from None
    if out <= 0:
        raise FluoreconError(f"memory limit must be positive, got {value!r}", hint="e.g. '2GB'")
    return out


def _prepare_worker(torch_threads: int) -> dict[str, Any]:
    """Run once in every worker process when a cluster is connected (``client.run``).

    A fresh worker process has imported nothing: the first block it receives would otherwise pay for
    importing torch, every task and zarr (~3–4 CPU-s), inside the block phase. It also sizes torch's
    (and the FFT engine's) thread pool to the worker's share of the cores.
    """
    import torch
    import zarr  # noqa: F401  (the reader and the chunk writer need it in every block)

    import fluorecon.scale.ome_zarr_out  # noqa: F401
    from fluorecon.tasks import registry

    registry.all_tasks()
    torch.set_num_threads(max(1, int(torch_threads)))
    return {"pid": os.getpid(), "torch_threads": torch.get_num_threads()}


def _warm_block(fn: Callable[[Any], Any], block: Any) -> bool:
    """Run ``fn`` once on a small block in a worker (see :func:`get_compute`'s ``compute.warm``).

    Returns False when ``fn`` fails: warming is an optimisation, and a block function that cannot
    take a small block may still take the real ones, which report their own errors.
    """
    try:
        fn(block)
    except Exception:
        return False
    return True


def torch_threads_per_worker(n_workers: int, threads_per_worker: int | None, cores: int | None = None) -> int:
    """Intra-op (torch / FFT) threads each worker gets on a LocalCluster.

    An explicit ``threads_per_worker`` is the number of cores a worker may use: its dask threads run
    blocks side by side, so each uses one intra-op thread. Without it, the cores are shared out
    between the workers (one worker on 2 cores runs its FFTs on 2 threads).

    Examples
    --------
    >>> torch_threads_per_worker(1, 1, cores=2), torch_threads_per_worker(1, None, cores=2)
    (1, 2)
    >>> torch_threads_per_worker(2, None, cores=2)
    1
    """
    if threads_per_worker is not None:
        return 1
    return max(1, int(cores or os.cpu_count() or 1) // max(1, int(n_workers)))


def _looks_like_address(s: str) -> bool:
    return "://" in s or (":" in s and s.rsplit(":", 1)[-1].isdigit())


@contextlib.contextmanager
def get_compute(scheduler: str = "threads", *, n_workers: int | None = None, threads_per_worker: int | None = None,
                memory_limit: str | int | None = None, timeout: float = 10.0, quiet: bool = True,
                progress: bool = False) -> Iterator[Callable[[list], list]]:
    """Context manager yielding a ``compute(tasks)`` function bound to the chosen scheduler.

    Parameters
    ----------
    scheduler : str
        ``"threads"`` (default; ``n_workers`` threads), ``"processes"`` (``n_workers`` processes),
        ``"sync"`` (debugging), ``"distributed"`` (starts a ``dask.distributed.LocalCluster`` with
        ``n_workers`` × ``threads_per_worker`` and ``memory_limit`` per worker) or the address of a
        running dask scheduler (``tcp://host:8786``). On a LocalCluster every worker imports the
        tasks once at start, and runs torch / FFTs on :func:`torch_threads_per_worker` threads.
    timeout : float
        Seconds to wait for a scheduler address to answer before a :class:`FluoreconError`.
    progress : bool
        Show a progress bar on stderr.

    Yields
    ------
    callable
        ``compute(tasks) -> list``; with a dask cluster it also has ``client`` and
        ``warm(fn, block)``, which runs ``fn(block)`` once in every worker (start-up work).

    Examples
    --------
    >>> with get_compute("sync") as compute:
    ...     len(compute([]))
    0
    """
    import dask

    if not isinstance(scheduler, str) or not scheduler:
        raise FluoreconError(f"scheduler must be a string, got {scheduler!r}", hint="threads, processes, distributed or ADDRESS")
    s = scheduler.strip()
    for name, v in (("n_workers", n_workers), ("threads_per_worker", threads_per_worker)):
        if v is not None and int(v) < 1:
            raise FluoreconError(f"{name} must be ≥ 1, got {v}", hint=f"e.g. {name}=2")
    mem = parse_memory(memory_limit)

    if s in ("threads", "processes", "sync"):
        kw: dict[str, Any] = {"scheduler": "synchronous" if s == "sync" else s}
        if n_workers and s != "sync":
            kw["num_workers"] = int(n_workers) * (int(threads_per_worker or 1) if s == "threads" else 1)

        def compute(tasks: list) -> list:
            if progress and tasks:
                from dask.diagnostics import ProgressBar

                with ProgressBar(out=sys.stderr, minimum=1.0):
                    return list(dask.compute(*tasks, **kw))
            return list(dask.compute(*tasks, **kw))

        # Each dask thread runs its own torch ops: share the cores instead of oversubscribing them.
        torch_mod = sys.modules.get("torch")
        old = torch_mod.get_num_threads() if torch_mod is not None else None
        if torch_mod is not None and s == "threads":
            torch_mod.set_num_threads(max(1, (os.cpu_count() or 1) // int(kw.get("num_workers", os.cpu_count() or 1))))
        try:
            yield compute
        finally:
            if torch_mod is not None and old is not None:
                torch_mod.set_num_threads(old)
        return

    from distributed import Client, LocalCluster

    cluster = None
    if s == "distributed":
        import logging

        level = logging.ERROR if quiet else logging.WARNING
        logging.getLogger("distributed").setLevel(level)
        # Our tasks hold one block and return a chunk id: there is nothing to spill, and pausing a
        # worker at 80 % of its limit only stalls it. The limit itself stays enforced (the nanny
        # restarts a worker that passes 95 %).
        # dask's nanny exports MALLOC_TRIM_THRESHOLD_=65536 to its workers. Setting any glibc malloc
        # threshold switches off glibc's dynamic mmap threshold, so every large temporary (FFT buffers,
        # RL iterates) is mmapped, zero-filled page by page and unmapped again: measured (load ~9), the
        # same RL blocks ran at 55 % of the threads scheduler's speed with it and 74 % without. Without
        # it, freed heap stays in the worker's RSS, and under a tight memory limit a worker then died
        # (1 worker, 512 MiB, 32×256² blocks): so the setting is dropped only when no limit is given.
        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
        if mem is None:
            environ = {k: v for k, v in environ.items() if not k.startswith("MALLOC_")}
        # The worker's statistical profiler samples every thread's stack every 10 ms: CPU taken from
        # the blocks on a machine whose cores are all busy with them, for a dashboard nobody watches here.
        with dask.config.set({"distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
                              "distributed.worker.memory.pause": False, "distributed.worker.profile.enabled": False,
                              "distributed.nanny.pre-spawn-environ": environ}):
            cluster = LocalCluster(n_workers=int(n_workers or 1), threads_per_worker=int(threads_per_worker or 1),
                                   memory_limit=mem if mem is not None else "auto", processes=True,
                                   dashboard_address=":0", silence_logs=level)
        client = Client(cluster)
    elif _looks_like_address(s):
        try:
            client = Client(s, timeout=f"{timeout}s")
        except (OSError, TimeoutError) as e:
            raise FluoreconError(f"no dask scheduler answered at {s!r} within {timeout:g} s ({type(e).__name__})",
                                 hint="start one (dask scheduler / dask worker) or use --scheduler threads|distributed") from None
    else:
        raise FluoreconError(f"unknown scheduler {scheduler!r}",
                             hint="use threads, processes, distributed or the address of a dask scheduler (tcp://host:8786)")
    try:
        # one-time imports in every worker, counted as start-up, not as block work
        local = cluster is not None
        torch_threads = torch_threads_per_worker(int(n_workers or 1), threads_per_worker) if local else 1
        client.run(_prepare_worker, torch_threads)

        def warm(fn: Callable[[Any], Any], block: Any) -> None:
            # The first call of a block function in a fresh process pays for lazy imports, thread
            # pools, FFT plans and the first faults of its heap: done here, on a small block, in every
            # worker, so that it is start-up and not block time.
            client.run(_warm_block, fn, block)

        def compute(tasks: list) -> list:
            if not tasks:
                return []
            futures = client.compute(tasks)
            if progress:
                from distributed import progress as dprogress

                dprogress(futures, notebook=False)
            return client.gather(futures)

        compute.client = client  # type: ignore[attr-defined]
        compute.warm = warm  # type: ignore[attr-defined]
        yield compute
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
