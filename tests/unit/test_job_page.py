"""The listing models: ``JobPage`` (checked once, as dicts) and the client's ``JobListResponse``."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from runtime_job.api.models import (
    JobListItem,
    JobListProgram,
    JobListResponse,
    JobListState,
    JobProgram,
    JobResponse,
    JobState,
    parse,
    parse_jobs,
)
from runtime_job.exceptions import ApiIBMProtocolError


@pytest.mark.parametrize(
    ("fields", "model"),
    [(JobListItem, JobResponse), (JobListState, JobState), (JobListProgram, JobProgram)],
)
def test_listed_fields_are_the_models_fields(fields: Any, model: Any) -> None:
    assert set(fields.__annotations__) == set(model.model_fields)
    try:
        TypeAdapter(fields).validate_python({"unknown": 1})
        missing: set[Any] = set()
    except ValidationError as err:
        missing = {error["loc"][0] for error in err.errors() if error["type"] == "missing"}
    assert missing == {name for name, info in model.model_fields.items() if info.is_required()}


def test_a_page_keeps_only_the_known_fields() -> None:
    job = {
        "id": "j1",
        "state": {"status": "RUNNING", "queue_position": 3},
        "program": {"id": "echo", "name": "Echo"},
        "tags": ["t"],
        "status": "Running",
        "ended": None,
    }
    page = parse_jobs({"jobs": [job], "count": 5})
    assert page.count == 5
    assert page.jobs == [
        {"id": "j1", "state": {"status": "RUNNING"}, "program": {"id": "echo"}, "tags": ["t"]}
    ]


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({"id": "j9", "state": "RUNNING"}, "state"),
        ({"id": "j9", "program": {"id": 3}}, "program.id"),
        ({"id": "j9", "created": 12}, "created"),
        ({"id": "j9", "cost": "long"}, "cost"),
    ],
)
def test_a_bad_field_names_the_job_as_parse_does(job: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiIBMProtocolError) as one:
        parse(JobResponse, job, "job", "j9")
    with pytest.raises(ApiIBMProtocolError) as listed:
        parse_jobs({"jobs": [{"id": "j0"}, job], "count": 2})
    expected = f"Malformed job j9 response from the server: field '{field}': "
    assert one.value.message.startswith(expected)
    assert listed.value.message.startswith(expected)


@pytest.mark.parametrize("job_id", [None, "", 17, ["j"]])
def test_a_job_without_a_usable_id_is_named_by_its_place(job_id: Any) -> None:
    job = {"state": 1} if job_id is None else {"id": job_id, "state": 1}
    with pytest.raises(ApiIBMProtocolError) as caught:
        parse_jobs({"jobs": [{"id": "j0"}, job], "count": 2})
    assert caught.value.message.startswith(
        "Malformed job list response from the server: field 'jobs.1."
    )


def test_the_clients_page_check_does_not_copy_the_jobs() -> None:
    body: dict[str, Any] = {"jobs": [{"id": "j1", "x": {"y": 1}}], "count": 1}
    assert JobListResponse.model_validate(body).jobs[0] is body["jobs"][0]
    with pytest.raises(ApiIBMProtocolError, match="field 'jobs.0'"):
        parse(JobListResponse, {"jobs": ["j1"], "count": 1}, "job list")
