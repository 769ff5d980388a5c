"""The ``runtime-job`` command line: run a local server, inspect and follow jobs.

Commands::

    runtime-job serve [--host 127.0.0.1] [--port 0] [--data-dir DIR] [--token TOKEN ...]
                      [--tls-cert FILE --tls-key FILE] [--workers N] [--program ID=MOD:FUNC ...]
                      [--insecure-bind] [--no-streams] [--hold-for-streams SECONDS]
                      [--no-stream-replay] [--max-connections N]
                      [--request-head-timeout SECONDS] [--log-level LEVEL]
                      [--idle-timeout SECONDS]
    runtime-job serve --stop [--data-dir DIR]
    runtime-job [CONNECTION] jobs list [--limit N] [--skip N] [--program ID] [--pending |
                      --no-pending] [--tag TAG ...] [--backend NAME] [--session ID]
                      [--created-after TIME] [--created-before TIME] [--asc] [--json]
    runtime-job [CONNECTION] jobs show|logs|metrics|cancel|delete JOB_ID [--json]
    runtime-job [CONNECTION] jobs result|watch JOB_ID [--timeout SECONDS] [--json]

``CONNECTION`` is ``--channel``, ``--url``, ``--token``, ``--instance``, ``--account`` and
``--account-file``; each may also follow the ``jobs`` subcommand. What is not given comes
from the configuration (environment, then the account file, then the local server; see
:mod:`runtime_job.config`).

``serve`` prints ``runtime-job server at <url> (token file: <path>)`` as its first line of
standard output, then serves until ``SIGINT`` or ``SIGTERM`` (or, with ``--idle-timeout``,
until no process has held a lease on its data directory for that long), stops its workers
and exits 0. ``serve --stop`` stops the server of a data directory by its pid.

The ``jobs`` commands print tables and text for people, or JSON with ``--json`` (one
document; ``watch`` prints one JSON object per line). Their exit statuses are
:data:`EXIT_OK`, :data:`EXIT_ERROR` (the job failed or was cancelled, or the server refused
the operation), :data:`EXIT_USAGE`, :data:`EXIT_NOT_FOUND`, :data:`EXIT_AUTH`,
:data:`EXIT_CONNECTION`, :data:`EXIT_TIMEOUT`, :data:`EXIT_INTERRUPTED` and
:data:`EXIT_BROKEN_PIPE`.

Each command is one ``add_*`` function registering a sub-parser and its handler.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pprint
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from types import FrameType
from typing import Any, TextIO

from . import __version__
from ._redact import redact
from .api.params import CHANNELS
from .codec import RuntimeEncoder
from .decoders import LenientResultDecoder, ResultDecoder
from .exceptions import (
    ApiConnectionError,
    ApiIBMProtocolError,
    AuthenticationLicenseError,
    IBMAccountError,
    IBMInputValueError,
    IBMNotAuthorizedError,
    IBMRuntimeError,
    NotFoundError,
    RateLimitError,
    RequestsApiError,
    ResultDecodingError,
    RuntimeInvalidStateError,
    RuntimeJobFailureError,
    RuntimeJobLibraryError,
    RuntimeJobMaxTimeoutError,
    RuntimeJobNotFound,
    RuntimeJobTimeoutError,
    ServerError,
    WebsocketAuthenticationError,
    WebsocketError,
)
from .job import RuntimeJob
from .service import RuntimeService
from .status import JOB_FINAL_STATES, JobStatus
from .timing import Deadline

EXIT_OK = 0
"""Success."""
EXIT_ERROR = 1
"""The job failed or was cancelled (``result``, ``watch``), or the operation failed (the
server refused it, e.g. cancelling a finished job; for ``serve``: cannot serve), or an
unexpected internal error (reported on one line, never as a traceback)."""
EXIT_USAGE = 2
"""Invalid arguments or configuration."""
EXIT_NOT_FOUND = 3
"""``jobs``: no such job (for this user). ``serve`` uses 3 for "data directory in use"."""
EXIT_AUTH = 4
"""``jobs``: the server refused the credentials."""
EXIT_CONNECTION = 5
"""``jobs``: the server cannot be reached, or failed (5xx, broken responses)."""
EXIT_TIMEOUT = 6
"""``jobs result|watch --timeout``: the job was not final in time."""
EXIT_INTERRUPTED = 130
"""Interrupted (``SIGINT``, Ctrl-C)."""
EXIT_BROKEN_PIPE = 141
"""Standard output was closed by its reader (e.g. piped into ``head``), as with ``SIGPIPE``."""

Handler = Callable[[argparse.Namespace], int]

_EXIT_STATUS_HELP = """\
exit status of the jobs commands:
  0    success
  1    the job failed or was cancelled (result, watch), or the server refused
       the operation (e.g. cancelling a finished job)
  2    usage or configuration error
  3    no such job
  4    authentication failed
  5    cannot reach the server, or the server failed
  6    --timeout expired before the job finished (result, watch)
  130  interrupted (Ctrl-C)
  141  standard output closed by its reader (e.g. piped into head)
