from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db import (
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
)
from django.utils import timezone
from django.utils.crypto import get_random_string
from django.utils.module_loading import import_string
from django_tasks.base import TaskResultStatus
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult, get_date_max
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

from dashboard import polling, processes, validation_pool
from dashboard.checkpoints import QuietCheckpointer
from dashboard.models import Worker as WorkerRow

logger = logging.getLogger("audiences.worker")

# A database that can't be reached (a restart, a failover, the network): the worker says so in
# one line, waits (doubling up to MAX_OUTAGE_WAIT seconds) and carries on. Our rows hold every
# state, so nothing is lost by stopping a task half-way (see the design's "Background work").
DATABASE_DOWN = (OperationalError, InterfaceError)
MAX_OUTAGE_WAIT = 5.0
# How often a worker asks whether accepted chunks' polls are due, between its sweeps.
POLL_EVERY = 0.1
# The shortest wait for a poll coming due: another worker may have just claimed it.
MIN_POLL_WAIT = 0.005


class Command(BaseCommand):
    help = (
        "Run a background worker: the task backend's worker (db_worker's lanes or rqworker, by "
        "TASK_BACKEND) for its queues, plus the sweeps (WORKER_SWEEPS) that finish what a killed "
        "worker left behind. Run one per queue for the queues to work side by side (bin/start)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            help="A queue this worker runs (repeatable; default: every queue of TASK_QUEUES). "
            "The sweeps and polls run in the workers of the dashboard's queue (default).",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=0.05,
            help="Seconds between a lane's looks at its queue (db)",
        )
        parser.add_argument("--sweep-every", type=float, default=10.0)
        parser.add_argument(
            "--lanes",
            type=int,
            default=2,
            help="Tasks of the dashboard's queue run at once (db): two senders share an "
            "import's chunks, so the server always has the next call while it answers one",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        processes.freeze_startup_objects()
        # Each thread (lane, sweeper) keeps its connection between polls; health checks (on
        # PostgreSQL) and the outage handling below replace one that broke.
        _keep_connections()
        queues = [q for q in settings.TASK_QUEUES if q in (options.get("queues") or [q])]
        self.prepare_sweeps(options["sweep_every"])
        heartbeat = Heartbeat(queues, this_process=True)
        heartbeat.start()
        try:
            self._run(queues, options)
        finally:
            heartbeat.stop()  # a clean exit; a killed worker's row falls silent instead

    def _run(self, queues: list[str], options: dict[str, Any]) -> None:
        if "default" in queues:
            threading.Thread(target=self._sweep_forever, daemon=True).start()
            threading.Thread(target=_warm_validation_pool, daemon=True).start()
        if connection.vendor == "sqlite" and "default" in queues:
            threading.Thread(
                target=_checkpoint_forever, args=(settings.SQLITE_QUIET_CHECKPOINT,), daemon=True
            ).start()
        if settings.TASK_BACKEND == "rq":
            # django-tasks-rq's job class runs our tasks; ours runs them without a fork.
            quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
            call_command(
                "rqworker",
                *queues,  # in order: the API's applies first
                job_class="django_tasks_rq.Job",
                worker_class="dashboard.rq_worker.Worker",
                with_scheduler=False,
                verbosity=0 if quiet else 1,
            )
            return
        self._run_db_worker(queues, options["interval"], options["lanes"])

    def _run_db_worker(self, queues: list[str], interval: float, lanes: int) -> None:
        """A lane per queue, and `lanes` of the dashboard's, each started again whenever the
        database drops it; a signal still stops the main one, and the process, for good."""
        every = [Lane(queue=q, interval=interval) for q in queues]
        if "default" in queues:
            every += [Lane(queue="default", interval=interval) for _ in range(lanes - 1)]
        *others, main = every
        for lane in others:
            threading.Thread(target=self._lane, args=(lane,), daemon=True).start()
        main.configure_signals()  # as db_worker: a signal lets the running task finish
        _keep_running("the worker", main.run)

    def _lane(self, lane: Lane) -> None:
        """One more lane, in a thread, kept running through database outages and, since a
        thread that stops would go unnoticed, through any other error too."""
        _keep_running(f"the {lane.queue_names[0]} lane", lane.run, any_error=True)

    # --- The steps (tests call them one at a time) --------------------------------------------

    def prepare_sweeps(self, every: float) -> None:
        self.sweep_every = every
        self.sweeps = [import_string(path) for path in settings.WORKER_SWEEPS]
        self.next_sweep = 0.0  # the first at once

    def sweep_once(self) -> int:
        """Every sweep once; returns what they took over from workers that stopped."""
        taken_over = 0
        for sweep in self.sweeps:
            try:
                # A sweep returns only what it took over from a worker that stopped (a lease
                # that ran out, a heartbeat that stopped): worth a warning. Its ordinary work
                # (polls, pruning) is not.
                found = sweep()
                if found:
                    taken_over += found
                    logger.warning(
                        "%s took over %s item(s) left by a worker that stopped",
                        sweep.__module__,
                        found,
                    )
            except DATABASE_DOWN as exc:
                logger.warning(
                    "database unavailable (%s); the sweeps try again in %g s",
                    _line(exc),
                    self.sweep_every,
                )
                _drop_connections()
                break
            except Exception:
                logger.exception("%s failed; retrying", sweep.__module__)
            finally:
                close_old_connections()
        return taken_over

    def poll_due_once(self) -> float | None:
        """Ask about the tokens whose poll is due; returns how long to wait before the next
        look (0 when more may have come due meanwhile)."""
        wait = POLL_EVERY
        try:
            if polling.poll_due():
                # More may have come due meanwhile (a poll can wait for SQLite's write lock
                # while an apply holds it): look again before sleeping.
                return None
            # Wake up when the next poll is due, not up to POLL_EVERY after it (chunks accepted
            # meanwhile are first asked about no sooner than POLL_EVERY).
            due = polling.seconds_to_next_poll()
            if due is not None:
                wait = max(MIN_POLL_WAIT, min(wait, due))
        except DATABASE_DOWN:
            _drop_connections()
        except Exception:
            logger.exception("polling the chunks' tokens failed; retrying")
        finally:
            close_old_connections()
        return wait

    def _sweep_forever(self) -> None:
        while True:
            wait = POLL_EVERY
            if time.monotonic() >= self.next_sweep:
                self.next_sweep = time.monotonic() + self.sweep_every
                self.sweep_once()
            else:
                # Between sweeps, tokens whose poll is due are asked at once: a chunk is seen
                # applied within its poll's delay, not the sweep's.
                due = self.poll_due_once()
                if due is None:
                    continue
                wait = due
            time.sleep(max(0.0, min(wait, self.next_sweep - time.monotonic())))


class Heartbeat:
    """This worker's row (dashboard.models.Worker): written as it starts, then every BEAT_EVERY
    seconds, and removed as it stops cleanly; pages read it to say whether a live worker is
    doing their work.

    A thread of its own, not the sweeps': a sweep may take longer than a worker may stay silent
    (a slow API's polls), and a beat is one UPDATE, on a connection not kept between beats.
    """

    def __init__(self, queues: list[str], *, this_process: bool = False) -> None:
        self.queues = list(queues)
        self.this_process = this_process  # the claims this process makes name its row
        self.row: WorkerRow | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._beat_forever, name="heartbeat", daemon=True)

    def start(self) -> None:
        # The row first, so that this worker's first claims already name it.
        with contextlib.suppress(*DATABASE_DOWN):
            self.beat()
        self.thread.start()

    def beat(self) -> None:
        """One beat: the row's last_seen now, the row written anew if it is missing (the first
        beat, or the sweep pruned it while the database was out of reach)."""
        if self.row is not None and self.row.beat():
            return
        if not self.stopping.is_set():
            self.row = WorkerRow.register(self.queues)
            if self.this_process:
                WorkerRow.current_id = self.row.pk

    def _beat_forever(self) -> None:
        while True:
            try:
                self.beat()
            except DATABASE_DOWN:
                pass  # the next beat tries again; a long outage makes it look dead, rightly
            except Exception:
                logger.exception("the worker's heartbeat failed; retrying")
            finally:
                connections.close_all()  # this thread's
            if self.stopping.wait(WorkerRow.BEAT_EVERY):
                return

    def stop(self) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join(timeout=WorkerRow.BEAT_EVERY)
        if self.this_process:
            WorkerRow.current_id = None
        if self.row is None:
            return
        try:
            WorkerRow.objects.filter(pk=self.row.pk).delete()
        except Exception as exc:
            logger.warning("the worker's heartbeat row stays (%s): it falls silent", _line(exc))


