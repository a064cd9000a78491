"""The HTTP/1.1 connection: uvicorn's httptools protocol, plus header limits and deadlines.

Under uvicorn workers gunicorn's `limit_request_*` settings do not apply, and uvicorn with
httptools bounds neither the size of a request's head nor how long a client may take to
send it or its body: one client could hold a worker's memory with megabytes of headers, or
its connections open indefinitely by sending a byte a second. This subclass keeps uvicorn's
parsing and request handling and adds what nginx or a load balancer would enforce: header
size and count limits (431) and header and body deadlines (408), as the table in
docs/serving.md gives them. A body deadline reaches the application as a disconnect, which
`app.errors` logs as 408, not as a server error.

Deadlines are checked with one timer per connection, armed only when a read ends in the
middle of a request's head or body, so a request that arrives whole costs no timer. They
time the client, not the server: bytes waiting unread when a deadline passes postpone it.
The idle keep-alive timeout between requests stays uvicorn's (`keepalive` in
gunicorn.conf.py).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import termios
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from app import metrics

log = logging.getLogger("app.connections")

# Set in the request's `scope["state"]` when its body deadline passed, so the disconnect the
# application then sees is logged as 408 rather than as the client's abort (499).
BODY_TIMED_OUT = "body_timed_out"

# Where a connection is in its current request.
_WAITING = 0  # opened, no byte of a request yet
_HEAD = 1  # request line and headers arriving
_BODY = 2  # headers complete, body arriving
_READ = 3  # request fully read (answering it, or idle under uvicorn's keep-alive timeout)


def limited_protocol(
    *,
    max_header_bytes: int,
    max_header_fields: int,
    header_timeout: float,
    body_timeout: float,
) -> type[LimitedHttpToolsProtocol]:
    """The protocol class with these limits, for uvicorn's `Config(http=...)`."""
    return type(
        "ConfiguredHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "max_header_fields": max_header_fields,
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
        },
    )


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes = 64 * 1024
    max_header_fields = 100
    header_timeout = 10.0
    body_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = _WAITING
        self._phase_started = 0.0
        self._head_bytes = 0  # counted from the parser's callbacks (complete parts)
        self._head_received = 0  # bytes read while the head was still incomplete
        self._head_fields = 0
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None

    # --- connection events --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._phase_started = self.loop.time()
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        in_head_before = self._phase in (_WAITING, _HEAD)
        super().data_received(data)
        if self._phase == _HEAD and in_head_before:
            # The whole read was head: counted here because the parser only reports a
            # header once it is complete, and one header may be megabytes long.
            self._head_received += len(data)
            if self._head_received > self.max_header_bytes:
                self._refused = True
        if self._refused:
            self._refuse_head()
        elif not self.transport.is_closing():
            self._arm_deadline()

    # --- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._phase = _HEAD
        self._phase_started = self.loop.time()
        self._head_bytes = self._head_received = self._head_fields = 0

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._head_bytes += len(url)
        if self._head_bytes > self.max_header_bytes:
            self._refused = True
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._head_fields += 1
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._head_fields > self.max_header_fields or self._head_bytes > self.max_header_bytes:
            self._refused = True
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._phase = _BODY
        self._phase_started = self.loop.time()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._phase = _READ
        super().on_message_complete()

    # --- limits -------------------------------------------------------------------------

    def _arm_deadline(self) -> None:
        if self._phase in (_WAITING, _HEAD):
            when = self._phase_started + self.header_timeout
        elif self._phase == _BODY:
            when = self._phase_started + self.body_timeout
        else:
            self._cancel_deadline()
            return
        if self._deadline is not None:
            if self._deadline.when() == when:
                return
            self._deadline.cancel()
        self._deadline = self.loop.call_at(when, self._deadline_passed)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._unread_bytes():
            # Bytes that arrived and wait unread are the server's delay (a loop too busy to
            # read them before its timers ran), not the client's: reading them re-arms the
            # deadline (data_received), so a late client is still cut off one read later.
            return
        phase = self._phase
        if phase == _WAITING:
            self._record_refusal("no_request", "no request", None, self.header_timeout)
            self.transport.close()
        elif phase == _HEAD:
            self._record_refusal(
                "head_timeout", "request head incomplete", 408, self.header_timeout
            )
            self._close_with(408, "the request line and headers took too long to arrive")
        elif phase == _BODY:
            cycle = self.cycle
            if cycle is not None and not cycle.response_started:
                self._log("request body incomplete", 408, self.body_timeout)
                cycle.scope["state"][BODY_TIMED_OUT] = True
                self._close_with(408, "the request body took too long to arrive")
                # Wakes the application's pending `receive()` with a disconnect now,
                # rather than when the connection has finished closing.
                cycle.disconnected = True
                cycle.message_event.set()
            else:
                # Answered already (a 413 on Content-Length, say) while the client kept
                # trickling a body nobody will read.
                self.transport.close()

    def _unread_bytes(self) -> int:
        count = array.array("i", [0])
        with contextlib.suppress(OSError, AttributeError):  # closed, or not a socket: none
            fcntl.ioctl(self.transport.get_extra_info("socket").fileno(), termios.FIONREAD, count)
        return count[0]

    def _refuse_head(self) -> None:
        self._cancel_deadline()
        self._record_refusal("head_too_large", "request head too large", 431, None)
        self._close_with(
            431,
            f"the request line and headers exceed {self.max_header_bytes} bytes "
            f"or {self.max_header_fields} fields",
        )

    def _close_with(self, status: int, message: str) -> None:
        body = message.encode("ascii")
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: text/plain; charset=utf-8\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()

    def _record_refusal(
        self, label: str, reason: str, status: int | None, limit: float | None
    ) -> None:
        # Counted apart from the requests: the application never saw one.
        metrics.count_refused_connection(label)
        self._log(reason, status, limit)

    def _log(self, reason: str, status: int | None, limit: float | None) -> None:
        # The peer as connected: the request's forwarded address is not known (or not
        # trusted) before its headers are complete.
        log.info(
            "closed the connection: %s",
            reason,
            extra={
                "status": status,
                "client": (self.client or ("", 0))[0],
                "limit_seconds": limit,
            },
        )
