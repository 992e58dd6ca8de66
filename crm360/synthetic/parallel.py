"""Parts of a generation in worker processes, and one progress bar that all of them move."""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from tqdm import tqdm

_progress_counter: Any = None  # in a worker process: the shared counter the parent's bar follows


def _init_worker(counter: Any) -> None:
    global _progress_counter
    _progress_counter = counter


def advance(bar: tqdm | None, n: int) -> None:
    """Move the bar by ``n`` in the parent process, or the shared counter in a worker."""
    if bar is not None:
        bar.update(n)
    elif _progress_counter is not None:
        with _progress_counter.get_lock():
            _progress_counter.value += n


def show_progress(progress: bool | None) -> bool:
    """The configured choice, or a bar only when a person watches stderr."""
    if progress is not None:
        return progress
    return sys.stderr.isatty()


def mp_context() -> Any:
    """Fork where there is fork (workers start instantly); spawn elsewhere, which works as everything is picklable."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def new_counter() -> Any:
    return mp_context().Value("q", 0)


def pool(parts: int, counter: Any) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(parts, mp_context=mp_context(), initializer=_init_worker, initargs=(counter,))


def results_in_order(futures: list, bar: tqdm, counter: Any) -> list:
    """Results of ``futures`` in submission order, moving the bar as the workers report progress."""
    pending = set(futures)
    while pending:
        _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        bar.update(counter.value - bar.n)
    return [f.result() for f in futures]
