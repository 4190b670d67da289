"""Queued sending throughput: enqueue N messages, drain them with 1, 2 and 4 workers.

Each message (3 recipients, text + html, one 20 KiB attachment, as in
bench/send.py) goes through the queued backend wrapping an ESP backend that
posts to the loopback mock ESP (bench/esp_server.py), with Redis as the
broker and PostgreSQL for the records. For each worker count, N messages are
enqueued with no worker running, then one
`celery -A mailhub worker --concurrency W` process drains them. Printed:
the enqueue rate, the drain rate (from the first to the last message the ESP
accepted, by the records' timestamps), and both against the inline rate:
the same messages sent synchronously through the ESP backend in this run.
Both enqueue and inline sends go 100 messages per send_messages() call with
no outer transaction, so each message is committed on its own, as when an
application sends one per request.

    .venv/bin/python bench/queued.py [--count 100000] [--workers 1,2,4] [--esp mailgun]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, not bench/

from bench import harness  # noqa: E402

ESPS = {
    "mailgun": (
        "sending.backends.mailgun.EmailBackend",
        lambda url: {
            "ANYMAIL_MAILGUN_API_KEY": "key-bench",
            "ANYMAIL_MAILGUN_API_URL": f"{url}/v3/",
        },
    ),
    "postmark": (
        "sending.backends.postmark.EmailBackend",
        lambda url: {
            "ANYMAIL_POSTMARK_SERVER_TOKEN": "bench-token",
            "ANYMAIL_POSTMARK_API_URL": f"{url}/",
        },
    ),
}
BATCH = 100


def build_messages(start: int, stop: int, prefix: str) -> list:
    from sending.message import AnymailMessage

    attachment = b"%PDF-1.4 bench " * (20 * 1024 // 15)
    messages = []
    for i in range(start, stop):
        message = AnymailMessage(
            subject=f"{prefix}{i} shipped",
            body=f"Your order {i} is on its way.",
            from_email="Shop <shop@example.com>",
            to=[f"customer{i}@example.com", f"Partner <partner{i}@example.com>"],
            cc=[f"records{i}@example.com"],
            tags=["shipping"],
            metadata={"order": str(i)},
        )
        message.attach_alternative(f"<p>Your order <b>{i}</b> is on its way.</p>", "text/html")
        message.attach("invoice.pdf", attachment, "application/pdf")
        messages.append(message)
    return messages


def child(mode: str, count: int, prefix: str) -> None:
    """In a fresh process: enqueue, or send inline; print {"rate": msg/s}."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailhub.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.utils.module_loading import import_string

    if mode == "enqueue":
        from sending.backends.queued import EmailBackend

        backend = EmailBackend()
    else:
        backend = import_string(settings.MAILHUB["QUEUE"]["BACKEND"])()
    backend.send_messages(build_messages(0, 20, f"warmup-{prefix}"))  # connections, caches
    elapsed = 0.0
    for start in range(0, count, BATCH):
        messages = build_messages(start, min(count, start + BATCH), prefix)
        began = time.perf_counter()
        sent = backend.send_messages(messages)
        elapsed += time.perf_counter() - began
        assert sent == len(messages), f"sent {sent} of {len(messages)}"
    print(json.dumps({"rate": count / elapsed}))


def run_child(env: dict, mode: str, count: int, prefix: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, f"--{mode}", str(count), "--prefix", prefix],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["rate"]


def drain(db: harness.Postgres, env: dict, workers: int, count: int, prefix: str) -> dict:
    started = time.monotonic()
    worker = harness.Worker(env, concurrency=workers, prefetch=16)
    try:
        done = harness.wait_until(
            lambda: harness.statuses(db, prefix).get("sent", 0) >= count, 3600, interval=0.5
        )
        wall = time.monotonic() - started
    finally:
        worker.stop()
    if not done:
        raise RuntimeError(f"not drained: {harness.statuses(db, prefix)}")
    ((first, last),) = db.query(
        "SELECT MIN(sent_at), MAX(sent_at) FROM sending_message WHERE subject LIKE %s",
        (prefix + "%",),
    )
    seconds = (last - first).total_seconds()
    return {"rate": (count - 1) / seconds if seconds else float("inf"), "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="messages per worker count")
    parser.add_argument("--workers", default="1,2,4", help="worker processes to drain with")
    parser.add_argument("--esp", default="mailgun", choices=sorted(ESPS))
    parser.add_argument("--inline-count", type=int, help="messages for the inline rate")
    parser.add_argument("--enqueue", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--inline", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.enqueue is not None:
        return child("enqueue", args.enqueue, args.prefix)
    if args.inline is not None:
        return child("inline", args.inline, args.prefix)

    harness.redis_start()
    server, url = harness.start_server("esp_server.py")
    db = harness.Postgres()
    backend_path, esp_env = ESPS[args.esp]
    env = harness.base_env(db.url, MAILHUB_QUEUE_BACKEND=backend_path, **esp_env(url))
    inline_count = args.inline_count or min(args.count, 10_000)
    results = []
    try:
        harness.manage(env, "migrate", "-v0")
        inline = run_child(env, "inline", inline_count, "inline-")
        print(f"inline: {inline:.0f} msg/s ({inline_count} messages)", flush=True)
        for workers in [int(w) for w in args.workers.split(",")]:
            prefix = f"w{workers}-"
            enqueue = run_child(env, "enqueue", args.count, prefix)
            drained = drain(db, env, workers, args.count, prefix)
            results.append((workers, enqueue, drained))
            print(
                f"{workers} worker(s): enqueue {enqueue:.0f} msg/s, drain "
                f"{drained['rate']:.0f} msg/s ({drained['wall']:.0f} s with startup)",
                flush=True,
            )
    finally:
        server.terminate()
        db.drop()

    print(
        f"\nbench/queued.py  esp={args.esp}  messages={args.count} per worker count  "
        f"(Redis broker, PostgreSQL, {os.cpu_count()} CPUs)"
    )
    print("each message: 3 recipients, text + html, one 20 KiB attachment\n")
    print(f"inline send (synchronous, recorded): {inline:.0f} msg/s\n")
    header = (
        f"{'workers':>8}{'enqueue msg/s':>16}{'vs inline':>11}{'drain msg/s':>14}{'vs inline':>11}"
    )
    print(header)
    for workers, enqueue, drained in results:
        print(
            f"{workers:>8}{enqueue:>16.0f}{enqueue / inline:>10.2f}x"
            f"{drained['rate']:>14.0f}{drained['rate'] / inline:>10.2f}x"
        )


if __name__ == "__main__":
    main()
