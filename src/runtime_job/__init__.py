"""runtime-job: the Qiskit Runtime job client, rebuilt, with a local runtime server.

Example::

    from runtime_job import RuntimeService

    service = RuntimeService()  # no account configured: the local runtime server
    job = service.run("hello-world", inputs={"iterations": 3},
                      callback=lambda job_id, msg: print(msg))
    print(job.result())

The client, the codec and the service are imported on first use (module ``__getattr__``),
so that importing a subpackage (``runtime_job.server``, ``runtime_job.codec``) does not load
the job, its transport and ``requests``. ``from runtime_job import RuntimeJob`` and
``from runtime_job import *`` work as with eager imports.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .api.params import ClientParameters, ProxyConfiguration
from .backend import Backend, BackendStatus, IBMRetiredBackend
from .exceptions import (
    ApiError,
    ApiIBMProtocolError,
    IBMError,
    IBMInputValueError,
    IBMNotAuthorizedError,
    IBMRuntimeError,
    JobError,
    JobTimeoutError,
    QiskitBackendNotFoundError,
    QiskitError,
    RequestsApiError,
    ResultDecodingError,
    RuntimeInvalidStateError,
    RuntimeJobFailureError,
    RuntimeJobLibraryError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobNotFound,
    RuntimeJobTimeoutError,
    RuntimeProgramNotFound,
    WebsocketError,
)
from .monitor import jobs_html, monitor
from .options import RuntimeOptions
from .status import JOB_FINAL_STATES, JobStatus

if TYPE_CHECKING:
    from .api.client import RuntimeClient
    from .codec import RuntimeDecoder, RuntimeEncoder
    from .decoders import DEFAULT_DECODERS, LenientResultDecoder, ResultDecoder
    from .job import RuntimeJob
    from .service import QiskitRuntimeService, RuntimeService

_LAZY: dict[str, str] = {
    "RuntimeClient": ".api.client",
    "RuntimeDecoder": ".codec",
    "RuntimeEncoder": ".codec",
    "DEFAULT_DECODERS": ".decoders",
    "LenientResultDecoder": ".decoders",
    "ResultDecoder": ".decoders",
    "RuntimeJob": ".job",
    "QiskitRuntimeService": ".service",
    "RuntimeService": ".service",
}
"""Public names whose modules load the transport, numpy or the job (imported on first use)."""

__all__ = [
    "DEFAULT_DECODERS",
    "JOB_FINAL_STATES",
    "ApiError",
    "ApiIBMProtocolError",
    "Backend",
    "BackendStatus",
    "ClientParameters",
    "IBMError",
    "IBMInputValueError",
    "IBMNotAuthorizedError",
    "IBMRetiredBackend",
    "IBMRuntimeError",
    "JobError",
    "JobStatus",
    "JobTimeoutError",
    "LenientResultDecoder",
    "ProxyConfiguration",
    "QiskitBackendNotFoundError",
    "QiskitError",
    "QiskitRuntimeService",
    "RequestsApiError",
    "ResultDecoder",
    "ResultDecodingError",
    "RuntimeClient",
    "RuntimeDecoder",
    "RuntimeEncoder",
    "RuntimeInvalidStateError",
    "RuntimeJob",
    "RuntimeJobFailureError",
    "RuntimeJobLibraryError",
    "RuntimeJobMaxTimeoutError",
    "RuntimeJobNotFound",
    "RuntimeJobTimeoutError",
    "RuntimeOptions",
    "RuntimeProgramNotFound",
    "RuntimeService",
    "WebsocketError",
    "__version__",
    "jobs_html",
    "monitor",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use, and remember the name here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# The log level is a setting from the environment, applied at import (see ``_logging``).
# Only when one is set: configuring the handler loads the transport's redaction filter.
if any(
    os.environ.get(name, "").strip()
    for name in ("RUNTIME_JOB_LOG_LEVEL", "QISKIT_IBM_RUNTIME_LOG_LEVEL")
):
    from ._logging import configure_from_environment

    configure_from_environment()
