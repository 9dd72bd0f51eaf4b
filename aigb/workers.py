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
import threading
import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["worker_pool", "PARENT_POLL_S"]

PARENT_POLL_S = 0.5
"""Seconds between a worker's checks that its parent is alive."""


def _exit_with_parent(parent_pid: int) -> None:
    def watch() -> None:
        while True:
            # A dead parent's children are re-parented, so the parent id changes.
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(PARENT_POLL_S)

    threading.Thread(target=watch, name="aigb-parent-watch", daemon=True).start()


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A spawn-context process pool of ``workers`` processes that exit when this process dies."""
    return ProcessPoolExecutor(max_workers=int(workers), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_exit_with_parent, initargs=(os.getpid(),))
