"""``ClientParameters`` as the reference's own tests use it (issue 19, D).

The auth handler under the reference's name, proxies replaced after construction, and the
proxy key a websocket URL looks up.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
import responses

from runtime_job.api.client import RuntimeClient
from runtime_job.api.params import ClientParameters, ProxyConfiguration
from runtime_job.exceptions import IBMInputValueError

from .conftest import CLOUD_URL, CRN, LOCAL_URL, TOKEN, local_params


@pytest.mark.parametrize("channel", ["local", "ibm_quantum"])
def test_auth_handler_of_a_token_channel(channel: str) -> None:
    params = ClientParameters(channel=channel, token=TOKEN, url=LOCAL_URL)
    handler = params.get_auth_handler()
    assert handler.get_headers() == {"X-Access-Token": TOKEN}
    assert handler == ClientParameters(channel=channel, token=TOKEN).get_auth_handler()
    assert handler != ClientParameters(channel=channel, token=TOKEN + "x").get_auth_handler()
    assert TOKEN not in repr(handler)


def test_auth_handler_of_ibm_cloud() -> None:
    params = ClientParameters(channel="ibm_cloud", token=TOKEN, url=CLOUD_URL, instance=CRN)
    handler = params.get_auth_handler()
    assert handler.get_headers() == {"Service-CRN": CRN, "Authorization": f"apikey {TOKEN}"}
    other = ClientParameters(channel="ibm_cloud", token=TOKEN, instance="crn:v1:other")
    assert handler != other.get_auth_handler()
    assert (
        handler
        == ClientParameters(channel="ibm_cloud", token=TOKEN, instance=CRN).get_auth_handler()
    )
    assert TOKEN not in repr(handler)


def test_auth_handler_sets_the_headers_of_a_requests_call() -> None:
    handler = ClientParameters(channel="local", token=TOKEN).get_auth_handler()
    prepared = requests.Request("GET", f"{LOCAL_URL}/jobs", auth=handler).prepare()
    assert prepared.headers["X-Access-Token"] == TOKEN


def test_proxies_replaced_after_construction_are_used(
    rsps: responses.RequestsMock, make_client: Callable[..., RuntimeClient]
) -> None:
    params = local_params()
    client = make_client(params)
    rsps.get(f"{LOCAL_URL}/jobs/j1", json={"id": "j1"})
    client.job_get("j1")
    assert not rsps.calls[0].request.req_kwargs["proxies"]  # type: ignore[attr-defined]
    params.proxies = {"urls": {"http": "http://proxy.test:3128"}}
    client.job_get("j1")
    kwargs = rsps.calls[1].request.req_kwargs  # type: ignore[attr-defined]
    assert kwargs["proxies"]["http"] == "http://proxy.test:3128"
    assert params.proxy_config.for_url(f"{LOCAL_URL}/x") == "http://proxy.test:3128"
    params.proxies = ProxyConfiguration(urls={"http": "http://other.test:1"})
    client.job_get("j1")
    kwargs = rsps.calls[2].request.req_kwargs  # type: ignore[attr-defined]
    assert kwargs["proxies"]["http"] == "http://other.test:1"
    params.proxies = None
    client.job_get("j1")
    assert not rsps.calls[3].request.req_kwargs["proxies"]  # type: ignore[attr-defined]


def test_invalid_proxies_set_after_construction_are_refused() -> None:
    params = local_params()
    with pytest.raises(IBMInputValueError):
        params.proxies = {"url": "http://typo.test"}
    assert params.proxies is None


@pytest.mark.parametrize(
    ("urls", "expected"),
    [
        # As the reference: a websocket URL, ws:// included, looks up the wss/https keys.
        ({"http": "http://p-http:1", "https": "http://p-https:2"}, "http://p-https:2"),
        ({"http": "http://p-http:1", "wss": "http://p-wss:3"}, "http://p-wss:3"),
        (
            {"https://runtime.test": "http://p-host:4", "https": "http://p-https:2"},
            "http://p-host:4",
        ),
        ({"http": "http://p-http:1", "all": "http://p-all:5"}, "http://p-all:5"),
        ({"http": "http://p-http:1"}, None),
    ],
)
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_websocket_urls_use_the_reference_proxy_keys(
    scheme: str, urls: dict[str, str], expected: str | None
) -> None:
    config = ProxyConfiguration(urls=urls)
    assert config.for_url(f"{scheme}://runtime.test/stream/jobs/j1") == expected


def test_the_exact_websocket_url_comes_first() -> None:
    url = "ws://runtime.test/stream/jobs/j1"
    config = ProxyConfiguration(urls={url: "http://p-exact:6", "wss": "http://p-wss:3"})
    assert config.for_url(url) == "http://p-exact:6"
