"""A database written before the platform dialect gains its columns on open and keeps its
jobs and sessions; the platform store functions then work on it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from runtime_job.server.store import (
    JobFilter,
    NewJob,
    Store,
    get_platform_session,
    job_platform_fields,
    platform_job_page,
    set_job_tags,
)

_DIALECT_COLUMNS = {
    "jobs": ("instance", "est_seconds"),
    "sessions": ("instance", "mode", "backend", "max_ttl", "accepting", "cancelled"),
}


def _columns(path: Path, table: str) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def test_an_older_database_gains_the_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "runtime.sqlite3"
    store = Store(path)
    job = NewJob(id="old-job", user_id="u", program_id="echo", backend="b", params="{}")
    store.create_job(job, time.time(), None)
    store.close_session("old-session", "u", time.time())
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX jobs_instance")
    for table, columns in _DIALECT_COLUMNS.items():
        for column in columns:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.commit()
    conn.close()
    assert not _columns(path, "jobs") & set(_DIALECT_COLUMNS["jobs"])

    store = Store(path)
    try:
        for table, columns in _DIALECT_COLUMNS.items():
            assert set(columns) <= _columns(path, table)
        assert store.get_job("old-job") is not None
        assert job_platform_fields(store, "old-job") == (None, None)
        # A 2023 job belongs to the default instance only.
        page, count = platform_job_page(store, "u", "crn:a", True, JobFilter(), 10, 0)
        assert count == 1 and page[0][0].id == "old-job"
        assert platform_job_page(store, "u", "crn:a", False, JobFilter(), 10, 0)[1] == 0
        assert set_job_tags(store, "old-job", "u", ["a", "a", "b"])
        record = store.get_job("old-job")
        assert record is not None and record.tags == ["a", "b"]
        session = get_platform_session(store, "old-session", "u")
        assert session is not None and session.closed is not None and session.mode is None
    finally:
        store.close()
