"""Fixtures for the wire tests: mocked HTTP, recorded sleeps, clients per channel."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import responses
from responses.registries import OrderedRegistry

from runtime_job.api.client import AuthClient, RuntimeClient
from runtime_job.api.params import ClientParameters
from runtime_job.api.retry import RetryPolicy
from runtime_job.timing import clock

LOCAL_URL = "http://runtime.test"
QUANTUM_URL = "https://runtime.quantum.test"
AUTH_URL = "https://auth.quantum.test/api"
CLOUD_URL = "https://cloud.ibm.com"
CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/abc:def::"
CLOUD_BASE = "https://us-east.quantum-computing.cloud.ibm.com"
TOKEN = "tok-SECRET-0123456789"
API_TOKEN = "api-SECRET-abcdefghij"
ACCESS_TOKEN = "acc-SECRET-9876543210"

NO_JITTER = RetryPolicy(jitter=0.0)
"""The default policy without randomness, so tests can assert exact waits."""


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every wait of the library, recorded instead of slept (no wire test really sleeps)."""
    waits: list[float] = []
    monkeypatch.setattr(clock, "sleep", waits.append)
    return waits


@pytest.fixture(autouse=True)
def _no_custom_header(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("QISKIT_IBM_RUNTIME_CUSTOM_CLIENT_APP_HEADER", "QE_CUSTOM_CLIENT_APP_HEADER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """Mocked HTTP, first match wins; every registered reply must be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def ordered() -> Iterator[responses.RequestsMock]:
    """Mocked HTTP for retry scripts: replies are consumed strictly in order."""
    with responses.RequestsMock(
        assert_all_requests_are_fired=True, registry=OrderedRegistry
    ) as mock:
        yield mock


def local_params(url: str = LOCAL_URL, **kwargs: Any) -> ClientParameters:
    """Parameters for the local channel (default URL :data:`LOCAL_URL`)."""
    return ClientParameters(channel="local", token=TOKEN, url=url, **kwargs)


@pytest.fixture
def make_client() -> Iterator[Callable[..., RuntimeClient]]:
    """Build runtime clients (closed at the end of the test)."""
    made: list[RuntimeClient] = []

    def make(
        params: ClientParameters | None = None, policy: RetryPolicy | None = NO_JITTER
    ) -> RuntimeClient:
        client = RuntimeClient(params or local_params(), retry_policy=policy)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., RuntimeClient]) -> RuntimeClient:
    """A local-channel runtime client with the jitter-free default policy."""
    return make_client()


@pytest.fixture
def auth_client() -> Iterator[AuthClient]:
    """An ibm_quantum login client at :data:`AUTH_URL`, holding the API token."""
    params = ClientParameters(channel="ibm_quantum", token=API_TOKEN, url=AUTH_URL)
    with AuthClient(params, retry_policy=NO_JITTER) as auth:
        yield auth


class LoopbackServer:
    """A loopback TCP server on an ephemeral port; its thread hands each connection on.

    Subclasses override :meth:`_handle`; by default a connection is kept open and never
    answered.

    Attributes:
        url: ``http://127.0.0.1:<port>``.
        accepted: How many connections were accepted.
    """

    thread_name = "loopback-server"

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self.accepted = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=self.thread_name, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        """Serve one accepted connection (on the accepting thread: hand long work on)."""

    def close(self) -> None:
        """Stop accepting and shut every connection down."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._server.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


class StalledServer(LoopbackServer):
    """A loopback TCP server that accepts connections and never answers."""

    thread_name = "stalled-server"


@pytest.fixture
def stalled_server() -> Iterator[StalledServer]:
    """A server that accepts and never answers."""
    server = StalledServer()
    yield server
    server.close()


@pytest.fixture
def refused_url() -> str:
    """A loopback URL on which nothing listens (connections are refused)."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
