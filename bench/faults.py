"""Queued sending under faults: count what was sent, recorded, lost and sent twice.

Runs against the real broker (Redis), PostgreSQL and Celery worker processes,
sending to a loopback ESP (bench/fault_server.py) that answers like Resend
(takes idempotency keys) or like Postmark (doesn't). Each scenario enqueues
messages, breaks something, lets mailhub recover (workers, retries, the
sweep), then compares the database with what the ESP really delivered:

* kill: SIGKILL a worker (and its pool) mid-batch
* broker: stop Redis while messages are being enqueued, then restart it
* esp: 503 bursts, 429s with Retry-After, and timeouts after delivery
* database: drop the workers' PostgreSQL connections during sends

"lost" counts messages the caller was told were queued that ended neither
delivered and recorded nor flagged for an operator (failed/unknown);
"twice" counts messages the ESP delivered more than once.

    .venv/bin/python bench/faults.py [--count 300] [--only kill,esp]

It stops and restarts the machine's Redis (`redis-cli shutdown nosave`) and
always starts it again before exiting.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the project, not bench/

from bench import harness  # noqa: E402

ESP_SETTINGS = {
    "resend": "sending.backends.resend.EmailBackend",
    "postmark": "sending.backends.postmark.EmailBackend",
}


class Run:
    """One scenario's database, loopback ESP and environment."""

    def __init__(self, esp: str, faults: dict, **env: str) -> None:
        self.esp = esp
        self.db = harness.Postgres()
        self.server, self.url = harness.start_server("fault_server.py")
        harness.http_json(f"{self.url}/_faults", faults)
        self.env = harness.base_env(
            self.db.url,
            ANYMAIL_RESEND_API_KEY="re_bench",
            ANYMAIL_RESEND_API_URL=f"{self.url}/",
            ANYMAIL_POSTMARK_SERVER_TOKEN="pm-bench",
            ANYMAIL_POSTMARK_API_URL=f"{self.url}/",
            ANYMAIL_REQUESTS_TIMEOUT="0.5",
            MAILHUB_QUEUE_BACKEND=ESP_SETTINGS[esp],
            MAILHUB_QUEUE_MAX_ATTEMPTS="12",
            MAILHUB_QUEUE_BACKOFF_BASE="0.2",
            MAILHUB_QUEUE_BACKOFF_MAX="2",
            **env,
        )
        harness.manage(self.env, "migrate", "-v0")
        self.enqueued = 0

    def enqueue(self, count: int, prefix: str, pause: float = 0.0) -> subprocess.Popen:
        return subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--enqueue",
                str(count),
                "--prefix",
                prefix,
                "--pause",
                str(pause),
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def enqueue_wait(self, process: subprocess.Popen) -> None:
        out, err = process.communicate(timeout=600)
        if process.returncode != 0:
            raise RuntimeError(f"enqueueing failed:\n{err[-3000:]}")
        self.enqueued += int(out.strip().splitlines()[-1])

    def sweep(self) -> str:
        out = harness.manage(self.env, "sweep_sending", "--stuck-after", "0", "--queued-after", "0")
        return " / ".join(line for line in out.splitlines() if not line.startswith("0 "))

    def report(self, name: str, prefix: str, notes: str = "") -> dict:
        counts = harness.statuses(self.db, prefix)
        stats = harness.http_json(f"{self.url}/_stats")
        delivered = {s: n for s, n in stats["subjects"].items() if s.startswith(prefix)}
        rows = dict(
            self.db.query(
                "SELECT subject, status FROM sending_message WHERE subject LIKE %s",
                (prefix + "%",),
            )
        )
        lost = sum(
            1
            for subject, status in rows.items()
            if status not in ("unknown", "failed")
            and not (status == "sent" and subject in delivered)
        ) + max(0, self.enqueued - len(rows))
        return {
            "scenario": name,
            "esp": self.esp,
            "enqueued": self.enqueued,
            "recorded": len(rows),
            "sent": counts.get("sent", 0),
            "unknown": counts.get("unknown", 0),
            "failed": counts.get("failed", 0),
            "delivered": len(delivered),
            "twice": sum(1 for n in delivered.values() if n > 1),
            "lost": lost,
            "notes": notes,
        }

    def close(self) -> None:
        self.server.terminate()
        self.db.drop()


def scenario_kill(esp: str, count: int) -> dict:
    """SIGKILL the worker mid-batch; the sweep and a new worker finish the job."""
    run = Run(esp, {"delay": 0.01})
    prefix = f"kill-{esp}-"
    try:
        run.enqueue_wait(run.enqueue(count, prefix))
        worker = harness.Worker(run.env, concurrency=2)
        harness.wait_until(
            lambda: harness.statuses(run.db, prefix).get("sent", 0) >= count // 3, 120
        )
        worker.kill()
        at_kill = harness.statuses(run.db, prefix)
        swept = run.sweep()
        worker = harness.Worker(run.env, concurrency=2)
        harness.wait_quiet(run.db, prefix, timeout=180, quiet_for=20)
        worker.stop()
        notes = f"at kill: {at_kill.get('sending', 0)} sending; sweep: {swept}"
        return run.report("worker SIGKILL", prefix, notes)
    finally:
        run.close()


