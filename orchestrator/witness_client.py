"""The node's HTTP side of witnessing: POSTing add-checkpoint bodies (a :data:`ledger.witnessing.Post`).

Each witness thread keeps its own keep-alive session (``requests.Session`` is not shared
between threads). Any failure to get an answer (refused connection, timeout, reset) is
:class:`ledger.witnessing.Unreachable`; every answer, whatever its status, is a Reply.
"""

import threading

import requests

from ledger.witnessing import Post, Reply, Unreachable


def poster(timeout: float) -> Post:
    """A Post giving each request `timeout` seconds to connect and to answer."""
    local = threading.local()

    def post(url: str, body: bytes) -> Reply:
        session: requests.Session | None = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        try:
            response = session.post(url, data=body, timeout=timeout, headers={"Content-Type": "text/plain"})
        except requests.RequestException as e:
            raise Unreachable(str(e)) from e
        return Reply(response.status_code, response.headers.get("Content-Type", ""), response.content)

    return post
