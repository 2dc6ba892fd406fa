"""Engine settings: one typed dataclass with documented defaults."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LedgerConfig:
    data_dir: Path = Path("data")
    #: Accept signatures whose `created` is within this many seconds of the ledger clock.
    signature_window: int = 300
    #: Most transactions committed per fsync; a group takes whatever is waiting, up to this.
    max_group: int = 512

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "log"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def checkpoint_file(self) -> Path:
        """A copy of the latest signed checkpoint, outside LevelDB (see ledger/checkpoint_file.py)."""
        return self.data_dir / "checkpoint"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def node_key_file(self) -> Path:
        return self.data_dir / "node.pem"
