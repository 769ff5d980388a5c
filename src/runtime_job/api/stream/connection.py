"""One websocket connection of a stream, driven by the reactor: protocol, liveness, timers.

A :class:`StreamConnection` is the reactor's :class:`~.reactor.ConnectionProtocol` for one
connected socket. It parses frames (:mod:`.frames`), tells the sequenced protocol from the
plain one by the acknowledgement, turns messages into :class:`StreamFrame` objects for the
stream's delivery, answers pings, sends keepalive pings, and declares the connection dead
when the server goes silent. What to do next (resume, complete, fail) is the hub's call.
Everything here runs on the thread that runs the reactor's loop.
"""

from __future__ import annotations

import json
import logging
import re
import time
from functools import partial
from typing import TYPE_CHECKING, Final

from ...exceptions import (
    WebsocketError,
    WebsocketIBMProtocolError,
    WebsocketRetryableError,
    WebsocketTimeoutError,
)
from ..protocol import StreamFrame
from .frames import (
    CLOSE_ABNORMAL,
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameError,
    FrameReader,
    decode_text,
    encode_close,
    encode_frame,
    parse_close,
)
from .reactor import Connection, TimerHandle

if TYPE_CHECKING:
    from .hub import Stream, StreamHub

logger = logging.getLogger("runtime_job.api.stream")

SEQ_PROTOCOL: Final = "seq.v1"
"""The ``protocol`` value of our server's acknowledgement."""
SEQ: Final = "seq"
PLAIN: Final = "plain"

FINAL_CLOSE_GRACE = 1.0
"""After the final frame, seconds to wait for the server's close before closing ourselves."""
_MAX_ACK_SIZE = 64 * 1024
_INTERIM_HEADER = re.compile(rb'\{ ?"seq": ?(0|[1-9][0-9]{0,17}), ?"final": ?false ?\}')
"""``{"seq": N, "final": false}`` exactly (any other header goes through ``json.loads``)."""
FINAL_HEADER = re.compile(
    rb'\{ ?"seq": ?(0|[1-9][0-9]{0,17}), ?"final": ?true, ?"status": ?"([A-Z_]{1,32})"'
    rb'(?:, ?"reason": ?null)? ?\}'
)
"""Our server's final header without a reason, read without the JSON parser: it is on the
path from the job's end to ``result()`` returning."""


class ProtocolViolation(Exception):
    """The server broke the sequenced stream protocol."""


