"""A real ``hub serve`` (gunicorn) on a loopback port in a subprocess, and keys to talk to it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.services import free_port

HUB = str(Path(sys.executable).with_name("hub"))
ROOT = Path(__file__).resolve().parents[2]
FEEDLINE = "text/x-hub-feedline"  # the test connector in feedline.py


def hub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HUB, *args], capture_output=True, text=True, env=env or os.environ.copy(), timeout=60)


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    keys: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, key: str | None = None, body: bytes | None = None,
             ctype: str | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        if ctype:
            req.add_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def key(self, role: str, practice: str | None = None, extra: tuple[str, ...] = ()) -> str:
        args = ["key", "create", "--role", role, *(["--practice", practice] if practice else []), *extra]
        done = hub(*args, env=self.env)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]


def start_server(tmp_path: Path, env_extra: dict[str, str], practices: tuple[str, ...] = ("alpha", "beta"),
                 workers: int = 1) -> Server:
    env = os.environ.copy()
    env.update({"HUB_KEY_CACHE_SECONDS": "0", "HUB_LOG_LEVEL": "INFO", "HUB_PLUGINS": "tests.intake.feedline",
                "PYTHONPATH": str(ROOT)})
    env.update(env_extra)
    for slug in practices:
        done = hub("practice", "add", slug, "--name", slug.title(), env=env)
        assert done.returncode == 0, done.stderr
    port = free_port()
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen([HUB, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers",
                                    str(workers), "--threads", "8"], stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}", process, log_path, env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"hub serve exited: {server.log()[-2000:]}")
        try:
            if server.call("GET", "/healthz")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.1)
    stop(server)
    raise AssertionError(f"hub serve did not answer: {server.log()[-2000:]}")


def stop(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One embedded-store server (SQLite, inline processing) shared by a module's tests."""
    tmp = tmp_path_factory.mktemp("serve")
    srv = start_server(tmp, {"HUB_DATABASE_URL": f"sqlite:///{tmp / 'hub.db'}", "HUB_SQLITE_SYNCHRONOUS": "NORMAL",
                             "HUB_REDIS_URL": "", "HUB_RATE_LIMIT": "0"})
    srv.keys = {"feed_alpha": srv.key("feed", "alpha"), "feed_beta": srv.key("feed", "beta"),
                "analyst": srv.key("analyst"), "admin": srv.key("admin")}
    yield srv
    stop(srv)


def feedline(*patients: tuple[str, str, str, str]) -> bytes:
    """A test-connector payload: one message per (MRN, family, given, sex code)."""
    return ("FEEDLINE\n" + "".join(f"PAT|{m}|{f}|{g}|{s}\n" for m, f, g, s in patients)).encode()
