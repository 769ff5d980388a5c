"""Large bodies (``GET /jobs/{id}/results``, external results) over real loopback sockets.

The client reads such a body into one buffer sized by ``Content-Length``. These tests check
what that must keep: the exact bytes, the connection back in the pool after a full read,
a short body reported (and retried) as a dropped response instead of returned truncated,
encoded or unsized bodies still decoded, and no socket left open on any failure.

The server streams a large stored result from the database: the last tests check, over
TLS, its bytes and headers, and that a client leaving halfway releases what it held.
"""

from __future__ import annotations

import gc
import gzip
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import urllib3

from runtime_job.api.body import LARGE_CHUNK_BYTES
from runtime_job.api.client import RuntimeClient
from runtime_job.api.params import ClientParameters
from runtime_job.api.retry import RetryPolicy
from runtime_job.exceptions import IBMNotAuthorizedError, RequestsApiError
from runtime_job.server import LocalRuntimeServer
from runtime_job.server.store import ResultReader
from runtime_job.timing import Deadline
from tests.integration.helpers import ALICE, Api
from tests.support import wait_until
from tests.support.server import local_server
from tests.tlscert import make_cert

from .conftest import TOKEN, LoopbackServer, local_params

BODY = bytes(range(256)) * ((3 * LARGE_CHUNK_BYTES) // 256) + b"tail!"
"""More than three read chunks, not a multiple of the chunk size."""


@dataclass
class Reply:
    """One scripted answer: ``head`` and ``body`` are sent, then the connection is closed
    when ``close`` (else kept for the next request)."""

    head: bytes
    body: bytes
    close: bool = False


def sized(body: bytes, status: str = "200 OK", extra: str = "", sent: bytes | None = None) -> Reply:
    """A ``Content-Length`` reply; ``sent`` (a prefix) makes the body end early."""
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode()
    return Reply(head, body if sent is None else sent, close=sent is not None)


def chunked(body: bytes, extra: str = "") -> Reply:
    """A reply with ``Transfer-Encoding: chunked`` (no length known in advance)."""
    parts = [body[i : i + 100_000] for i in range(0, len(body), 100_000)]
    data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
    head = f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n{extra}\r\n".encode()
    return Reply(head, data)


class ScriptedServer(LoopbackServer):
    """A loopback HTTP/1.1 server answering each request with the next scripted reply.

    Attributes:
        url: ``http://127.0.0.1:<port>``.
        accepted: Connections accepted.
        requests: Request heads received, in order.
        closed_by_client: Connections the client closed while the server waited for a request.
    """

    thread_name = "scripted-server"

    def __init__(self, replies: list[Reply]) -> None:
        self._replies = list(replies)
        self.requests: list[bytes] = []
        self.closed_by_client = 0
        self._threads: list[threading.Thread] = []
        super().__init__()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(None)
        thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:  # reset: the client closed with our reply unread
                        chunk = b""
                    if not chunk:
                        with self._lock:
                            self.closed_by_client += 1
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                with self._lock:
                    self.requests.append(head)
                    reply = self._replies.pop(0)
                try:
                    conn.sendall(reply.head + reply.body)
                except OSError:
                    return
                if reply.close:
                    conn.shutdown(socket.SHUT_WR)
                    return

    def wait_closed_by_client(self, count: int) -> None:
        """Wait until ``count`` connections were closed by the client (fails if not in time)."""

        def closed() -> bool:
            with self._lock:
                return self.closed_by_client >= count

        wait_until(closed, what=f"{count} connection(s) closed by the client")

    def close(self) -> None:
        """Stop, shut every connection down and wait for the serving threads."""
        super().close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[[list[Reply]], ScriptedServer]]:
    made: list[ScriptedServer] = []

    def start(replies: list[Reply]) -> ScriptedServer:
        server = ScriptedServer(replies)
        made.append(server)
        return server

    yield start
    for server in made:
        server.close()
    gc.collect()  # an unclosed client socket would now raise its ResourceWarning