"""
_SERVE_EXIT_STATUS_HELP = """\
exit status:
  0    stopped by SIGINT or SIGTERM
  1    cannot serve (e.g. the address cannot be bound)
  2    bad arguments (including a non-loopback --host without TLS or --insecure-bind)
  3    another server already serves this data directory
with --stop:
  0    the server was stopped, or no server serves the data directory
  1    the server could not be stopped (it runs inside another program, or lives on)
"""
_CONNECTION_HELP = """\
connection: --channel, --url, --token, --instance, --account and --account-file go
before or after the jobs subcommand; what is not given comes from QISKIT_IBM_CHANNEL,
QISKIT_IBM_URL, QISKIT_IBM_TOKEN, QISKIT_IBM_INSTANCE, then ~/.qiskit/qiskit-ibm.json,
then the local runtime server (see docs/configuration.md).
"""
_CONNECTION_DESTS = (
    "conn_channel",
    "conn_url",
    "conn_token",
    "conn_instance",
    "conn_account",
    "conn_account_file",
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535")
    return value


def _program(text: str) -> tuple[str, str]:
    program_id, sep, path = text.partition("=")
    if not sep or not program_id or not path:
        raise argparse.ArgumentTypeError("expected ID=package.module:function")
    return program_id, path


def add_serve(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``serve``: run a local runtime server in the foreground.

    Args:
        subparsers: The sub-parsers of the ``runtime-job`` parser.
    """
    parser = subparsers.add_parser(
        "serve",
        help="run a local runtime server",
        description=(
            "Serve the runtime API (REST and websocket) on this machine until SIGINT or "
            "SIGTERM. The first line of output names the URL and the token file."
        ),
        epilog=_SERVE_EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=0, help="port to bind (default 0: any)")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="where jobs are stored (default $XDG_DATA_HOME/runtime-job or "
        "~/.local/share/runtime-job)",
    )
    parser.add_argument(
        "--token",
        action="append",
        default=None,
        help="API token of a user; repeat for several users (default: the data directory's "
        "token file, created with a random token)",
    )
    parser.add_argument("--tls-cert", default=None, help="certificate file (PEM) for HTTPS")
    parser.add_argument("--tls-key", default=None, help="private key file (PEM) for HTTPS")
    parser.add_argument(
        "--workers", type=_positive_int, default=2, help="worker processes (default 2)"
    )
    parser.add_argument(
        "--program",
        action="append",
        type=_program,
        default=[],
        metavar="ID=MODULE:FUNCTION",
        help="register a program by import path; repeat for several",
    )
    parser.add_argument(
        "--insecure-bind",
        action="store_true",
        help="allow a non-loopback address without TLS",
    )
    parser.add_argument(
        "--no-streams",
        dest="streams",
        action="store_false",
        help="play a server that does not stream: each /stream/jobs/{id} websocket is "
        "closed normally at once, with nothing sent, so clients poll",
    )
    parser.add_argument(
        "--hold-for-streams",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="keep each queued job waiting until a client opens its stream, or SECONDS "
        "at most (default 0: run jobs as soon as a worker is free)",
    )
    parser.add_argument(
        "--no-stream-replay",
        dest="stream_replay",
        action="store_false",
        help="play the hosted service: a stream gets only the interim results published "
        "after it connected, none from before",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive_int,
        default=None,
        metavar="N",
        help="most connections served at once, websockets included (default 512); beyond "
        "it a new one closes the oldest still waiting for its first request",
    )
    parser.add_argument(
        "--request-head-timeout",
        type=partial(_seconds, zero=False),
        default=None,
        metavar="SECONDS",
        help="seconds a connection may take to send a request head before it is closed "
        "(default 10)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="server log level on stderr (default warning)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="stop by itself once no process has held a lease on the data directory for "
        "SECONDS (processes that found the server there: RuntimeService(channel='local') "
        "without a URL, the jobs commands without --url); default: serve until stopped",
    )
    parser.add_argument(
        "--stop",
        action="store_true",
        help="stop the 'runtime-job serve' process serving --data-dir (SIGTERM to its pid, "
        "SIGKILL after 15 s) and exit",
    )
    parser.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=_serve)


def _detach() -> None:
    """Fork: the parent exits at once, the child serves as nobody's child (``--background``).

    Called before any thread exists. The process that started ``--background`` then has
    nothing to wait for; the child reports on the standard output it inherited.
    """
    if os.fork() > 0:
        os._exit(0)


