"""Queued sending through a real broker: Redis, and a `celery -A mailhub worker` process.

The worker is a separate process, so it can't see the test database; the test
makes its own (a SQLite file, or a fresh PostgreSQL database when the suite
runs on PostgreSQL), migrates it, enqueues from one process and lets the
worker send: 20 messages that the sandbox accepts and one it answers with
HTTP 503 every time, which the worker retries (through the broker, with a
countdown) until it gives up.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/15"

ENQUEUE = """
from django.db import transaction
from sending.backends.queued import EmailBackend
from sending.message import AnymailMessage

messages = [
    AnymailMessage(f"Order {i}", "Shipped.", "shop@example.com", [f"user{i}@example.com"])
    for i in range(20)
]
outage = AnymailMessage("Outage", "Body", "shop@example.com", ["outage@example.com"])
outage.esp_extra = {"sandbox_error": 503}
with transaction.atomic():
    print(EmailBackend().send_messages(messages + [outage]))
"""


def redis_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    not redis_reachable(), reason="Redis is not running on 127.0.0.1:6379 (start redis-server)"
)


class Database:
    """A database of the suite's kind that other processes can open."""

    def __init__(self, tmp_path: Path) -> None:
        default = settings.DATABASES["default"]
        self.postgres = default["ENGINE"] == "django.db.backends.postgresql"
        if self.postgres:
            self.name = f"mailhub_broker_{uuid.uuid4().hex[:10]}"
            host, port = default.get("HOST") or "127.0.0.1", default.get("PORT") or 5432
            user = default.get("USER") or "postgres"
            password = default.get("PASSWORD") or ""
            auth = f"{user}:{password}" if password else user
            self.server = f"postgresql://{auth}@{host}:{port}"
            self._admin(f"CREATE DATABASE {self.name}")
            self.url = f"postgres://{auth}@{host}:{port}/{self.name}"
        else:
            self.path = tmp_path / "broker.sqlite3"
            self.url = f"sqlite:///{self.path}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"{self.server}/postgres", autocommit=True) as connection:
            connection.execute(sql)

    def statuses(self) -> dict[str, int]:
        sql = "SELECT status, COUNT(*) FROM sending_message GROUP BY status"
        if self.postgres:
            import psycopg

            with psycopg.connect(f"{self.server}/{self.name}") as connection:
                return dict(connection.execute(sql).fetchall())
        with sqlite3.connect(self.path) as connection:
            return dict(connection.execute(sql).fetchall())

    def drop(self) -> None:
        if self.postgres:
            self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def test_real_worker_sends_queued_messages_and_retries_through_redis(tmp_path):
    database = Database(tmp_path)
    queue = f"mailhub-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mailhub.settings",
        "SECRET_KEY": "test-broker",
        "DEBUG": "false",
        "DATABASE_URL": database.url,
        "MEDIA_ROOT": str(tmp_path / "media"),
        "CELERY_BROKER_URL": REDIS_URL,
        # A queue of its own, so no other worker takes these tasks.
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "EMAIL_BACKEND": "sending.backends.queued.EmailBackend",
        "MAILHUB_QUEUE_BACKEND": "sending.backends.sandbox.EmailBackend",
        "MAILHUB_QUEUE_MAX_ATTEMPTS": "3",
        "MAILHUB_QUEUE_BACKOFF_BASE": "0.2",
        "MAILHUB_QUEUE_JITTER": "none",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "mailhub", "worker", "--pool", "solo"]
        + ["--loglevel", "warning", "--without-gossip", "--without-mingle"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        manage = [sys.executable, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
        queued = subprocess.run(
            [*manage, "shell", "-c", ENQUEUE],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        )
        assert queued.stdout.strip().splitlines()[-1] == "21"

        deadline = time.monotonic() + 45
        statuses = database.statuses()
        while statuses != {"sent": 20, "failed": 1} and time.monotonic() < deadline:
            assert worker.poll() is None, worker.stdout.read().decode()
            time.sleep(0.2)
            statuses = database.statuses()
        assert statuses == {"sent": 20, "failed": 1}, statuses
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        database.drop()
        import redis

        redis.Redis.from_url(REDIS_URL).delete(queue)
