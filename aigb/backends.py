"""Where the tasks of ``aigb generate``, ``aigb evaluate``, ``aigb sweep`` and ``aigb demo`` run.

Two backends, one interface (``TaskRun``: tasks in, results out in the order they finish):

* ``local`` (the default): in this process with one worker, else spawned processes that exit with
  this one (``aigb.workers.worker_pool``).
* ``ray``: one Ray task per unit of work on a Ray cluster (``address``: ``"auto"`` or
  ``"HOST:PORT"`` of one started with ``ray start --head``; without one, a local instance is
  started for the run, even where ``ray start`` runs one: a cluster is joined only by name). A
  large read-only input (the built strategies of an evaluation: checkpoints, the OnlineLP prior)
  is put in the object store once and every task gets its ObjectRef, so it crosses the
  network once per node, not once per task. Results come back to this process as they finish
  (``ray.wait``) and the caller writes them here, so outputs need no file system shared with the
  workers, and the caller's resume journal (finished periods, rows.partial.jsonl) serves a Ray run
  as it serves a local one. A task whose worker process dies is run again (``max_retries``); an
  exception raised by the task itself is not retried (it would fail again) and reaches the caller.

Ray is an optional extra (``pip install 'aigb[ray]'``) imported only here, and only when a run
asks for it.
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from typing import Any

from aigb.types import ConfigError
from aigb.workers import stop_workers, worker_pool

__all__ = ["BACKENDS", "RAY_INSTALL", "RAY_CONNECT_TIMEOUT_S", "check_ray_address", "Backend", "TaskRun", "require_ray", "add_backend_args", "backend_from_args"]

BACKENDS = ("local", "ray")
RAY_INSTALL = "pip install 'aigb[ray]'"


def require_ray():
    """The ``ray`` module, or a one-line ``ConfigError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--backend ray: Ray is not installed; install it with: {RAY_INSTALL}") from None
    return ray


@dataclass(frozen=True)
class Backend:
    """Where tasks run."""

    kind: str = "local"
    """'local' (this process or local worker processes) or 'ray'."""
    address: str | None = None
    """Ray only: the cluster to join ('auto', or HOST:PORT); None starts a local instance for the run."""
    max_retries: int = 3
    """Ray only: times a task is run again after its worker process died."""

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise ConfigError(f"--backend: choose one of {', '.join(BACKENDS)}, got {self.kind!r}")
        if self.address is not None and self.kind != "ray":
            raise ConfigError("--ray-address: only with --backend ray")
        if isinstance(self.max_retries, bool) or int(self.max_retries) != self.max_retries or self.max_retries < 0:
            raise ConfigError(f"max_retries: must be an integer >= 0, got {self.max_retries!r}")

    @classmethod
    def of(cls, value: "Backend | str | None") -> "Backend":
        """A Backend from a Backend, a kind name or None (local)."""
        if isinstance(value, Backend):
            return value
        return cls("local" if value is None else value)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Ray connected for the duration (a no-op for local). Joins an instance already
        initialised in this process (and leaves it running); otherwise starts or joins one and
        shuts the connection down at the end. An address that cannot be reached fails within
        ``RAY_CONNECT_TIMEOUT_S`` (Ray itself retries for minutes)."""
        if self.kind != "ray":
            yield
            return
        ray = require_ray()
        if ray.is_initialized():
            yield
            return
        check_ray_address(self.address)
        if self.address is None:
            # "local": a new instance, never a cluster found on this machine (which may be stale).
            ray.init(address="local", include_dashboard=False, logging_level="WARNING")
        else:
            ray.init(address=self.address, logging_level="WARNING")
        try:
            yield
        finally:
            ray.shutdown()


RAY_CONNECT_TIMEOUT_S = 10.0
"""Seconds to reach a --ray-address before giving up."""


def check_ray_address(address: str | None, timeout: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Raise a one-line ``ConfigError`` naming ``address`` unless a TCP connection to it opens
    within ``timeout`` seconds (None and "auto" are looked up by Ray itself and pass)."""
    if address is None or address == "auto":
        return
    text = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--ray-address: expected 'auto' or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        reason = "timed out" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise ConfigError(f"--ray-address: cannot reach {address} ({reason}); start the cluster there with "
                          "`ray start --head`, or leave --ray-address out to start a local Ray instance") from None


