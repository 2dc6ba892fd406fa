"""The HTTP/1.1 layer under the app: uvicorn's httptools protocol, with the limits an event loop needs
and the API's JSON error body for every request it refuses itself.

uvicorn answers a request it cannot parse with a plain-text 400 and applies no size limit to
the request head nor any time limit to a request's head or body. This protocol adds:

- JSON ``{"title", "description"}`` for each refusal, as the app words its own errors:
  ``malformed HTTP request: ...`` for a bad request line or header section (400; 414 for an
  over-long target, 431 for an over-large field, too many fields or an over-large head), and
  ``the request body could not be read: ...`` for bad chunked framing or a body cut off by the
  client closing its side (400);
- a header read timeout: the whole request head must arrive within ``header_timeout`` seconds
  of its first byte (408; a connection that never sends a byte is closed silently, as an idle
  keep-alive connection is);
- a body read timeout: the body must arrive within ``body_timeout`` seconds of the head (408);
- a first ASGI event as soon as the head is complete, so the app starts (and refuses a
  too-large ``Content-Length`` with 413) without waiting for the body's first bytes;
- an answer to a client that half-closes (shuts down its sending side) after a full request; a
  request waiting for the ledger to change (``wait=S``) answers it at once, as a client that closed
  the whole connection looks the same and must not hold its wait.

When it refuses a request whose body the app was reading, it writes the answer itself, tells
the app through the scope (``api.signed.REFUSED``) so that its log and metrics show the same
status, and drops whatever the app would answer. A response already under way cannot be
replaced: then, or while an earlier request on the connection still awaits its answer, the
connection is just closed.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.errors import TITLES, title_of
from api.signed import CLIENT_EOF, REFUSED

#: Header fields that may appear once (RFC 9110 5.3; gunicorn refused a repeat too).
SINGLETONS = frozenset((b"host", b"content-type"))

#: llhttp's words for bad chunked framing, in the terms the old server used.
CHUNK_ERRORS = {
    "Invalid character in chunk size": "invalid chunk size",
    "Expected LF after chunk data": "missing chunk terminator",
    "Expected CR after chunk data": "missing chunk terminator",
    "Invalid character in chunk extensions": "invalid chunk extension",
}


#: Seconds a refused connection is still read (and what comes dropped) after the answer: see _linger.
LINGER_S = 2.0


@dataclass(frozen=True)
class HttpLimits:
    #: Seconds for a request's head (request line and header fields), from its first byte.
    header_timeout: float = 10.0
    #: Seconds for a request's body, from the end of its head.
    body_timeout: float = 30.0
    #: Longest request target in bytes (gunicorn's limit_request_line): 414 beyond.
    max_target: int = 4094
    #: Largest header field, name and value, in bytes (gunicorn's limit_request_field_size): 431 beyond.
    max_field: int = 8190
    #: Most header fields (gunicorn's limit_request_fields): 431 beyond.
    max_fields: int = 100
    #: Largest request head in bytes: 431 beyond (bounds what a connection holds before the app sees it).
    max_head: int = 64 * 1024


# uvicorn writes the status line of every answer from this table; its reason phrases are
# Python's. Ours are the API's titles (api.errors.TITLES), so the status line and the JSON title
# of an error always agree (e.g. 413 "Content Too Large", as RFC 9110 names it).
for _status in TITLES:
    httptools_impl.STATUS_LINE[_status] = f"HTTP/1.1 {_status} {title_of(_status)}\r\n".encode("ascii")


class Refusal(Exception):
    """Raised in a parser callback: refuse the request with this status and description."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


