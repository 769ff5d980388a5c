"""The ``runtime-job`` command line.

Commands::

    runtime-job serve [--host 127.0.0.1] [--port 0] [--data-dir DIR] [--token TOKEN ...]
                      [--tls-cert FILE --tls-key FILE] [--workers N] [--program ID=MOD:FUNC ...]

``serve`` prints ``runtime-job server at <url> (token file: <path>)`` as its first line of
standard output, then serves until ``SIGINT`` or ``SIGTERM``, stops its workers and exits 0.
Each command is one ``add_*`` function registering a sub-parser and its handler, so more
commands (``jobs ...``) slot in beside ``serve``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from . import __version__

EXIT_OK = 0
"""Normal exit."""
EXIT_ERROR = 1
"""The command failed (e.g. the address cannot be bound)."""
EXIT_USAGE = 2
"""Invalid arguments."""

Handler = Callable[[argparse.Namespace], int]


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
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="server log level on stderr (default warning)",
    )
    parser.add_argument("--attached", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=_serve)


def _watch_stdin(stop: threading.Event) -> None:
    """Set ``stop`` when standard input reaches end of file (the parent went away)."""
    try:
        while os.read(0, 65536):
            pass
    except OSError:
        pass
    stop.set()


def _serve(args: argparse.Namespace) -> int:
    from .server.launcher import EXIT_DATA_DIR_IN_USE
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
        )
    except ValueError as err:
        print(f"runtime-job serve: error: {err}", file=sys.stderr)
        return EXIT_USAGE

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start()
        except DataDirInUse as err:
            print(f"runtime-job serve: error: {err}", file=sys.stderr)
            return EXIT_DATA_DIR_IN_USE
        except OSError as err:
            print(f"runtime-job serve: error: cannot serve on {args.host}: {err}", file=sys.stderr)
            return EXIT_ERROR
        try:
            print(f"runtime-job server at {server.url} (token file: {server.token_file})")
            sys.stdout.flush()
            if args.attached:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.close(devnull)
                threading.Thread(
                    target=_watch_stdin, args=(stop,), name="runtime-job-stdin", daemon=True
                ).start()
            while not stop.wait():
                pass
        finally:
            server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The ``runtime-job`` argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="runtime-job", description="Local Qiskit Runtime server and job tools."
    )
    parser.add_argument("--version", action="version", version=f"runtime-job {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_serve(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
