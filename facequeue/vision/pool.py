"""A small pool of spawned analysis processes with a deadline per task (asyncio front end).

Why not ``ProcessPoolExecutor``: one killed worker breaks it for good, and it cannot kill
one stuck worker. Here every worker is a ``multiprocessing`` spawn process with its own
pipe; a task takes an idle worker, sends ``(fn, args)`` and waits (on the event loop, via
the pipe's file descriptor) for the answer until the deadline. A worker that dies
(SIGKILL, OOM) or misses the deadline is killed and replaced by a fresh one before the
next task; the others never notice. Models load once per worker (``init_worker``), each
worker exits when its parent dies, and ``close()`` never waits longer than its grace.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from facequeue.errors import FacequeueError, PermanentStageError
from facequeue.memory import peak_rss_mb
from facequeue.vision import engine
from facequeue.vision.analyze import AnalysisSettings, Face, FaceAnalysis, analyze_image, write_crop

log = structlog.get_logger("facequeue.vision.pool")
START_TIMEOUT_S = 300.0  # loading the models on a busy Pi can take a while


class WorkerLost(FacequeueError):
    """An analysis worker died or missed its deadline while running a task."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # 'crashed' | 'timeout'


class WorkerFailed(FacequeueError):
    """The task raised inside the worker (the message is the exception, one line)."""


# --------------------------------------------------------------------------- worker side


