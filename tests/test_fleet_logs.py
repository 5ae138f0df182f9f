"""Logs per process: stderr always, a file of the process's own, JSON lines for a collector."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from playbill.logs import HANDLER_NAME, bind_request, configure_logging, process_log_file
from playbill.settings import load_settings


@pytest.fixture(autouse=True)
def restore_logging():
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
        handler.close()


def test_json_lines_name_the_process_shard_and_request(home: Path, capsys) -> None:
    settings = load_settings(logging={"format": "json"})
    configure_logging(settings)
    log = logging.getLogger("playbill.test")
    bind_request(1234567890, shard=3)
    log.info("answering a review")
    bind_request(None)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["message"] == "answering a review" and lines[0]["level"] == "INFO"
    assert lines[0]["process"] == f"{socket.gethostname()}:{os.getpid()}"
    assert (lines[0]["shard"], lines[0]["request"]) == (3, "1234567890")
    assert (lines[1]["shard"], lines[1]["request"]) == (None, None)
    assert "ValueError: boom" in lines[1]["exception"]
    written = [json.loads(line) for line in process_log_file(settings.logs_dir).read_text().splitlines()]
    assert [entry["message"] for entry in written] == ["answering a review", "it failed"]


def test_text_on_stderr_shows_warnings_and_the_file_everything(home: Path, capsys) -> None:
    settings = load_settings()
    configure_logging(settings)
    logging.getLogger("playbill.test").info("quiet detail")
    logging.getLogger("playbill.test").warning("something to act on")
    assert capsys.readouterr().err == "WARNING playbill.test: something to act on\n"
    text = process_log_file(settings.logs_dir).read_text()
    assert "quiet detail" in text and f"{socket.gethostname()}:{os.getpid()}" in text


def test_no_file_when_switched_off(home: Path) -> None:
    configure_logging(load_settings(logging={"file": False}))
    logging.getLogger("playbill.test").warning("only on stderr")
    assert not (home / "logs").exists() or not list((home / "logs").glob("playbill-*.log"))


def test_two_processes_on_one_home_write_two_files(home: Path) -> None:
    script = ("import logging, sys; from playbill.logs import configure_logging; "
              "from playbill.settings import load_settings; configure_logging(load_settings()); "
              "[logging.getLogger('playbill.test').info('line %d of %s', i, sys.argv[1]) for i in range(200)]")
    env = {**os.environ, "PLAYBILL_HOME": str(home)}
    children = [subprocess.Popen([sys.executable, "-c", script, name], env=env) for name in ("first", "second")]
    pids = {child.pid: name for child, name in zip(children, ("first", "second"))}
    assert [child.wait(60) for child in children] == [0, 0]
    files = sorted((home / "logs").glob("playbill-*.log"))
    assert sorted(files) == sorted(process_log_file(home / "logs", pid) for pid in pids)
    for pid, name in pids.items():
        lines = process_log_file(home / "logs", pid).read_text().splitlines()
        assert len(lines) == 200 and all(line.endswith(f"of {name}") for line in lines)
