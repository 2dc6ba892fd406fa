"""Settings: documented defaults in config/defaults.toml, overridden by environment, then flags."""

import dataclasses
import os
import re
import tomllib
from pathlib import Path

import pytest
from conftest import orchestrator

from ledger import machine
from ledger.store import LevelStore
from orchestrator import settings
from orchestrator.settings import Settings, SettingsError

SERVE = (
    "data_dir", "bind", "threads", "body_limit", "max_queued_writes", "header_timeout", "body_timeout", "max_group",
    "log_level", "signature_window", "max_uplets_per_write", "public_url",
)


def shown(name: str) -> str:
    """How --help words a default the file leaves empty (it is derived from other settings)."""
    return str(settings.SETTINGS[name].metadata["shown"])


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update(extra)
    return env


def test_defaults_file_documents_every_setting_with_the_dataclass_default() -> None:
    assert settings.DEFAULTS_FILE == Path(__file__).resolve().parent.parent / "config" / "defaults.toml"
    documented = tomllib.loads(settings.DEFAULTS_FILE.read_text())
    assert set(documented) == set(settings.SETTINGS)
    assert settings.defaults() == Settings()
    for field in dataclasses.fields(Settings):
        if field.name in settings.SETTINGS:
            default = field.default
            assert documented[field.name] == ("" if default is None else str(default) if isinstance(default, Path)
                                              else default), field.name


def test_environment_overrides_defaults_and_flags_override_environment() -> None:
    env = {"ORCHESTRATOR_THREADS": "8", "ORCHESTRATOR_BIND": "0.0.0.0:9000", "ORCHESTRATOR_LOG_LEVEL": "WARNING",
           "ORCHESTRATOR_BODY_LIMIT": ""}  # empty counts as unset
    flags = settings.argparse.Namespace(threads=4, bind=None, data_dir=Path("elsewhere"))
    loaded = settings.load(SERVE, flags, env)
    assert (loaded.threads, loaded.bind, loaded.log_level, loaded.body_limit) == (4, "0.0.0.0:9000", "warning", 1 << 20)
    assert loaded.data_dir == Path("elsewhere") and loaded.overridden == {"threads", "bind", "log_level", "data_dir"}
    # Only the settings a command takes are read from the environment.
    assert settings.load(("data_dir",), None, env).threads == 4


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("ORCHESTRATOR_THREADS", "many", "ORCHESTRATOR_THREADS: expected a positive integer, got 'many'"),
        ("ORCHESTRATOR_BODY_LIMIT", "0", "ORCHESTRATOR_BODY_LIMIT: expected a positive integer, got '0'"),
        ("ORCHESTRATOR_LOG_LEVEL", "loud", "ORCHESTRATOR_LOG_LEVEL: expected one of debug, info, warning, error"),
        ("ORCHESTRATOR_BIND", "  ", "ORCHESTRATOR_BIND: must not be empty"),
        ("ORCHESTRATOR_BIND", "127.0.0.1:99999", "ORCHESTRATOR_BIND: expected HOST:PORT with a port from 1 to 65535"),
        ("ORCHESTRATOR_BIND", "127.0.0.1", "ORCHESTRATOR_BIND: expected HOST:PORT with a port from 1 to 65535"),
        ("ORCHESTRATOR_BIND", "127.0.0.1:-1", "ORCHESTRATOR_BIND: expected HOST:PORT with a port from 1 to 65535"),
    ],
)
def test_invalid_environment_values_name_the_variable(name: str, text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        settings.load(SERVE, None, {name: text})


def test_a_broken_defaults_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "defaults.toml"
    path.write_text('threads = 8\nwizard = "yes"\n')
    with pytest.raises(SettingsError, match="unknown setting 'wizard'"):
        settings.defaults(path)
    path.write_text("threads = -1\n")
    with pytest.raises(SettingsError, match="threads: expected a positive integer"):
        settings.defaults(path)
    path.write_text("threads = 3\n")
    assert settings.defaults(path).threads == 3
    assert settings.defaults(tmp_path / "absent.toml") == Settings()  # not installed: the dataclass defaults


def test_serve_help_lists_every_setting_with_its_default_and_variable() -> None:
    result = orchestrator("serve", "--help", env=_clean_env())
    text = " ".join(result.stdout.split())  # argparse wraps lines to the terminal width
    documented = tomllib.loads(settings.DEFAULTS_FILE.read_text())
    for name in SERVE:
        flag, variable = "--" + name.replace("_", "-"), "ORCHESTRATOR_" + name.upper()
        default = documented[name] or shown(name)
        pattern = re.escape(flag) + r" [A-Z:]+ [^()]*" + re.escape(f"(default: {default}; env {variable})")
        assert re.search(pattern, text), name
    # The flags the server always had are all there.
    for flag in ("--data-dir", "--bind", "--threads", "--body-limit"):
        assert flag in result.stdout


def test_init_takes_the_signature_window_from_env_then_flag(tmp_path: Path) -> None:
    def window(data: Path) -> int:
        store = LevelStore(data / "state", create=False)
        try:
            return int(machine.config(store)["signature_window"])
        finally:
            store.close()

    orchestrator("init", "--data-dir", str(tmp_path / "a"), env=_clean_env())
    orchestrator("init", "--data-dir", str(tmp_path / "b"), env=_clean_env(ORCHESTRATOR_SIGNATURE_WINDOW="42"))
    orchestrator("init", "--data-dir", str(tmp_path / "c"), "--signature-window", "7",
                 env=_clean_env(ORCHESTRATOR_SIGNATURE_WINDOW="42"))
    orchestrator("init", env=_clean_env(ORCHESTRATOR_DATA_DIR=str(tmp_path / "d")))
    assert [window(tmp_path / d) for d in "abcd"] == [300, 42, 7, 300]


def test_init_takes_max_uplets_per_write_from_env_then_flag(tmp_path: Path) -> None:
    def limit(data: Path) -> int:
        store = LevelStore(data / "state", create=False)
        try:
            return int(machine.config(store)["max_uplets_per_write"])
        finally:
            store.close()

    orchestrator("init", "--data-dir", str(tmp_path / "a"), env=_clean_env())
    orchestrator("init", "--data-dir", str(tmp_path / "b"), env=_clean_env(ORCHESTRATOR_MAX_UPLETS_PER_WRITE="42"))
    orchestrator("init", "--data-dir", str(tmp_path / "c"), "--max-uplets-per-write", "7",
                 env=_clean_env(ORCHESTRATOR_MAX_UPLETS_PER_WRITE="42"))
    assert [limit(tmp_path / d) for d in "abc"] == [10000, 42, 7]
    result = orchestrator("init", "--data-dir", str(tmp_path / "e"), "--max-uplets-per-write", "0", check=False,
                          env=_clean_env())
    assert result.returncode == 2 and "--max-uplets-per-write" in result.stderr and not (tmp_path / "e").exists()


def test_invalid_settings_stop_a_command_before_it_does_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = orchestrator("serve", "--data-dir", str(data), check=False, env=_clean_env(ORCHESTRATOR_THREADS="lots"))
    assert result.returncode == 2 and "ORCHESTRATOR_THREADS: expected a positive integer" in result.stderr
    assert "Traceback" not in result.stderr and not data.exists()
    result = orchestrator("serve", "--data-dir", str(data), "--threads", "0", check=False, env=_clean_env())
    assert result.returncode == 2 and "--threads" in result.stderr and not data.exists()