def _worker_main(conn: Connection, settings: AnalysisSettings, parent_pid: int) -> None:
    from facequeue.vision.analyze import init_worker

    _malloc_tuning()
    try:
        init_worker(settings, parent_pid)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
        conn.send(("fatal", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", os.getpid()))
    trim = _libc_trim()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, args = msg
        try:
            reply: tuple[str, Any] = ("ok", fn(*args))
        except BaseException as exc:  # noqa: BLE001 - a task's failure is a value
            reply = ("error", " ".join(f"{type(exc).__name__}: {exc}".split())[:300])
        conn.send(reply)
        trim()


def _malloc_tuning() -> None:
    """Image-sized buffers straight from mmap (returned to the system when freed) instead
    of glibc's heap, where freed ones linger and the next image's pile on top."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MB
    except (OSError, AttributeError):  # not glibc
        pass


def _libc_trim() -> Callable[[], Any]:
    """glibc's malloc_trim: hand the freed image buffers back to the system after each
    task (measured: a worker's resting RSS 229 -> 172 MB after large photos)."""
    try:
        import ctypes

        fn = ctypes.CDLL("libc.so.6").malloc_trim
        return lambda: fn(0)
    except (OSError, AttributeError):  # not glibc
        return lambda: None


def _getpid() -> int:
    return os.getpid()


# --------------------------------------------------------------------------- parent side


@dataclass
class _Worker:
    proc: BaseProcess
    conn: Connection
    ready: bool = False


class AnalysisPool:
    """``workers`` spawned processes; ``run(fn, *args)`` with a per-task deadline."""

    def __init__(
        self, settings: AnalysisSettings, workers: int, image_timeout_s: float = 120.0
    ) -> None:
        self.settings = settings
        self.workers = max(1, int(workers))
        self.timeout_s = float(image_timeout_s)
        # Fail fast in the parent (one clear line) rather than in every worker.
        engine.prepare(
            settings.model,
            settings.detector,
            settings.deepface_home or "data/deepface",
            settings.allow_weight_download,
        )
        self._ctx = mp.get_context("spawn")
        self._slots: list[_Worker | None] = [None] * self.workers
        self._idle: asyncio.Queue[int] | None = None
        self._busy: set[int] = set()
        self._closed = False
        self.replaced = 0  # workers replaced after a crash or timeout (for tests and logs)

    # -- process management ---------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, self.settings, os.getpid()),
            name="facequeue-analysis",
            daemon=True,
        )
        proc.start()
        child.close()  # only the worker holds its end: its death reads as EOF here
        return _Worker(proc, parent)

    @staticmethod
    def _kill(w: _Worker) -> None:
        if w.proc.is_alive():
            try:
                os.kill(w.proc.pid or 0, signal.SIGKILL)
            except ProcessLookupError:
                pass
        w.proc.join(5)
        w.conn.close()

    def _ready_message(self, w: _Worker, msg: Any) -> None:
        kind, value = msg
        if kind == "fatal":
            raise PermanentStageError(f"analysis worker could not start: {value}")
        w.ready = True

    def warm(self) -> list[int]:
        """Start every worker now (models loaded, blocking); returns their pids."""
        for i in range(self.workers):
            w = self._slots[i]
            if w is None:
                w = self._slots[i] = self._spawn()
            if not w.ready:
                if not w.conn.poll(START_TIMEOUT_S):
                    raise PermanentStageError("analysis worker did not start in time")
                try:
                    msg = w.conn.recv()
                except (EOFError, OSError):
                    w.proc.join(5)
                    raise PermanentStageError(
                        f"analysis worker exited during start-up (exit {w.proc.exitcode})"
                    ) from None
                self._ready_message(w, msg)
        return self.pids()

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._slots if w is not None and w.proc.pid]

    # -- tasks ----------------------------------------------------------------------------
    def _queue(self) -> asyncio.Queue[int]:
        if self._idle is None:
            self._idle = asyncio.Queue()
            for i in range(self.workers):
                self._idle.put_nowait(i)
        return self._idle

    async def _wait_readable(self, w: _Worker, timeout: float | None) -> bool:
        if w.conn.poll():
            return True
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        fd = w.conn.fileno()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(fd)

    async def _recv(self, w: _Worker, timeout: float | None, what: str) -> Any:
        if not await self._wait_readable(w, timeout):
            raise WorkerLost("timeout", f"{what} took longer than {timeout:g} s")
        try:
            return w.conn.recv()
        except (EOFError, OSError):
            w.proc.join(5)
            code = w.proc.exitcode
            how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit {code}"
            raise WorkerLost("crashed", f"analysis worker died ({how}) during {what}") from None

    async def run(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """fn(*args) in a worker. Raises WorkerLost (crash/timeout) or WorkerFailed."""
        if self._closed:
            raise FacequeueError("analysis pool is closed")
        idle = self._queue()
        i = await idle.get()
        self._busy.add(i)
        healthy = False
        try:
            w = self._slots[i]
            if w is None:
                w = self._slots[i] = self._spawn()
            if not w.ready:
                self._ready_message(w, await self._recv(w, START_TIMEOUT_S, "start-up"))
            w.conn.send((fn, args))
            kind, value = await self._recv(
                w, self.timeout_s if timeout is None else timeout, getattr(fn, "__name__", "task")
            )
            healthy = True
        finally:
            if not healthy:  # crashed, stuck, or cancelled mid-task: never reuse that worker
                w_ = self._slots[i]
                if w_ is not None:
                    self._kill(w_)
                    self.replaced += 1
                self._slots[i] = None
            self._busy.discard(i)
            idle.put_nowait(i)
        if kind == "error":
            raise WorkerFailed(value)
        return value

    async def analyze(self, path: str, crops: tuple[str, float] | None = None) -> FaceAnalysis:
        """One image's analysis; a crash is retried once, every failure is a value."""
        t = time.perf_counter()
        result: FaceAnalysis | None = None
        for attempt in (1, 2):
            try:
                result = await self.run(analyze_image, path, self.settings, crops)
                break
            except WorkerLost as exc:
                log.warning("analysis_worker_lost", path=path, kind=exc.kind, detail=str(exc))
                status = f"analysis_{exc.kind}"
                result = FaceAnalysis(status, str(exc), 0, 0)
                if exc.kind != "crashed" or attempt == 2:
                    break
            except WorkerFailed as exc:
                result = FaceAnalysis("analysis_error", str(exc), 0, 0)
                break
        assert result is not None
        log.debug(
            "image_analyzed",
            path=path,
            status=result.status,
            faces=len(result.faces),
            total_s=round(time.perf_counter() - t, 4),
            **{f"{k}_s": round(v, 4) for k, v in result.timings.items()},
        )
        return result

    async def crop(
        self, src_path: str, face: Face, margin: float, dest_path: str
    ) -> tuple[int, int]:
        return await self.run(write_crop, src_path, face, margin, dest_path)

    def close(self, grace_s: float = 2.0) -> None:
        """Stop every worker: idle ones are asked to exit, the rest killed after grace_s."""
        self._closed = True
        live = [w for w in self._slots if w is not None]
        if live:
            peaks = [peak_rss_mb(w.proc.pid) if w.proc.pid else None for w in live]
            log.info("analysis_workers_stopping", peak_rss_mb=peaks)
        for i, w in enumerate(self._slots):
            if w is not None and i not in self._busy:
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        deadline = time.monotonic() + grace_s
        for w in live:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            self._kill(w)
        self._slots = [None] * self.workers

    def __enter__(self) -> AnalysisPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["AnalysisPool", "WorkerLost", "WorkerFailed", "_getpid"]
