"""The one exception tree of runtime-job.

Every error the library raises descends from :class:`RuntimeJobLibraryError`, and each keeps
the reference's name and place so ``except`` clauses written for qiskit-ibm-runtime still work::

    RuntimeJobLibraryError (alias QiskitError)
    ├── JobError
    │   └── JobTimeoutError
    ├── QiskitBackendNotFoundError
    └── IBMError
        ├── IBMAccountError
        ├── IBMBackendApiProtocolError
        ├── IBMInputValueError
        ├── IBMNotAuthorizedError              HTTP 401 after login
        ├── IBMApiError
        ├── IBMRuntimeError
        │   ├── RuntimeDuplicateProgramError
        │   ├── RuntimeProgramNotFound
        │   ├── RuntimeJobFailureError
        │   ├── RuntimeJobNotFound
        │   ├── RuntimeInvalidStateError
        │   ├── RuntimeJobTimeoutError         also a built-in TimeoutError
        │   ├── RuntimeJobMaxTimeoutError
        │   └── ResultDecodingError            a payload that cannot be decoded
        └── ApiError
            ├── RequestsApiError               HTTP and network errors (status_code, -1 unknown)
            │   ├── ApiConnectionError         no response (refused, timed out, reset)
            │   ├── NotFoundError              HTTP 404
            │   ├── ConflictError              HTTP 409
            │   ├── RateLimitError             HTTP 429
            │   └── ServerError                HTTP 5xx
            ├── WebsocketError
            │   ├── WebsocketIBMProtocolError
            │   ├── WebsocketAuthenticationError
            │   ├── WebsocketTimeoutError
            │   └── WebsocketRetryableError
            ├── AuthenticationLicenseError
            ├── ApiIBMProtocolError            a malformed server response
            └── UserTimeoutExceededError

Unlike the reference, ``str(err)`` is the plain message (no quoted repr); ``err.message``
holds the same text. The leaves under :class:`RequestsApiError` are raised by the transport
(``runtime_job.api.errors``, the one mapping); ``except RequestsApiError`` catches them all,
and each says whether trying again later may succeed (``retryable``).

With qiskit installed, the roots also take qiskit's classes as bases, as the reference's
errors do: ``except qiskit.exceptions.QiskitError`` catches every error of ours, and
``except`` on ``qiskit.providers.exceptions.JobError``, ``JobTimeoutError`` or
``QiskitBackendNotFoundError`` catches ours of that name. qiskit is never imported for this
(``import qiskit.exceptions`` loads all of qiskit: about 0.4 s, several times our own
import): when qiskit's exception modules are already loaded, the bases are adopted at once;
otherwise a small import hook adopts them as soon as the user's code imports qiskit, in
whichever order, and then removes itself. Should qiskit be loaded past the hook (a finder
placed before it), the first of our errors created afterwards adopts the bases. See
:func:`_adopt_qiskit_bases`.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:  # importlib.abc pulls in importlib.resources and tempfile: ~5 ms
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec

logger = logging.getLogger(__name__)


class _QiskitErrorSlot(Exception):
    """The root's base until qiskit's ``QiskitError`` takes its place (see below).

    A class's bases can be swapped only for one of the same layout; a Python subclass of
    ``Exception`` (like qiskit's ``QiskitError``) has a different one from ``Exception``
    itself, so the root starts from this empty stand-in.
    """


class RuntimeJobLibraryError(_QiskitErrorSlot):
    """Root of every error raised by runtime-job.

    Its base is an empty ``Exception`` subclass, replaced by qiskit's ``QiskitError`` once
    qiskit is loaded (see the module's docstring).

    Args:
        *message: Parts of the message, joined with a single space (as the reference does).
    """

    def __init__(self, *message: Any) -> None:
        if not _qiskit_adopted:  # in case qiskit was loaded past the import hook
            _adopt_qiskit_bases()
        self.message: str = " ".join(str(part) for part in message)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


QiskitError = RuntimeJobLibraryError
"""The reference's root name, kept so ``except QiskitError`` keeps working."""


class JobError(RuntimeJobLibraryError):
    """Base class for errors raised by jobs (terra's ``JobError``)."""


class JobTimeoutError(JobError):
    """Waiting for a job timed out (terra's ``JobTimeoutError``)."""


class QiskitBackendNotFoundError(RuntimeJobLibraryError):
    """No backend matches the criteria."""


class IBMError(RuntimeJobLibraryError):
    """Base class for errors of the runtime client."""


class IBMAccountError(IBMError):
    """An account-related error."""


class IBMBackendApiProtocolError(IBMError):
    """A backend answered with data that breaks the protocol."""


class IBMInputValueError(IBMError):
    """A value given by the user is invalid."""


class IBMNotAuthorizedError(IBMError):
    """The server refused the credentials (HTTP 401 after login)."""


class IBMApiError(IBMError):
    """An error returned by the API."""


class IBMRuntimeError(IBMError):
    """Base class for runtime job and program errors."""


class RuntimeDuplicateProgramError(IBMRuntimeError):
    """A program with the same name already exists."""


class RuntimeProgramNotFound(IBMRuntimeError):
    """The program does not exist."""


class RuntimeJobFailureError(IBMRuntimeError):
    """The job failed, so it has no result."""


class RuntimeJobNotFound(IBMRuntimeError):
    """The job does not exist (or belongs to someone else)."""


class RuntimeInvalidStateError(IBMRuntimeError):
    """The job is in a state that does not allow the operation."""


class RuntimeJobTimeoutError(IBMRuntimeError, TimeoutError):
    """Waiting for the job timed out. Also a built-in :class:`TimeoutError`."""


class RuntimeJobMaxTimeoutError(IBMRuntimeError):
    """The job ran longer than its maximum execution time and was cancelled."""


class ResultDecodingError(IBMRuntimeError):
    """A result or interim result could not be decoded.

    Attributes:
        job_id: The job the payload belongs to, when known.
        excerpt: The start of the offending payload, for diagnosis.
    """

    def __init__(self, message: str, job_id: str | None = None, excerpt: str = "") -> None:
        super().__init__(message)
        self.job_id = job_id
        self.excerpt = excerpt


class ApiError(IBMError):
    """Base class for errors of the transport layer."""


class RequestsApiError(ApiError):
    """An HTTP request failed.

    Attributes:
        status_code: The HTTP status, or ``-1`` when no response was received.
        method: The HTTP method, when known.
        url: The URL, with any secret removed, when known.
        body_excerpt: The start of the response body, when there was one.
        request_id: The server's request id header, when it sent one.
        retry_after: Seconds the server asked to wait (``Retry-After``), when it did.
        retryable: Whether the same request may succeed if sent again later (default: the
            class's; ``False`` here, ``True`` for connection failures, 429 and gateway 5xx).
    """

    retryable: bool = False
    """Whether the same request may succeed if sent again later (each leaf sets its default)."""

    def __init__(
        self,
        message: str,
        status_code: int = -1,
        *,
        method: str | None = None,
        url: str | None = None,
        body_excerpt: str = "",
        request_id: str | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.method = method
        self.url = url
        self.body_excerpt = body_excerpt
        self.request_id = request_id
        self.retry_after = retry_after
        self.retryable = type(self).retryable if retryable is None else retryable


class ApiConnectionError(RequestsApiError):
    """No response was received: the connection was refused, timed out, or dropped.

    ``status_code`` is ``-1``. ``retryable`` is false only for failures a retry cannot
    fix (TLS verification, an invalid URL or proxy).
    """

    retryable = True


class NotFoundError(RequestsApiError):
    """HTTP 404: the job, program, backend or session does not exist (or is not yours)."""


class ConflictError(RequestsApiError):
    """HTTP 409: the request conflicts with the resource's state (e.g. cancelling a final job)."""


class RateLimitError(RequestsApiError):
    """HTTP 429: the server refused the request without acting on it; try again later.

    ``retry_after`` holds the delay the server asked for, when it sent one.
    """

    retryable = True


class ServerError(RequestsApiError):
    """HTTP 5xx: the server or a gateway failed.

    ``retryable`` is true for the gateway statuses the retry policy retries (500, 502, 503,
    504, 520, 521, 522, 524), false for others (501, 505, ...).
    """

    retryable = True


class WebsocketError(ApiError):
    """A websocket connection failed."""


class WebsocketIBMProtocolError(WebsocketError):
    """The websocket server broke the protocol."""


class WebsocketAuthenticationError(WebsocketError):
    """The websocket server refused the credentials."""


class WebsocketTimeoutError(WebsocketError):
    """A websocket operation timed out."""


class WebsocketRetryableError(WebsocketError):
    """A websocket error after which a reconnect may succeed."""


class AuthenticationLicenseError(ApiError):
    """The account must accept a license before using the service."""


class ApiIBMProtocolError(ApiError):
    """The server answered with data that breaks the protocol (a malformed response).

    Args:
        *message: Parts of the message, joined with a single space.
        status_code: The HTTP status of the response, when known.
        url: The URL, with any secret removed, when known.
        body_excerpt: The start of the offending body, when there was one.

    Attributes:
        status_code: As given.
        url: As given.
        body_excerpt: As given.
    """

    def __init__(
        self,
        *message: Any,
        status_code: int | None = None,
        url: str | None = None,
        body_excerpt: str = "",
    ) -> None:
        super().__init__(*message)
        self.status_code = status_code
        self.url = url
        self.body_excerpt = body_excerpt


class UserTimeoutExceededError(ApiError):
    """A user-given timeout ran out during a transport operation."""


# ------------------------------------------------------------------ qiskit interoperability

_QISKIT_ROOT_MODULE = "qiskit.exceptions"
_qiskit_adopted = False
"""Whether qiskit's classes were all found and adopted (then nothing is left to do)."""
_QISKIT_PROVIDER_MODULE = "qiskit.providers.exceptions"
_PROVIDER_BASES: tuple[tuple[type[RuntimeJobLibraryError], str], ...] = (
    (JobError, "JobError"),
    (JobTimeoutError, "JobTimeoutError"),
    (QiskitBackendNotFoundError, "QiskitBackendNotFoundError"),
)
"""Our classes that also take the class of the same name of qiskit.providers.exceptions."""


def _qiskit_class(module: ModuleType | None, name: str) -> type[BaseException] | None:
    found = getattr(module, name, None) if module is not None else None
    if isinstance(found, type) and issubclass(found, BaseException):
        return found
    return None


def _add_base(cls: type, base: type[BaseException]) -> None:
    """Make ``base`` a base of ``cls`` (after its own), once; a refusal is logged, not raised."""
    if issubclass(cls, base):
        return
    try:
        cls.__bases__ = (*cls.__bases__, base)
    except TypeError as err:  # a qiskit whose classes have another layout: no interop
        logger.debug("%s cannot also derive from %r: %s", cls.__name__, base, err)


def _adopt_qiskit_bases() -> bool:
    """Give our roots qiskit's exception classes as bases, for those qiskit has loaded.

    ``RuntimeJobLibraryError`` takes ``qiskit.exceptions.QiskitError`` in place of its
    stand-in base; ``JobError``, ``JobTimeoutError`` and ``QiskitBackendNotFoundError`` add
    qiskit.providers' classes of the same names. Idempotent.

    Returns:
        Whether every one of qiskit's classes was found (nothing is left to adopt).
    """
    root_module = sys.modules.get(_QISKIT_ROOT_MODULE)
    qiskit_error = _qiskit_class(root_module, "QiskitError")
    if qiskit_error is not None and not issubclass(RuntimeJobLibraryError, qiskit_error):
        try:
            RuntimeJobLibraryError.__bases__ = (qiskit_error,)
        except TypeError as err:
            logger.debug("QiskitError cannot be a base of our errors: %s", err)
    complete = qiskit_error is not None
    provider_module = sys.modules.get(_QISKIT_PROVIDER_MODULE)
    for cls, name in _PROVIDER_BASES:
        base = _qiskit_class(provider_module, name)
        if base is None:  # not loaded yet (or still loading)
            complete = False
        else:
            _add_base(cls, base)
    global _qiskit_adopted
    _qiskit_adopted = complete
    return complete


class _AdoptAfterLoading:
    """Wraps the loader of one of qiskit's exception modules: runs it, then adopts the bases.

    The module gets its real loader back before it runs, so nothing of ours stays on it.
    """

    def __init__(self, loader: Loader) -> None:
        self._loader = loader

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        # qiskit.providers.exceptions loads after qiskit.exceptions (it imports it): once it
        # has run, there is nothing left to watch.
        if _adopt_qiskit_bases() or module.__name__ == _QISKIT_PROVIDER_MODULE:
            _QiskitImportWatcher.remove()


class _QiskitImportWatcher:
    """An import hook that only notices qiskit's two exception modules being imported.

    It finds them through the other finders (it never loads anything itself) and wraps
    their loader so the bases are adopted right after the module runs. Every other import
    is passed on at the cost of one set lookup; the hook leaves ``sys.meta_path`` once both
    modules are loaded.
    """

    _WATCHED = frozenset({_QISKIT_ROOT_MODULE, _QISKIT_PROVIDER_MODULE})

    def __init__(self) -> None:
        self._resolving = threading.local()  # names this thread is looking up (re-entry)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname not in self._WATCHED:
            return None
        resolving: set[str] | None = getattr(self._resolving, "names", None)
        if resolving is None:
            resolving = self._resolving.names = set()
        if fullname in resolving:  # another finder asked the whole meta path again
            return None
        resolving.add(fullname)
        try:
            for finder in list(sys.meta_path):
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec: ModuleSpec | None = find(fullname, path, target)
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = cast("Loader", _AdoptAfterLoading(spec.loader))
                    return spec
            return None
        finally:
            resolving.discard(fullname)

    @staticmethod
    def remove() -> None:
        """Take every watcher out of ``sys.meta_path`` (nothing is left to watch)."""
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QiskitImportWatcher)]


if not _adopt_qiskit_bases():
    sys.meta_path.insert(0, _QiskitImportWatcher())


__all__ = [
    "ApiConnectionError",
    "ApiError",
    "ApiIBMProtocolError",
    "AuthenticationLicenseError",
    "ConflictError",
    "IBMAccountError",
    "IBMApiError",
    "IBMBackendApiProtocolError",
    "IBMError",
    "IBMInputValueError",
    "IBMNotAuthorizedError",
    "IBMRuntimeError",
    "JobError",
    "JobTimeoutError",
    "NotFoundError",
    "QiskitBackendNotFoundError",
    "QiskitError",
    "RateLimitError",
    "RequestsApiError",
    "ResultDecodingError",
    "RuntimeDuplicateProgramError",
    "RuntimeInvalidStateError",
    "RuntimeJobFailureError",
    "RuntimeJobLibraryError",
    "RuntimeJobMaxTimeoutError",
    "RuntimeJobNotFound",
    "RuntimeJobTimeoutError",
    "RuntimeProgramNotFound",
    "ServerError",
    "UserTimeoutExceededError",
    "WebsocketAuthenticationError",
    "WebsocketError",
    "WebsocketIBMProtocolError",
    "WebsocketRetryableError",
    "WebsocketTimeoutError",
]
