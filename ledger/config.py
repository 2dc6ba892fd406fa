"""Engine settings: one typed dataclass with documented defaults."""

from dataclasses import dataclass
from pathlib import Path

#: The most uplets one transaction may create when the genesis does not say (older ledgers).
DEFAULT_MAX_UPLETS_PER_WRITE = 10_000


@dataclass(frozen=True)
class LedgerConfig:
    data_dir: Path = Path("data")
    #: Accept signatures whose `created` is within this many seconds of the ledger clock.
    signature_window: int = 300
    #: Most learnuplets and preduplets one transaction may create (written into the genesis).
    max_uplets_per_write: int = DEFAULT_MAX_UPLETS_PER_WRITE
    #: Most transactions committed per fsync; a group takes whatever is waiting, up to this.
    max_group: int = 512
    #: The URLs this node answers to: a request whose signed authority is not one of theirs is
    #: refused (421). None accepts any authority (in-process use; the server always sets it).
    public_urls: tuple[str, ...] | None = None
    #: etcd client URLs of the cluster that orders this node's writes (empty: the local sequencer).
    etcd: tuple[str, ...] = ()
    #: etcd revisions of history kept for a node that lags or is down (0: etcd is never compacted);
    #: past them it is left behind, and catches up from a peer once back.
    etcd_retain: int = 100_000

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def nonces_dir(self) -> Path:
        """The journal of nonces used by reads and refused writes (see ledger.nonces)."""
        return self.data_dir / "nonces"

    @property
    def checkpoint_file(self) -> Path:
        """A copy of the latest signed checkpoint, outside LevelDB (see ledger/checkpoint_file.py)."""
        return self.data_dir / "checkpoint"

    @property
    def witnessed_file(self) -> Path:
        """The newest checkpoint a quorum of witnesses cosigned (see ledger/witnessing.py)."""
        return self.data_dir / "witnessed"

    @property
    def genesis_file(self) -> Path:
        """The genesis entry's bytes, for other nodes to join from (several nodes only)."""
        return self.data_dir / "genesis.json"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def node_key_file(self) -> Path:
        return self.data_dir / "node.pem"