def error_response(status: int, description: str, default_headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """The whole HTTP response for a request the HTTP layer refuses: the API's JSON error body."""
    phrase = title_of(status)  # the API's one title per status
    body = orjson.dumps({"title": phrase, "description": description})
    head = [f"HTTP/1.1 {status} {phrase}\r\n".encode("ascii")]
    head += [name + b": " + value + b"\r\n" for name, value in default_headers]
    head.append(b"content-type: application/json\r\nconnection: close\r\n")
    head.append(b"content-length: %d\r\n\r\n" % len(body))
    return b"".join(head) + body


def _describe(error: httptools.HttpParserError) -> Refusal:
    """A Refusal for what the parser (or a callback) could not accept."""
    cause = error.__cause__ or error.__context__
    if isinstance(cause, Refusal):
        return cause
    if isinstance(error, httptools.HttpParserCallbackError):
        return Refusal(400, f"malformed HTTP request: invalid request target or header ({cause})")
    if "Transfer-Encoding" in str(error):  # a coding other than chunked (gunicorn: 501 too)
        return Refusal(501, f"malformed HTTP request: {error}")
    return Refusal(400, f"malformed HTTP request: {error}")


class JsonHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # between a message's first byte (or the connection's start) and its head's end
        self._head_begun = False  # a byte of the current request's head has come
        self._head_bytes = 0  # bytes of an unfinished head read after the one it began in
        self._fields = 0
        self._field_bytes = 0
        self._seen: set[bytes] = set()
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- connection ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def eof_received(self) -> bool | None:  # type: ignore[override]
        cycle = self.cycle
        if cycle is None or cycle.response_complete or self._refused:
            return None  # nothing awaits an answer: close
        if cycle.more_body and not self._in_head:
            self._refuse(400, "the request body could not be read: the client closed the connection before its end")
            return None
        cycle.keep_alive = False  # a whole request, then a half-close: answer it, then close
        cycle.scope[CLIENT_EOF] = True  # type: ignore[literal-required]
        cycle.message_event.set()  # a request that waits for the ledger to change answers now (api.waits)
        return True

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as e:
            refusal = _describe(e)
            if not self._in_head and refusal.status == 400 and not refusal.description.startswith("the request body"):
                detail = str(e)
                refusal = Refusal(400, f"the request body could not be read: {CHUNK_ERRORS.get(detail, detail)}")
            self._refuse(refusal.status, refusal.description)
            return
        if self._in_head:
            # Which part of the read the head began in is unknown (an earlier request's body may
            # precede it), so the count starts with the next read; its complete fields are counted
            # in on_header. The head held is bounded by max_head plus one read.
            self._head_bytes = 0 if self._head_bytes < 0 else self._head_bytes + len(data)
            if self._head_bytes > self.limits.max_head:
                self._refuse(431, f"malformed HTTP request: request head over {self.limits.max_head} bytes")
            elif self._head_timer is None and self._head_begun:
                self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)
        elif self._body_timer is None and self.cycle is not None and self.cycle.more_body:
            self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)

    # -- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_begun = True
        self._head_bytes = -1  # this read is not counted: see data_received
        self._fields = 0
        self._field_bytes = 0
        self._seen.clear()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_target:
            raise Refusal(414, f"malformed HTTP request: request target over {self.limits.max_target} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > self.limits.max_fields:
            raise Refusal(431, f"malformed HTTP request: more than {self.limits.max_fields} header fields")
        if len(name) + len(value) > self.limits.max_field:
            shown = name[:64].decode("latin-1")
            raise Refusal(431, f"malformed HTTP request: header field {shown!r} over {self.limits.max_field} bytes")
        self._field_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._field_bytes + len(self.url) > self.limits.max_head:
            raise Refusal(431, f"malformed HTTP request: request head over {self.limits.max_head} bytes")
        lower = name.lower()
        if lower == b"expect" and value.lower() != b"100-continue":
            raise Refusal(417, f"malformed HTTP request: unsupported expectation {value[:64].decode('latin-1')!r}")
        if lower in SINGLETONS:
            if lower in self._seen:
                raise Refusal(400, f"malformed HTTP request: header field {name.decode('latin-1')!r} given twice")
            self._seen.add(lower)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.parser.get_http_version() not in ("1.0", "1.1"):
            raise Refusal(400, "malformed HTTP request: the request line names no HTTP/1.0 or HTTP/1.1 version")
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        previous = self.cycle
        super().on_headers_complete()
        self._in_head = self._head_begun = False
        if previous is None or previous.response_complete:  # the new request runs now: start the app
            self.cycle.message_event.set()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # -- refusing ------------------------------------------------------------------------

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if not self._head_begun and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # never sent a byte: idle, like an expired keep-alive connection
            return
        self._refuse(408, f"the request head did not arrive within {self.limits.header_timeout:g} s")

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if not self.transport.is_closing():
            timeout = self.limits.body_timeout
            self._refuse(408, f"the request body could not be read: it did not arrive within {timeout:g} s")

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _refuse(self, status: int, description: str) -> None:
        """Answer ``status`` with the JSON error body where the connection allows it, then close."""
        if self._refused:
            return
        self._refused = True
        self._cancel_timers()
        cycle = self.cycle
        if self._in_head:
            answerable = cycle is None or cycle.response_complete
        else:  # the body of the newest request, which runs unless an earlier one is still answered
            answerable = not cycle.response_started and not self.pipeline
            if not cycle.response_complete:
                cycle.scope[REFUSED] = (status, title_of(status), description)  # type: ignore[literal-required]
                cycle.disconnected = True  # the app's own answer goes nowhere
                cycle.message_event.set()
        if answerable:
            self.logger.info("refused a request: %s %s", status, description)
            self.transport.write(error_response(status, description, self.server_state.default_headers))
            self._linger()
        else:
            self.transport.close()

    def _linger(self) -> None:
        """Close after the answer without losing it: a close with unread bytes in the socket sends a
        reset, which can make the client drop the answer before reading it. So end the sending side,
        read and drop what still comes for up to LINGER_S seconds (or until the client closes), then close."""
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.resume_reading()
        self._head_timer = self.loop.call_later(LINGER_S, self.transport.close)


def protocol_class(limits: HttpLimits) -> type[JsonHttpToolsProtocol]:
    """The protocol with these limits (uvicorn builds one per connection from the class)."""
    return type("ConfiguredHttpToolsProtocol", (JsonHttpToolsProtocol,), {"limits": limits})
