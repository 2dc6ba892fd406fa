"""The Falcon ASGI application: routes wired to resources over a Ledger passed in."""

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import falcon.asgi

from api import console_files, errors, health, index, ledger_routes, openapi, resources, tiles
from api.door import LedgerDoor
from api.metrics import Metrics, MetricsEndpoint
from api.middleware import RequestObserver, auth_error_handler
from api.offload import Offload
from api.waits import RECEIVE, Waits
from api.writes import Writes
from ledger.errors import AuthError, LedgerError


@dataclass(frozen=True)
class ApiConfig:
    #: Largest accepted request body, in bytes (larger: 413 without reading it).
    body_limit: int = 1024 * 1024
    #: Threads of the pool that runs the reads that would block the loop (lists, pages, proofs).
    read_threads: int = 4
    #: Most writes waiting for their commit at once; past it a write gets 503 with Retry-After.
    max_queued_writes: int = 4096
    #: Seconds a write asking for a receipt (?proof=1) waits for a cosigned checkpoint holding it.
    receipt_wait: float = 5.0
    #: Serve /checkpoint and /tile/... (tlog-tiles) without a signature: a log its members publish.
    public_log: bool = False


def _inline(handler: Callable[..., None]) -> Callable[..., Coroutine[Any, Any, None]]:
    """A plain (non-blocking) handler as the coroutine an ASGI app requires; it runs on the loop."""

    async def run(*args: Any, **kwargs: Any) -> None:
        handler(*args, **kwargs)

    return run


AsgiApp = falcon.asgi.App[falcon.asgi.Request, falcon.asgi.Response]


class App(AsgiApp):
    """Falcon's ASGI app, leaving each request's ASGI ``receive`` in its scope, so that a request
    that waits (api.waits) hears when its client goes away."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:  # type: ignore[override]
        scope[RECEIVE] = receive
        await super().__call__(scope, receive, send)


def create_app(
    ledger: LedgerDoor, config: ApiConfig | None = None, metrics: Metrics | None = None, waits: Waits | None = None
) -> AsgiApp:
    """The API over ``ledger``. ``waits`` holds the requests that wait for the ledger to change;
    whoever runs the app calls its ``close()`` when serving stops (orchestrator/worker.py)."""
    config = config or ApiConfig()
    metrics = metrics if metrics is not None else Metrics()
    metrics.watch(ledger)
    metrics.watch_witnesses(ledger.witness_report)
    offload = Offload(config.read_threads)
    waits = waits if waits is not None else Waits(ledger)
    metrics.watch_waits(waits)
    context = resources.Context(
        ledger, config.body_limit, Writes(ledger, config.max_queued_writes), offload, waits, config.receipt_wait
    )
    # Static routes (the /docs assets) before sinks: the catch-all 404 sink must not hide them.
    app: AsgiApp = App(middleware=[RequestObserver(metrics)], sink_before_static_route=False)
    app.req_options.strip_url_path_trailing_slash = True
    collection = resources.Collection(context)
    app.add_route("/{collection}", collection)
    app.add_route("/{collection}/{uuid}", collection, suffix="item")
    app.add_route("/{collection}/{uuid}/history", collection, suffix="history")
    app.add_route("/worker/{kind}/{uuid}", resources.Worker(context))
    for path, resource in (
        ("/ledger/head", ledger_routes.Head),
        ("/ledger/checkpoint", ledger_routes.Checkpoint),
        ("/ledger/key", ledger_routes.Key),
        ("/ledger/entries", ledger_routes.Entries),
        ("/ledger/proofs/inclusion", ledger_routes.InclusionProof),
        ("/ledger/proofs/consistency", ledger_routes.ConsistencyProof),
    ):
        app.add_route(path, resource(context))
    nodes = resources.Nodes(context)
    app.add_route("/nodes", nodes)
    app.add_route("/nodes/{key_id}", nodes, suffix="item")
    app.add_route("/nodes/{key_id}/revoke", nodes, suffix="revoke")
    app.add_route("/ledger/entries/{seq}", ledger_routes.Entries(context), suffix="item")
    app.add_route("/ledger/receipts/{seq}", ledger_routes.Receipt(context))
    app.add_route("/checkpoint", tiles.Checkpoint(context, config.public_log))
    app.add_route("/tile/{path:path}", tiles.Tile(context, config.public_log))
    # Unauthenticated operations endpoints: probes and Prometheus metrics (see README).
    app.add_route("/healthz", health.Health())
    app.add_route("/readyz", health.Ready(ledger))
    app.add_route("/metrics", MetricsEndpoint(metrics, offload))
    # The index (what this is, links to the rest), the OpenAPI contract and its rendered reference
    # page, unauthenticated.
    app.add_route("/", index.Index(ledger))
    app.add_route("/openapi.json", openapi.OpenApi())
    # The web console (static files; the page signs its own calls in the browser), unauthenticated.
    console = console_files.Console()
    app.add_route("/console", console)
    app.add_route("/console/{name}", console, suffix="file")
    openapi.add_docs(app)
    app.add_sink(_inline(errors.no_route))
    app.set_error_serializer(errors.serialize_error)
    app.add_error_handler(Exception, _inline(errors.handle_unexpected))
    app.add_error_handler(LedgerError, _inline(errors.handle_ledger_error))
    app.add_error_handler(AuthError, auth_error_handler(metrics))
    return app
