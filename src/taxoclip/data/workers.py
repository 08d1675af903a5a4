"""The process pool of a build, with a shared progress counter and a tqdm bar on stderr.

Workers start from a fork server that has already imported the image and shard modules (no
per-worker import cost, no inherited file descriptors such as the build lock) and die with the
parent process, so a killed build leaves no writer behind.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

_PRELOAD = ["taxoclip.data.images", "taxoclip.data.shards", "taxoclip.data.dedup", "webdataset"]
_progress = None


def init_worker(progress=None) -> None:
    """Pool initializer: share the progress counter and die with the parent process (Linux)."""
    global _progress
    _progress = progress
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def tick(count: int = 1) -> None:
    """Count finished items towards the parent's progress bar."""
    if _progress is not None:
        with _progress.get_lock():
            _progress.value += count


class Pool:
    """A process pool whose tasks report item progress through a shared counter."""

    def __init__(self, workers: int):
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if context.get_start_method() == "forkserver":
            context.set_forkserver_preload(_PRELOAD)
        self.progress = context.Value("q", 0)
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=init_worker,
                                            initargs=(self.progress,))
        self.workers = workers

    def run(self, function: Callable[[Any], Any], tasks: Iterable[Any], total: int, description: str,
            show: bool = True) -> Iterator[Any]:
        """Run `function` over tasks (at most 2 per worker queued), yielding results as they finish,
        with a bar counting the items the workers `tick` off (out of `total`)."""
        from tqdm import tqdm

        with self.progress.get_lock():
            self.progress.value = 0
        pending: set[Future] = set()
        iterator = iter(tasks)
        exhausted = False
        with tqdm(total=total, desc=description, unit="img", file=sys.stderr, disable=not show,
                  dynamic_ncols=True) as bar:
            while True:
                while not exhausted and len(pending) < 2 * self.workers:
                    try:
                        pending.add(self.executor.submit(function, next(iterator)))
                    except StopIteration:
                        exhausted = True
                if not pending:
                    break
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                bar.update(self.progress.value - bar.n)
                for future in done:
                    yield future.result()
            bar.update(self.progress.value - bar.n)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


@contextmanager
def pool(workers: int):
    instance = Pool(workers)
    try:
        yield instance
    finally:
        instance.close()
