"""runtime-job: the Qiskit Runtime job client, rebuilt, with a local runtime server.

Example::

    from runtime_job import RuntimeService

    service = RuntimeService()  # no account configured: the local runtime server
    job = service.run("hello-world", inputs={"iterations": 3},
                      callback=lambda job_id, msg: print(msg))
    print(job.result())
"""

from ._version import __version__
from .api.client import RuntimeClient
from .api.params import ClientParameters, ProxyConfiguration
from .backend import Backend, BackendStatus, IBMRetiredBackend
from .codec import RuntimeDecoder, RuntimeEncoder
from .decoders import DEFAULT_DECODERS, LenientResultDecoder, ResultDecoder
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
from .job import RuntimeJob
from .monitor import jobs_html, monitor
from .options import RuntimeOptions
from .service import QiskitRuntimeService, RuntimeService
from .status import JOB_FINAL_STATES, JobStatus

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
