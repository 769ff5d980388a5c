"""Websocket frames for the stream hub: an incremental reader and the client's encoder.

The hub reads every socket without blocking, so bytes arrive in arbitrary pieces: half a
header, three frames and a bit, the middle of a 100 MiB payload. :class:`FrameReader` keeps
whatever is incomplete and hands over each complete message exactly once, in order, however
the bytes were cut. It reads the server-to-client direction of RFC 6455 only: no extensions
(the hub never offers any), fragmented messages reassembled, control frames passed through.

Example::

    reader = FrameReader()
    reader.feed(b"\\x81\\x05hel", handler)  # nothing yet: the payload is incomplete
    reader.feed(b"lo", handler)             # handler(OP_TEXT, buffer, start, end) once

Client frames (pings, pongs, close) are masked, as RFC 6455 requires, by websocket-client's
``ABNF`` in :func:`encode_frame`.
"""

from __future__ import annotations

from collections.abc import Callable

from websocket import ABNF

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006

_DATA_OPCODES = (OP_TEXT, OP_BINARY)
_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

MessageHandler = Callable[[int, bytes | bytearray, int, int], None]
"""``handler(opcode, buffer, start, end)``: one complete message is ``buffer[start:end]``.

The buffer is only valid during the call (the reader reuses it afterwards): copy or decode
what you need before returning.
"""


class FrameError(Exception):
    """The server broke the websocket framing rules.

    Attributes:
        close_code: The close code to send back (1002, protocol error).
    """

    def __init__(self, message: str, close_code: int = CLOSE_PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.close_code = close_code


class FrameReader:
    """Turns a byte stream into complete websocket messages, however it is cut.

    Data messages (text, binary) are reassembled from their fragments; control frames
    (close, ping, pong) are passed on as they come, even between fragments. After a close
    frame the reader stops: later bytes are ignored.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._frag_opcode: int | None = None
        self._frag_parts: list[bytes] = []
        self._stopped = False

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def stop(self) -> None:
        """Ignore every byte from now on (the connection is going away)."""
        self._stopped = True
        self._buf = bytearray()
        self._frag_parts = []

    def feed(self, data: bytes, handler: MessageHandler) -> None:
        """Add received bytes; call ``handler`` once per message they complete.

        Args:
            data: The bytes just read from the socket.
            handler: Called as ``handler(opcode, buffer, start, end)``, see
                :data:`MessageHandler`.

        Raises:
            FrameError: The bytes break the framing rules; the connection must be closed.
        """
        if self._stopped:
            return
        buf = self._buf
        buf += data
        pos = 0
        size = len(buf)
        try:
            while not self._stopped:
                if size - pos < 2:
                    break
                b0 = buf[pos]
                b1 = buf[pos + 1]
                length = b1 & 0x7F
                head = 2
                if length == 126:
                    if size - pos < 4:
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                    head = 4
                elif length == 127:
                    if size - pos < 10:
                        break
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    head = 10
                masked = b1 & 0x80
                if masked:
                    head += 4
                if size - pos - head < length:
                    break
                start = pos + head
                end = start + length
                pos = end
                self._frame(b0, masked, buf, start, end, handler)
        finally:
            if self._stopped:
                self._buf = bytearray()
            elif pos:
                del buf[:pos]

    def _frame(
        self,
        b0: int,
        masked: int,
        buf: bytearray,
        start: int,
        end: int,
        handler: MessageHandler,
    ) -> None:
        fin = b0 & 0x80
        opcode = b0 & 0x0F
        if b0 & 0x70:
            raise FrameError("The server set reserved bits without a negotiated extension.")
        data: bytes | bytearray = buf
        if masked:
            # Servers must not mask; be lenient and unmask rather than drop the connection.
            key = bytes(buf[start - 4 : start])
            data = ABNF.mask(key, bytes(buf[start:end]))
            start, end = 0, len(data)
        if opcode in _CONTROL_OPCODES:
            if not fin or end - start > 125:
                raise FrameError("The server sent a fragmented or oversized control frame.")
            if opcode == OP_CLOSE:
                self._stopped = True
            handler(opcode, data, start, end)
            return
        if opcode in _DATA_OPCODES:
            if self._frag_opcode is not None:
                raise FrameError("The server started a message inside a fragmented one.")
            if fin:
                handler(opcode, data, start, end)
            else:
                self._frag_opcode = opcode
                self._frag_parts = [bytes(data[start:end])]
            return
        if opcode == OP_CONT:
            if self._frag_opcode is None:
                raise FrameError("The server sent a continuation frame with no message open.")
            self._frag_parts.append(bytes(data[start:end]))
            if fin:
                whole = b"".join(self._frag_parts)
                first = self._frag_opcode
                self._frag_opcode = None
                self._frag_parts = []
                handler(first, whole, 0, len(whole))
            return
        raise FrameError(f"The server sent an unknown opcode {opcode:#x}.")


def encode_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A complete, masked client frame.

    Args:
        opcode: One of the ``OP_*`` constants.
        payload: The frame's payload.

    Returns:
        The bytes to write to the socket.
    """
    frame: bytes = ABNF.create_frame(payload, opcode).format()
    return frame


def encode_close(code: int = CLOSE_NORMAL, reason: str = "") -> bytes:
    """A masked close frame carrying ``code`` and ``reason``.

    Args:
        code: The close code.
        reason: A short human-readable reason (at most 123 bytes of UTF-8).

    Returns:
        The bytes to write to the socket.
    """
    return encode_frame(OP_CLOSE, code.to_bytes(2, "big") + reason.encode("utf-8")[:123])


def parse_close(data: bytes | bytearray, start: int, end: int) -> tuple[int, str]:
    """The code and reason of a received close frame (1005 when it carries none).

    Args:
        data: The buffer holding the close frame's payload.
        start: Where the payload starts.
        end: Where it ends.

    Returns:
        ``(code, reason)``.
    """
    if end - start < 2:
        return CLOSE_NO_STATUS, ""
    code = int.from_bytes(data[start : start + 2], "big")
    reason = bytes(data[start + 2 : end]).decode("utf-8", errors="replace")
    return code, reason


def decode_text(data: bytes | bytearray, start: int, end: int) -> str:
    """``data[start:end]`` as text, decoded once without an intermediate copy.

    Invalid UTF-8 is replaced rather than fatal: a payload is delivered as received.

    Args:
        data: The buffer.
        start: First byte.
        end: One past the last byte.

    Returns:
        The decoded text.
    """
    if start == 0 and end == len(data):
        return str(data, "utf-8", "replace")
    with memoryview(data) as view, view[start:end] as part:
        return str(part, "utf-8", "replace")


__all__ = [
    "CLOSE_ABNORMAL",
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_NO_STATUS",
    "CLOSE_PROTOCOL_ERROR",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "FrameError",
    "FrameReader",
    "MessageHandler",
    "decode_text",
    "encode_close",
    "encode_frame",
    "parse_close",
]