class StreamConnection:
    """One websocket connection of a stream, driven by the reactor thread."""

    def __init__(self, hub: StreamHub, stream: Stream) -> None:
        self.hub = hub
        self.stream = stream
        self.reader = FrameReader()
        self.conn: Connection | None = None
        self.mode: str | None = None
        self.final_seen = False
        self.done = False
        self.last_rx = time.monotonic()
        self.ping_sent_at = 0.0
        self._ack_timer: TimerHandle | None = None
        self._ping_timer: TimerHandle | None = None
        self._healthy_timer: TimerHandle | None = None
        self._grace_timer: TimerHandle | None = None

    def start(self, conn: Connection) -> None:
        self.conn = conn
        reactor = self.hub._reactor
        self._ack_timer = reactor.call_later(self.stream.params.read_timeout, self._ack_timeout)
        self._ping_timer = reactor.call_later(self.hub.ping_interval, self._liveness)

    # -- ConnectionProtocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        try:
            self.reader.feed(data, self._on_message)
        except (FrameError, ProtocolViolation) as err:
            self._protocol_error(str(err))

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.done:
            return
        self._stop()
        if self.final_seen:
            return
        if exc is None:
            text = "the server dropped the connection without a close frame (1006)"
        else:
            text = f"the connection failed: {type(exc).__name__}: {exc}"
        error = WebsocketRetryableError(
            f"Stream for job {self.stream.job_id} at {self.stream.safe_url}: {text}."
        )
        if exc is not None:
            error.__cause__ = exc
        self.hub._disconnected(self.stream, self, CLOSE_ABNORMAL, error)

    # -- closing -----------------------------------------------------------------------

    def close(self, code: int) -> None:
        """Send a close frame (best effort) and close the socket now."""
        if self.done:
            return
        self._stop()
        conn = self.conn
        if conn is not None:
            conn.write(encode_close(code))
            conn.close()

    def _stop(self) -> None:
        self.done = True
        if self.stream.conn is self:
            self.stream.conn = None  # no stream-connection cycle once this one is over
        self.reader.stop()
        for timer in (self._ack_timer, self._ping_timer, self._healthy_timer, self._grace_timer):
            if timer is not None:
                timer.cancel()
        self._ack_timer = self._ping_timer = self._healthy_timer = self._grace_timer = None

    def _protocol_error(self, text: str) -> None:
        if self.done:
            return
        self.close(1002)
        error = WebsocketIBMProtocolError(
            f"The stream of job {self.stream.job_id} at {self.stream.safe_url} broke the "
            f"protocol: {text}"
        )
        self.hub._fail(self.stream, error)

    # -- timers ------------------------------------------------------------------------

    def _ack_timeout(self) -> None:
        self._ack_timer = None
        if self.done or self.mode is not None:
            return
        self._lost(
            WebsocketTimeoutError(
                f"Stream for job {self.stream.job_id} at {self.stream.safe_url}: no "
                f"acknowledgement within {self.stream.params.read_timeout:g} s."
            )
        )

    def _liveness(self) -> None:
        """The connection's one liveness timer: keepalive ping, pong deadline, stalled frame.

        Runs ``ping_interval`` after the last byte received (never re-armed by the data
        itself, so a busy connection costs nothing). A connection silent that long gets a
        ping, and is dead if nothing at all arrives within ``ping_timeout`` of it. A
        connection silent that long *in the middle of a frame* is dead at once: the rest of
        the frame would come before any pong.
        """
        self._ping_timer = None
        if self.done or self.conn is None:
            return
        now = time.monotonic()
        hub = self.hub
        where = f"Stream for job {self.stream.job_id} at {self.stream.safe_url}"
        if self.ping_sent_at > self.last_rx:  # a ping is waiting for an answer
            due = self.ping_sent_at + hub.ping_timeout
            if now >= due:
                self._lost(
                    WebsocketTimeoutError(
                        f"{where}: nothing received within {hub.ping_timeout:g} s of a "
                        "keepalive ping (the connection is dead)."
                    )
                )
                return
        else:
            due = self.last_rx + hub.ping_interval
            if now >= due:
                if self.reader.buffered:
                    self._lost(
                        WebsocketTimeoutError(
                            f"{where}: the server stopped in the middle of a frame "
                            f"(nothing received for {now - self.last_rx:.1f} s)."
                        )
                    )
                    return
                self.ping_sent_at = now
                self.conn.write(encode_frame(OP_PING))
                due = now + hub.ping_timeout
        self._ping_timer = hub._reactor.call_later(due - now, self._liveness)

    def _healthy(self) -> None:
        self._healthy_timer = None
        if not self.done:
            self.stream.attempts = 0
            self.stream.failing_since = None

    def _lost(self, error: WebsocketError) -> None:
        self.close(CLOSE_GOING_AWAY)
        self.hub._disconnected(self.stream, self, CLOSE_ABNORMAL, error)

    # -- messages ----------------------------------------------------------------------

    def _on_message(self, opcode: int, buf: bytes | bytearray, start: int, end: int) -> None:
        if self.done:
            return
        if opcode == OP_PING:
            assert self.conn is not None
            self.conn.write(encode_frame(OP_PONG, bytes(buf[start:end])))
        elif opcode == OP_PONG:
            pass
        elif opcode == OP_CLOSE:
            code, _reason = parse_close(buf, start, end)
            if self.final_seen:
                # The expected end. Answering it (a frame, a socket to close: 100-200 µs)
                # waits for the end of the turn, so a thread leading the loop for this
                # stream's final frame, often read together with it, goes first.
                self.hub._reactor.defer(partial(self.close, CLOSE_NORMAL))
                return
            self.close(CLOSE_NORMAL)
            self.hub._disconnected(self.stream, self, code, None)
        elif self.final_seen:
            pass  # nothing counts after the final frame
        elif self.mode is None:
            self._on_ack(buf, start, end)
        elif self.mode == SEQ:
            self._on_sequenced(buf, start, end)
        else:
            self._on_plain(buf, start, end)

    def _on_ack(self, buf: bytes | bytearray, start: int, end: int) -> None:
        mode = PLAIN
        if end - start <= _MAX_ACK_SIZE:
            try:
                ack = json.loads(buf[start:end])
            except ValueError:
                ack = None
            if isinstance(ack, dict) and ack.get("protocol") == SEQ_PROTOCOL:
                mode = SEQ
        self.mode = mode
        self.stream.acknowledged = True
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        self._healthy_timer = self.hub._reactor.call_later(
            self.hub.reconnect.healthy_after, self._healthy
        )
        logger.debug(
            "Stream for job %s: acknowledged (%s protocol, after %d)",
            self.stream.job_id,
            mode,
            self.stream.last_seq,
        )

    def _on_sequenced(self, buf: bytes | bytearray, start: int, end: int) -> None:
        newline = buf.find(b"\n", start, end)
        if newline < 0:
            raise ProtocolViolation("a frame without a header line")
        stream = self.stream
        plain_header = (
            _INTERIM_HEADER.fullmatch(buf, start, newline)
            if buf.find(b"true", start, newline) < 0  # not a final header: try the regex
            else None
        )
        if plain_header is not None:
            # The common interim header, read without the JSON parser (a third of the cost).
            seq = int(plain_header.group(1))
            if seq <= stream.last_seq:
                return  # already delivered (a replay after a reconnect)
            frame = StreamFrame(decode_text(buf, newline + 1, end), seq=seq)
        elif (final_header := FINAL_HEADER.fullmatch(buf, start, newline)) is not None:
            seq = int(final_header.group(1))
            if seq <= stream.last_seq:
                return  # already delivered (a replay after a reconnect)
            frame = StreamFrame(
                decode_text(buf, newline + 1, end),
                seq=seq,
                final=True,
                status=final_header.group(2).decode("ascii"),
            )
        else:
            try:
                header = json.loads(buf[start:newline])
            except ValueError:
                raise ProtocolViolation("a frame header that is not JSON") from None
            value = header.get("seq") if isinstance(header, dict) else None
            if not isinstance(value, int) or isinstance(value, bool):
                raise ProtocolViolation("a frame header without an integer 'seq'")
            seq = value
            if seq <= stream.last_seq:
                return  # already delivered (a replay after a reconnect)
            status = header.get("status")
            reason = header.get("reason")
            frame = StreamFrame(
                decode_text(buf, newline + 1, end),
                seq=seq,
                final=header.get("final") is True,
                status=status if isinstance(status, str) else None,
                reason=reason if isinstance(reason, str) else None,
            )
        final = frame.final
        stream.last_seq = seq
        stream.attempts = 0
        stream.failing_since = None
        stream.push(frame)
        if final:
            self.final_seen = True
            # The listener has the final frame (or its queue has, for a waiting thread to
            # deliver); the connection now only waits for the server's close. The stream's
            # end is bookkeeping that nobody waits for: it is deferred (lazily), so a thread
            # leading the loop for this frame goes first and need not wake the reactor
            # thread on its way back to the user.
            for timer in (self._ping_timer, self._healthy_timer):
                if timer is not None:
                    timer.cancel()
            self._ping_timer = self._healthy_timer = None
            if self.conn is not None:
                self.conn.lingering = True
            self.hub._reactor.defer(self._after_final, lazy=True)

    def _after_final(self) -> None:
        """End the stream, then give the server a grace period to close the connection."""
        self.hub._complete(self.stream)
        if self.done:
            return  # closed meanwhile (cancelled, or the hub is closing)
        self._grace_timer = self.hub._reactor.call_later(FINAL_CLOSE_GRACE, self._grace, lazy=True)

    def _grace(self) -> None:
        self._grace_timer = None
        self.close(CLOSE_NORMAL)

    def _on_plain(self, buf: bytes | bytearray, start: int, end: int) -> None:
        stream = self.stream
        stream.attempts = 0
        stream.failing_since = None
        stream.push(StreamFrame(decode_text(buf, start, end)))


__all__ = [
    "FINAL_CLOSE_GRACE",
    "FINAL_HEADER",
    "PLAIN",
    "SEQ",
    "SEQ_PROTOCOL",
    "ProtocolViolation",
    "StreamConnection",
]