def _client(
    make_client: Callable[..., RuntimeClient],
    server: ScriptedServer,
    policy: RetryPolicy | None = None,
) -> RuntimeClient:
    params = local_params(url=server.url, connect_timeout=5.0, read_timeout=10.0)
    client: RuntimeClient = make_client(params, policy or RetryPolicy(jitter=0.0))
    return client


def test_a_sized_body_is_returned_whole_and_the_connection_reused(
    make_client: Callable[..., RuntimeClient], serve: Callable[[list[Reply]], ScriptedServer]
) -> None:
    server = serve([sized(BODY), sized(b'{"small": 1}'), sized(BODY)])
    client = _client(make_client, server)
    first = client.job_results("j1")
    assert type(first) is bytes and first == BODY
    assert client.job_results("j1") == b'{"small": 1}'
    assert client.external_result(server.url + "/blob") == BODY
    assert server.accepted == 1
    assert [head.split(b"\r\n")[0] for head in server.requests] == [
        b"GET /jobs/j1/results HTTP/1.1",
        b"GET /jobs/j1/results HTTP/1.1",
        b"GET /blob HTTP/1.1",
    ]


def test_a_short_body_is_retried_not_returned_truncated(
    make_client: Callable[..., RuntimeClient],
    serve: Callable[[list[Reply]], ScriptedServer],
    sleeps: list[float],
) -> None:
    server = serve([sized(BODY, sent=BODY[:70_000]), sized(BODY)])
    client = _client(make_client, server)
    assert client.job_results("j1") == BODY
    assert server.accepted == 2
    assert sleeps == [0.5]


def test_a_short_body_without_retries_is_a_clear_network_error(
    make_client: Callable[..., RuntimeClient], serve: Callable[[list[Reply]], ScriptedServer]
) -> None:
    server = serve([sized(BODY, sent=BODY[:70_000]), sized(b"next")])
    client = _client(make_client, server, RetryPolicy.never())
    with pytest.raises(RequestsApiError) as caught:
        client.job_results("j1")
    assert caught.value.status_code == -1
    assert f"after 70000 of the {len(BODY)} bytes of the response body" in caught.value.message
    assert TOKEN not in str(caught.value)
    assert client.job_results("j1") == b"next"  # on a new connection
    assert server.accepted == 2


def test_under_a_deadline_the_body_is_read_in_chunks_whole(
    make_client: Callable[..., RuntimeClient], serve: Callable[[list[Reply]], ScriptedServer]
) -> None:
    server = serve([sized(BODY), sized(BODY, sent=BODY[: LARGE_CHUNK_BYTES + 10])])
    client = _client(make_client, server, RetryPolicy.never())
    deadline = Deadline(60.0)
    assert client.job_results("j1", deadline=deadline) == BODY
    with pytest.raises(RequestsApiError) as caught:
        client.job_results("j1", deadline=deadline)
    assert f"after {LARGE_CHUNK_BYTES + 10} of the {len(BODY)} bytes" in caught.value.message
    assert server.accepted == 1


@pytest.mark.parametrize("deadline", [None, 60.0])
def test_a_gzip_or_chunked_body_is_decoded(
    make_client: Callable[..., RuntimeClient],
    serve: Callable[[list[Reply]], ScriptedServer],
    deadline: float | None,
) -> None:
    packed = gzip.compress(BODY)
    server = serve(
        [
            sized(packed, extra="Content-Encoding: gzip\r\n"),
            chunked(BODY),
            # Invalid, but the chunks decide (RFC 9112, 6.3): the length is not trusted.
            chunked(BODY, extra="Content-Length: 12\r\n"),
        ]
    )
    client = _client(make_client, server)
    for _ in range(3):
        assert client.job_results("j1", deadline=Deadline(deadline)) == BODY
    assert server.accepted == 1


