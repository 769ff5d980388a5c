"""A check on every test: the library's own machinery logs no internal error.

The stream reactor, its dispatcher threads and the job watcher catch an unexpected exception
so that one bug does not stop every stream of the process, and log it as "Unexpected error
...". That keeps a user's process alive; it must not let a test pass. A test that provokes
such an error on purpose says so with ``@pytest.mark.internal_errors``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

pytest_plugins = ["tests.support.fixtures"]
"""The shared fixtures (``fake_clock``, the local server) of :mod:`tests.support`."""

_WATCHED = ("runtime_job.api", "runtime_job.futures")
"""The client's machinery (the local server logs its own 500s elsewhere)."""


class _InternalErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_WATCHED) and record.getMessage().startswith("Unexpected error"):
            self.records.append(record)


@pytest.fixture(autouse=True)
def _no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    handler = _InternalErrors()
    logger = logging.getLogger("runtime_job")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if handler.records and request.node.get_closest_marker("internal_errors") is None:
        first = handler.records[0]
        error = first.exc_info[1] if first.exc_info else None
        pytest.fail(
            f"{len(handler.records)} internal error(s) logged, the first from {first.name} "
            f"on thread {first.threadName}: {first.getMessage()} {error!r}",
            pytrace=False,
        )
