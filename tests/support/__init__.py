"""What the tests share: one bounded wait, one fake clock, one fault proxy, one local server.

- :func:`wait_until` (:mod:`.waiting`): the one place a test may poll, always bounded;
  :func:`callbacks_drained` waits for a job's queued callbacks.
- :class:`FakeClock` (:mod:`.clock`) and the ``fake_clock`` fixture: the library's clock seam
  (``runtime_job.timing.clock``) under the test's control, so no test sleeps to synchronise.
- :mod:`.faultproxy`: ``TcpProxy`` (a raw relay that cuts and drops) and ``FaultProxy`` (the
  scripted HTTP/websocket proxy built on it).
- :mod:`.server`: the local-server factory and the users of the default session server
  (the ``server`` fixture of ``tests/conftest.py``).
"""

from __future__ import annotations

from .clock import FakeClock
from .waiting import callbacks_drained, wait_for_event, wait_until

__all__ = ["FakeClock", "callbacks_drained", "wait_for_event", "wait_until"]
