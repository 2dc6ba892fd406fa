"""The ASGI ceiling: a bare Falcon ASGI app under gunicorn with uvicorn-worker, answering any POST/GET."""

import falcon
import falcon.asgi


class Echo:
    async def on_post(self, req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: str) -> None:
        await req.bounded_stream.read()
        resp.status = falcon.HTTP_201
        resp.content_type = falcon.MEDIA_JSON
        resp.data = b'{"ok":true}'

    on_get = on_post


async def _sink(req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: str) -> None:
    await Echo().on_post(req, resp)


app = falcon.asgi.App()
app.add_sink(_sink, prefix="/")
