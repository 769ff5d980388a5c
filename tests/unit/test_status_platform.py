"""Job states from the platform dialect: the reason code 1305 folded into the reason."""

from __future__ import annotations

import pytest

from runtime_job.status import JobStatus, error_message_for, job_status_from_api, ran_too_long


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        ("Cancelled", "ERROR CODE 1305; RAN TOO LONG", JobStatus.ERROR),
        ("Cancelled", "ERROR CODE 1305", JobStatus.ERROR),
        ("CANCELLED", "RAN TOO LONG", JobStatus.ERROR),
        ("Cancelled", "ERROR CODE 13050; OTHER", JobStatus.CANCELLED),
        ("Cancelled", "ERROR CODE 1517; CANCELLED BY USER", JobStatus.CANCELLED),
        ("Failed", "ERROR CODE 1517; BAD CIRCUIT", JobStatus.ERROR),
        ("Completed", None, JobStatus.DONE),
        ("Queued", None, JobStatus.QUEUED),
        ("Running", None, JobStatus.RUNNING),
    ],
)
def test_platform_states(status: str, reason: str | None, expected: JobStatus) -> None:
    assert job_status_from_api(status, reason) is expected


def test_error_message_templates() -> None:
    text = error_message_for("j1", "Cancelled", "ERROR CODE 1305; RAN TOO LONG", "late")
    assert text == "Job j1 ran longer than maximum execution time. Job was cancelled:\nlate"
    failed = error_message_for("j1", "Failed", "ERROR CODE 1517; X", "x\nTraceback (most recent")
    assert failed == "Job j1 has failed:\nTraceback (most recent"
    assert not ran_too_long(None) and ran_too_long("RAN TOO LONG")
