"""The node's HTTP side of witnessing: POSTing add-checkpoint bodies (a :data:`ledger.witnessing.Post`).

Plain ``http.client`` over one keep-alive connection per witness thread and witness address
(measured: a third of the CPU per call of ``requests``). A connection the witness closed while
idle is opened again once; any other failure to get an answer (refused, timeout, reset) is
:class:`ledger.witnessing.Unreachable`. Every answer, whatever its status, is a Reply.
"""

import http.client
import threading
from urllib.parse import urlsplit

from ledger.witnessing import Post, Reply, Unreachable

#: Errors of a kept-alive connection the other side closed: worth one new connection.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError, http.client.CannotSendRequest)


def poster(timeout: float) -> Post:
    """A Post giving each request `timeout` seconds to connect and to answer."""
    local = threading.local()

    def connection(scheme: str, netloc: str, fresh: bool) -> http.client.HTTPConnection:
        connections: dict[tuple[str, str], http.client.HTTPConnection] = local.__dict__.setdefault("connections", {})
        conn = connections.get((scheme, netloc))
        if conn is not None and fresh:
            conn.close()
            conn = None
        if conn is None:
            kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
            conn = connections[(scheme, netloc)] = kind(netloc, timeout=timeout)
        return conn

    def post(url: str, body: bytes) -> Reply:
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        for attempt in (0, 1):
            conn = connection(parts.scheme, parts.netloc, fresh=attempt == 1)
            try:
                conn.request("POST", path, body=body, headers={"Content-Type": "text/plain"})
                response = conn.getresponse()
                data = response.read()
            except _STALE as e:
                conn.close()
                if attempt == 1:
                    raise Unreachable(f"{parts.netloc}: {e!r}") from e
                continue
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise Unreachable(f"{parts.netloc}: {e}") from e
            return Reply(response.status, response.getheader("Content-Type", ""), data)
        raise AssertionError("unreachable")  # pragma: no cover

    return post