def test_error_statuses_are_still_mapped(
    make_client: Callable[..., RuntimeClient],
    serve: Callable[[list[Reply]], ScriptedServer],
    sleeps: list[float],
) -> None:
    problem = b'{"errors": [{"message": "No such job", "code": "JOB_NOT_FOUND"}]}'
    server = serve(
        [
            sized(b"busy", "503 Service Unavailable"),
            sized(problem, "404 Not Found"),
            sized(b"{}", "401 Unauthorized"),
        ]
    )
    client = _client(make_client, server)
    with pytest.raises(RequestsApiError) as caught:
        client.job_results("j1")
    assert caught.value.status_code == 404
    assert "No such job, Error code: JOB_NOT_FOUND." in caught.value.message
    assert sleeps == [0.5]
    with pytest.raises(IBMNotAuthorizedError):
        client.job_results("j1")
    assert server.accepted == 1


def test_an_interrupted_read_closes_the_connection(
    make_client: Callable[..., RuntimeClient],
    serve: Callable[[list[Reply]], ScriptedServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    small = BODY[:50_000]  # sent whole at once: the server then waits for the next request
    server = serve([sized(small), sized(small)])
    client = _client(make_client, server)
    real_read = urllib3.HTTPResponse.read

    def interrupted(self: urllib3.HTTPResponse, *args: object, **kwargs: object) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(urllib3.HTTPResponse, "read", interrupted)
    with pytest.raises(KeyboardInterrupt) as caught:
        client.job_results("j1")
    # Closed by the client, not by the garbage collector: the traceback still holds it.
    assert caught.tb is not None
    server.wait_closed_by_client(1)
    monkeypatch.setattr(urllib3.HTTPResponse, "read", real_read)
    assert client.job_results("j1") == small
    assert server.accepted == 2


# ------------------------------------------------------------------ the server's results route

RESULT_MIB = 24
RESULT_TEXT = '"' + "x" * (RESULT_MIB * 2**20) + '"'
"""What ``big-text`` stores: many pieces of the route, plus two bytes."""


@dataclass
class Served:
    server: LocalRuntimeServer
    api: Api
    cert: str
    big: str
    crashed: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A real server over TLS with a finished large result and a failed job."""
    programs = {
        "big-text": "tests.reliability.programs:big_text",
        "crasher": "tests.integration.programs:crasher",
    }
    cert, key = make_cert(tmp_path_factory.mktemp("tls"))
    with local_server(
        tmp_path_factory.mktemp("large-results"),
        tokens=[ALICE],
        workers=1,
        programs=programs,
        tls_cert=cert,
        tls_key=key,
    ) as server:
        api = Api(server.url, ALICE, verify=cert)
        big = api.submit("big-text", {"mib": RESULT_MIB})
        crashed = api.submit("crasher")
        assert api.wait_final(big, timeout=60)["state"]["status"] == "COMPLETED"
        assert api.wait_final(crashed)["state"]["status"] == "FAILED"
        yield Served(server, api, cert, big, crashed)
        api.close()


def test_the_server_sends_a_large_result_whole_with_its_length(served: Served) -> None:
    response = served.api.get(f"/jobs/{served.big}/results")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Length"] == str(len(RESULT_TEXT))
    assert "Transfer-Encoding" not in response.headers
    assert response.content == RESULT_TEXT.encode()
    params = ClientParameters(
        channel="local", token=ALICE, url=served.server.url, verify=served.cert
    )
    with RuntimeClient(params) as client:
        assert client.job_results(served.big) == RESULT_TEXT.encode()


def test_the_server_sends_a_failed_jobs_error_text(served: Served) -> None:
    response = served.api.get(f"/jobs/{served.crashed}/results")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Length"] == str(len(response.content))
    assert response.text  # the reason the job failed


def test_a_client_leaving_mid_result_releases_the_stored_result(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    closed = threading.Semaphore(0)
    real_close = ResultReader.close

    def counting_close(self: ResultReader) -> None:
        real_close(self)
        closed.release()

    monkeypatch.setattr(ResultReader, "close", counting_close)
    for _ in range(3):
        with served.api.get(f"/jobs/{served.big}/results", stream=True) as response:
            assert len(response.raw.read(100_000)) == 100_000
        assert closed.acquire(timeout=10)
    # The reader of a download left halfway is closed; the next one gets everything.
    assert served.api.get(f"/jobs/{served.big}/results").content == RESULT_TEXT.encode()
    # The rest was not pushed into the closed connection (asyncio warns when it is).
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
