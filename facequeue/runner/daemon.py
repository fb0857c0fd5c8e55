"""When and how many: claims with leases, heartbeat, limits, signals, graceful shutdown.

A slot of the people-in-flight semaphore is taken *before* a claim, so the daemon never
holds a lease on work it cannot start. Signal handlers only set an event. Leases of dead
daemons (liveness.py) are taken over at start and on every heartbeat; only the leases of
live tasks are renewed; no database error ends the daemon or leaves a lease behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import structlog

from facequeue.config import Config
from facequeue.errors import FacequeueError, LeaseLost, PermanentStageError
from facequeue.files import owner_tag
from facequeue.memory import peak_rss_mb
from facequeue.retry import backoff
from facequeue.runner import liveness
from facequeue.runner.disk import FreeSpaceFloor, is_disk_full
from facequeue.runner.pipeline import Pipeline, Resources, StageFn, Stages
from facequeue.runner.systemd import Notifier
from facequeue.store import Person, Store, connect

log = structlog.get_logger("facequeue.runner.daemon")

# A sweep walks the whole data folder: on a disk that stays full, not more often than this.
ROOM_SWEEP_EVERY_S = 300.0

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
        self.host = socket.gethostname()
        self.boot = liveness.boot_id()
        self.owner = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.notifier = Notifier()
        self.claiming = asyncio.Lock()  # a claim and its task's creation are one step
        self.floor = FreeSpaceFloor(cfg.data_dir, cfg.queue.min_free_mb)
        self.waiting_for_room: set[int] = set()  # people whose outcome waits for disk space
        self.last_room_sweep = -math.inf
        self.registered = False
        self.claim_error: str | None = None
        self.stop = asyncio.Event()
        self.resources = Resources(cfg)
        self.pipeline = Pipeline(store, stages_factory(cfg, store, self.resources))
        self.tasks: dict[int, asyncio.Task] = {}
        self.only_ids = list(only_ids) if only_ids is not None else None
        self.processed = 0
        self.exit_code = 0

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self, once: bool = False) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        reclaimed = await self._start_up()
        log.info(
            "daemon_started",
            owner=self.owner,
            once=once,
            reclaimed=reclaimed,
            people_in_flight=self.cfg.queue.people_in_flight,
            db=self.store.location,
        )
        heartbeat = asyncio.create_task(self._heartbeat(), name="heartbeat")
        watchdog = asyncio.create_task(self.notifier.watchdog(), name="watchdog")
        self.notifier.notify("READY=1")
        try:
            await self._claim_loop(once)
        finally:
            self.notifier.notify("STOPPING=1")
            await self._shutdown()
            for task in (heartbeat, watchdog):
                task.cancel()
            await asyncio.gather(heartbeat, watchdog, return_exceptions=True)
            with contextlib.suppress(Exception):  # the row goes stale and is pruned anyway
                await asyncio.shield(self.store.stop_daemon(self.owner))
            await self.resources.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass
        waiting = await self.store.next_run_after()
        log.info(
            "daemon_stopped",
            processed=self.processed,
            next_retry_at=waiting,
            peak_rss_mb=peak_rss_mb(),
        )
        return self.exit_code

    async def _start_up(self) -> int:
        """Register, take over dead daemons' people, sweep leftovers. A database that
        cannot be written now (a full disk) is logged once, never fatal: the
        heartbeat registers us later and the claim loop waits for the disk."""
        reclaimed = 0
        try:
            await self._register()
            reclaimed += await self._take_over_dead()
            reclaimed += len(await self.store.reclaim_expired())
        except Exception as exc:  # noqa: BLE001
            log.warning("startup_write_failed", error=_one_line(exc))
        await self._sweep_files()
        return reclaimed

    async def _register(self) -> None:
        await self.store.register_daemon(self.owner, os.getpid(), self.host, self.boot)
        self.registered = True

    def _claim_trouble(self, exc: Exception) -> None:
        """One line per distinct claim error, not one per poll while it lasts."""
        error = _one_line(exc)
        if error != self.claim_error:
            log.warning("claim_failed", error=error)
            self.claim_error = error

    async def _claim_loop(self, once: bool) -> None:
        slots = asyncio.Semaphore(self.cfg.queue.people_in_flight)
        while not self.stop.is_set():
            if not await self._take_slot(slots):
                break
            person, idle = None, False
            if not self.floor.ok():
                idle = True
            else:
                try:
                    async with self.claiming:
                        person = await self._claim()
                        if person is not None:
                            task = asyncio.create_task(
                                self._work(person, slots), name=f"person-{person.id}"
                            )
                            self.tasks[person.id] = task
                except Exception as exc:  # noqa: BLE001 - a busy or full database must not end us
                    self._claim_trouble(exc)
                else:
                    if self.claim_error is not None:
                        log.info("claim_recovered", after=self.claim_error)
                        self.claim_error = None
            if person is not None:
                continue
            slots.release()
            if once and not self.tasks and self.claim_error is not None:
                self.exit_code = 1  # --once cannot wait for a database that refuses claims
                break
            if once and not self.tasks and (idle or not await self._more_now_safe()):
                break
            # Sleep until work is announced (PostgreSQL NOTIFY) or the poll interval passes,
            # a person finishes or we are stopped.
            waiters: list[Coroutine[Any, Any, object]] = [
                self.stop.wait(),
                self.store.wait_for_work(self.cfg.queue.poll_s),
            ]
            if self.tasks:
                waiters.append(
                    asyncio.wait(list(self.tasks.values()), return_when=asyncio.FIRST_COMPLETED)
                )
            await _wait_any(*waiters)

    async def _more_now_safe(self) -> bool:
        try:
            return await self._more_now()
        except Exception as exc:  # noqa: BLE001
            self._claim_trouble(exc)
            return True

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
                error = _one_line(exc)
                await self._record(pid, lambda: self.store.fail_permanently(pid, self.owner, error))
            except Exception as exc:  # noqa: BLE001 - any stage error is retried with backoff
                await self._retry_later(person, exc)
            finally:
                self.tasks.pop(pid, None)
                slots.release()

    async def _retry_later(self, person: Person, exc: Exception) -> None:
        delay = backoff_delay(self.cfg, person.attempts)
        error = _one_line(exc)
        result = await self._record(
            person.id,
            lambda: self.store.fail_attempt(
                person.id, self.owner, error, self.cfg.queue.max_attempts, delay
            ),
        )
        state = result[0] if result else "lost"
        event = "person_failed" if state == "failed" else "person_retry_scheduled"
        log.warning(
            event,
            error=error,
            attempts=result[1] if result else None,
            retry_in_s=round(delay, 1) if state == "queued" else None,
            exc_info=not isinstance(exc, (FacequeueError, OSError)),
        )

    async def _record(self, pid: int, write: Callable[[], Awaitable[Any]]) -> Any:
        """An outcome write, shielded from cancellation. A full disk is waited out (see
        _make_room); if anything else defeats even the store's retries, the heartbeat hands
        the lease back (release_orphans) instead of ending the daemon."""
        while True:
            try:
                return await asyncio.shield(write())
            except Exception as exc:  # noqa: BLE001
                if not is_disk_full(exc) or self.stop.is_set():
                    log.error("outcome_not_recorded", error=_one_line(exc))
                    return None
                await self._make_room(pid, exc)

    async def _make_room(self, pid: int, exc: Exception) -> None:
        """The disk refused an outcome. Failed stages leave files whose rows were never
        committed (often what filled the disk): once every other person here is idle or
        waiting too (nobody is between a file and its row), sweep them, then try again."""
        if not self.waiting_for_room:
            log.error("outcome_waits_for_disk_space", error=_one_line(exc))
        self.waiting_for_room.add(pid)
        try:
            busy = [
                t for p, t in self.tasks.items() if p not in self.waiting_for_room and not t.done()
            ]
            loop = asyncio.get_running_loop()
            if busy:
                idle = asyncio.wait(busy, timeout=self.cfg.queue.heartbeat_s)
                await _wait_any(self.stop.wait(), idle)
            elif loop.time() - self.last_room_sweep > ROOM_SWEEP_EVERY_S:
                self.last_room_sweep = loop.time()
                await self._sweep_files()
            else:
                await _wait_any(self.stop.wait(), asyncio.sleep(self.cfg.queue.heartbeat_s))
        finally:
            self.waiting_for_room.discard(pid)

    async def _sweep_files(self) -> None:
        """Crash leftovers: temp files of dead processes, and (when no other daemon shares
        the data folder) files no row references. Never fatal."""
        from facequeue.ops.sweep import sweep, sweep_old_temps

        try:
            stale_s = liveness.STALE_HEARTBEATS * self.cfg.queue.heartbeat_s
            others = [
                d
                for d in await self.store.other_daemons(self.owner)
                if not liveness.dead_reason(d, self.host, self.boot, stale_s)
            ]
            live = {owner_tag(d.host, d.pid) for d in others} | {owner_tag()}
            await sweep(self.cfg, self.store, others_alive=bool(others), live=live)
            sweep_old_temps(self.cfg.tmp_dir, live)
        except Exception as exc:  # noqa: BLE001 - a failed sweep must not stop the queue
            log.warning("sweep_failed", error=_one_line(exc))

    async def _take_over_dead(self) -> int:
        """Requeue at once the people held by daemons that are known dead."""
        stale_s = liveness.STALE_HEARTBEATS * self.cfg.queue.heartbeat_s
        taken = 0
        for d in await self.store.other_daemons(self.owner):
            why = liveness.dead_reason(d, self.host, self.boot, stale_s)
            if why:
                people = await self.store.take_over(d.id)
                taken += len(people)
                log.warning("daemon_taken_over", daemon=d.id, why=why, people=people)
        return taken

    async def _release(self, pid: int) -> None:
        try:
            await self.store.release(pid, self.owner)
        except Exception as exc:  # noqa: BLE001 - the lease expires anyway
            log.warning("release_failed", person_id=pid, error=str(exc))

    async def _heartbeat(self) -> None:
        """Renew leases of people in flight, note we are alive, take over dead daemons."""
        while True:
            await asyncio.sleep(self.cfg.queue.heartbeat_s)
            for step in (self._renew, self._beat, self._take_over_dead, self._reclaim):
                try:
                    await step()
                except Exception as exc:  # noqa: BLE001 - a busy database must not kill us
                    log.warning("heartbeat_failed", step=step.__name__, error=_one_line(exc))

    async def _renew(self) -> None:
        live = {pid for pid, task in self.tasks.items() if not task.done()}
        owned = set(await self.store.renew_leases(self.owner, self.cfg.queue.lease_s, live))
        for pid in live - owned:
            task = self.tasks.get(pid)
            if task is not None and not task.done():
                log.warning("lease_lost", person_id=pid)
                task.cancel()
        async with self.claiming:
            orphans = await self.store.release_orphans(self.owner, list(self.tasks))
        if orphans:
            log.warning("orphan_leases_released", people=orphans)

    async def _beat(self) -> None:
        if not self.registered:  # start-up could not write (a full disk): register now
            await self._register()
        await self.store.beat_daemon(self.owner, len(self.tasks))

    async def _reclaim(self) -> None:
        reclaimed = await self.store.reclaim_expired()
        if reclaimed:
            log.info("leases_reclaimed", people=[r.id for r in reclaimed])

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
