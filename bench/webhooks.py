"""Webhook ingest throughput and latency, recording off and on, under gunicorn.

Runs mailhub under gunicorn on loopback (SQLite by default, PostgreSQL
with --database postgres://...), with messages already in the database,
and drives it with (a) single-event Mailgun calls (signed) and (b) SendGrid
batches of 100 events, each for the seeded messages. Prints events/s and
p50/p99 request latency with recording off and on, measured in this run,
and the ratio on/off. Targets: batches >= 0.3x, single events >= 0.5x.

Workers keep their database connection between requests, as in production
(README: conn_max_age); --conn-max-age 0 opens one per request instead.

    .venv/bin/python bench/webhooks.py [--single 2000] [--batches 100] [--messages 5000]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIGNING_KEY = "bench-signing-key"
WEBHOOK_SECRET = "bench:webhook"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_env(database_url: str, store: bool, media_root: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mailhub.settings",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "bench",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MEDIA_ROOT": media_root,
        "MAILHUB_STORE": "true" if store else "false",
        "ANYMAIL_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY,
        "ANYMAIL_MAILGUN_API_KEY": "bench",
        "LOG_LEVEL": "ERROR",
    }


SEED_SCRIPT = """
import django, sys
django.setup()
from django.core.management import call_command
from sending.models import Message, Recipient
call_command("migrate", verbosity=0)
count = int(sys.argv[1])
for esp in ("mailgun", "sendgrid"):
    if Message.objects.filter(esp=esp).exists():
        continue  # seeded by the other run (--database)
    messages = Message.objects.bulk_create(
        [Message(esp=esp, backend=f"sending.backends.{esp}.EmailBackend", status="sent",
                 subject=f"Seed {i}") for i in range(count)]
    )
    Recipient.objects.bulk_create(
        [Recipient(message=m, esp=esp, address=f"user{i}@example.com", send_status="queued",
                   esp_message_id=(f"<seed{i}@mg.example.com>" if esp == "mailgun" else f"sg-{i}"))
         for i, m in enumerate(messages)]
    )
"""


def seed(env: dict[str, str], messages: int) -> None:
    subprocess.run(
        [sys.executable, "-c", SEED_SCRIPT, str(messages)], env=env, cwd=ROOT, check=True
    )


def start_gunicorn(env: dict[str, str], port: int, workers: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "mailhub.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        env=env,
        cwd=ROOT,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("gunicorn did not start")


def mailgun_body(index: int, messages: int) -> bytes:
    timestamp = str(int(time.time()))
    token = secrets.token_hex(25)
    signature = hmac.new(
        SIGNING_KEY.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    seq = index % messages
    event_type = ("delivered", "opened", "clicked")[index // messages % 3]
    return json.dumps(
        {
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": {
                "event": event_type,
                "id": secrets.token_hex(11),
                "timestamp": time.time(),
                "recipient": f"user{seq}@example.com",
                "tags": ["bench"],
                "user-variables": {"order": str(seq)},
                "message": {"headers": {"message-id": f"seed{seq}@mg.example.com"}},
                "delivery-status": {"code": 250, "message": "OK", "description": ""},
                "url": "https://example.com/",
                "client-info": {"user-agent": "Bench/1.0"},
            },
        }
    ).encode()


def sendgrid_body(batch: int, messages: int, size: int = 100) -> bytes:
    now = int(time.time())
    events = []
    for offset in range(size):
        seq = (batch * size + offset) % messages
        events.append(
            {
                "email": f"user{seq}@example.com",
                "timestamp": now,
                "event": ("delivered", "open", "click")[(batch * size + offset) // messages % 3],
                "sg_event_id": secrets.token_urlsafe(16),
                "sg_message_id": f"sg-{seq}.filter0001",
                "mailhub_id": f"sg-{seq}",
                "category": ["bench"],
                "url": "https://example.com/",
                "useragent": "Bench/1.0",
                "response": "250 OK",
            }
        )
    return json.dumps(events).encode()


def drive(port: int, path: str, bodies: list[bytes]) -> list[float]:
    auth = "Basic " + base64.b64encode(WEBHOOK_SECRET.encode()).decode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies = []
    for body in bodies:
        start = time.perf_counter()
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": "application/json", "Authorization": auth},
        )
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
    connection.close()
    return latencies


def with_conn_max_age(database_url: str, seconds: int) -> str:
    """database_url with conn_max_age set, unless it sets it already."""
    if "conn_max_age=" in database_url:
        return database_url
    return f"{database_url}{'&' if '?' in database_url else '?'}conn_max_age={seconds}"


def run_mode(args, store: bool, workdir: str) -> dict[str, tuple[float, float, float]]:
    name = "on" if store else "off"
    database_url = args.database or f"sqlite:///{workdir}/{name}.sqlite3"
    database_url = with_conn_max_age(database_url, args.conn_max_age)
    env = base_env(database_url, store, f"{workdir}/media-{name}")
    seed(env, args.messages)
    port = free_port()
    server = start_gunicorn(env, port, args.workers)
    try:
        drive(
            port, "/anymail/mailgun/tracking/", [mailgun_body(i, args.messages) for i in range(20)]
        )
        single = [mailgun_body(i, args.messages) for i in range(args.single)]
        started = time.perf_counter()
        single_latency = drive(port, "/anymail/mailgun/tracking/", single)
        single_rate = len(single) / (time.perf_counter() - started)
        batches = [sendgrid_body(i, args.messages) for i in range(args.batches)]
        started = time.perf_counter()
        batch_latency = drive(port, "/anymail/sendgrid/tracking/", batches)
        batch_rate = len(batches) * 100 / (time.perf_counter() - started)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return {
        "single Mailgun event": (single_rate, *percentiles(single_latency)),
        "SendGrid batch of 100": (batch_rate, *percentiles(batch_latency)),
    }


def percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single", type=int, default=2000, help="single-event calls")
    parser.add_argument("--batches", type=int, default=100, help="100-event batch calls")
    parser.add_argument("--messages", type=int, default=5000, help="messages seeded per ESP")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--database", help="a PostgreSQL URL (a fresh, empty database)")
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=600,
        help="seconds a worker keeps its database connection (0: one per request)",
    )
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="mailhub-bench-webhooks-")
    off = run_mode(args, store=False, workdir=workdir)
    on = run_mode(args, store=True, workdir=workdir)
    print(
        f"\nbench/webhooks.py  gunicorn workers={args.workers}  "
        f"database={'PostgreSQL' if args.database else 'SQLite'}  "
        f"seeded messages={args.messages}/ESP  conn_max_age={args.conn_max_age}"
    )
    print(f"{'':24}{'recording':>10}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}")
    for kind in off:
        for label, figures in (("off", off[kind]), ("on", on[kind])):
            ratio = figures[0] / off[kind][0]
            print(
                f"{kind:24}{label:>10}{figures[0]:>10.0f}{figures[1]:>9.2f}{figures[2]:>9.2f}"
                f"{ratio:>7.2f}x"
            )


if __name__ == "__main__":
    main()
