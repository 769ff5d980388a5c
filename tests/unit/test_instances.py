"""The account's instance on ``ibm_quantum``, as the reference treats it (issue 19 D).

The service is built through its public constructor against a mocked login (``responses``)
that offers three hub/group/projects, since the local server has only one:

- ``run()`` looks for the backend in the account's instance first, then in every other
  hub/group/project of the account; only an ``instance`` given in the run's options is
  strict;
- an account instance the account does not have is not an error: the reference warns that
  it is not found and is ignored, and carries on.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from responses import matchers

from runtime_job import RuntimeService
from runtime_job.config import ENV_VARS
from runtime_job.exceptions import IBMInputValueError, QiskitBackendNotFoundError

AUTH_URL = "https://auth.quantum.test/api"
HTTP_URL = "https://api.quantum.test"
RUNTIME_URL = "https://runtime.quantum.test"
API_TOKEN = "api-token-0123456789"
ACCESS_TOKEN = "access-token-9876543210"

OPEN = "ibm-q/open/main"
HGP1 = "hub1/group1/project1"
HGP2 = "hub2/group2/project2"
BACKENDS = {
    OPEN: ["common_backend", "open_only"],
    HGP1: ["common_backend"],
    HGP2: ["common_backend", "hgp2_only"],
}
"""The account's hgps; the login lists them as open, hub1, hub2, and the reference orders
them hub1, hub2, open (the first entry moved to the end)."""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No saved account or ``QISKIT_IBM_*`` variable of the developer leaks in."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ENV_VARS.values():
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(f"{AUTH_URL}/version", json={"api-auth": "0.1"})
        mock.post(f"{AUTH_URL}/users/loginWithToken", json={"id": ACCESS_TOKEN})
        mock.get(
            f"{AUTH_URL}/users/me",
            json={"urls": {"http": HTTP_URL, "services": {"runtime": RUNTIME_URL}}},
        )
        mock.get(
            f"{HTTP_URL}/Network",
            json=[
                {
                    "name": hub,
                    "groups": {group: {"projects": {project: {"isDefault": False}}}},
                }
                for hub, group, project in (name.split("/") for name in BACKENDS)
            ],
        )
        for hgp, names in BACKENDS.items():
            mock.get(
                f"{RUNTIME_URL}/backends",
                json={"devices": names},
                match=[matchers.query_param_matcher({"provider": hgp})],
            )
        mock.get(
            url=re.compile(rf"{RUNTIME_URL}/backends/[a-z0-9_]+/status"),
            json={"state": True, "status": "active", "length_queue": 0},
        )
        mock.add_callback(responses.POST, f"{RUNTIME_URL}/jobs", callback=_accept_job)
        yield mock


_JOB_IDS = itertools.count()


def _accept_job(request: Any) -> tuple[int, dict[str, str], str]:
    body = json.loads(request.body)
    return 200, {}, json.dumps({"id": f"job-{next(_JOB_IDS)}", "backend": body["backend"]})


def submitted_hgps(rsps: responses.RequestsMock) -> list[str]:
    """The ``hub/group/project`` of every ``POST /jobs``, in order."""
    bodies = [
        json.loads(call.request.body or "{}")
        for call in rsps.calls
        if call.request.method == "POST" and call.request.url == f"{RUNTIME_URL}/jobs"
    ]
    return [f"{b['hub']}/{b['group']}/{b['project']}" for b in bodies]


def service_on(instance: str | None) -> RuntimeService:
    return RuntimeService(channel="ibm_quantum", token=API_TOKEN, url=AUTH_URL, instance=instance)


def run(service: RuntimeService, backend: str, **options: Any) -> None:
    service.run("my-program", inputs={}, options={"backend": backend, **options})


def test_run_tries_the_account_instance_first_then_every_hgp(
    rsps: responses.RequestsMock,
) -> None:
    with service_on(HGP2) as service:
        run(service, "common_backend")  # in every hgp: the account's instance wins
        run(service, "hgp2_only")
        run(service, "open_only")  # not in the account's instance: found in another hgp
        assert submitted_hgps(rsps) == [HGP2, HGP2, OPEN]
        job = service.run("my-program", inputs={}, options={"backend": "open_only"})
        assert job.backend()._instance == OPEN  # type: ignore[union-attr]
        assert service.backend("common_backend")._instance == HGP2
        assert [b.name for b in service.backends()] == ["common_backend", "hgp2_only", "open_only"]
        assert service.active_account()["instance"] == HGP2


def test_without_an_account_instance_the_account_order_decides(
    rsps: responses.RequestsMock,
) -> None:
    with service_on(None) as service:
        run(service, "common_backend")
        run(service, "hgp2_only")
        assert submitted_hgps(rsps) == [HGP1, HGP2]


def test_an_instance_in_the_options_stays_strict(rsps: responses.RequestsMock) -> None:
    with service_on(HGP2) as service:
        with pytest.raises(
            QiskitBackendNotFoundError,
            match=f"^Backend hgp2_only cannot be found in hub/group/project {HGP1}$",
        ):
            run(service, "hgp2_only", instance=HGP1)
        run(service, "common_backend", instance=HGP1)
        with pytest.raises(
            QiskitBackendNotFoundError,
            match="^Backend nope cannot be found in any hub/group/project for this account.$",
        ):
            run(service, "nope")
        assert submitted_hgps(rsps) == [HGP1]


def test_an_unknown_account_instance_warns_and_is_ignored(
    rsps: responses.RequestsMock,
) -> None:
    unknown = "nohub/nogroup/noproject"
    with pytest.warns(UserWarning) as caught:
        service = service_on(unknown)
    assert [str(w.message) for w in caught] == [
        f"Default hub/group/project {unknown} not found for the account and is ignored."
    ]
    assert caught[0].filename == __file__  # points at the caller's line
    with service:
        run(service, "common_backend")  # the account's own order: hub1 first
        run(service, "open_only")
        assert submitted_hgps(rsps) == [HGP1, OPEN]
        assert service.active_account()["instance"] == unknown  # kept, as the reference's


def test_a_malformed_account_instance_raises_before_any_request() -> None:
    with responses.RequestsMock() as nothing_registered:  # any request would fail the test
        with pytest.raises(
            IBMInputValueError,
            match="^Input instance value foo is not in the correct hub/group/project format.$",
        ):
            service_on("foo")
        assert len(nothing_registered.calls) == 0
