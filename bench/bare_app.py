"""The ceiling: a bare Falcon app under the same gunicorn settings, answering any POST/GET."""

import falcon


class Echo:
    def on_post(self, req: falcon.Request, resp: falcon.Response, **_: str) -> None:
        req.bounded_stream.read()
        resp.status = falcon.HTTP_201
        resp.content_type = falcon.MEDIA_JSON
        resp.data = b'{"ok":true}'

    on_get = on_post


app = falcon.App()
app.add_sink(lambda req, resp: Echo().on_post(req, resp), prefix="/")