class TaskRun:
    """``fn(task)`` (or ``fn(task, shared)``) for every task; results in the order they finish.

    ``wait(timeout)`` returns the results finished so far (at least one when ``timeout`` is None
    and tasks remain); iterating yields them all. ``cancel_pending()`` drops the tasks not started
    yet, while those running still arrive. Leaving the ``with`` block cancels what is left.

    ``shared`` is handed to every call: as it is locally, and through the object store on Ray
    (put once). Local runs pass None for it unless the caller gives one.
    """

    def __init__(self, fn: Callable, tasks: Sequence, *, backend: Backend | str | None = None, workers: int = 1,
                 shared: Any = None):
        self.backend = Backend.of(backend)
        self._fn, self._shared = fn, shared
        self._queue = deque(tasks)
        self._stack = contextlib.ExitStack()
        self._futures: set = set()
        self._refs: list = []
        self._pool = None
        self._ray = None
        n = len(self._queue)
        if self.backend.kind == "ray" and n:
            self._stack.enter_context(self.backend.session())
            self._ray = ray = require_ray()
            # One CPU per task; retries re-run a task whose worker died, not one that raised.
            remote = ray.remote(num_cpus=1, max_retries=self.backend.max_retries)(fn)
            args = () if shared is None else (ray.put(shared),)   # put once; each task gets the ref
            self._refs = [remote.remote(t, *args) for t in self._queue]
            self._queue.clear()
        elif int(workers) > 1 and n > 1:
            pool = self._pool = self._stack.enter_context(worker_pool(min(int(workers), n)))
            args = () if shared is None else (shared,)
            self._futures = {pool.submit(fn, t, *args) for t in self._queue}
            self._queue.clear()

    @property
    def pending(self) -> int:
        """Tasks whose results have not been returned yet."""
        return len(self._queue) + len(self._futures) + len(self._refs)

    def wait(self, timeout: float | None = None) -> list:
        """Results finished since the last call; blocks up to ``timeout`` seconds (None: until one)."""
        if self._queue:   # in this process: one task per call
            task = self._queue.popleft()
            return [self._fn(task) if self._shared is None else self._fn(task, self._shared)]
        if self._futures:
            done, self._futures = wait(self._futures, timeout=timeout, return_when=FIRST_COMPLETED)
            return [f.result() for f in done if not f.cancelled()]
        if self._refs:
            return self._wait_ray(timeout)
        return []

    def _wait_ray(self, timeout: float | None) -> list:
        ray = self._ray
        ready, rest = ray.wait(self._refs, num_returns=1, timeout=timeout)
        if ready and rest:   # collect whatever else has finished too, without waiting
            more, rest = ray.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        self._refs = rest
        out = []
        for ref in ready:
            try:
                out.append(ray.get(ref))
            except ray.exceptions.TaskCancelledError:
                continue
            except ray.exceptions.RayTaskError as err:
                # The task's own exception, as its type (an OSError stays an OSError for the CLI).
                raise err.as_instanceof_cause() from None
        return out

    def __iter__(self) -> Iterator:
        while self.pending:
            yield from self.wait()

    def _drop_local(self) -> None:
        """Forget the queued tasks and cancel the local futures that have not started."""
        self._queue.clear()
        for f in self._futures:
            f.cancel()

    def cancel_pending(self) -> None:
        """Drop the tasks not started yet; running ones finish and are still returned."""
        self._drop_local()
        if self._refs:
            for ref in self._refs:
                self._ray.cancel(ref)   # queued tasks are dropped, running ones are left alone

    def close(self) -> None:
        """Cancel what is left and release the workers (a Ray instance started for this run stops)."""
        self._drop_local()
        if self._refs:
            for ref in self._refs:
                with contextlib.suppress(Exception):
                    self._ray.cancel(ref, force=True)
            self._refs = []
        self._stack.close()

    def __enter__(self) -> "TaskRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self._pool is not None:
            # Stopped (Ctrl-C, an error): nobody will read the running tasks' results, so the
            # workers end now instead of finishing them (and the tasks queued behind them).
            stop_workers(self._pool)
        self.close()


# ------------------------------------------------------------------------------ command line


def add_backend_args(p, what: str = "tasks") -> None:
    """``--backend`` and ``--ray-address`` for a command whose ``what`` can run on Ray."""
    p.add_argument("--backend", choices=BACKENDS, default="local",
                   help=f"where {what} run: local processes, or Ray tasks on a cluster (needs "
                        f"{RAY_INSTALL}; default %(default)s)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="with --backend ray: the cluster to join, 'auto' for the one `ray start --head` runs here, or "
                        "HOST:PORT; without it a local Ray instance is started for the run")


def backend_from_args(args) -> Backend:
    """The Backend of parsed ``add_backend_args`` options; bad combinations raise a one-line
    ``ConfigError`` naming the option, before anything runs."""
    if args.ray_address is not None and args.backend != "ray":
        raise ConfigError("--ray-address: only with --backend ray")
    if args.backend == "ray":
        if getattr(args, "workers", None) not in (None, 1):
            raise ConfigError("--workers: sets local processes; with --backend ray the cluster's CPUs set how many "
                              "tasks run at once (ray start --num-cpus N)")
        require_ray()
        check_ray_address(args.ray_address)   # before any work: Ray would retry an unreachable one for minutes
    return Backend(args.backend, args.ray_address)

