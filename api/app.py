"""The Falcon application: routes wired to resources over a Ledger passed in."""

from dataclasses import dataclass

import falcon

from api import errors, health, index, ledger_routes, openapi, resources
from api.door import LedgerDoor
from api.metrics import Metrics, MetricsEndpoint
from api.middleware import RequestObserver, auth_error_handler
from ledger.errors import AuthError, LedgerError


@dataclass(frozen=True)
class ApiConfig:
    #: Largest accepted request body, in bytes (larger: 413 without reading it).
    body_limit: int = 1024 * 1024


def create_app(
    ledger: LedgerDoor, config: ApiConfig | None = None, metrics: Metrics | None = None
) -> falcon.App[falcon.Request, falcon.Response]:
    config = config or ApiConfig()
    metrics = metrics if metrics is not None else Metrics()
    metrics.watch(ledger)
    # Static routes (the /docs assets) before sinks: the catch-all 404 sink must not hide them.
    app = falcon.App(middleware=[RequestObserver(metrics)], sink_before_static_route=False)
    app.req_options.strip_url_path_trailing_slash = True
    collection = resources.Collection(ledger, config.body_limit)
    app.add_route("/{collection}", collection)
    app.add_route("/{collection}/{uuid}", collection, suffix="item")
    app.add_route("/worker/{kind}/{uuid}", resources.Worker(ledger, config.body_limit))
    for path, resource in (
        ("/ledger/head", ledger_routes.Head),
        ("/ledger/checkpoint", ledger_routes.Checkpoint),
        ("/ledger/key", ledger_routes.Key),
        ("/ledger/entries", ledger_routes.Entries),
        ("/ledger/proofs/inclusion", ledger_routes.InclusionProof),
        ("/ledger/proofs/consistency", ledger_routes.ConsistencyProof),
    ):
        app.add_route(path, resource(ledger, config.body_limit))
    nodes = resources.Nodes(ledger, config.body_limit)
    app.add_route("/nodes", nodes)
    app.add_route("/nodes/{key_id}", nodes, suffix="item")
    app.add_route("/nodes/{key_id}/revoke", nodes, suffix="revoke")
    app.add_route("/ledger/entries/{seq}", ledger_routes.Entries(ledger, config.body_limit), suffix="item")
    # Unauthenticated operations endpoints: probes and Prometheus metrics (see README).
    app.add_route("/healthz", health.Health())
    app.add_route("/readyz", health.Ready(ledger))
    app.add_route("/metrics", MetricsEndpoint(metrics))
    # The index (what this is, links to the rest), the OpenAPI contract and its rendered reference
    # page, unauthenticated.
    app.add_route("/", index.Index(ledger))
    app.add_route("/openapi.json", openapi.OpenApi())
    openapi.add_docs(app)
    app.add_sink(errors.no_route)
    app.set_error_serializer(errors.serialize_error)
    app.add_error_handler(Exception, errors.handle_unexpected)
    app.add_error_handler(LedgerError, errors.handle_ledger_error)
    app.add_error_handler(AuthError, auth_error_handler(metrics))
    return app