def sweep() -> int:
    """The workers' sweep of their own rows: a killed worker's row goes after PRUNE_AFTER."""
    WorkerRow.objects.prune()
    return 0  # not work left behind by a killed worker: nothing to report


# Is a task of this queue and backend due? The status is written out, not a parameter, so that
# SQLite sees that the table's index of waiting tasks (status = 'READY') holds every answer.
_WAITING = (
    f"SELECT 1 FROM {DBTaskResult._meta.db_table} WHERE status = '{TaskResultStatus.READY}'"
    " AND queue_name = %s AND backend_name = %s AND (run_after = %s OR run_after <= %s) LIMIT 1"
)


class Lane(Worker):
    """django_tasks_db's worker for one queue, which reads whether a task is ready before it
    claims one.

    Its claim is a write transaction (on SQLite, BEGIN EXCLUSIVE: the one write lock that every
    web request and worker thread shares), and db_worker takes it at every poll, work or not: three
    idle lanes took the lock 15 times a second, in the way of the writes that matter. A read takes
    no lock (WAL), so a lane now claims only when there is a task, and can poll often enough to
    start it within the interval.
    """

    def __init__(self, *, queue: str, interval: float) -> None:
        super().__init__(
            queue_names=[queue],
            interval=interval,
            batch=False,
            backend_name="default",
            startup_delay=False,
            max_tasks=None,
            # Which process ran a task shows in its result: the pid, then a random part.
            worker_id=f"{os.getpid()}-{get_random_string(16)}",
            excluded_queue_names=[],
        )

    def run(self) -> None:
        logger.debug("lane %s of queue %s started", self.worker_id, self.queue_names[0])
        while self.running:
            if not self.run_one_task() and self.running:
                self._wait()

    def run_one_task(self) -> bool:
        """Claim one ready task of this lane's queue and run it; False when there was none."""
        close_old_connections()
        task_result = self._claim() if self._may_have_work() else None
        if task_result is None:
            return False
        self.run_task(task_result)
        return True

    def shutdown(self, signum: int, frame: Any) -> None:
        # A validation whose pool the same signal broke is then left to the sweep.
        processes.STOPPING.set()
        super().shutdown(signum, frame)

    def _wait(self) -> None:
        """Until the next look at the queue."""
        time.sleep(self.interval)

    def _may_have_work(self) -> bool:
        """Whether a task of this lane's queue is due: one plain query (cheap enough to ask
        many times a second; the ORM's cost was most of an idle worker's CPU), asking what
        DBTaskResult.objects.ready() asks."""
        now, never = (
            connection.ops.adapt_datetimefield_value(moment)
            for moment in (timezone.now(), get_date_max())
        )
        with connection.cursor() as cursor:
            cursor.execute(_WAITING, [self.queue_names[0], self.backend_name, never, now])
            return cursor.fetchone() is not None

    def _ready(self) -> Any:
        return DBTaskResult.objects.ready().filter(
            backend_name=self.backend_name, queue_name__in=self.queue_names
        )

    def _claim(self) -> DBTaskResult[Any, Any] | None:
        """Take the next ready task (no other lane or worker gets it), as db_worker does."""
        tasks = self._ready()
        try:
            with exclusive_transaction(tasks.db):
                task_result: DBTaskResult[Any, Any] | None = tasks.get_locked()
                if task_result is not None:
                    task_result.claim(self.worker_id)
                return task_result
        except OperationalError as exc:
            if is_locked_database_exception(exc):
                return None  # SQLite's busy timeout ran out: try again at the next poll
            raise


