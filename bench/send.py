"""Send throughput with recording off and on, through a real ESP backend.

Sends N messages (3 recipients, html + text, one attachment) through an ESP
backend to a loopback server that answers like that ESP, once with
recording off and once with recording on (SQLite, and PostgreSQL when it is
reachable), each in a fresh process, and prints msg/s and the ratio of
recording on to recording off measured in this same run.

    .venv/bin/python bench/send.py [--esp mailgun] [-n 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Per ESP: backend path and the ANYMAIL settings pointing it at the loopback server.
ESPS = {
    "mailgun": (
        "sending.backends.mailgun.EmailBackend",
        lambda url: {"MAILGUN_API_KEY": "key-bench", "MAILGUN_API_URL": f"{url}/v3/"},
    ),
    "postmark": (
        "sending.backends.postmark.EmailBackend",
        lambda url: {"POSTMARK_SERVER_TOKEN": "bench-token", "POSTMARK_API_URL": f"{url}/"},
    ),
    "sendgrid": (
        "sending.backends.sendgrid.EmailBackend",
        lambda url: {"SENDGRID_API_KEY": "SG.bench", "SENDGRID_API_URL": f"{url}/v3/"},
    ),
    "amazon_ses": (
        "sending.backends.amazon_ses.EmailBackend",
        lambda url: {
            "AMAZON_SES_CLIENT_PARAMS": {"endpoint_url": url, "region_name": "us-east-1"},
            "AMAZON_SES_SESSION_PARAMS": {
                "aws_access_key_id": "bench",
                "aws_secret_access_key": "bench",
            },
        },
    ),
}


def start_server() -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "esp_server.py"), "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = server.stdout.readline().split()
    return server, f"http://127.0.0.1:{line[1]}"


def postgres_url() -> str | None:
    """A fresh PostgreSQL database for this run, or None if PostgreSQL isn't reachable."""
    url = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg

        name = f"mailhub_bench_{os.getpid()}"
        with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        return url.rsplit("/", 1)[0] + "/" + name
    except Exception as err:  # any failure just means "skip PostgreSQL"
        print(f"(PostgreSQL not reachable, skipped: {err.__class__.__name__})")
        return None


def drop_postgres(url: str) -> None:
    import psycopg

    admin = url.rsplit("/", 1)[0] + "/postgres"
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_worker(esp: str, server_url: str, count: int, store: bool, database_url: str) -> float:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "bench",
        "DEBUG": "false",
        "MAILHUB_STORE": "true" if store else "false",
    }
    out = subprocess.run(
        [sys.executable, __file__, "--worker", "--esp", esp, "-n", str(count), "--url", server_url],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"worker failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["rate"]


def worker(esp: str, count: int, server_url: str) -> None:
    """Send count messages in this process and print {"rate": msg/s}."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailhub.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.utils.module_loading import import_string

    from sending.message import AnymailMessage

    backend_path, esp_settings = ESPS[esp]
    settings.ANYMAIL = esp_settings(server_url)
    settings.MEDIA_ROOT = tempfile.mkdtemp(prefix="mailhub-bench-media-")
    if settings.MAILHUB["STORE"]:
        call_command("migrate", verbosity=0)

    attachment = os.urandom(20 * 1024)

    def build(i: int) -> AnymailMessage:
        message = AnymailMessage(
            subject=f"Order {i} shipped",
            body=f"Your order {i} is on its way.",
            from_email="Shop <shop@example.com>",
            to=[f"customer{i}@example.com", f"Partner <partner{i}@example.com>"],
            cc=[f"records{i}@example.com"],
            tags=["shipping"],
            metadata={"order": str(i)},
        )
        message.attach_alternative(f"<p>Your order <b>{i}</b> is on its way.</p>", "text/html")
        message.attach("invoice.pdf", attachment, "application/pdf")
        return message

    backend = import_string(backend_path)()
    # Warm up: connections, imports, SQLite page cache
    backend.send_messages([build(i) for i in range(20)])
    messages = [build(i) for i in range(count)]
    start = time.perf_counter()
    sent = backend.send_messages(messages)
    elapsed = time.perf_counter() - start
    assert sent == count, f"sent {sent} of {count}"
    print(json.dumps({"rate": count / elapsed}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--esp", default="mailgun", choices=sorted(ESPS))
    parser.add_argument("-n", type=int, default=2000, help="messages per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per mode (median)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.esp, args.n, args.url)
        return

    server, url = start_server()
    pg_url = postgres_url()
    tmp = tempfile.mkdtemp(prefix="mailhub-bench-")
    modes = [("off", False, f"sqlite:///{tmp}/off.sqlite3"), ("on, SQLite", True, None)]
    if pg_url:
        modes.append(("on, PostgreSQL", True, pg_url))
    rates: dict[str, list[float]] = {name: [] for name, _, _ in modes}
    try:
        for round_number in range(args.rounds):
            for name, store, database_url in modes:
                if database_url is None:  # a fresh SQLite file per round
                    database_url = f"sqlite:///{tmp}/on-{round_number}.sqlite3"
                rates[name].append(run_worker(args.esp, url, args.n, store, database_url))
    finally:
        server.terminate()
        if pg_url:
            drop_postgres(pg_url)

    print(f"\nbench/send.py  esp={args.esp}  messages={args.n}  rounds={args.rounds} (median)")
    print("each message: 3 recipients, text + html, one 20 KiB attachment\n")
    baseline = statistics.median(rates["off"])
    print(f"{'recording':<18}{'msg/s':>10}{'ratio vs off':>16}")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:<18}{rate:>10.1f}{rate / baseline:>15.2f}x")


if __name__ == "__main__":
    main()
