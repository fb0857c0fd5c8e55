"""When and how many: claims with leases, heartbeat, limits, signals, graceful shutdown.

A slot of the people-in-flight semaphore is taken *before* a claim, so the daemon never
holds a lease on work it cannot start. Signal handlers only set an event.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from facequeue.config import Config
from facequeue.errors import FacequeueError, LeaseLost, PermanentStageError
from facequeue.retry import backoff
from facequeue.runner.pipeline import Pipeline, Resources, StageFn, Stages
from facequeue.store import Person, Store, connect

log = structlog.get_logger("facequeue.runner.daemon")

StagesFactory = Callable[[Config, Store, Resources], dict[str, StageFn]]


def real_stages(cfg: Config, store: Store, res: Resources) -> dict[str, StageFn]:
    return Stages(cfg, store, res).mapping()


def backoff_delay(cfg: Config, attempts: int) -> float:
    """A person's next attempt: exponential backoff with jitter (facequeue.retry)."""
    return backoff(cfg.queue.backoff_base_s, attempts, cfg.queue.backoff_max_s)


class Daemon:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        stages_factory: StagesFactory = real_stages,
        only_ids: list[int] | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stop = asyncio.Event()
        self.resources = Resources(cfg)
        self.pipeline = Pipeline(store, stages_factory(cfg, store, self.resources))
        self.tasks: dict[int, asyncio.Task] = {}
        self.only_ids = list(only_ids) if only_ids is not None else None
        self.processed = 0

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self, once: bool = False) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        await self.store.register_daemon(self.owner, os.getpid(), socket.gethostname())
        reclaimed = await self.store.reclaim_expired()
        _sweep_tmp(self.cfg.tmp_dir)
        log.info(
            "daemon_started",
            owner=self.owner,
            once=once,
            reclaimed=len(reclaimed),
            people_in_flight=self.cfg.queue.people_in_flight,
            db=str(self.cfg.db_path),
        )
        heartbeat = asyncio.create_task(self._heartbeat(), name="heartbeat")
        try:
            await self._claim_loop(once)
        finally:
            await self._shutdown()
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await asyncio.shield(self.store.stop_daemon(self.owner))
            await self.resources.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass
        waiting = await self.store.next_run_after()
        log.info("daemon_stopped", processed=self.processed, next_retry_at=waiting)
        return 0

    async def _claim_loop(self, once: bool) -> None:
        slots = asyncio.Semaphore(self.cfg.queue.people_in_flight)
        while not self.stop.is_set():
            if not await self._take_slot(slots):
                break
            person = await self._claim()
            if person is None:
                slots.release()
                if once and not self.tasks and not await self._more_now():
                    break
                # Sleep until the poll interval passes, a person finishes or we are stopped.
                waiters: list[Coroutine[Any, Any, Any]] = [
                    self.stop.wait(),
                    asyncio.sleep(self.cfg.queue.poll_s),
                ]
                if self.tasks:
                    waiters.append(
                        asyncio.wait(list(self.tasks.values()), return_when=asyncio.FIRST_COMPLETED)
                    )
                await _wait_any(*waiters)
                continue
            task = asyncio.create_task(self._work(person, slots), name=f"person-{person.id}")
            self.tasks[person.id] = task

    async def _take_slot(self, slots: asyncio.Semaphore) -> bool:
        """Wait for a free slot; False (holding nothing) when stop is requested first."""
        acquire = asyncio.ensure_future(slots.acquire())
        stopper = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({acquire, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not self.stop.is_set():
            return True
        if acquire.done() and not acquire.cancelled():
            slots.release()
        else:
            acquire.cancel()
        return False

    async def _claim(self) -> Person | None:
        if self.only_ids is None:
            return await self.store.claim(self.owner, self.cfg.queue.lease_s)
        while self.only_ids:
            person = await self.store.claim_specific(
                self.only_ids.pop(0), self.owner, self.cfg.queue.lease_s
            )
            if person:
                return person
        return None

    async def _more_now(self) -> bool:
        if self.only_ids is not None:
            return bool(self.only_ids)
        return await self.store.claimable_count() > 0

    async def _work(self, person: Person, slots: asyncio.Semaphore) -> None:
        pid = person.id
        with structlog.contextvars.bound_contextvars(person_id=pid, person=person.name):
            log.info("person_claimed", stage=person.stage, attempts=person.attempts)
            try:
                await self.pipeline.run_person(person, self.owner)
                self.processed += 1
            except asyncio.CancelledError:
                await asyncio.shield(self._release(pid))
                log.info("person_released", reason="shutdown")
                raise
            except LeaseLost as exc:
                log.warning("lease_lost", error=str(exc))
            except PermanentStageError as exc:
                log.error("person_failed", error=str(exc), permanent=True)
                await asyncio.shield(self.store.fail_permanently(pid, self.owner, _one_line(exc)))
            except Exception as exc:  # noqa: BLE001 - any stage error is retried with backoff
                delay = backoff_delay(self.cfg, person.attempts)
                error = _one_line(exc)
                result = await asyncio.shield(
                    self.store.fail_attempt(
                        pid, self.owner, error, self.cfg.queue.max_attempts, delay
                    )
                )
                state = result[0] if result else "lost"
                event = "person_failed" if state == "failed" else "person_retry_scheduled"
                log.warning(
                    event,
                    error=error,
                    attempts=result[1] if result else None,
                    retry_in_s=round(delay, 1) if state == "queued" else None,
                    exc_info=not isinstance(exc, FacequeueError),
                )
            finally:
                self.tasks.pop(pid, None)
                slots.release()

    async def _release(self, pid: int) -> None:
        try:
            await self.store.release(pid, self.owner)
        except Exception as exc:  # noqa: BLE001 - the lease expires anyway
            log.warning("release_failed", person_id=pid, error=str(exc))

    async def _heartbeat(self) -> None:
        """Renew leases of people in flight, note we are alive, reclaim expired leases."""
        while True:
            await asyncio.sleep(self.cfg.queue.heartbeat_s)
            try:
                owned = set(await self.store.renew_leases(self.owner, self.cfg.queue.lease_s))
                for pid, task in list(self.tasks.items()):
                    if pid not in owned and not task.done():
                        log.warning("lease_lost", person_id=pid)
                        task.cancel()
                await self.store.beat_daemon(self.owner, len(self.tasks))
                reclaimed = await self.store.reclaim_expired()
                if reclaimed:
                    log.info("leases_reclaimed", people=[r.id for r in reclaimed])
            except Exception as exc:  # noqa: BLE001 - a busy database must not kill the daemon
                log.warning("heartbeat_failed", error=str(exc))

    async def _shutdown(self) -> None:
        if not self.tasks:
            return
        log.info("shutdown_waiting", in_flight=len(self.tasks), grace_s=self.cfg.queue.grace_s)
        done, pending = await asyncio.wait(
            list(self.tasks.values()), timeout=self.cfg.queue.grace_s
        )
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            log.info("shutdown_released", people=len(pending))


async def run_daemon(
    cfg: Config,
    once: bool = False,
    stages_factory: StagesFactory = real_stages,
    only_ids: list[int] | None = None,
) -> int:
    store = await connect(cfg)
    try:
        return await Daemon(cfg, store, stages_factory, only_ids).run(once=once)
    finally:
        await store.close()


async def _wait_any(*aws) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _sweep_tmp(tmp_dir: Path, older_than_s: float = 3600) -> None:
    """Temp files of a killed process: unfinished by definition, never referenced."""
    if not tmp_dir.is_dir():
        return
    cutoff = time.time() - older_than_s
    for path in tmp_dir.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass
