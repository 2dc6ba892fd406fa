"""Settings of the `orchestrator` command: one typed dataclass, built once per run.

Precedence, lowest first: the documented defaults in ``config/defaults.toml`` (equal to the
dataclass defaults below, which stand in for the file where it is not installed); then the
environment, ``ORCHESTRATOR_<NAME>`` (an empty variable counts as unset); then a command-line
flag, ``--<name>`` with dashes for underscores. Each command takes the settings it uses.
"""

import argparse
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.authority import Authorities, split_bind
from ledger.config import LedgerConfig
from ledger.errors import ValidationError

if TYPE_CHECKING:
    from ledger.witnessing import WitnessConfig

DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "config" / "defaults.toml"
LOG_LEVELS = ("debug", "info", "warning", "error")
ENV_PREFIX = "ORCHESTRATOR_"


class SettingsError(Exception):
    """A setting has an invalid value; the message names the setting and where it came from."""


def _integer(text: str, minimum: int, kind: str) -> int:
    """An integer of at least `minimum`; `kind` names it in the error ("positive", ...)."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected a {kind} integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"expected a {kind} integer, got {text!r}")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1, "positive")


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _bind(text: str) -> str:
    """HOST:PORT (split_bind)."""
    try:
        split_bind(_text(text))
    except ValidationError as e:
        raise ValueError(e.message) from None
    return text.strip()


def _level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return text.lower()


def _path(text: str) -> Path:
    return Path(_text(text))


def _optional_path(text: str) -> Path | None:
    return Path(text) if text else None


def _count(text: str) -> int:
    return _integer(text, 0, "non-negative")


def _urls(text: str) -> str:
    """Comma-separated http(s)://HOST[:PORT] URLs (empty: none)."""
    urls = [url.strip() for url in text.split(",") if url.strip()]
    try:
        Authorities.of_urls(urls)
    except ValidationError as e:
        raise ValueError(e.message) from None
    return ",".join(urls)


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _witnesses(text: str) -> str:
    """Comma-separated URL=VKEY (empty: none), each a witness's URL and cosignature/v1 vkey."""
    from ledger.witnessing import WitnessConfig

    items = [item.strip() for item in text.split(",") if item.strip()]
    names = [WitnessConfig.parse(item).key.name for item in items]
    if len(set(names)) != len(names):
        raise ValueError("each witness (by the name in its vkey) may be given once")
    return ",".join(items)
def _etcd_urls(text: str) -> str:
    """Comma-separated etcd client URLs (empty: none)."""
    from ledger.etcd_codec import endpoint

    urls = [url.strip() for url in text.split(",") if url.strip()]
    for url in urls:
        endpoint(url)  # raises ValueError naming the URL
    return ",".join(urls)


def _setting(
    default: Any, parse: Callable[[str], Any], metavar: str, help: str, shown: str | None = None, repeat: bool = False
) -> Any:
    meta = {"parse": parse, "metavar": metavar, "help": help, "shown": shown, "repeat": repeat}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = _setting(Path("data"), _path, "DIR", "ledger data directory")
    bind: str = _setting("127.0.0.1:8000", _bind, "HOST:PORT", "address the server listens on")
    threads: int = _setting(
        4, _positive, "N", "threads of the worker's small pool for blocking reads: lists, entry pages, proofs"
    )
    body_limit: int = _setting(1024 * 1024, _positive, "BYTES", "largest accepted request body; a larger one gets 413")
    max_queued_writes: int = _setting(
        4096, _positive, "N", "most writes waiting for their commit; past it a write gets 503 with Retry-After"
    )
    header_timeout: int = _setting(
        10, _positive, "SECONDS", "time for a request's head to arrive; a slower client gets 408 and is dropped"
    )
    body_timeout: int = _setting(
        30, _positive, "SECONDS", "time for a request's body to arrive; a slower client gets 408 and is dropped"
    )
    max_group: int = _setting(512, _positive, "N", "most transactions committed per fsync")
    log_level: str = _setting("info", _level, "LEVEL", "level of the JSON log lines: " + ", ".join(LOG_LEVELS))
    signature_window: int = _setting(
        300, _positive, "SECONDS", "how far a signature's created may be off the ledger clock; set at ledger creation"
    )
    max_uplets_per_write: int = _setting(
        10_000, _positive, "N", "most learnuplets and preduplets one write may create; set at ledger creation"
    )
    public_url: str = _setting(
        "", _urls, "URL",
        "a URL this node answers to, repeatable, comma-separated in the environment; a request signed for another "
        "authority is refused with 421",
        shown="the bind address, and its localhost and 127.0.0.1 forms when it is a loopback address",
        repeat=True,
    )
    witness: str = _setting(
        "", _witnesses, "URL=VKEY",
        "a witness to send each new checkpoint to (C2SP tlog-witness), by its URL and its cosignature/v1 verifier "
        "key, repeatable, comma-separated in the environment",
        shown="none", repeat=True,
    )
    witness_quorum: int = _setting(
        1, _positive, "K",
        "cosignatures a checkpoint needs before GET /ledger/checkpoint serves it (with --witness)",
    )
    witness_timeout: int = _setting(
        5, _positive, "SECONDS", "time a witness has to answer; also the longest a ?proof=1 write waits for one"
    )
    public_log: bool = _setting(
        False, _flag, "BOOL",
        "serve the checkpoint, tiles and entry bundles (GET /checkpoint, /tile/...) without a signature",
    )
    etcd: str = _setting(
        "", _etcd_urls, "URLS",
        "etcd client URLs (http://HOST:PORT, comma-separated) of the cluster that orders this node's writes, "
        "shared with the ledger's other nodes",
        shown="none: this node orders its writes alone",
    )
    etcd_retain: int = _setting(
        100_000, _count, "REVISIONS",
        "with --etcd: etcd revisions (one per transaction of up to 64 writes) of history kept for a node that lags "
        "or is down; past them it is left behind and catches up from a peer once back; 0 never compacts etcd",
    )
    peer: str = _setting(
        "", _urls, "URL",
        "with --etcd: another node of the ledger to take entries from when etcd has forgotten them, repeatable, "
        "comma-separated in the environment",
        shown="the --public-url values", repeat=True,
    )
    url: str = _setting("http://127.0.0.1:8000", _text, "URL", "the node to call")
    key_id: str = _setting(
        "admin", _text, "NAME", "key id to sign with; with only a key file given, its name without .pem"
    )
    key_file: Path | None = _setting(
        None, _optional_path, "PEM", "private key to sign with", shown="DATA_DIR/keys/KEY_ID.pem"
    )
    #: The settings given by the environment or a flag rather than by the defaults.
    overridden: frozenset[str] = field(default=frozenset(), compare=False)

    def ledger_config(self) -> LedgerConfig:
        return LedgerConfig(
            data_dir=self.data_dir,
            signature_window=self.signature_window,
            max_uplets_per_write=self.max_uplets_per_write,
            max_group=self.max_group,
            public_urls=self.public_urls(),
            etcd=tuple(self.etcd.split(",")) if self.etcd else (),
            etcd_retain=self.etcd_retain,
        )

    def peer_urls(self) -> tuple[str, ...]:
        """The nodes to catch up from: `peer`, or by default the public URLs (which, in a cluster that
        answers to each other's URLs, name the other nodes, and this one, which is passed over)."""
        return tuple(self.peer.split(",")) if self.peer else self.public_urls()

    def public_urls(self) -> tuple[str, ...]:
        """The URLs the node answers to: public_url, or by default the bind address's forms."""
        if self.public_url:
            return tuple(self.public_url.split(","))
        return tuple(f"http://{name}" for name in sorted(Authorities.of_bind(self.bind).names))

    def witnesses(self) -> "list[WitnessConfig]":
        """The witnesses to ask, as parsed from `witness`."""
        from ledger.witnessing import WitnessConfig

        return [WitnessConfig.parse(item) for item in self.witness.split(",") if item]

    def signing_key(self) -> tuple[Path, str]:
        """The key file and key id to sign with, after the rules of ``key_file`` and ``key_id``."""
        if self.key_file is None:
            return self.data_dir / "keys" / f"{self.key_id}.pem", self.key_id
        if "key_id" not in self.overridden and "key_file" in self.overridden:
            return self.key_file, self.key_file.stem
        return self.key_file, self.key_id


SETTINGS: dict[str, Field[Any]] = {f.name: f for f in fields(Settings) if "parse" in f.metadata}


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse(name: str, text: str, source: str) -> Any:
    try:
        return SETTINGS[name].metadata["parse"](text)
    except ValueError as e:
        raise SettingsError(f"{source}: {e}") from e


def defaults(path: Path = DEFAULTS_FILE) -> Settings:
    """The documented defaults: the file when present, else the dataclass defaults (equal to it).

    Raises SettingsError for an unreadable file, an unknown name or an invalid value.
    """
    if not path.exists():
        return Settings()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SettingsError(f"{path}: {e}") from e
    unknown = sorted(set(data) - set(SETTINGS))
    if unknown:
        raise SettingsError(f"{path}: unknown setting {unknown[0]!r}")
    values = {name: _parse(name, str(value), f"{path}: {name}") for name, value in data.items()}
    return replace(Settings(), **values)


def add_arguments(parser: Any, names: Iterable[str], base: Settings) -> None:
    """One flag per setting on ``parser`` (or an argument group), its help naming the default and
    the environment variable."""
    for name in names:
        meta = SETTINGS[name].metadata
        shown = meta["shown"] or getattr(base, name)

        def convert(text: str, name: str = name) -> Any:
            try:
                return SETTINGS[name].metadata["parse"](text)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from e

        parser.add_argument(
            flag_name(name),
            dest=name,
            default=None,
            type=convert,
            action="append" if meta["repeat"] else "store",
            metavar=meta["metavar"],
            help=f"{meta['help']} (default: {shown}; env {env_name(name)})",
        )


def load(
    names: Iterable[str],
    flags: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    base: Settings | None = None,
) -> Settings:
    """The settings ``names`` of one run: defaults, then environment, then flags.

    Raises SettingsError naming the variable that holds an invalid value.
    """
    environ = os.environ if environ is None else environ
    settings = base if base is not None else defaults()
    changes: dict[str, Any] = {}
    for name in names:
        text = environ.get(env_name(name))
        if text:
            changes[name] = _parse(name, text, env_name(name))
        given = getattr(flags, name, None) if flags is not None else None
        if isinstance(given, list):  # a repeatable flag
            given = ",".join(given)
        if given is not None:
            changes[name] = given
    return replace(settings, **changes, overridden=frozenset(changes))
