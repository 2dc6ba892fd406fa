"""Every write endpoint, described once: path, role, status, body fields.

The state machine dispatches on this table (:func:`route_of`), the API asks it which role a
write needs before anything is queued, and ``api/openapi.py`` generates the contract's write
operations and request bodies from it. A path template's ``{name}`` segments are the
arguments handed to the route's handler, in order; other segments are literal.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ledger import membership, schema
from ledger.errors import NotFoundError, ValidationError
from ledger.schema import Check


def perf_input(name: str, value: Any) -> Any:
    """train_perf / test_perf: checked against the learnuplet's data once it is read."""
    return value


@dataclass(frozen=True)
class WriteRoute:
    name: str  # the state machine's handler for it
    path: str  # template, as the contract names it
    role: str
    status: int
    summary: str
    result: str  # the contract's name for the answer's schema
    required: Mapping[str, Check]
    optional: Mapping[str, Check] = field(default_factory=dict)
    #: Optional fields that become required when the body's status is "done".
    required_when_done: tuple[str, ...] = ()
    tag: str = "writes"

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.strip("/").split("/"))

    @property
    def request(self) -> str:
        """The contract's name for the body's schema."""
        return self.name[0].upper() + self.name[1:] + "Request"


_UPLET = {"status": schema.status}
WRITES: tuple[WriteRoute, ...] = (
    WriteRoute(
        "problem", "/problem", "admin", 201, "Add a problem", "ProblemCreated",
        {
            "uuid": schema.uuid,
            "workflow": schema.uuid,
            "test_dataset": schema.possibly_empty_uuid_list,
            "size_train_dataset": schema.positive_int,
        },
    ),
    WriteRoute(
        "algo", "/algo", "analytics", 201,
        "Add an algorithm; derives its learnuplets over the problem's train data", "AlgoCreated",
        {"uuid": schema.uuid, "name": schema.text, "problem": schema.uuid},
    ),
    WriteRoute(
        "data", "/data", "viewer", 201, "Add data to problems; extends every algo's learnuplet chain",
        "DataCreated", {"uuid": schema.uuid_or_list, "problems": schema.uuid_or_list},
    ),
    WriteRoute(
        "prediction", "/prediction", "viewer", 201,
        "Ask predictions on data with the problem's best trained model", "PredictionCreated",
        {"data": schema.uuid_or_list, "problem": schema.uuid},
    ),
    WriteRoute(
        "worker", "/worker/{uplet_type}/{uplet_uuid}", "compute", 200,
        "Claim a todo learnuplet or preduplet for a worker (it becomes pending)", "WorkerSet",
        {"worker": schema.uuid},
    ),
    WriteRoute(
        "learndone", "/learndone/{uuid}", "compute", 200,
        "Report a claimed learnuplet done (with performances) or failed", "LearnupletUpdated",
        _UPLET, {"perf": schema.finite, "train_perf": perf_input, "test_perf": perf_input},
        required_when_done=("perf", "train_perf", "test_perf"),
    ),
    WriteRoute(
        "preddone", "/preddone/{uuid}", "compute", 200,
        "Report a claimed preduplet done (with the stored prediction) or failed", "PredupletUpdated",
        _UPLET, {"prediction_storage_uuid": schema.uuid}, required_when_done=("prediction_storage_uuid",),
    ),
    WriteRoute(
        "node", "/nodes", "admin", 201, "Register a key with roles", "NodeCreated",
        {"key_id": membership.key_id, "public_key": membership.public_key, "roles": membership.roles},
        tag="membership",
    ),
    WriteRoute(
        "nodeRoles", "/nodes/{key_id}", "admin", 200, "Replace a key's roles", "NodeUpdated",
        {"roles": membership.roles}, tag="membership",
    ),
    WriteRoute(
        "revoke", "/nodes/{key_id}/revoke", "admin", 200, "Revoke a key (final; a key cannot revoke itself)",
        "NodeRevoked", {}, tag="membership",
    ),
)

_SEGMENT = re.compile(r"[A-Za-z0-9._~-]*")
#: Each route's path template, split once: (route, segments), in WRITES order.
_SHAPES: dict[tuple[int, str], tuple[tuple[WriteRoute, tuple[str, ...]], ...]] = {}
for _route in WRITES:
    _segments = _route.segments
    if _segments[0].startswith("{"):
        raise ImportError(f"write route {_route.path}: the first segment must be literal (route_of indexes on it)")
    _key = (len(_segments), _segments[0])
    _SHAPES[_key] = (*_SHAPES.get(_key, ()), (_route, _segments))
#: The routes whose path has no argument, by that path (stripped of its slashes), when the first
#: route of its shape is the route (so that looking it up first changes nothing).
_LITERAL: dict[str, WriteRoute] = {
    "/".join(segments): route
    for (route, segments), *_ in _SHAPES.values()
    if not any(segment.startswith("{") for segment in segments)
}


def _match(route: WriteRoute, parts: list[str], segments: tuple[str, ...] | None = None) -> list[str] | None:
    segments = route.segments if segments is None else segments
    if len(parts) != len(segments):
        return None
    args = []
    for template, part in zip(segments, parts, strict=True):
        if template.startswith("{"):
            if not _SEGMENT.fullmatch(part):
                return None
            args.append(part)
        elif template != part:
            return None
    return args


def route_of(method: str, path: str) -> tuple[WriteRoute, list[str]]:
    """The write route for a method and path, and its path arguments; raises NotFoundError.

    The first route of WRITES that matches (only routes of the path's length and first segment
    can: they are looked up by those)."""
    if method == "POST":
        stripped = path.strip("/")
        literal = _LITERAL.get(stripped)
        if literal is not None:
            return literal, []
        parts = stripped.split("/")
        for route, segments in _SHAPES.get((len(parts), parts[0]), ()):
            args = _match(route, parts, segments)
            if args is not None:
                return route, args
    raise NotFoundError(f"no write endpoint {method} {path}")


def accepts_post(parts: list[str]) -> bool:
    """Whether some write route takes a POST to this path (its segments)."""
    return any(_match(route, parts) is not None for route in WRITES)


def body(route: WriteRoute, value: Any) -> dict[str, Any]:
    """The route's body fields checked and cleaned; raises ValidationError naming the field."""
    cleaned = schema.fields(value, route.required, route.optional)
    if cleaned.get("status") == "done":
        schema.require(cleaned, route.required_when_done, "when status is 'done'")
    return cleaned


#: The query parameters a write takes (the API contract's ``?proof=1``).
WRITE_PARAMS = ("proof",)


def refuse_unknown_params(names: Iterable[str], allowed: tuple[str, ...], where: str) -> None:
    """Refuse (ValidationError) a query parameter that the endpoint `where` ("METHOD PATH") does
    not take: a misspelt one would otherwise be ignored without a word."""
    for name in names:
        if name not in allowed:
            takes = f"it takes {', '.join(repr(a) for a in allowed)}" if allowed else "it takes none"
            raise ValidationError(f"unknown query parameter {name[:40]!r} for {where}: {takes}")


def check_write_params(method: str, target: str) -> None:
    """refuse_unknown_params for a write's target URI."""
    parts = urlsplit(target)
    names = (name for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    refuse_unknown_params(names, WRITE_PARAMS, f"{method} {parts.path[:80]}")
