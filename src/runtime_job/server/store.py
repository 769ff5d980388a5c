"""The server's storage: one SQLite database in WAL mode.

Everything a client can observe lives here (jobs, interim results, logs, plain-stream
cursors, idempotency keys, hashed access tokens, sessions). Writes are committed before
they are acknowledged or fanned out, so a server killed with ``SIGKILL`` loses nothing it
reported. ``synchronous=NORMAL`` keeps every commit in the WAL file (safe against a killed
process; an operating-system crash may lose the last few commits).

Each thread gets its own connection; writers take one process-wide lock so they never wait
on SQLite's busy handler.

Example::

    store = Store(Path("/tmp/data/runtime.sqlite3"))
    job = store.create_job(NewJob(...), idempotency=None)
    store.close()
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

QUEUED = "QUEUED"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
ACTIVE_STATES: tuple[str, ...] = (QUEUED, RUNNING)
"""States a job can still leave."""
FINAL_STATES: tuple[str, ...] = (COMPLETED, FAILED, CANCELLED)
"""States a job never leaves."""

REASON_RAN_TOO_LONG = "RAN TOO LONG"
"""Reason of a job cancelled for exceeding its ``cost`` (maximum execution time)."""
REASON_CANCELLED = "Cancelled by user"
"""Reason of a job cancelled through the API."""
REASON_RESTARTED = "server restarted"
"""Reason of a job that was running when the server died."""
REASON_STOPPED = "server stopped"
"""Reason of a job that was running when the server was stopped."""
REASON_SERVER_ERROR = "server error"
"""Reason of a job the server could not run or store (the server log says why)."""

_TITLE = {
    QUEUED: "Queued",
    RUNNING: "Running",
    COMPLETED: "Completed",
    FAILED: "Failed",
    CANCELLED: "Cancelled",
}

SCHEMA_VERSION = 2
"""2 added ``jobs.qiskit_version`` (a version-1 database gains the column on open)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    num INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    program_id TEXT NOT NULL,
    backend TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    created TEXT NOT NULL,
    running_ts REAL,
    finished_ts REAL,
    created_ts REAL NOT NULL,
    usage REAL,
    session_id TEXT,
    tags TEXT NOT NULL,
    hub TEXT,
    grp TEXT,
    project TEXT,
    runtime TEXT,
    cost INTEGER,
    log_level TEXT,
    result TEXT,
    n_interim INTEGER NOT NULL DEFAULT 0,
    log_size INTEGER NOT NULL DEFAULT 0,
    log_chunks INTEGER NOT NULL DEFAULT 0,
    qiskit_version TEXT
);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs(user_id, num);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, num);
CREATE TABLE IF NOT EXISTS job_tags (job_id TEXT NOT NULL, tag TEXT NOT NULL,
    PRIMARY KEY (job_id, tag)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_tags_tag ON job_tags(tag);
CREATE TABLE IF NOT EXISTS interim (job_id TEXT NOT NULL, seq INTEGER NOT NULL,
    payload TEXT NOT NULL, UNIQUE (job_id, seq));
CREATE TABLE IF NOT EXISTS logs (job_id TEXT NOT NULL, seq INTEGER NOT NULL,
    text TEXT NOT NULL, UNIQUE (job_id, seq));
CREATE TABLE IF NOT EXISTS cursors (job_id TEXT NOT NULL, user_id TEXT NOT NULL,
    delivered INTEGER NOT NULL, PRIMARY KEY (job_id, user_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (user_id TEXT NOT NULL, key TEXT NOT NULL,
    body_hash TEXT NOT NULL, response TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (user_id, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS access_tokens (token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL,
    created REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, user_id TEXT NOT NULL,
    created REAL NOT NULL, closed REAL) WITHOUT ROWID;
"""

_JOB_COLUMNS = (
    "num, id, user_id, program_id, backend, status, reason, created, created_ts, running_ts, "
    "finished_ts, usage, session_id, tags, hub, grp, project, runtime, cost, log_level, n_interim"
)

MAX_LOG_BYTES = 16 * 1024 * 1024
"""Logs kept per job; later output is dropped with a note."""
IDEMPOTENCY_TTL = 7 * 24 * 3600.0
"""Seconds an idempotency key is remembered."""


def iso_utc(ts: float) -> str:
    """Format epoch seconds as ISO 8601 UTC with microseconds and ``Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class StorageUnavailable(Exception):
    """The database cannot be written now (disk full, I/O error); nothing was changed.

    The transaction was rolled back, so the store stays consistent and usable: the same
    write can be tried again once space returns. The HTTP layer answers 503.

    Attributes:
        full: Whether the cause is a full disk (else an I/O error).
    """

    def __init__(self, cause: BaseException) -> None:
        self.full = _is_full(cause)
        what = "full" if self.full else "unavailable"
        super().__init__(
            f"The server's storage is {what} ({cause}): nothing was written. "
            "Try again once it has room."
        )


_FULL_CODES = (sqlite3.SQLITE_FULL,)
_UNAVAILABLE_CODES = (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN)
_STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO)
_FULL_TEXT = "database or disk is full"
_IO_TEXT = "disk i/o error"


def _is_full(err: BaseException) -> bool:
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _FULL_CODES:
        return True
    return _FULL_TEXT in str(err).lower()


def is_storage_error(err: BaseException) -> bool:
    """Whether ``err`` means the disk is full or failing (as opposed to a bug or bad data)."""
    if not isinstance(err, sqlite3.Error):
        return isinstance(err, OSError) and err.errno in _STORAGE_ERRNOS
    code = getattr(err, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _FULL_CODES + _UNAVAILABLE_CODES:
        return True
    text = str(err).lower()
    return _FULL_TEXT in text or _IO_TEXT in text


def storable(text: str | None) -> str | None:
    """``text`` as SQLite can store it: lone surrogates become ``\\udXXX`` escapes.

    Text that reaches storage from programs (output, tracebacks, interim results) may hold
    lone surrogates, which are not UTF-8; binding them raises ``UnicodeEncodeError``. This
    is the one place that makes such text storable, keeping everything else as it was.
    ASCII text (the codec's output) costs one fast scan.
    """
    if text is None or text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _make_private(path: Path) -> None:
    """Create ``path`` (if missing) and make it readable by its owner only, whatever the umask.

    SQLite gives the ``-wal`` and ``-shm`` files the mode of the database file, so a private
    database file keeps them private too.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        companion = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            if companion.stat().st_mode & 0o077:
                companion.chmod(0o600)


@dataclass
class NewJob:
    """What ``POST /jobs`` asks for, validated.

    Attributes:
        id: The new job's id.
        user_id: The owner.
        program_id: The program to run.
        backend: The backend name.
        params: The inputs as JSON text, exactly as sent.
        session_id: Session of the job, if any.
        tags: Job tags.
        hub: ibm_quantum hub.
        group: ibm_quantum group.
        project: ibm_quantum project.
        runtime: Image, if given.
        cost: Maximum execution time in seconds, if given.
        log_level: Log level, if given.
        start_session: Whether the job starts a session.
        instance: The platform instance (CRN) of a job submitted on ``/api/v1``.
        estimated_seconds: The platform's ``estimated_running_time_seconds``.
    """

    id: str
    user_id: str
    program_id: str
    backend: str
    params: str
    session_id: str | None = None
    tags: list[str] = field(default_factory=list)
    hub: str | None = None
    group: str | None = None
    project: str | None = None
    runtime: str | None = None
    cost: int | None = None
    log_level: str | None = None
    start_session: bool = False
    instance: str | None = None
    estimated_seconds: float | None = None


@dataclass
class JobRecord:
    """A stored job (without its params, result or logs).

    Attributes:
        num: Global submission order.
        id: Job id.
        user_id: Owner.
        program_id: Program.
        backend: Backend name.
        status: One of the state constants.
        reason: Why the job is in this state.
        created: Creation time, ISO 8601 UTC.
        created_ts: Creation time, epoch seconds.
        running_ts: When it started running.
        finished_ts: When it reached a final state.
        usage: Seconds it ran.
        session_id: Its session.
        tags: Its tags.
        hub: ibm_quantum hub.
        group: ibm_quantum group.
        project: ibm_quantum project.
        runtime: Image.
        cost: Maximum execution time in seconds.
        log_level: Log level.
        n_interim: Number of interim results published.
        qiskit_version: Version of qiskit in the worker that ran the job (``None`` when
            qiskit was not importable there, or not read: listings leave it out).
    """

    num: int
    id: str
    user_id: str
    program_id: str
    backend: str
    status: str
    reason: str | None
    created: str
    created_ts: float
    running_ts: float | None
    finished_ts: float | None
    usage: float | None
    session_id: str | None
    tags: list[str]
    hub: str | None
    group: str | None
    project: str | None
    runtime: str | None
    cost: int | None
    log_level: str | None
    n_interim: int
    qiskit_version: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> JobRecord:
        """Build from a row selected with the job columns."""
        values = list(row)
        values[13] = json.loads(values[13])
        return cls(*values)

    @property
    def final(self) -> bool:
        """Whether the job is in a final state."""
        return self.status in FINAL_STATES

    @property
    def final_seq(self) -> int:
        """The sequence number of the job's final stream frame."""
        return self.n_interim + 1

    def to_wire(self, params: str | None, queue_position: int | None = None) -> str:
        """The job as the JSON text of ``GET /jobs/{id}``.

        Args:
            params: The params JSON text to embed, or ``None`` to omit the field.
            queue_position: Position in the queue, for a queued job.
        """
        state: dict[str, Any] = {"status": self.status, "reason": self.reason}
        if queue_position is not None:
            state["queue_position"] = queue_position
        body: dict[str, Any] = {
            "id": self.id,
            "backend": self.backend,
            "state": state,
            "status": _TITLE.get(self.status, self.status),
            "program": {"id": self.program_id},
            "created": self.created,
            "session_id": self.session_id,
            "tags": self.tags,
            "hub": self.hub,
            "group": self.group,
            "project": self.project,
            "runtime": self.runtime,
            "cost": self.cost,
            "log_level": self.log_level,
            "interim_results_count": self.n_interim,
        }
        if self.running_ts is not None:
            body["running"] = iso_utc(self.running_ts)
        if self.finished_ts is not None:
            body["ended"] = iso_utc(self.finished_ts)
        text = json.dumps(body, separators=(",", ":"))
        if params is None:
            return text
        return text[:-1] + ',"params":' + params + "}"

    def metrics(self) -> dict[str, Any]:
        """The job's metrics (``GET /jobs/{id}/metrics``)."""
        usage = self.usage
        if usage is None and self.running_ts is not None and not self.final:
            usage = max(0.0, time.time() - self.running_ts)
        seconds = usage or 0.0
        metrics: dict[str, Any] = {
            "timestamps": {
                "created": self.created,
                "running": iso_utc(self.running_ts) if self.running_ts is not None else None,
                "finished": iso_utc(self.finished_ts) if self.finished_ts is not None else None,
            },
            "bss": {"seconds": round(seconds)},
            "usage": {"seconds": round(seconds, 6), "quantum_seconds": 0},
            "executions": self.n_interim,
            "status": self.status,
        }
        if self.qiskit_version is not None:
            metrics["qiskit_version"] = self.qiskit_version
        return metrics


@dataclass
class JobFilter:
    """Filters of ``GET /jobs`` (all optional).

    Attributes:
        backend: Backend name.
        pending: ``True``: queued or running; ``False``: final.
        program: Program id.
        tags: Tags the job must all carry.
        session_id: Session.
        created_after: Earliest creation time, ISO UTC string (inclusive).
        created_before: Latest creation time, ISO UTC string (inclusive).
        hgp: ``(hub, group, project)``.
        ascending: Oldest first instead of newest first.
    """

    backend: str | None = None
    pending: bool | None = None
    program: str | None = None
    tags: list[str] = field(default_factory=list)
    session_id: str | None = None
    created_after: str | None = None
    created_before: str | None = None
    hgp: tuple[str, str, str] | None = None
    ascending: bool = False


class Store:
    """The server's SQLite database.

    The database file and its ``-wal`` and ``-shm`` companions are made ``0600`` whatever
    the umask (and fixed if an older server left them wider).

    Args:
        path: The database file (created if missing).
    """

    connection_factory: type[sqlite3.Connection] = sqlite3.Connection
    """Class of the store's connections (a seam: tests inject storage faults with it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        _make_private(path)
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        with self.write() as tx:
            tx.executescript_safe(_SCHEMA)
            columns = {row[1] for row in tx.conn.execute("PRAGMA table_info(jobs)")}
            if "qiskit_version" not in columns:
                tx.conn.execute("ALTER TABLE jobs ADD COLUMN qiskit_version TEXT")
            _platform_schema(tx.conn)
            tx.conn.execute(
                "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        _make_private(path)  # the -wal and -shm files now exist

    # -- connections -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise RuntimeError("store is closed")
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=30.0,
                factory=self.connection_factory,
            )
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection of every thread (call once no thread uses the store)."""
        self._closed = True
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[_Tx]:
        """A write transaction (``BEGIN IMMEDIATE``), committed on success.

        Whatever fails, the transaction is rolled back (a failed ``COMMIT`` leaves it open,
        which would refuse every later ``BEGIN`` on this connection), so the connection stays
        usable.

        Raises:
            StorageUnavailable: The disk is full or failing; nothing was written.
        """
        conn = self._conn()
        with self._lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield _Tx(conn)
                conn.execute("COMMIT")
            except BaseException as err:
                _rollback(conn)
                if is_storage_error(err):
                    raise StorageUnavailable(err) from err
                raise

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    # -- startup -----------------------------------------------------------------------------

    def recover(self, now: float) -> tuple[list[str], list[str]]:
        """Repair the state a previous server left behind.

        Jobs that were running are failed with reason ``server restarted``; queued jobs
        stay queued (they never started, so running them now is safe).

        Returns:
            ``(failed job ids, queued job ids in submission order)``.
        """
        with self.write() as tx:
            failed = [
                row[0]
                for row in tx.conn.execute(
                    "SELECT id FROM jobs WHERE status = ? ORDER BY num", (RUNNING,)
                )
            ]
            for job_id in failed:
                tx.finish(
                    job_id,
                    FAILED,
                    REASON_RESTARTED,
                    "The server stopped while this job was running (server restarted); "
                    "the job did not finish.\n",
                    now,
                    from_states=(RUNNING,),
                )
            queued = [
                row[0]
                for row in tx.conn.execute(
                    "SELECT id FROM jobs WHERE status = ? ORDER BY num", (QUEUED,)
                )
            ]
            tx.conn.execute("DELETE FROM idempotency WHERE created < ?", (now - IDEMPOTENCY_TTL,))
        return failed, queued

    # -- users and tokens --------------------------------------------------------------------

    def add_access_token(self, token_hash: str, user_id: str, now: float) -> None:
        """Remember an access token (by its hash) for ``user_id``."""
        with self.write() as tx:
            tx.conn.execute(
                "INSERT OR REPLACE INTO access_tokens(token_hash, user_id, created) "
                "VALUES (?, ?, ?)",
                (token_hash, user_id, now),
            )

    def access_token_user(self, token_hash: str) -> str | None:
        """The user of an access token (by its hash), or ``None``."""
        row = (
            self._conn()
            .execute("SELECT user_id FROM access_tokens WHERE token_hash = ?", (token_hash,))
            .fetchone()
        )
        return None if row is None else str(row[0])

    # -- jobs ----------------------------------------------------------------------------------

    def create_job(
        self, job: NewJob, now: float, idempotency: tuple[str, str] | None
    ) -> tuple[str, bool]:
        """Insert a queued job, or find the job an idempotency key already created.

        Args:
            job: The job.
            now: Creation time, epoch seconds.
            idempotency: ``(key, body hash)``, when the request carried a key.

        Returns:
            ``(response text, created)``; ``created`` is false for a replay.

        Raises:
            IdempotencyConflict: The key was used with a different body.
        """
        response = json.dumps({"id": job.id, "backend": job.backend})
        with self.write() as tx:
            if idempotency is not None:
                key, body_hash = idempotency
                row = tx.conn.execute(
                    "SELECT body_hash, response FROM idempotency WHERE user_id = ? AND key = ?",
                    (job.user_id, key),
                ).fetchone()
                if row is not None:
                    if row[0] != body_hash:
                        raise IdempotencyConflict(key)
                    return str(row[1]), False
                tx.conn.execute(
                    "INSERT INTO idempotency(user_id, key, body_hash, response, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (job.user_id, key, body_hash, response, now),
                )
            tx.conn.execute(
                "INSERT INTO jobs(id, user_id, program_id, backend, params, status, created, "
                "created_ts, session_id, tags, hub, grp, project, runtime, cost, log_level, "
                "instance, est_seconds) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.user_id,
                    job.program_id,
                    job.backend,
                    job.params,
                    QUEUED,
                    iso_utc(now),
                    now,
                    job.session_id,
                    json.dumps(job.tags),
                    job.hub,
                    job.group,
                    job.project,
                    job.runtime,
                    job.cost,
                    job.log_level,
                    job.instance,
                    job.estimated_seconds,
                ),
            )
            tx.conn.executemany(
                "INSERT OR IGNORE INTO job_tags(job_id, tag) VALUES (?, ?)",
                [(job.id, tag) for tag in job.tags],
            )
            if job.start_session and job.session_id:
                tx.conn.execute(
                    "INSERT OR IGNORE INTO sessions(id, user_id, created) VALUES (?, ?, ?)",
                    (job.session_id, job.user_id, now),
                )
        return response, True

    def get_job(self, job_id: str, user_id: str | None = None) -> JobRecord | None:
        """A job by id (only if owned by ``user_id`` when given)."""
        return _get_job(self._conn(), job_id, user_id)

    def get_params(self, job_id: str) -> str | None:
        """The params JSON text of a job."""
        row = self._conn().execute("SELECT params FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else str(row[0])

    def get_result(self, job_id: str) -> str | None:
        """The stored result text of a job (final result, traceback or reason)."""
        row = self._conn().execute("SELECT result FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def open_result(self, job_id: str) -> ResultReader | None:
        """The stored result of a job as UTF-8 bytes to read in pieces (``None``: no result).

        The reader has its own connection, so its read transaction (one consistent
        snapshot) does not hold up the writes of this thread's connection. Close it.
        """
        if self._closed:
            raise RuntimeError("store is closed")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("BEGIN")
            row = conn.execute(
                "SELECT num, typeof(result) FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            if row is None or row[1] == "null":
                conn.close()
                return None
            blob = conn.blobopen("jobs", "result", row[0], readonly=True)
        except BaseException:
            conn.close()
            raise
        return ResultReader(conn, blob)

    def queue_position(self, job: JobRecord) -> int:
        """1-based position of a queued job in the (global, first-in first-out) queue."""
        row = (
            self._conn()
            .execute("SELECT COUNT(*) FROM jobs WHERE status = ? AND num <= ?", (QUEUED, job.num))
            .fetchone()
        )
        return int(row[0])

    def queue_length(self) -> int:
        """Number of queued jobs."""
        row = self._conn().execute("SELECT COUNT(*) FROM jobs WHERE status = ?", (QUEUED,))
        return int(row.fetchone()[0])

    def mark_running(self, job_id: str, now: float, qiskit_version: str | None = None) -> bool:
        """Move a queued job to running; false if it is no longer queued.

        Args:
            job_id: The job.
            now: When it starts, epoch seconds.
            qiskit_version: Version of qiskit where it runs, for its metrics.
        """
        with self.write() as tx:
            cur = tx.conn.execute(
                "UPDATE jobs SET status = ?, running_ts = ?, qiskit_version = ? "
                "WHERE id = ? AND status = ?",
                (RUNNING, now, qiskit_version, job_id, QUEUED),
            )
            return cur.rowcount == 1

    def cancel(self, job_id: str, user_id: str, now: float) -> str | None:
        """Cancel a queued or running job.

        Returns:
            The state it was in (``QUEUED`` or ``RUNNING``), or ``None`` when it was already
            final (nothing changed).
        """
        with self.write() as tx:
            job = _get_job(tx.conn, job_id, user_id)
            if job is None or job.final:
                return None
            tx.finish(
                job_id, CANCELLED, REASON_CANCELLED, "Job was cancelled.\n", now, (job.status,)
            )
            return job.status

    def delete_job(self, job_id: str, user_id: str) -> bool:
        """Delete a job and everything stored for it; false if there is no such job."""
        with self.write() as tx:
            cur = tx.conn.execute(
                "DELETE FROM jobs WHERE id = ? AND user_id = ?", (job_id, user_id)
            )
            if cur.rowcount != 1:
                return False
            for table in ("job_tags", "interim", "logs", "cursors"):
                tx.conn.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))
            return True

    def logs(self, job_id: str) -> str:
        """The job's logs (stdout and stderr, interleaved as written)."""
        rows = self._conn().execute(
            "SELECT text FROM logs WHERE job_id = ? ORDER BY seq", (job_id,)
        )
        return "".join(str(row[0]) for row in rows)

    def get_cursor(self, job_id: str, user_id: str) -> int:
        """How far plain-stream connections of ``user_id`` have delivered ``job_id``."""
        row = (
            self._conn()
            .execute(
                "SELECT delivered FROM cursors WHERE job_id = ? AND user_id = ?",
                (job_id, user_id),
            )
            .fetchone()
        )
        return 0 if row is None else int(row[0])

    def advance_cursor(self, job_id: str, user_id: str, delivered: int) -> None:
        """Record plain-stream delivery up to ``delivered`` (never moves backwards)."""
        with self.write() as tx:
            tx.conn.execute(
                "INSERT INTO cursors(job_id, user_id, delivered) "
                "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM jobs WHERE id = ?) "
                "ON CONFLICT(job_id, user_id) DO UPDATE SET "
                "delivered = MAX(delivered, excluded.delivered)",
                (job_id, user_id, delivered, job_id),
            )

    def close_session(self, session_id: str, user_id: str, now: float) -> bool:
        """Close a session; false if it belongs to another user."""
        with self.write() as tx:
            row = tx.conn.execute(
                "SELECT user_id FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            if row is not None and row[0] != user_id:
                return False
            tx.conn.execute(
                "INSERT INTO sessions(id, user_id, created, closed) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET closed = excluded.closed",
                (session_id, user_id, now, now),
            )
            return True

    def running_job_ids(self) -> list[str]:
        """Ids of the jobs in state ``RUNNING``."""
        rows = self._conn().execute("SELECT id FROM jobs WHERE status = ?", (RUNNING,))
        return [str(row[0]) for row in rows]

    # -- server edge: access-token expiry, bounded stream batches, budgeted listing ----------

    def access_token_record(self, token_hash: str) -> tuple[str, float] | None:
        """``(user id, login time)`` of an access token (by its hash), or ``None``."""
        row = (
            self._conn()
            .execute(
                "SELECT user_id, created FROM access_tokens WHERE token_hash = ?", (token_hash,)
            )
            .fetchone()
        )
        return None if row is None else (str(row[0]), float(row[1]))

    def delete_access_token(self, token_hash: str) -> None:
        """Forget an access token (by its hash), e.g. once it has expired."""
        with self.write() as tx:
            tx.conn.execute("DELETE FROM access_tokens WHERE token_hash = ?", (token_hash,))

    def interim_batch(
        self, job_id: str, after: int, max_rows: int, max_bytes: int
    ) -> list[tuple[int, str]]:
        """The next interim results after ``after``: at most ``max_rows`` rows and, beyond
        the first row, at most ``max_bytes`` characters of payload.

        Rows are stepped one at a time, so no more than one batch is ever held in memory.
        """
        batch: list[tuple[int, str]] = []
        size = 0
        cur = self._conn().execute(
            "SELECT seq, payload FROM interim WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (job_id, after, max_rows),
        )
        try:
            for seq, payload in cur:
                text = str(payload)
                if batch and size + len(text) > max_bytes:
                    break
                batch.append((int(seq), text))
                size += len(text)
        finally:
            cur.close()
        return batch

    def job_page(
        self,
        user_id: str,
        flt: JobFilter,
        limit: int,
        offset: int,
        after_num: int | None,
        params_budget: int | None,
    ) -> tuple[list[JobRecord], int, bool]:
        """One page of a user's jobs, for a listing whose params are read one at a time.

        Args:
            user_id: The owner.
            flt: The filters.
            limit: Most jobs on the page.
            offset: Matching jobs to skip first (after ``after_num``).
            after_num: A listing cursor: only jobs past this submission number in the
                listing's order (older when newest first), so that jobs submitted or deleted
                meanwhile shift nothing.
            params_budget: When set, the page ends before the job whose params would take
                the page's params past this many characters (the first job always fits).

        Returns:
            ``(jobs, count matching the filters, whether more jobs follow the page)``.
        """
        clause, args = _job_where(user_id, flt)
        order = "ASC" if flt.ascending else "DESC"
        paged, paged_args = clause, list(args)
        if after_num is not None:
            paged += " AND num > ?" if flt.ascending else " AND num < ?"
            paged_args.append(after_num)
        size_column = ", length(params)" if params_budget is not None else ""
        page: list[JobRecord] = []
        more = False
        with self.read() as conn:
            count = int(
                conn.execute(f"SELECT COUNT(*) FROM jobs WHERE {clause}", args).fetchone()[0]
            )
            cur = conn.execute(
                f"SELECT {_JOB_COLUMNS}{size_column} FROM jobs WHERE {paged} "
                f"ORDER BY num {order} LIMIT ? OFFSET ?",
                [*paged_args, limit + 1, offset],
            )
            width = _JOB_COLUMNS.count(",") + 1
            try:
                used = 0
                for row in cur:
                    if len(page) == limit:
                        more = True
                        break
                    if params_budget is not None:
                        used += int(row[width] or 0)
                        if page and used > params_budget:
                            more = True
                            break
                    page.append(JobRecord.from_row(row[:width]))
            finally:
                cur.close()
        return page, count, more


class IdempotencyConflict(Exception):
    """An idempotency key was reused with a different request body."""


class _Tx:
    """Write operations inside one transaction (see :meth:`Store.write`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def executescript_safe(self, script: str) -> None:
        """Run several ``;``-separated statements inside the current transaction."""
        for statement in script.split(";"):
            if statement.strip():
                self.conn.execute(statement)

    def add_interim(self, job_id: str, payload: str) -> int | None:
        """Append an interim result to a running job; its sequence number, or ``None``."""
        cur = self.conn.execute(
            "UPDATE jobs SET n_interim = n_interim + 1 WHERE id = ? AND status = ? "
            "RETURNING n_interim",
            (job_id, RUNNING),
        )
        row = cur.fetchone()
        if row is None:
            return None
        seq = int(row[0])
        self.conn.execute(
            "INSERT INTO interim(job_id, seq, payload) VALUES (?, ?, ?)",
            (job_id, seq, storable(payload)),
        )
        return seq

    def append_log(self, job_id: str, text: str, any_state: bool = False) -> bool:
        """Append output to a job's logs (a running job's, unless ``any_state``)."""
        row = self.conn.execute(
            "SELECT status, log_size, log_chunks FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        if row is None or (row[0] != RUNNING and not any_state):
            return False
        size, chunks = int(row[1]), int(row[2])
        if size >= MAX_LOG_BYTES:
            return False
        data = storable(text) or ""
        if size + len(data) > MAX_LOG_BYTES:
            data = data[: MAX_LOG_BYTES - size] + "\n[runtime-job: log limit reached]\n"
        self.conn.execute(
            "INSERT INTO logs(job_id, seq, text) VALUES (?, ?, ?)", (job_id, chunks + 1, data)
        )
        self.conn.execute(
            "UPDATE jobs SET log_size = ?, log_chunks = ? WHERE id = ?",
            (size + len(data), chunks + 1, job_id),
        )
        return True

    def finish(
        self,
        job_id: str,
        status: str,
        reason: str | None,
        result: str | None,
        now: float,
        from_states: Sequence[str] = (RUNNING,),
    ) -> bool:
        """Move a job to a final state, if it is in one of ``from_states``."""
        marks = ",".join("?" * len(from_states))
        reason, result = storable(reason), storable(result)
        cur = self.conn.execute(
            f"UPDATE jobs SET status = ?, reason = ?, result = ?, finished_ts = ?, "
            f"usage = CASE WHEN running_ts IS NULL THEN 0 ELSE MAX(0, ? - running_ts) END "
            f"WHERE id = ? AND status IN ({marks})",
            (status, reason, result, now, now, job_id, *from_states),
        )
        return cur.rowcount == 1


def _rollback(conn: sqlite3.Connection) -> None:
    """End the connection's open transaction, if any (a failed ``ROLLBACK`` is logged)."""
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        logger.exception("Could not roll back a failed transaction")


def _job_where(user_id: str, flt: JobFilter) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause and arguments selecting a user's jobs by a listing's filters."""
    where = ["user_id = ?"]
    args: list[Any] = [user_id]
    if flt.backend is not None:
        where.append("backend = ?")
        args.append(flt.backend)
    if flt.pending is not None:
        states = ACTIVE_STATES if flt.pending else FINAL_STATES
        where.append(f"status IN ({','.join('?' * len(states))})")
        args.extend(states)
    if flt.program is not None:
        where.append("program_id = ?")
        args.append(flt.program)
    if flt.session_id is not None:
        where.append("session_id = ?")
        args.append(flt.session_id)
    if flt.created_after is not None:
        where.append("created >= ?")
        args.append(flt.created_after)
    if flt.created_before is not None:
        where.append("created <= ?")
        args.append(flt.created_before)
    if flt.hgp is not None:
        where.append("hub = ? AND grp = ? AND project = ?")
        args.extend(flt.hgp)
    tags = sorted(set(flt.tags))
    if tags:
        where.append(
            f"(SELECT COUNT(*) FROM job_tags t WHERE t.job_id = jobs.id "
            f"AND t.tag IN ({','.join('?' * len(tags))})) = ?"
        )
        args.extend(tags)
        args.append(len(tags))
    return " AND ".join(where), args


def _get_job(conn: sqlite3.Connection, job_id: str, user_id: str | None) -> JobRecord | None:
    columns = _JOB_COLUMNS + ", qiskit_version"
    if user_id is None:
        row = conn.execute(f"SELECT {columns} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    else:
        row = conn.execute(
            f"SELECT {columns} FROM jobs WHERE id = ? AND user_id = ?", (job_id, user_id)
        ).fetchone()
    return None if row is None else JobRecord.from_row(row)


class ResultReader:
    """A job's stored result, read a piece at a time from one snapshot of the database.

    Holds a connection and its read transaction until :meth:`close`.
    """

    def __init__(self, conn: sqlite3.Connection, blob: sqlite3.Blob) -> None:
        self._conn = conn
        self._blob = blob
        self._size = len(blob)

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        """The next ``size`` bytes (all the rest when negative); ``b""`` at the end."""
        return self._blob.read(size)

    def close(self) -> None:
        """Release the snapshot and the connection (idempotent)."""
        with contextlib.suppress(sqlite3.Error):
            self._blob.close()
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()


__all__ = [
    "ACTIVE_STATES",
    "CANCELLED",
    "COMPLETED",
    "FAILED",
    "FINAL_STATES",
    "QUEUED",
    "REASON_CANCELLED",
    "REASON_RAN_TOO_LONG",
    "REASON_RESTARTED",
    "REASON_SERVER_ERROR",
    "REASON_STOPPED",
    "RUNNING",
    "IdempotencyConflict",
    "JobFilter",
    "JobRecord",
    "NewJob",
    "ResultReader",
    "StorageUnavailable",
    "Store",
    "is_storage_error",
    "iso_utc",
    "storable",
]


# -- platform dialect (issue 21): instances, estimates, tags, sessions, token signing ---------
#
# The ``/api/v1`` routes (server/platform.py) run on the same tables as the 2023 routes: a
# platform job is a row of ``jobs`` with its instance (CRN) and estimate set, a platform
# session a row of ``sessions`` with its mode, backend and ``accepting`` flag. The columns are
# added here, on open, to any database that lacks them (the one migration of the dialect).

_PLATFORM_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "jobs": (("instance", "TEXT"), ("est_seconds", "REAL")),
    "sessions": (
        ("instance", "TEXT"),
        ("mode", "TEXT"),
        ("backend", "TEXT"),
        ("max_ttl", "INTEGER"),
        ("accepting", "INTEGER NOT NULL DEFAULT 1"),
        ("cancelled", "REAL"),
    ),
}
_SIGNING_KEY = "platform_signing_key"


def _platform_schema(conn: sqlite3.Connection) -> None:
    """Add the platform dialect's columns to a database that lacks them (idempotent)."""
    for table, columns in _PLATFORM_COLUMNS.items():
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
    conn.execute("CREATE INDEX IF NOT EXISTS jobs_instance ON jobs(user_id, instance, num)")


def platform_signing_key(store: Store) -> bytes:
    """The key that signs this server's IAM tokens, made (256 random bits) on first use.

    Kept in the database so that tokens stay valid across a restart, as IBM's do.
    """
    import secrets

    with store.write() as tx:
        row = tx.conn.execute("SELECT value FROM meta WHERE key = ?", (_SIGNING_KEY,)).fetchone()
        if row is None:
            value = secrets.token_hex(32)
            tx.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (_SIGNING_KEY, value))
        else:
            value = str(row[0])
    return bytes.fromhex(value)


def job_platform_fields(store: Store, job_id: str) -> tuple[str | None, float | None]:
    """``(instance CRN, estimated seconds)`` of a job (``None`` for 2023-route jobs)."""
    row = (
        store._conn()
        .execute("SELECT instance, est_seconds FROM jobs WHERE id = ?", (job_id,))
        .fetchone()
    )
    if row is None:
        return None, None
    return row[0], (None if row[1] is None else float(row[1]))


def _instance_clause(instance: str, with_unscoped: bool) -> str:
    return "(instance = ? OR instance IS NULL)" if with_unscoped else "instance = ?"


def platform_job_page(
    store: Store,
    user_id: str,
    instance: str,
    with_unscoped: bool,
    flt: JobFilter,
    limit: int,
    offset: int,
    params_budget: int | None = None,
) -> tuple[list[tuple[JobRecord, float | None]], int]:
    """One page of a user's jobs of one instance, and how many match (limit and offset aside).

    Args:
        store: The store.
        user_id: The owner.
        instance: The instance CRN.
        with_unscoped: Whether jobs submitted on the 2023 routes (no instance) belong here
            (the user's default instance).
        flt: The listing's filters.
        limit: Most jobs on the page.
        offset: Matching jobs to skip.
        params_budget: When set, the page ends before the job whose params would take the
            page's params past this many characters (the first job always fits).

    Returns:
        ``([(job, estimated seconds), ...], count)``.
    """
    clause, args = _job_where(user_id, flt)
    clause += " AND " + _instance_clause(instance, with_unscoped)
    args.append(instance)
    order = "ASC" if flt.ascending else "DESC"
    width = _JOB_COLUMNS.count(",") + 1
    with store.read() as conn:
        count = int(conn.execute(f"SELECT COUNT(*) FROM jobs WHERE {clause}", args).fetchone()[0])
        cur = conn.execute(
            f"SELECT {_JOB_COLUMNS}, est_seconds, length(params) FROM jobs WHERE {clause} "
            f"ORDER BY num {order} LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )
        page: list[tuple[JobRecord, float | None]] = []
        used = 0
        try:
            for row in cur:
                used += int(row[width + 1] or 0)
                if params_budget is not None and page and used > params_budget:
                    break
                estimate = None if row[width] is None else float(row[width])
                page.append((JobRecord.from_row(row[:width]), estimate))
        finally:
            cur.close()
    return page, count


def set_job_tags(store: Store, job_id: str, user_id: str, tags: Sequence[str]) -> bool:
    """Replace a job's tags (a set: duplicates dropped, order kept); false if no such job."""
    unique = list(dict.fromkeys(tags))
    with store.write() as tx:
        cur = tx.conn.execute(
            "UPDATE jobs SET tags = ? WHERE id = ? AND user_id = ?",
            (json.dumps(unique), job_id, user_id),
        )
        if cur.rowcount != 1:
            return False
        tx.conn.execute("DELETE FROM job_tags WHERE job_id = ?", (job_id,))
        tx.conn.executemany(
            "INSERT OR IGNORE INTO job_tags(job_id, tag) VALUES (?, ?)",
            [(job_id, tag) for tag in unique],
        )
    return True


def instance_usage_seconds(store: Store, user_id: str, instance: str, with_unscoped: bool) -> float:
    """Seconds the finished jobs of an instance ran (its consumed usage)."""
    clause = "user_id = ? AND usage IS NOT NULL AND " + _instance_clause(instance, with_unscoped)
    row = (
        store._conn()
        .execute(f"SELECT COALESCE(SUM(usage), 0) FROM jobs WHERE {clause}", (user_id, instance))
        .fetchone()
    )
    return float(row[0])


@dataclass
class PlatformSession:
    """A session or batch of the platform dialect (a row of ``sessions``).

    Attributes:
        id: Session id.
        user_id: Owner.
        instance: Instance CRN.
        mode: ``dedicated`` or ``batch``.
        backend: Backend name.
        max_ttl: Seconds the session may last, counted from its creation.
        created: Creation time, epoch seconds.
        closed: When it stopped accepting jobs (closed or cancelled), if it did.
        accepting: Whether it accepts new jobs.
        cancelled: When it was cancelled, if it was.
    """

    id: str
    user_id: str
    instance: str | None
    mode: str | None
    backend: str | None
    max_ttl: int | None
    created: float
    closed: float | None
    accepting: bool
    cancelled: float | None


_SESSION_COLUMNS = (
    "id, user_id, instance, mode, backend, max_ttl, created, closed, accepting, cancelled"
)


def create_platform_session(store: Store, session: PlatformSession) -> None:
    """Store a new session (its id must be new)."""
    with store.write() as tx:
        tx.conn.execute(
            f"INSERT INTO sessions({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                session.id,
                session.user_id,
                session.instance,
                session.mode,
                session.backend,
                session.max_ttl,
                session.created,
                session.closed,
                1 if session.accepting else 0,
                session.cancelled,
            ),
        )


def get_platform_session(store: Store, session_id: str, user_id: str) -> PlatformSession | None:
    """A user's session by id, or ``None``."""
    row = (
        store._conn()
        .execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ? AND user_id = ?",
            (session_id, user_id),
        )
        .fetchone()
    )
    if row is None:
        return None
    values = list(row)
    values[8] = bool(values[8])
    return PlatformSession(*values)


def close_platform_session(
    store: Store, session_id: str, user_id: str, now: float, cancel: bool
) -> bool:
    """Stop a session accepting jobs (and mark it cancelled when ``cancel``); false if the
    user has no such session. Its jobs are left to the caller (the runner cancels them)."""
    with store.write() as tx:
        cur = tx.conn.execute(
            "UPDATE sessions SET accepting = 0, closed = COALESCE(closed, ?), "
            "cancelled = CASE WHEN ? THEN COALESCE(cancelled, ?) ELSE cancelled END "
            "WHERE id = ? AND user_id = ?",
            (now, 1 if cancel else 0, now, session_id, user_id),
        )
        return cur.rowcount == 1


def session_activity(store: Store, session_id: str, user_id: str) -> dict[str, Any]:
    """What a session's jobs did: ``active`` job ids (queued or running), ``jobs`` (count),
    ``first_running``, ``last_running`` and ``last_finished`` (epoch seconds or ``None``)."""
    with store.read() as conn:
        active = [
            str(row[0])
            for row in conn.execute(
                "SELECT id FROM jobs WHERE session_id = ? AND user_id = ? AND status IN (?, ?) "
                "ORDER BY num",
                (session_id, user_id, *ACTIVE_STATES),
            )
        ]
        row = conn.execute(
            "SELECT COUNT(*), MIN(running_ts), MAX(running_ts), MAX(finished_ts) FROM jobs "
            "WHERE session_id = ? AND user_id = ?",
            (session_id, user_id),
        ).fetchone()
    return {
        "active": active,
        "jobs": int(row[0]),
        "first_running": row[1],
        "last_running": row[2],
        "last_finished": row[3],
    }
