"""Worker processes that end with the process that started them.

``worker_pool(n)`` is the process pool of ``aigb generate`` and ``aigb evaluate``: spawned workers
(they start clean, without the parent's threads or torch state, on every platform alike) that
watch their parent and exit when it is gone. A pool's workers otherwise outlive a parent killed
with SIGKILL, which runs no clean-up: they would finish their current period or campaign and keep
the CPU busy, or block forever on the dead parent's queue.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["worker_pool", "stop_workers", "PARENT_POLL_S"]

PARENT_POLL_S = 0.5
"""Seconds between a worker's checks that its parent is alive."""


def _end_on_sigterm(signum, frame) -> None:
    # ``stop_workers`` ends workers with SIGTERM in the middle of a task. The default action would
    # skip multiprocessing's exit hooks, and the semaphores this process made (tqdm's lock) would be
    # reported as leaked at shutdown; run the hooks, then exit at once (no exception: the pool's
    # loop would catch it and take the next queued task).
    from multiprocessing import util

    util._exit_function()
    os._exit(128 + signum)


def _exit_with_parent(parent_pid: int) -> None:
    signal.signal(signal.SIGTERM, _end_on_sigterm)

    def watch() -> None:
        while True:
            # A dead parent's children are re-parented, so the parent id changes.
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(PARENT_POLL_S)

    threading.Thread(target=watch, name="aigb-parent-watch", daemon=True).start()


def stop_workers(pool: ProcessPoolExecutor, grace_s: float = 5.0) -> None:
    """End ``pool`` now: drop the tasks not started and terminate the workers (SIGTERM, then
    SIGKILL after ``grace_s``) instead of waiting for their tasks.

    Used when the caller stops (Ctrl-C, an error): a plain shutdown waits for the running tasks,
    and a worker interrupted by the same Ctrl-C takes the next queued task (the pool hands each
    worker one in advance) and runs it to the end. Work done so far is in the tasks' own files
    (journals, checkpoints), so a re-run resumes.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    pool.shutdown(wait=True)   # the pool's thread sees its workers gone and releases its queues


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A spawn-context process pool of ``workers`` processes that exit when this process dies."""
    return ProcessPoolExecutor(max_workers=int(workers), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))
