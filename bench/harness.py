"""What the queue benchmarks share: a fresh PostgreSQL database, Redis, a loopback
ESP, Celery worker processes, and counting what was recorded.

Not a benchmark itself: bench/queued.py and bench/faults.py use it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_start() -> None:
    """Start Redis (as the machine starts it) and wait until it answers."""
    if redis_up():
        return
    subprocess.run(REDIS_START, shell=True, check=True, stdout=subprocess.DEVNULL)
    for _ in range(100):
        if redis_up():
            return
        time.sleep(0.05)
    raise RuntimeError("Redis didn't start")


def redis_stop() -> None:
    subprocess.run(["redis-cli", "shutdown", "nosave"], check=False, capture_output=True)
    for _ in range(100):
        if not redis_up():
            return
        time.sleep(0.05)


class Postgres:
    """A fresh database for one run, dropped at the end."""

    def __init__(self, server: str | None = None) -> None:
        import psycopg

        self.psycopg = psycopg
        self.server = server or os.environ.get(
            "BENCH_POSTGRES_SERVER", "postgresql://postgres@127.0.0.1:5432"
        )
        self.name = f"mailhub_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self._admin(f"CREATE DATABASE {self.name}")
        self.url = (
            self.server.replace("postgresql://", "postgres://")
            + f"/{self.name}?conn_max_age=600&conn_health_checks=true"
        )

    def _admin(self, sql: str) -> None:
        with self.psycopg.connect(f"{self.server}/postgres", autocommit=True) as connection:
            connection.execute(sql)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.psycopg.connect(f"{self.server}/{self.name}", autocommit=True) as connection:
            return connection.execute(sql, params).fetchall()

    def terminate_other_connections(self) -> int:
        """Drop every other connection to this database (a DB failover / restart)."""
        rows = self.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.name,),
        )
        return len(rows)

    def drop(self) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def start_server(script: str) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [PYTHON, str(ROOT / "bench" / script), "0"], stdout=subprocess.PIPE, text=True
    )
    port = server.stdout.readline().split()[1]
    return server, f"http://127.0.0.1:{port}"


def http_json(url: str, data: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        data=None if data is None else json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
        method="GET" if data is None else "POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def base_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of every process of a run (enqueuers, workers, the sweep)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mailhub.settings",
        "SECRET_KEY": "bench",
        "DEBUG": "false",
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": extra.pop("MEDIA_ROOT", tempfile.mkdtemp(prefix="mailhub-bench-media-")),
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
        "CELERY_TASK_DEFAULT_QUEUE": f"mailhub-bench-{os.getpid()}",
        "EMAIL_BACKEND": "sending.backends.queued.EmailBackend",
        "LOG_LEVEL": "ERROR",
        **extra,
    }


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    out = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


class Worker:
    """`celery -A mailhub worker` in its own process group (so it can be SIGKILLed whole)."""

    def __init__(self, env: dict[str, str], concurrency: int, prefetch: int = 4) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="mailhub-worker-", suffix=".log")
        self.process = subprocess.Popen(
            [
                *(PYTHON, "-m", "celery", "-A", "mailhub", "worker", "--pool", "prefork"),
                *("--concurrency", str(concurrency), "--prefetch-multiplier", str(prefetch)),
                *("--loglevel", "warning", "--without-gossip", "--without-mingle"),
                "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes: no chance to finish or ack."""
        self._signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self._signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass


def statuses(db: Postgres, prefix: str = "") -> dict[str, int]:
    rows = db.query(
        "SELECT status, COUNT(*) FROM sending_message WHERE subject LIKE %s GROUP BY status",
        (prefix + "%",),
    )
    return dict(rows)


def wait_until(condition, timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def wait_quiet(db: Postgres, prefix: str, timeout: float, quiet_for: float = 3.0) -> dict:
    """Wait until nothing is queued or sending, or the counts stop changing for quiet_for."""
    deadline = time.monotonic() + timeout
    last, last_change = None, time.monotonic()
    while time.monotonic() < deadline:
        counts = statuses(db, prefix)
        if not counts.get("queued") and not counts.get("sending"):
            return counts
        if counts != last:
            last, last_change = counts, time.monotonic()
        elif time.monotonic() - last_change > quiet_for:
            return counts
        time.sleep(0.25)
    return statuses(db, prefix)
