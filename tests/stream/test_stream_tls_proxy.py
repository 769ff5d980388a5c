"""TLS verification settings and proxies reach the websocket; keepalive beats idle proxies."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Iterator

import pytest

from runtime_job.api.params import ClientParameters
from runtime_job.api.protocol import StreamEnd
from runtime_job.api.stream import StreamHub

from .streamkit import LoopThread, Recorder, TcpProxy, WsServer


@pytest.fixture()
def tls_server(loop_thread: LoopThread, tls_files: tuple[str, str]) -> Iterator[WsServer]:
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    srv = WsServer(loop_thread, ssl_context=context).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("verify", ["ca-path", False])
def test_tls_with_ca_bundle_or_without_verification(
    tls_server: WsServer, tls_files: tuple[str, str], hub: StreamHub, verify: object
) -> None:
    params = ClientParameters(
        channel="local",
        token=tls_server.token,
        verify=tls_files[0] if verify == "ca-path" else False,
    )
    messages = ["x" * 20_000, "y", "z" * 300_000]  # TLS records split across reads
    tls_server.add_job("tls", messages=messages, final=True, result="R")
    rec = Recorder()
    url = tls_server.url("tls")
    assert url.startswith("wss://")
    hub.subscribe(job_id="tls", url=url, params=params, listener=rec)
    rec.wait()
    assert rec.payloads == [*messages, "R"]
    assert rec.ends == [(StreamEnd.COMPLETED, None)]


def test_tls_untrusted_certificate_fails(
    tls_server: WsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    params = ClientParameters(channel="local", token=tls_server.token)  # verify=True
    tls_server.add_job("untrusted", messages=["a"], final=True)
    rec = Recorder()
    with StreamHub(reconnect_budget=0.3, backoff_initial=0.02, idle_shutdown=0.2) as hub:
        hub.subscribe(
            job_id="untrusted", url=tls_server.url("untrusted"), params=params, listener=rec
        )
        rec.wait()
    [(end, error)] = rec.ends
    assert end is StreamEnd.FAILED
    assert "TLS handshake" in str(error) and "CERTIFICATE_VERIFY_FAILED" in str(error)
    assert rec.frames == []


def test_http_connect_proxy_with_credentials(
    loop_thread: LoopThread,
    server: WsServer,
    hub: StreamHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    proxy = TcpProxy(loop_thread, connect_mode=True).start()
    try:
        params = ClientParameters(
            channel="local",
            token=server.token,
            # A ws:// URL uses the https/wss proxy key, as the reference's to_ws_params.
            proxies={"urls": {"https": f"http://alice:s3cret@127.0.0.1:{proxy.port}"}},
        )
        server.add_job("px", messages=["a", "b"], final=True)
        rec = Recorder()
        hub.subscribe(job_id="px", url=server.url("px"), params=params, listener=rec)
        rec.wait()
    finally:
        proxy.stop()
    assert rec.payloads == ["a", "b", ""]
    [request] = proxy.connect_requests
    assert request.startswith(f"CONNECT 127.0.0.1:{server.port} ")
    assert "Proxy-Authorization: Basic " + base64.b64encode(b"alice:s3cret").decode() in request


@pytest.mark.parametrize("ping_interval", [0.1, 5.0])
def test_keepalive_holds_an_idle_stream_through_an_idle_timeout_proxy(
    loop_thread: LoopThread, server: WsServer, params: ClientParameters, ping_interval: float
) -> None:
    proxy = TcpProxy(loop_thread, target=("127.0.0.1", server.port), idle_timeout=0.3).start()
    job = server.add_job("quiet")
    rec = Recorder()
    try:
        with StreamHub(
            ping_interval=ping_interval,
            ping_timeout=0.2,
            backoff_initial=0.02,
            idle_shutdown=0.2,
        ) as hub:
            url = f"ws://127.0.0.1:{proxy.port}/stream/jobs/quiet"
            hub.subscribe(job_id="quiet", url=url, params=params, listener=rec)
            time.sleep(0.8)  # deliberate: the stream stays quiet past the proxy's idle timeout
            server.publish("quiet", "finally")
            server.finish("quiet")
            rec.wait()
    finally:
        proxy.stop()
    assert rec.payloads == ["finally", ""]
    assert rec.ends == [(StreamEnd.COMPLETED, None)]
    if ping_interval < 0.3:
        assert proxy.idle_drops == 0 and len(job.attempts) == 1
    else:
        # Without pings often enough the proxy drops the stream; the hub resumes it.
        assert proxy.idle_drops >= 1 and len(job.attempts) >= 2
