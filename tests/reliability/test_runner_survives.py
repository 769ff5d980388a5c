"""One bad job never stops the runner (issue 18 item 1).

A lone surrogate in what a program prints or raises used to reach SQLite as it was: the
write raised ``UnicodeEncodeError``, the runner thread died, and no job of any user left
``QUEUED`` again. Now the store makes such text storable (backslash escapes), and whatever
else goes wrong while the runner stores or starts a job, that job ends ``FAILED`` with a
reason and the runner goes on. Each test ends with a job of *another* user completing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime_job.server import LocalRuntimeServer
from runtime_job.server import store as store_module
from runtime_job.server.runner import Runner
from runtime_job.server.store import Store

from .runner_programs import SURROGATE
from .runnerkit import LogWatch, Rest, start_server, users


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeServer]:
    server = start_server(tmp_path_factory.mktemp("runner-survives"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def rest(srv: LocalRuntimeServer) -> Iterator[tuple[Rest, Rest]]:
    alice, bob = users(srv)
    yield alice, bob
    alice.close()
    bob.close()


def bob_still_runs(bob: Rest) -> None:
    job = bob.wait_final(bob.run("ok"))
    assert job["state"]["status"] == "COMPLETED", job
    assert bob.text(job["id"], "results") == '{"ok": true}'


def test_a_program_printing_a_lone_surrogate_completes(rest: tuple[Rest, Rest]) -> None:
    alice, bob = rest
    job = alice.wait_final(alice.run("prints-surrogate"))
    assert job["state"]["status"] == "COMPLETED", job
    assert "before \\ud800 after\n" in alice.text(job["id"], "logs")
    bob_still_runs(bob)


def test_a_program_raising_with_a_lone_surrogate_fails_with_its_traceback(
    rest: tuple[Rest, Rest],
) -> None:
    alice, bob = rest
    job = alice.wait_final(alice.run("raises-surrogate"))
    assert job["state"] == {"status": "FAILED", "reason": None}
    result = alice.text(job["id"], "results")
    assert "ValueError: bad key \\ud800" in result
    assert "ValueError: bad key \\ud800" in alice.text(job["id"], "logs")
    bob_still_runs(bob)


def test_output_the_store_refuses_fails_that_job_only(
    rest: tuple[Rest, Rest], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the store's repair (the original bug), the runner still survives the write."""
    monkeypatch.setattr(store_module, "storable", lambda text: text)
    alice, bob = rest
    with LogWatch() as log:
        job = alice.wait_final(alice.run("prints-surrogate"))
        assert job["state"] == {"status": "FAILED", "reason": "server error"}
        assert "could not store this job's output (UnicodeEncodeError)" in alice.text(
            job["id"], "results"
        )
        record = log.seen(f"Could not store the log of job {job['id']}")
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], UnicodeEncodeError)
        bob_still_runs(bob)


def test_a_job_that_cannot_be_started_fails_and_the_next_runs(
    rest: tuple[Rest, Rest], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Store.get_params

    def get_params(self: Store, job_id: str) -> str | None:
        text = original(self, job_id)
        starting = threading.current_thread().name == "runtime-job-runner"
        if starting and text is not None and "explode" in text:
            raise RuntimeError("injected failure while starting the job")
        return text

    monkeypatch.setattr(Store, "get_params", get_params)
    alice, bob = rest
    with LogWatch() as log:
        job = alice.wait_final(alice.run("publishes", {"n": 1, "explode": 1}))
        assert job["state"] == {"status": "FAILED", "reason": "server error"}
        assert "could not start this job (RuntimeError)" in alice.text(job["id"], "results")
        log.seen(f"Could not start job {job['id']}")
        bob_still_runs(bob)


def test_a_failed_round_is_logged_and_the_runner_goes_on(
    rest: tuple[Rest, Rest], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Runner._enforce_deadlines
    failures = {"left": 3}

    def enforce(self: Runner) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("injected runner bug")
        original(self)

    monkeypatch.setattr(Runner, "_enforce_deadlines", enforce)
    alice, bob = rest
    with LogWatch() as log:
        job = alice.wait_final(alice.run("publishes", {"n": 2}))
        assert job["state"]["status"] == "COMPLETED"
        assert alice.text(job["id"], "interim_results") == '[{"i": 0},{"i": 1}]'
        bob_still_runs(bob)
        assert failures["left"] == 0
        rounds = [m for m in log.messages(logging.ERROR) if m.startswith("Runner round failed")]
        # Logged at the 1st and 2nd failure in a row, not at the 3rd (1, 2, 4, 8, ...).
        assert rounds == [
            "Runner round failed (1 in a row); the runner goes on in 0.02 s.",
            "Runner round failed (2 in a row); the runner goes on in 0.04 s.",
        ]


def test_the_surrogate_is_repaired_in_one_place(tmp_path: Path) -> None:
    """The store repairs every free-text column it writes: interim results, logs, results."""
    store = Store(tmp_path / "db.sqlite3")
    try:
        from runtime_job.server.store import NewJob

        job = NewJob(id="j1", user_id="u", program_id="p", backend="b", params="{}")
        store.create_job(job, 1.0, None)
        assert store.mark_running("j1", 2.0)
        with store.write() as tx:
            assert tx.add_interim("j1", f'"{SURROGATE}"') == 1
            assert tx.append_log("j1", f"log {SURROGATE}\n")
            assert tx.finish("j1", "FAILED", f"why {SURROGATE}", f"trace {SURROGATE}", 3.0)
        assert store.interim_batch("j1", 0, 10, 1000) == [(1, '"\\ud800"')]
        assert store.logs("j1") == "log \\ud800\n"
        assert store.get_result("j1") == "trace \\ud800"
        record = store.get_job("j1")
        assert record is not None and record.reason == "why \\ud800"
        assert store_module.storable("plain é ascii-or-not") == "plain é ascii-or-not"
    finally:
        store.close()