def _warm_validation_pool() -> None:
    """The validation pool's processes start with the worker, not when the first big file
    comes (their start, new interpreters, was a fifth of a 100,000-row file's validation)."""
    try:
        validation_pool.warm_validation_pool()
    except Exception:
        logger.warning("the validation pool did not start; files will start it", exc_info=True)


def _checkpoint_forever(every: float) -> None:
    """SQLite's log copied back into the database whenever no write came for `every` seconds
    (dashboard.checkpoints)."""
    checkpointer = QuietCheckpointer()
    while True:
        time.sleep(every)
        try:
            checkpointer.look()
        except DATABASE_DOWN:
            _drop_connections()
        except Exception:
            logger.exception("checkpointing the database's log failed; retrying")


def _keep_connections() -> None:
    """Each thread of a worker's process keeps its database connection between its looks at
    the queue (WORKER_DATABASE_CONN_MAX_AGE), as web requests don't."""
    for alias in connections:
        connections.settings[alias]["CONN_MAX_AGE"] = settings.WORKER_DATABASE_CONN_MAX_AGE


def _keep_running(what: str, run: Callable[[], None], *, any_error: bool = False) -> None:
    """Run `run` until it returns, again after each database outage (waiting 0.5 s, doubling up
    to MAX_OUTAGE_WAIT; back to 0.5 s after a minute of running well) and, with `any_error`,
    after any other error too (logged with its traceback)."""
    wait = 0.5
    while True:
        started = time.monotonic()
        try:
            run()
            return
        except DATABASE_DOWN as exc:
            if time.monotonic() - started > 60:
                wait = 0.5  # it ran well for a while: a new outage
            logger.warning(
                "database unavailable (%s); %s tries again in %.1f s", _line(exc), what, wait
            )
        except Exception:
            if not any_error:
                raise
            if time.monotonic() - started > 60:
                wait = 0.5
            logger.exception("%s stopped; starting it again in %.1f s", what, wait)
        _drop_connections()
        time.sleep(wait)
        wait = min(MAX_OUTAGE_WAIT, wait * 2)


def _line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _drop_connections() -> None:
    """Forget this thread's broken connections: the next query opens new ones."""
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception:
            conn.connection = None
