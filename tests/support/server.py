"""The suite's local runtime servers: one factory, one default server for the session.

Every test that needs a real server asks for the ``server`` fixture (``tests/conftest.py``):
one :class:`~runtime_job.server.LocalRuntimeServer` started on first use and stopped at the
end of the session, on 127.0.0.1 and a free port. It serves every user of the packages that
share it, one token per role, so each package's counts and listings stay exact however many
other tests ran before.

A package that truly needs another server (more workers, no streams, its own data) builds
it with :func:`local_server` or declares a fixture with :func:`server_fixture`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from runtime_job.server import LocalRuntimeServer

# -- users of the default server (one token per role; the first is the server's ``token``)

ALICE = "alice-token-0123456789"
"""Integration tests: the main user."""
BOB = "bob-token-0123456789"
"""Integration tests: another user (isolation)."""
CAROL = "carol-token-0123456789"
"""Integration tests: listings (only the listing tests create her jobs)."""
E2E = "e2e-token-0123456789"
"""End-to-end tests of the client library."""
CLI_MAIN = "cli-main-token-0123456789"
"""CLI tests: most commands."""
CLI_LISTER = "cli-lister-token-0123456789"
"""CLI tests: listings (only the listing test creates its jobs)."""
CLI_STRANGER = "cli-stranger-token-0123456789"
"""CLI tests: a user who owns nothing."""
MIGRATION = "migration-token-0123456789"
"""The migration example (a reference-style script through the ``ibm_quantum`` login)."""
STREAM_HUB = "stream-hub-token-0123456789"
"""Stream hub tests against the real server (``tests/stream/test_stream_local_server.py``)."""

DEFAULT_TOKENS = (
    ALICE,
    BOB,
    CAROL,
    E2E,
    CLI_MAIN,
    CLI_LISTER,
    CLI_STRANGER,
    MIGRATION,
    STREAM_HUB,
)
DEFAULT_WORKERS = 2
"""Two warm workers: tests that fill the pool submit two blockers."""


_STARTED: list[LocalRuntimeServer] = []
"""Servers started by :func:`server_fixture` and not yet stopped."""


def default_programs() -> dict[str, Any]:
    """The test programs of the default server (besides the built-in ones).

    Two are registered as callables, the rest as import paths, so both ways are served.
    """
    from tests.integration import programs

    return {
        "printer": "tests.integration.programs:printer",
        "final-publisher": programs.final_publisher,
        "crasher": "tests.integration.programs:crasher",
        "backend-name": programs.backend_name,
        "slow-stream": "tests.integration.programs:slow_stream",
    }


@contextlib.contextmanager
def local_server(
    data_dir: str | Path,
    tokens: Sequence[str] | None = DEFAULT_TOKENS,
    workers: int = DEFAULT_WORKERS,
    programs: Mapping[str, Any] | None = None,
    **options: Any,
) -> Iterator[LocalRuntimeServer]:
    """A started server on 127.0.0.1 and a free port, stopped on exit.

    Args:
        data_dir: Its data directory (a fresh temporary one).
        tokens: One token per user (``None``: the data directory's token file).
        workers: Warm worker processes.
        programs: Extra programs (default: :func:`default_programs`; ``{}``: none).
        options: Any other :class:`LocalRuntimeServer` argument (``streams=False``, ...).
    """
    extra = default_programs() if programs is None else dict(programs)
    server = LocalRuntimeServer(
        data_dir=data_dir, tokens=tokens, workers=workers, programs=extra, **options
    )
    with server:
        yield server


def server_fixture(
    scope: str = "session", name: str = "server-data", **spec: Any
) -> Callable[..., Iterator[LocalRuntimeServer]]:
    """A pytest fixture of a server built by :func:`local_server` with ``spec``.

    For a package whose tests need a server unlike the default one, e.g. in its conftest:
    ``server = server_fixture(tokens=[ALICE, BOB], workers=3, programs=PROGRAMS)``.
    """

    def _server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRuntimeServer]:
        with local_server(tmp_path_factory.mktemp(name), **spec) as srv:
            _STARTED.append(srv)
            try:
                yield srv
            finally:
                _STARTED.remove(srv)

    _server.__doc__ = f"A local server ({scope} scope): {spec or 'the default one'}."
    return pytest.fixture(scope=scope)(_server)  # type: ignore[call-overload,no-any-return]


def cancel_pending(server: LocalRuntimeServer, tokens: Sequence[str]) -> list[str]:
    """Cancel the queued and running jobs of ``tokens``' users; return their ids."""
    cancelled: list[str] = []
    with requests.Session() as session:
        for token in tokens:
            session.headers["X-Access-Token"] = token
            listing = session.get(
                f"{server.url}/jobs", params={"pending": "true", "limit": "1000"}, timeout=30
            )
            listing.raise_for_status()
            for job in listing.json()["jobs"]:
                # 409: it ended meanwhile, 404: deleted meanwhile; either way it is not running.
                answer = session.post(f"{server.url}/jobs/{job['id']}/cancel", timeout=30)
                if answer.status_code not in (204, 404, 409):
                    answer.raise_for_status()
                cancelled.append(job["id"])
    return cancelled


def leftovers_cancelled(*tokens: str) -> Callable[..., Iterator[None]]:
    """An autouse package fixture: at the package's end, cancel its users' unfinished jobs.

    A package that leaves a long job running on a shared server would otherwise hold a
    worker during the next package's tests. Servers not started by then are left alone, and
    a server is asked only about the users it has: another package's server (still running
    when its scope is the session) does not know these tokens and would answer 401.
    """

    def _cancel_leftovers() -> Iterator[None]:
        yield
        cancel_leftovers(tokens)

    return pytest.fixture(scope="package", autouse=True)(_cancel_leftovers)


def cancel_leftovers(tokens: Sequence[str]) -> None:
    """Cancel the unfinished jobs of ``tokens``' users on each started server that has them."""
    for server in list(_STARTED):
        known = set(server.tokens)
        ours = [token for token in tokens if token in known]
        if ours:
            cancel_pending(server, ours)