def _serve_failed(args: argparse.Namespace, status: int, message: str) -> int:
    """Report that serve cannot serve: on stderr, and as the first line when in background."""
    from .server.launcher import background_error_line

    print(f"runtime-job serve: error: {message}", file=sys.stderr)
    if args.background:
        print(background_error_line(status, message), flush=True)
    return status


def _serve_stop(args: argparse.Namespace) -> int:
    """``serve --stop``: stop the server of the data directory by its pid."""
    from .server.launcher import LocalServerStopError, stop_local_server
    from .server.paths import DataDir

    data = DataDir.resolve(args.data_dir)
    try:
        pid = stop_local_server(data.root)
    except LocalServerStopError as err:
        print(f"runtime-job serve: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    if pid is None:
        print(f"runtime-job serve: no server serves {data.root}", file=sys.stderr)
    else:
        print(f"stopped the runtime-job server of {data.root} (pid {pid})")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    if args.stop:
        return _serve_stop(args)
    if args.background:
        _detach()
    from .server import config as limits
    from .server.launcher import EXIT_DATA_DIR_IN_USE, SERVE_COMMAND, IdleWatch
    from .server.local import DataDirInUse, LocalRuntimeServer

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        server = LocalRuntimeServer(
            data_dir=args.data_dir,
            tokens=args.token,
            host=args.host,
            port=args.port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            workers=args.workers,
            programs=dict(args.program),
            insecure_bind=args.insecure_bind,
            streams=args.streams,
            hold_for_streams=args.hold_for_streams,
            stream_replay=args.stream_replay,
            max_connections=args.max_connections or limits.MAX_CONNECTIONS,
            request_head_timeout=args.request_head_timeout or limits.REQUEST_HEAD_TIMEOUT,
            gc_freeze=True,  # this process is only the server
        )
    except ValueError as err:
        return _serve_failed(args, EXIT_USAGE, str(err))

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    watch: IdleWatch | None = None
    try:
        if args.idle_timeout is not None:
            try:
                server.data.create()
                watch = IdleWatch(server.data, args.idle_timeout)
            except OSError as err:
                message = f"cannot watch the clients of {server.data.root}: {err.strerror}"
                return _serve_failed(args, EXIT_ERROR, message)
        try:
            server.start()
        except DataDirInUse as err:
            return _serve_failed(args, EXIT_DATA_DIR_IN_USE, str(err))
        except OSError as err:
            return _serve_failed(args, EXIT_ERROR, f"cannot serve on {args.host}: {err}")
        except RuntimeError as err:
            return _serve_failed(args, EXIT_ERROR, str(err))
        try:
            info = server.data.read_server_info() or {}
            info.update(command=SERVE_COMMAND, idle_timeout=args.idle_timeout)
            server.data.write_server_info(info)
            print(f"runtime-job server at {server.url} (token file: {server.token_file})")
            sys.stdout.flush()
            if args.background:  # the starter stops reading after the first line
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.close(devnull)
            if watch is None:
                while not stop.wait():
                    pass
            elif watch.wait(stop):
                logging.getLogger("runtime_job.server").info(
                    "No process used the server for %g s: stopping.", args.idle_timeout
                )
        finally:
            server.stop()
    finally:
        if watch is not None:
            watch.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


# ------------------------------------------------------------------------------ arguments


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from err
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive_float(text: str) -> float:
    return _seconds(text, zero=False)


def _seconds(text: str, zero: bool = True) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, not {text!r}") from err
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        kind = "a number of seconds, 0 or more" if zero else "a positive number of seconds"
        raise argparse.ArgumentTypeError(f"must be {kind}")
    return value


def _timestamp(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 date and time such as 2024-05-01T12:00:00Z, not {text!r}"
        ) from err


def _add_connection_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Add the connection options; ``suppress`` leaves them unset when not given.

    The top-level parser sets them to ``None``; the sub-parsers suppress their defaults so a
    value given before the subcommand is not overwritten.
    """
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("connection (default: the configuration)")
    group.add_argument(
        "--channel", dest="conn_channel", choices=CHANNELS, default=default, help="the channel"
    )
    group.add_argument(
        "--url",
        dest="conn_url",
        metavar="URL",
        default=default,
        help="server URL (local), auth URL, cloud URL",
    )
    group.add_argument(
        "--token",
        dest="conn_token",
        metavar="TOKEN",
        default=default,
        help="API token (visible to other local users in the process list: prefer "
        "QISKIT_IBM_TOKEN or the account file)",
    )
    group.add_argument(
        "--instance",
        dest="conn_instance",
        metavar="INSTANCE",
        default=default,
        help="hub/group/project (ibm_quantum) or CRN (ibm_cloud)",
    )
    group.add_argument(
        "--account",
        dest="conn_account",
        metavar="NAME",
        default=default,
        help="use this saved account of the account file",
    )
    group.add_argument(
        "--account-file",
        dest="conn_account_file",
        metavar="FILE",
        default=default,
        help="account file (default ~/.qiskit/qiskit-ibm.json)",
    )


def _add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


# --------------------------------------------------------------------------------- output


class _Output:
    """Writes a command's output: JSON documents, JSON lines or text, one writer at a time."""

    def __init__(self, json_mode: bool, stream: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self._stream = stream
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        stream = self._stream or sys.stdout
        with self._lock:
            stream.write(text if text.endswith("\n") else text + "\n")
            stream.flush()

    def document(self, value: Any) -> None:
        """Print one JSON document."""
        self._write(json.dumps(value, indent=2, ensure_ascii=False))

    def record(self, value: Any) -> None:
        """Print one JSON object on one line (JSON lines)."""
        self._write(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def text(self, text: str) -> None:
        """Print text for people."""
        self._write(text)


def _error(message: str) -> None:
    sys.stderr.write(f"runtime-job: error: {message}\n")
    sys.stderr.flush()


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table: one header line, columns separated by two spaces."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in [headers, *rows]
    ]
    return "\n".join(lines)


def _utc_text(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _local_text(value: datetime | None) -> str:
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _as_json(value: Any) -> Any:
    """``value`` as plain JSON data (tagged like the wire format where JSON has no type)."""
    try:
        return json.loads(json.dumps(value, cls=RuntimeEncoder))
    except (TypeError, ValueError):
        return repr(value)


def _for_people(value: Any, *, indent: int | None = 2) -> str:
    """``value`` as text: strings as they are, JSON data as JSON, anything else as a repr."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return pprint.pformat(value) if indent else repr(value)


class _PlainJsonDecoder(ResultDecoder):
    """A result as plain JSON data (type tags kept as they are), or the text if not JSON."""

    @classmethod
    def decode(cls, raw: str | bytes) -> Any:
        """Parse ``raw`` as plain JSON; return the text itself when it is not JSON.

        Args:
            raw: The payload.

        Returns:
            The JSON data, or the payload as text.
        """
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        try:
            return json.loads(text)
        except ValueError:
            return text


@dataclass(frozen=True)
class _Interim:
    """An interim result, told apart from the final result that streams after it."""

    value: Any


class _InterimForPeople(LenientResultDecoder):
    """Interim results decoded with the codec (text kept when not JSON), marked."""

    @classmethod
    def decode(cls, raw: str | bytes) -> Any:
        """Decode an interim result and mark it.

        Args:
            raw: The payload.

        Returns:
            The decoded value in an ``_Interim``.
        """
        return _Interim(super().decode(raw))


class _InterimAsJson(ResultDecoder):
    """Interim results as plain JSON data, marked."""

    @classmethod
    def decode(cls, raw: str | bytes) -> Any:
        """Parse an interim result as plain JSON and mark it.

        Args:
            raw: The payload.

        Returns:
            The JSON data in an ``_Interim``.
        """
        return _Interim(_PlainJsonDecoder.decode(raw))


# ---------------------------------------------------------------------------- exit status


def _causes(err: BaseException) -> Iterator[BaseException]:
    """``err`` and the errors it was raised ``from``, in turn."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__


def exit_status_for(err: BaseException) -> int:
    """The exit status of a ``jobs`` command that failed with ``err``.

    The error and the errors it was raised ``from`` are examined in turn, by type (the
    transport's typed leaves included); the first that says something decides: not found
    (3), authentication (4), connection or server (5), timeout (6), job failure or refusal
    (1), usage or configuration (2). Anything else is 1.

    Args:
        err: The error.

    Returns:
        The exit status.
    """
    for cause in _causes(err):
        if isinstance(cause, RuntimeJobNotFound | NotFoundError):
            return EXIT_NOT_FOUND
        if isinstance(
            cause,
            IBMNotAuthorizedError | WebsocketAuthenticationError | AuthenticationLicenseError,
        ):
            return EXIT_AUTH
        if isinstance(cause, ApiConnectionError | ServerError | RateLimitError):
            return EXIT_CONNECTION
        if isinstance(cause, RequestsApiError):
            # 401 on the login call, 403: refused credentials; any other status: refused.
            auth = cause.status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN)
            return EXIT_AUTH if auth else EXIT_ERROR
        if isinstance(cause, RuntimeJobTimeoutError):
            return EXIT_TIMEOUT
        if isinstance(
            cause, RuntimeJobFailureError | RuntimeJobMaxTimeoutError | RuntimeInvalidStateError
        ):
            return EXIT_ERROR
        if isinstance(cause, IBMInputValueError | IBMAccountError):
            return EXIT_USAGE
        if isinstance(cause, WebsocketError | ApiIBMProtocolError):
            return EXIT_CONNECTION
    return EXIT_ERROR


# ------------------------------------------------------------------------------ the jobs

JobsCommand = Callable[[RuntimeService, argparse.Namespace, _Output], int]


def _connect(args: argparse.Namespace) -> RuntimeService:
    return RuntimeService(
        channel=args.conn_channel,
        token=args.conn_token,
        url=args.conn_url,
        instance=args.conn_instance,
        name=args.conn_account,
        filename=args.conn_account_file,
    )


def _jobs_handler(command: JobsCommand) -> Handler:
    """A handler that connects, runs ``command`` and turns errors into exit statuses."""

    def handler(args: argparse.Namespace) -> int:
        out = _Output(args.json)
        try:
            service = _connect(args)
        except RuntimeJobLibraryError as err:
            _error(str(err))
            return exit_status_for(err)
        except RuntimeError as err:  # ensure_local_server could not start or join a server
            _error(f"no local runtime server: {err}")
            return EXIT_CONNECTION
        try:
            with service:
                return command(service, args, out)
        except RuntimeJobLibraryError as err:
            _error(str(err))
            return exit_status_for(err)

    return handler


@contextlib.contextmanager
def _about_job(job_id: str) -> Iterator[None]:
    """Report "no such job" answers about ``job_id`` (404, or 422 for an invalid id) briefly."""
    try:
        yield
    except RuntimeJobNotFound as err:
        raise RuntimeJobNotFound(f"Job {job_id} not found.") from err
    except IBMRuntimeError as err:
        if any(
            isinstance(cause, RequestsApiError)
            and cause.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
            for cause in _causes(err)
        ):
            raise RuntimeJobNotFound(f"Job {job_id} not found (not a valid job id).") from err
        raise


def _get_job(service: RuntimeService, job_id: str) -> RuntimeJob:
    """``service.job(job_id)``, where an id the server calls invalid is not found either."""
    with _about_job(job_id):
        return service.job(job_id)


def _summary(job: RuntimeJob) -> dict[str, Any]:
    """A job's listing fields: id, status, program, backend, created (UTC) and tags."""
    backend = job.backend()
    return {
        "id": job.job_id(),
        "status": job.status().name,
        "program": job.program_id,
        "backend": backend.name if backend is not None else None,
        "created": _utc_text(job.creation_date),
        "tags": list(job.tags or []),
    }


_LIST_THREADS = 8
"""Statuses of listed jobs are asked this many at a time."""


def _jobs_list(service: RuntimeService, args: argparse.Namespace, out: _Output) -> int:
    jobs = service.jobs(
        limit=args.limit or None,
        skip=args.skip,
        backend_name=args.backend,
        pending=args.pending,
        program_id=args.program,
        instance=args.conn_instance if service.channel == "ibm_quantum" else None,
        job_tags=args.tag or None,
        session_id=args.session,
        created_after=args.created_after,
        created_before=args.created_before,
        descending=not args.asc,
    )
    if len(jobs) > 1:
        with ThreadPoolExecutor(min(_LIST_THREADS, len(jobs)), "runtime-job-list") as pool:
            rows = list(pool.map(_summary, jobs))
    else:
        rows = [_summary(job) for job in jobs]
    if out.json_mode:
        out.document(rows)
    elif not rows:
        out.text("No jobs.")
    else:
        out.text(
            _table(
                ["ID", "STATUS", "PROGRAM", "BACKEND", "CREATED", "TAGS"],
                [
                    [
                        row["id"],
                        row["status"],
                        row["program"] or "-",
                        row["backend"] or "-",
                        _local_text(datetime.fromisoformat(row["created"]))
                        if row["created"]
                        else "-",
                        ",".join(row["tags"]) or "-",
                    ]
                    for row in rows
                ],
            )
        )
    return EXIT_OK


def _jobs_show(service: RuntimeService, args: argparse.Namespace, out: _Output) -> int:
    job = _get_job(service, args.job_id)
    info = _summary(job)
    info["session_id"] = job.session_id
    info["image"] = job.image or None
    info["error"] = job.error_message() if job.status() is JobStatus.ERROR else None
    info["inputs"] = _as_json(job.inputs)
    if out.json_mode:
        out.document(info)
        return EXIT_OK
    fields = [
        ("id", info["id"]),
        ("status", info["status"]),
        ("program", info["program"] or "-"),
        ("backend", info["backend"] or "-"),
        ("created", _local_text(job.creation_date)),
        ("session", info["session_id"] or "-"),
        ("tags", ", ".join(info["tags"]) or "-"),
        ("image", info["image"] or "-"),
    ]
    if info["error"]:
        fields.append(("error", info["error"]))
    fields.append(("inputs", _for_people(job.inputs, indent=None)))
    width = max(len(name) for name, _ in fields) + 1
    out.text("\n".join(f"{name + ':':<{width}} {value}" for name, value in fields))
    return EXIT_OK


def _job_failed(job: RuntimeJob, err: RuntimeJobLibraryError, out: _Output) -> int:
    """Report a job that failed or was cancelled; the exit status is 1."""
    status = job.status()
    message = (job.error_message() or str(err)).rstrip()
    if out.json_mode:
        out.document({"id": job.job_id(), "status": status.name, "error": message})
    _error(message)
    return EXIT_ERROR


def _jobs_result(service: RuntimeService, args: argparse.Namespace, out: _Output) -> int:
    job = _get_job(service, args.job_id)
    try:
        if out.json_mode:
            value = job.result(timeout=args.timeout, decoder=_PlainJsonDecoder)
        else:
            try:
                value = job.result(timeout=args.timeout)
            except ResultDecodingError:
                value = job.result(decoder=_PlainJsonDecoder)
    except (RuntimeJobFailureError, RuntimeJobMaxTimeoutError, RuntimeInvalidStateError) as err:
        return _job_failed(job, err, out)
    if out.json_mode:
        out.document({"id": job.job_id(), "status": job.status().name, "result": value})
    else:
        out.text(_for_people(value))
    return EXIT_OK


def _jobs_logs(service: RuntimeService, args: argparse.Namespace, out: _Output) -> int:
    job = _get_job(service, args.job_id)
    logs = job.logs()
    if out.json_mode:
        out.document({"id": job.job_id(), "logs": logs})
    elif logs:
        out.text(logs)
    return EXIT_OK


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict) and value:
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            rows += _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return rows
    return [(prefix, _for_people(value, indent=None))]


def _jobs_metrics(service: RuntimeService, args: argparse.Namespace, out: _Output) -> int:
    job = _get_job(service, args.job_id)
    metrics = job.metrics()
    if out.json_mode:
        out.document(metrics)
    else:
        out.text(_table(["METRIC", "VALUE"], _flatten(metrics)))
    return EXIT_OK


def _jobs_cancel(service: RuntimeService, args: argparse.Namespace, out: _Output) -> int:
    job = _get_job(service, args.job_id)
    job.cancel()
    status = job.status()
    if out.json_mode:
        out.document({"id": job.job_id(), "status": status.name})
    else:
        out.text(f"Cancelled job {job.job_id()} (status: {status.name}).")
    return EXIT_OK


def _jobs_delete(service: RuntimeService, args: argparse.Namespace, out: _Output) -> int:
    with _about_job(args.job_id):
        service.delete_job(args.job_id)
    if out.json_mode:
        out.document({"id": args.job_id, "deleted": True})
    else:
        out.text(f"Deleted job {args.job_id}.")
    return EXIT_OK


_PROGRESS = {JobStatus.INITIALIZING: 0, JobStatus.QUEUED: 1, JobStatus.VALIDATING: 2}
"""How far along each status is; running is 3 and the final statuses 4."""


def _progress(status: JobStatus) -> int:
    if status is JobStatus.RUNNING:
        return 3
    return _PROGRESS.get(status, 4)


class _Watcher:
    """Prints a job's status changes, interim results and end, as text or JSON lines.

    The main thread reports statuses as it polls them, the stream hub reports interim
    results as they arrive; a status is printed once, and never after a later one.
    """

    def __init__(self, job: RuntimeJob, out: _Output) -> None:
        self.job = job
        self.out = out
        self._lock = threading.Lock()
        self._last: JobStatus | None = None

    def _emit(self, event: str, text: str, **fields: Any) -> None:
        now = datetime.now(UTC)
        if self.out.json_mode:
            self.out.record(
                {"event": event, "id": self.job.job_id(), "time": _utc_text(now), **fields}
            )
        else:
            self.out.text(f"{now.astimezone().strftime('%H:%M:%S')}  {text}")

    def _status(self, status: JobStatus) -> None:
        last = self._last
        if last is not None and _progress(status) <= _progress(last):
            return
        self._last = status
        self._emit("status", status.name, status=status.name)

    def status(self, status: JobStatus) -> None:
        """Print ``status`` unless it was printed already or the job is further along."""
        with self._lock:
            self._status(status)

    def on_message(self, job_id: str, value: Any) -> None:
        """The stream callback: print an interim result (a job publishing one is running).

        The final result streams too, decoded with the final decoder (not marked): it is
        printed once the job is done, the same way whether or not the stream delivered it.
        """
        if not isinstance(value, _Interim):
            return
        shown = value.value if self.out.json_mode else _for_people(value.value, indent=None)
        # A closed standard output is reported by the main thread's next line.
        with contextlib.suppress(BrokenPipeError), self._lock:
            self._status(JobStatus.RUNNING)
            self._emit("interim", f"interim: {shown}", data=value.value)

    def result(self, value: Any) -> None:
        """Print the final result."""
        shown = value if self.out.json_mode else _for_people(value, indent=None)
        self._emit("result", f"result: {shown}", data=value)

    def failure(self, status: JobStatus, message: str) -> None:
        """Print why the job failed or that it was cancelled."""
        self._emit("error", f"error: {message}", status=status.name, message=message)


def _follow(job: RuntimeJob, watcher: _Watcher, deadline: Deadline) -> JobStatus:
    """Print status changes and interim results until the job is final; return its status.

    The job's own machinery does the waiting: its status callbacks report the changes (the
    shared watcher polls them), its stream the interim results and the end, and
    ``wait_for_final_state`` is the one wait (the same as ``result()``'s).
    """
    status = job.status()
    watcher.status(status)
    if status in JOB_FINAL_STATES:
        return status
    decoder = _InterimAsJson if watcher.out.json_mode else _InterimForPeople

    def on_status(job_id: str, changed: JobStatus, queue_position: int | None) -> None:
        if changed not in JOB_FINAL_STATES:  # the end is printed once everything came
            watcher.status(changed)

    with contextlib.suppress(RuntimeInvalidStateError):  # the job ended meanwhile
        job.stream_results(watcher.on_message, decoder=decoder)
    job.add_status_callback(on_status)
    try:
        left = deadline.remaining()
        try:
            if left is not None and left <= 0:
                raise RuntimeJobTimeoutError("no time left")
            # Final: the stream has delivered its last messages when this returns.
            job.wait_for_final_state(timeout=left)
        except RuntimeJobTimeoutError as err:
            raise RuntimeJobTimeoutError(
                f"Timed out after {deadline.timeout} s: job {job.job_id()} is still "
                f"{job.status().name}."
            ) from err
    finally:
        job.remove_status_callback(on_status)
        job.cancel_result_streaming()
    status = job.status()
    watcher.status(status)
    return status


def _jobs_watch(service: RuntimeService, args: argparse.Namespace, out: _Output) -> int:
    job = _get_job(service, args.job_id)
    watcher = _Watcher(job, out)
    status = _follow(job, watcher, Deadline(args.timeout))
    if status is JobStatus.DONE:
        try:
            value = job.result(decoder=_PlainJsonDecoder if out.json_mode else None)
        except ResultDecodingError:
            value = job.result(decoder=_PlainJsonDecoder)
        watcher.result(value)
        return EXIT_OK
    message = (job.error_message() or f"Job {job.job_id()} was {status.name.lower()}.").rstrip()
    watcher.failure(status, message)
    return EXIT_ERROR


def add_jobs(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``jobs``: list, inspect, follow, cancel and delete jobs.

    Args:
        subparsers: The sub-parsers of the ``runtime-job`` parser.
    """
    formatter = argparse.RawDescriptionHelpFormatter
    epilog = _CONNECTION_HELP + "\n" + _EXIT_STATUS_HELP
    jobs = subparsers.add_parser(
        "jobs",
        help="list, inspect, follow, cancel and delete jobs",
        description="Work with the jobs of the configured runtime service.",
        epilog=epilog,
        formatter_class=formatter,
    )
    _add_connection_options(jobs, suppress=True)
    jobs.set_defaults(handler=_usage_handler(jobs))
    commands = jobs.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND")

    def command(
        name: str, run: JobsCommand, summary: str, *, job_id: bool = True
    ) -> argparse.ArgumentParser:
        parser = commands.add_parser(
            name,
            help=summary.split(". ")[0].rstrip("."),
            description=textwrap.fill(summary, width=88),
            epilog=epilog,
            formatter_class=formatter,
        )
        if job_id:
            parser.add_argument("job_id", metavar="JOB_ID", help="the job's id")
        _add_json_option(parser)
        _add_connection_options(parser, suppress=True)
        parser.set_defaults(handler=_jobs_handler(run))
        return parser

    listing = command(
        "list",
        _jobs_list,
        "List jobs, newest first: id, status, program, backend, creation time, tags.",
        job_id=False,
    )
    listing.add_argument(
        "--limit",
        type=_non_negative_int,
        default=10,
        metavar="N",
        help="at most N jobs (default 10; 0: all of them)",
    )
    listing.add_argument(
        "--skip", type=_non_negative_int, default=0, metavar="N", help="skip the first N jobs"
    )
    listing.add_argument("--program", metavar="ID", help="only jobs of this program")
    listing.add_argument(
        "--pending",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="only queued or running jobs (--pending), or only finished ones (--no-pending)",
    )
    listing.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="TAG",
        help="only jobs with this tag; repeat to require several",
    )
    listing.add_argument("--backend", metavar="NAME", help="only jobs on this backend")
    listing.add_argument("--session", metavar="ID", help="only jobs of this session")
    listing.add_argument(
        "--created-after",
        type=_timestamp,
        metavar="TIME",
        help="only jobs created after TIME (ISO 8601; local time unless it has an offset)",
    )
    listing.add_argument(
        "--created-before", type=_timestamp, metavar="TIME", help="only jobs created before TIME"
    )
    listing.add_argument("--asc", action="store_true", help="oldest first")

    command("show", _jobs_show, "Show a job: status, program, backend, times, tags, error, inputs.")
    result = command(
        "result",
        _jobs_result,
        "Wait for a job to finish and print its result (exit status 1 if it failed or was "
        "cancelled). With --json: {id, status, result}, the result as plain JSON.",
    )
    result.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="give up after SECONDS (exit status 6); default: wait as long as it takes",
    )
    command("logs", _jobs_logs, "Print a job's logs (complete once the job is final).")
    command("metrics", _jobs_metrics, "Print a job's metrics: timestamps and usage.")
    command("cancel", _jobs_cancel, "Cancel a queued or running job.")
    command("delete", _jobs_delete, "Delete a job (a running job is stopped first).")
    watch = command(
        "watch",
        _jobs_watch,
        "Follow a job until it is final: status changes and interim results as they "
        "arrive, then the result or the error (exit status 1 if it failed or was "
        "cancelled). With --json: one JSON object per line, with an 'event' of status, "
        "interim, result or error.",
    )
    watch.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="SECONDS",
        help="give up after SECONDS (exit status 6); default: follow until the job ends",
    )


def _usage_handler(parser: argparse.ArgumentParser) -> Handler:
    """A handler for a command group given without its subcommand: help, status 2."""

    def handler(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    return handler


def build_parser() -> argparse.ArgumentParser:
    """The ``runtime-job`` argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="runtime-job",
        description="Local Qiskit Runtime server and job tools.",
        epilog=_CONNECTION_HELP
        + "\n"
        + _EXIT_STATUS_HELP
        + "\nserve has its own exit statuses: see runtime-job serve --help.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"runtime-job {__version__}")
    _add_connection_options(parser, suppress=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_serve(subparsers)
    add_jobs(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(_attach_token_values(arguments, _option_strings(parser)))
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "serve" and any(
        getattr(args, dest, None) is not None for dest in _CONNECTION_DESTS
    ):
        parser.error(
            "--channel, --url, --token, --instance, --account and --account-file are "
            "options of the jobs commands (serve takes its own --token after 'serve')"
        )
    try:
        return handler(args)
    except KeyboardInterrupt:
        sys.stderr.write("runtime-job: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _broken_pipe()
    except Exception as err:  # a bug, or an error we did not foresee: one line, no traceback
        _error(redact(f"internal error: {type(err).__name__}: {err}", _known_tokens(args)))
        return EXIT_ERROR


def _attach_token_values(argv: list[str], options: frozenset[str]) -> list[str]:
    """Write ``--token VALUE`` as ``--token=VALUE`` when the value begins with a dash.

    A random token (the server's own, from ``secrets.token_urlsafe``) begins with ``-`` one
    time in 64, and argparse takes such a value for an option and refuses the command line.
    A value that is one of this command's options is left alone: then the token is missing.
    """
    out: list[str] = []
    for index, arg in enumerate(argv):
        if arg == "--":
            return out + argv[index:]
        after_token = bool(out) and out[-1] == "--token"
        if after_token and arg.startswith("-") and arg.split("=", 1)[0] not in options:
            out[-1] = f"--token={arg}"
        else:
            out.append(arg)
    return out


def _option_strings(parser: argparse.ArgumentParser) -> frozenset[str]:
    """Every option string of ``parser`` and of its sub-parsers, at any depth."""
    found: set[str] = set()
    todo = [parser]
    while todo:
        for action in todo.pop()._actions:
            found.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                todo.extend(action.choices.values())
    return frozenset(found)


def _known_tokens(args: argparse.Namespace) -> list[str]:
    """The tokens this command line may hold (its options and environment), to redact."""
    tokens = [getattr(args, "conn_token", None), os.environ.get("QISKIT_IBM_TOKEN")]
    tokens += list(getattr(args, "token", None) or [])  # serve --token
    return [token for token in tokens if isinstance(token, str) and token]


def _broken_pipe() -> int:
    """Standard output's reader went away: stop quietly, as a command killed by SIGPIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except OSError:  # no standard output to replace
        pass
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
