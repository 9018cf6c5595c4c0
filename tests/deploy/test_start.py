"""bin/start and bin/web, the commands that run the dashboard on one machine, as a person runs them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path, port: int, **more: str) -> dict[str, str]:
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_", "TASK_", "REDIS_", "EMBEDDED_"))
    }
    return {**inherited, "DATA_DIR": str(tmp_path), "PORT": str(port), **more}


def _wait_for(url: str, process: subprocess.Popen[bytes], limit: float = 90) -> requests.Response:
    deadline = time.monotonic() + limit
    while True:
        try:
            return requests.get(url, timeout=10)
        except requests.ConnectionError:
            assert process.poll() is None, f"it ended (exit {process.returncode})"
            assert time.monotonic() < deadline, f"nothing answered at {url}"
            time.sleep(0.2)


def _stop_group(process: subprocess.Popen[bytes], sig: int) -> str:
    os.killpg(process.pid, sig)
    try:
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return out.decode(errors="replace")


def test_bin_web_serves_the_app_with_gunicorn_threads(tmp_path):
    port = _free_port()
    env = _env(tmp_path, port, GUNICORN_WORKERS="1")
    subprocess.run(
        [str(ROOT / ".venv/bin/python"), "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env=env,
        check=True,
    )
    web = subprocess.Popen(
        [str(ROOT / "bin/web")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        r = _wait_for(f"http://127.0.0.1:{port}/healthz", web)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
        assert requests.get(f"http://127.0.0.1:{port}/static/css/app.css", timeout=10).ok
        # One process serves several requests at once: a page that calls the embedded API on
        # this same server is not left waiting for itself.
        with socket.create_connection(("127.0.0.1", port)) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).ok
    finally:
        out = _stop_group(web, signal.SIGTERM)
    assert "Using worker: gthread" in out, out


@pytest.mark.skipif(
    os.environ.get("TASK_BACKEND") == "rq", reason="bin/start runs the database queue"
)
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=["Ctrl-C", "killed"])
def test_bin_start_serves_then_stops_with_everything_it_started(tmp_path, stop):
    port = _free_port()
    start = subprocess.Popen(
        [str(ROOT / "bin/start")],
        cwd=ROOT,
        env=_env(tmp_path, port, HOST="127.0.0.1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own group, as a terminal's foreground job is
        # As from a terminal, whatever the test runner's own SIGINT disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    left: list[int] = []
    try:
        r = _wait_for(f"http://127.0.0.1:{port}/accounts/login/", start)
        assert r.status_code == 200
        assert (tmp_path / "db.sqlite3").exists()
        # The worker is up too.
        deadline = time.monotonic() + 30
        while not any(b"manage.py\0worker" in _cmdline(pid) for pid in _processes_of(tmp_path)):
            assert time.monotonic() < deadline, "no worker"
            time.sleep(0.2)
    finally:
        try:
            # Ctrl-C, or an IDE's stop button: the whole foreground group.
            out = _stop_group(start, stop)
        finally:
            deadline = time.monotonic() + 10
            while _processes_of(tmp_path) and time.monotonic() < deadline:
                time.sleep(0.2)
            left = _processes_of(tmp_path)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
    assert "admin" in out  # it told how to sign in
    if stop == signal.SIGINT:
        assert "Traceback" not in out, out
    assert not left, f"processes of bin/start outlived it: {[_cmdline(p) for p in left]}"


def _workers_of(data_dir: Path) -> list[int]:
    return [pid for pid in _processes_of(data_dir) if b"manage.py\0worker" in _cmdline(pid)]


@pytest.mark.skipif(
    os.environ.get("TASK_BACKEND") == "rq", reason="bin/start runs the database queue"
)
def test_bin_start_starts_a_killed_worker_again_and_the_web_server_stays_up(tmp_path):
    port = _free_port()
    start = subprocess.Popen(
        [str(ROOT / "bin/start")],
        cwd=ROOT,
        env=_env(tmp_path, port, HOST="127.0.0.1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", start)
        deadline = time.monotonic() + 30
        while len(_workers_of(tmp_path)) < 2:  # the dashboard's queue, the API's applies
            assert time.monotonic() < deadline, "no workers"
            time.sleep(0.2)
        first = _workers_of(tmp_path)[0]
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while len(again := [pid for pid in _workers_of(tmp_path) if pid != first]) < 2:
            assert start.poll() is None, "bin/start ended with its worker"
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).ok
            assert time.monotonic() < deadline, "the worker was not started again"
            time.sleep(0.2)
        # The new worker runs: its heartbeat row is written.
        deadline = time.monotonic() + 30
        while not all(_worker_rows(tmp_path, pid) for pid in again):
            assert time.monotonic() < deadline, "the new worker wrote no heartbeat"
            time.sleep(0.2)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).ok
        assert start.poll() is None
    finally:
        out = _stop_group(start, signal.SIGINT)
        deadline = time.monotonic() + 10
        while _processes_of(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in _processes_of(tmp_path):
            os.kill(pid, signal.SIGKILL)
    assert "starting it again" in out, out


def _worker_rows(data_dir: Path, pid: int) -> int:
    with contextlib.closing(sqlite3.connect(data_dir / "db.sqlite3", timeout=10)) as db:
        return db.execute("SELECT count(*) FROM dashboard_worker WHERE pid = ?", [pid]).fetchone()[
            0
        ]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _processes_of(data_dir: Path) -> list[int]:
    """Running processes with this test's DATA_DIR in their environment."""
    found = []
    marker = f"DATA_DIR={data_dir}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                    if state != "Z":
                        found.append(int(entry.name))
            except OSError:
                pass
    return found