def scenario_broker(esp: str, count: int) -> dict:
    """Stop Redis while messages are being enqueued; restart it; the sweep re-enqueues."""
    run = Run(esp, {})
    prefix = f"broker-{esp}-"
    worker = harness.Worker(run.env, concurrency=2)
    try:
        enqueuer = run.enqueue(count, prefix, pause=0.01)
        harness.wait_until(lambda: sum(harness.statuses(run.db, prefix).values()) >= count // 4, 60)
        harness.redis_stop()
        stopped = sum(harness.statuses(run.db, prefix).values())
        time.sleep(3)
        harness.redis_start()
        run.enqueue_wait(enqueuer)
        harness.wait_quiet(run.db, prefix, timeout=120, quiet_for=20)
        before = harness.statuses(run.db, prefix)
        swept = run.sweep()
        harness.wait_quiet(run.db, prefix, timeout=120, quiet_for=20)
        notes = (
            f"Redis down 3 s after {stopped} recorded; stranded queued: "
            f"{before.get('queued', 0)}; sweep: {swept}"
        )
        return run.report("broker stopped", prefix, notes)
    finally:
        harness.redis_start()
        worker.stop()
        run.close()


def scenario_esp(esp: str, count: int, **env: str) -> dict:
    """503 bursts, 429 + Retry-After, and timeouts after the ESP delivered."""
    faults = {
        "fail_first": 40,
        "fail_status": 503,
        "status_every": 6,
        "status": 429,
        "retry_after": 1,
        "timeout_every": 9,
        "timeout_seconds": 1.0,
    }
    run = Run(esp, faults, **env)
    prefix = f"esp-{esp}-"
    worker = harness.Worker(run.env, concurrency=2)
    try:
        run.enqueue_wait(run.enqueue(count, prefix))
        harness.wait_quiet(run.db, prefix, timeout=240, quiet_for=20)
        stats = harness.http_json(f"{run.url}/_stats")
        notes = f"ESP answers: {stats['statuses']}, idempotent replays: {stats['replays']}"
        if env:
            notes += " " + " ".join(f"{k}={v}" for k, v in env.items())
        return run.report("ESP 5xx/429/timeouts", prefix, notes)
    finally:
        worker.stop()
        run.close()


def scenario_database(esp: str, count: int) -> dict:
    """Drop the workers' database connections repeatedly while they send."""
    run = Run(esp, {"delay": 0.005})
    prefix = f"db-{esp}-"
    try:
        run.enqueue_wait(run.enqueue(count, prefix))
        worker = harness.Worker(run.env, concurrency=2)
        harness.wait_until(lambda: harness.statuses(run.db, prefix).get("sent", 0) >= 20, 60)
        dropped = 0
        for _ in range(8):
            dropped += run.db.terminate_other_connections()
            time.sleep(0.4)
        harness.wait_quiet(run.db, prefix, timeout=120, quiet_for=20)
        before = harness.statuses(run.db, prefix)
        swept = run.sweep()
        harness.wait_quiet(run.db, prefix, timeout=120, quiet_for=20)
        worker.stop()
        notes = (
            f"{dropped} connections dropped; left queued/sending: {before.get('queued', 0)}/"
            f"{before.get('sending', 0)}; sweep: {swept}"
        )
        return run.report("DB connections dropped", prefix, notes)
    finally:
        run.close()


def enqueue_main(count: int, prefix: str, pause: float) -> None:
    """Enqueue count messages, 10 per transaction; print how many were queued."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailhub.settings")
    import django

    django.setup()
    from django.db import transaction

    from sending.backends.queued import EmailBackend
    from sending.message import AnymailMessage

    backend = EmailBackend()
    queued = 0
    for start in range(0, count, 10):
        batch = [
            AnymailMessage(
                f"{prefix}{i}",
                f"Message {i}",
                "shop@example.com",
                [f"customer{i}@example.com"],
            )
            for i in range(start, min(count, start + 10))
        ]
        with transaction.atomic():
            queued += backend.send_messages(batch)
        if pause:
            time.sleep(pause)
    print(queued)


SCENARIOS = {
    "kill": [("resend", scenario_kill, {}), ("postmark", scenario_kill, {})],
    "broker": [("resend", scenario_broker, {})],
    "esp": [
        ("resend", scenario_esp, {}),
        ("postmark", scenario_esp, {}),
        ("postmark", scenario_esp, {"MAILHUB_QUEUE_RETRY_AMBIGUOUS": "false"}),
    ],
    "database": [("resend", scenario_database, {})],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="messages per scenario")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios to run")
    parser.add_argument("--enqueue", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--pause", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.enqueue is not None:
        enqueue_main(args.enqueue, args.prefix, args.pause)
        return

    harness.redis_start()
    results = []
    try:
        for name in args.only.split(","):
            for esp, scenario, env in SCENARIOS[name]:
                started = time.monotonic()
                row = scenario(esp, args.count, **env)
                row["seconds"] = time.monotonic() - started
                results.append(row)
                print(f"done: {row['scenario']} ({esp}) in {row['seconds']:.0f} s", flush=True)
    finally:
        harness.redis_start()

    columns = ("enqueued", "recorded", "sent", "unknown", "failed", "delivered", "twice", "lost")
    print(f"\nbench/faults.py  count={args.count}  (Redis broker, PostgreSQL, 2-process workers)\n")
    print(f"{'scenario':<24}{'ESP':<10}" + "".join(f"{c:>10}" for c in columns))
    for row in results:
        print(f"{row['scenario']:<24}{row['esp']:<10}" + "".join(f"{row[c]:>10}" for c in columns))
    print()
    for row in results:
        print(f"- {row['scenario']} ({row['esp']}): {row['notes']}")
    keyed = [row for row in results if row["esp"] == "resend"]
    print(
        f"\nwith idempotency keys (resend): lost {sum(r['lost'] for r in keyed)}, "
        f"sent twice {sum(r['twice'] for r in keyed)}"
    )
    print(f"all scenarios: lost {sum(r['lost'] for r in results)}")


if __name__ == "__main__":
    main()
