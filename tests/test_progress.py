"""Progress of long commands: a bar with rate and ETA on a terminal, nothing when piped."""

import io
from pathlib import Path

from conftest import Server, new_uuid, on_terminal, orchestrator

from orchestrator.progress import ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_shows_count_rate_and_eta_on_a_terminal() -> None:
    stream = Terminal()
    bar = ProgressBar("replay", stream)
    bar(0, 10)
    bar(10, 10)
    text = stream.getvalue()
    assert text.startswith("\rreplay [") and "10/10" in text and "/s ETA " in text and text.endswith("\n")


def test_bar_writes_nothing_when_not_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar("replay", stream)
    for done in range(11):
        bar(done, 10)
    assert stream.getvalue() == ""


def test_replay_and_verify_stay_quiet_when_piped(fresh_server: Server) -> None:
    admin = fresh_server.client("admin")
    for _ in range(3):
        body = {"uuid": new_uuid(), "workflow": new_uuid(), "test_dataset": [], "size_train_dataset": 1}
        assert admin.post("/problem", body).status_code == 201
    fresh_server.stop()
    data: Path = fresh_server.data_dir
    for command in ("replay", "verify"):
        result = orchestrator(command, "--data-dir", str(data))  # stderr is a pipe here
        assert result.stderr == "", command
        assert "\r" not in result.stdout and "ETA" not in result.stdout
    assert "replayed 4 of 4 entries" in orchestrator("replay", "--data-dir", str(data)).stdout

    # The same command on a terminal draws the bar.
    result, shown = on_terminal(["replay", "--data-dir", str(data)], stream="stderr")
    assert result.returncode == 0 and "replay [" in shown and "4/4" in shown
