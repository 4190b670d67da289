"""Status lookups through the JSON API (and the admin's search) on a big PostgreSQL database.

Creates a fresh PostgreSQL database, migrates it, and seeds it with COPY
(rows generated here; secondary indexes and constraints are built after
the load, then VACUUM ANALYZE, as autovacuum would have done by then): by
default 1M messages, 3 recipients and 10 events each (1M / 3M / 10M rows).
Then, with a real read-scoped API key through Django's test client (the
whole request path: middleware, authentication, filtering, serialization),
it measures p50/p95 latency of:

* GET /api/messages/?esp_message_id=...  (the message's id, or one recipient's)
* GET /api/messages/?recipient=...        (a typical customer address)
* GET /api/recipients/?address=...
* GET /api/messages/<id>/                 (with its event timeline)

and the admin changelist search for a recipient address. The target for
the API lookups is p95 < 10 ms.

    .venv/bin/python bench/api.py [--messages 1000000] [--database URL] [--lookups 300]
        [--explain] [--keep | --reuse NAME]

--database (or DATABASE_URL) names the server; the database itself is a new
one (mailhub_bench_api_<pid>), dropped at the end unless --keep. --reuse NAME
measures a database kept by an earlier run instead (seeding takes minutes),
after applying any newer migrations; give it the same --messages and
--recipients it was seeded with.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
# Import from the project, not from bench/: its scripts aren't modules, and one named
# like a standard module (bench/queue.py) would hide it.
sys.path[0] = str(ROOT)

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432/"
ESPS = ("mailgun", "postmark", "sendgrid", "amazon_ses", "sandbox")
#: ESPs that give one message id for a whole send (stored on the Message);
#: the others give each recipient its own (Message.esp_message_id stays blank).
SHARED_ID_ESPS = frozenset({"mailgun", "amazon_ses"})
HOT_ADDRESSES = 1000  # every message cc's one of these: N / 1000 messages each
SPAN = timedelta(days=365)
CHUNK_ROWS = 20_000


# ---------------------------------------------------------------------------
# The database


def server_url(url: str) -> str:
    """url with its database name replaced by "postgres" (to create and drop databases)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        sys.exit(f"bench/api.py needs PostgreSQL; got a {parts.scheme or 'blank'!r} URL")
    return urlunsplit((parts.scheme, parts.netloc, "/postgres", "", ""))


def database_url(server: str, name: str) -> str:
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", ""))


def psycopg_url(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


def create_database(server: str, name: str) -> None:
    import psycopg

    with psycopg.connect(psycopg_url(server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(server: str, name: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(psycopg_url(server), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------------
# Seeding with COPY


def copy_text(value: object) -> str:
    """A Python value (as the ORM would store it) in COPY's text format."""
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "obj"):  # psycopg's Jsonb wrapper
        value = json.dumps(value.obj)
    elif isinstance(value, (dict, list)):
        value = json.dumps(value)
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def line_template(model: type, generated: tuple[str, ...]) -> str:
    """A str.format template for one COPY line of model: every column, in the model's order.

    Generated columns are placeholders ({0}, {1}... in the order of
    `generated`); the others hold their field's default, so columns added to
    the models later are filled the way the ORM would fill them.
    """
    from django.db import connection

    parts = []
    for field in model._meta.concrete_fields:
        if field.column in generated:
            parts.append(f"{{{generated.index(field.column)}}}")
        else:
            value = field.get_db_prep_save(field.get_default(), connection)
            parts.append(copy_text(value).replace("{", "{{").replace("}", "}}"))
    missing = set(generated) - {field.column for field in model._meta.concrete_fields}
    if missing:
        raise SystemExit(f"{model.__name__} has no column(s) {sorted(missing)}")
    return "\t".join(parts) + "\n"


class Seeder:
    """Generates rows for messages 1..n (ids are predictable, so no lookups are needed).

    Rows are tuples in the order of the *_COLUMNS below; every other column
    gets its default.
    """

    MESSAGE_COLUMNS = (
        "id", "created_at", "updated_at", "sent_at", "backend", "esp", "esp_message_id",
        "status", "attempts", "from_email", "to", "cc", "subject", "body", "tags", "metadata",
    )  # fmt: skip
    RECIPIENT_COLUMNS = (
        "id", "message_id", "kind", "address", "esp", "esp_message_id", "send_status",
        "status", "status_at", "delivered_at", "bounced_at", "first_opened_at", "open_count",
    )  # fmt: skip
    EVENT_COLUMNS = (
        "id", "esp", "event_type", "timestamp", "event_id", "dedupe_key", "message_id",
        "recipient_address", "recipient_id", "esp_event", "created_at",
    )  # fmt: skip
    EVENT_TYPES = ("delivered", "opened", "clicked", "opened")

    def __init__(self, n: int, recipients: int, events: int) -> None:
        self.n, self.per_message, self.events_per_message = n, recipients, events
        self.start = datetime.now(tz=UTC) - SPAN
        self.step = SPAN / n
        self.customers = max(n // 2, 1)

    def esp(self, i: int) -> str:
        return ESPS[i % len(ESPS)]

    def created(self, i: int) -> datetime:
        return self.start + self.step * i

    def message_esp_id(self, i: int) -> str:
        return f"<{i:x}.m@{self.esp(i)}.bench>"

    def recipient_esp_id(self, i: int, k: int) -> str:
        if self.esp(i) in SHARED_ID_ESPS:
            return self.message_esp_id(i)
        return f"<{i:x}.{k}.r@{self.esp(i)}.bench>"

    def address(self, i: int, k: int) -> str:
        if k == self.per_message - 1 and self.per_message > 1:
            return f"records{i % HOT_ADDRESSES}@company.example"
        # A pseudo-random customer: each appears in a few messages.
        return f"user{(i * 7919 + k * 104729) % self.customers}@example.com"

    def message_rows(self) -> Iterator[tuple]:
        per = self.per_message
        for i in range(1, self.n + 1):
            esp = self.esp(i)
            created = self.created(i).isoformat()
            to = json.dumps([self.address(i, k) for k in range(max(per - 1, 1))])
            cc = json.dumps([self.address(i, per - 1)]) if per > 1 else "[]"
            yield (
                i, created, created, created, f"sending.backends.{esp}.EmailBackend", esp,
                self.message_esp_id(i) if esp in SHARED_ID_ESPS else "", "sent", 1,
                "Shop <shop@example.com>", to, cc, f"Your order {i} has shipped",
                f"Hello, your order {i} is on its way. Track it in your account.",
                f'["shipping", "campaign-{i % 20}"]', f'{{"order": "{i}"}}',
            )  # fmt: skip

    def recipient_rows(self) -> Iterator[tuple]:
        per = self.per_message
        soon, later = timedelta(seconds=5), timedelta(minutes=5)
        for i in range(1, self.n + 1):
            esp = self.esp(i)
            sent = self.created(i)
            delivered, opened_at = (sent + soon).isoformat(), (sent + later).isoformat()
            for k in range(per):
                bounced = (i + k) % 50 == 0
                opened = not bounced and (i + k) % 2 == 0
                yield (
                    (i - 1) * per + k + 1, i, "cc" if k and k == per - 1 else "to",
                    self.address(i, k), esp, self.recipient_esp_id(i, k), "queued",
                    "bounced" if bounced else "opened" if opened else "delivered", opened_at,
                    r"\N" if bounced else delivered, delivered if bounced else r"\N",
                    opened_at if opened else r"\N", 1 if opened else 0,
                )  # fmt: skip

    def event_rows(self) -> Iterator[tuple]:
        per, types = self.per_message, self.EVENT_TYPES
        offsets = [timedelta(seconds=5 + 60 * e) for e in range(self.events_per_message)]
        event_id = 0
        for i in range(1, self.n + 1):
            esp = self.esp(i)
            sent = self.created(i)
            esp_ids = [self.recipient_esp_id(i, k) for k in range(per)]
            addresses = [self.address(i, k) for k in range(per)]
            for e, offset in enumerate(offsets):
                k = e % per
                event_id += 1
                when = (sent + offset).isoformat()
                yield (
                    event_id, esp, types[(e // per) % len(types)], when, f"e{event_id}",
                    f"id:e{event_id}", esp_ids[k], addresses[k], (i - 1) * per + k + 1,
                    f'{{"event": "bench", "id": "e{event_id}"}}', when,
                )  # fmt: skip


def copy_rows(conn, model: type, generated: tuple[str, ...], rows: Iterator[tuple]) -> int:
    """COPY rows (values of the generated columns) into model's table; return how many."""
    template = line_template(model, generated)
    # The model's column order: a table's order differs once migrations add columns.
    columns = ", ".join(f'"{field.column}"' for field in model._meta.concrete_fields)
    count = 0
    table = model._meta.db_table
    with conn.cursor() as cursor, cursor.copy(f'COPY "{table}" ({columns}) FROM STDIN') as copy:
        lines = []
        for row in rows:
            lines.append(template.format(*row))
            if len(lines) >= CHUNK_ROWS:
                copy.write("".join(lines))
                count += len(lines)
                lines.clear()
        if lines:
            copy.write("".join(lines))
            count += len(lines)
    return count


def secondary_indexes(conn, table: str) -> tuple[list[str], list[tuple[str, str]]]:
    """(CREATE INDEX statements, [(constraint name, definition)]) of table, besides its pkey."""
    constraints = conn.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('u', 'f')",
        [table],
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexdef FROM pg_indexes i WHERE tablename = %s AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conindid = "
        "(quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass "
        "AND c.contype IN ('p', 'u'))",
        [table],
    ).fetchall()
    return [row[0] for row in indexes], [(row[0], row[1]) for row in constraints]


def seed(url: str, n: int, recipients: int, events: int) -> dict[str, float]:
    """Load the rows; return seconds per phase."""
    import psycopg

    from sending.models import Message, Recipient
    from tracking.models import Event

    seeder = Seeder(n, recipients, events)
    tables = [
        (Message, seeder.MESSAGE_COLUMNS, seeder.message_rows),
        (Recipient, seeder.RECIPIENT_COLUMNS, seeder.recipient_rows),
        (Event, seeder.EVENT_COLUMNS, seeder.event_rows),
    ]
    timings = {}
    with psycopg.connect(psycopg_url(url), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        saved = {}
        for model, _columns, _rows in tables:
            table = model._meta.db_table
            indexes, constraints = secondary_indexes(conn, table)
            saved[table] = (indexes, constraints)
            for name, _definition in constraints:
                conn.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
            for statement in indexes:
                name = statement.split(" INDEX ", 1)[1].split(" ON ", 1)[0]
                conn.execute(f"DROP INDEX {name}")

        started = time.perf_counter()
        for model, columns, rows in tables:
            table = model._meta.db_table
            loaded = copy_rows(conn, model, columns, rows())
            print(f"  {table}: {loaded:,} rows", flush=True)
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                f'(SELECT max(id) FROM "{table}"))'
            )
        timings["copy"] = time.perf_counter() - started

        started = time.perf_counter()
        for table, (indexes, constraints) in saved.items():
            for statement in indexes:
                conn.execute(statement)
            for name, definition in constraints:
                conn.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
        timings["indexes"] = time.perf_counter() - started

        started = time.perf_counter()
        for table in saved:
            # VACUUM too: index-only scans need the visibility map it sets.
            conn.execute(f'VACUUM (ANALYZE) "{table}"')
        timings["analyze"] = time.perf_counter() - started
    return timings


# ---------------------------------------------------------------------------
# Measuring


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    """(p50, p95, min) in milliseconds: min is the floor, what an idle machine gets."""
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[94] * 1000, min(samples) * 1000


def measure(get: Callable[[str], object], urls: list[str], check: Callable) -> list[float]:
    samples = []
    for url in urls:
        started = time.perf_counter()
        response = get(url)
        samples.append(time.perf_counter() - started)
        check(url, response)
    return samples


def explain(client, url: str, headers: dict[str, str]) -> None:
    """Print EXPLAIN ANALYZE of every SELECT one request to url makes."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get(url, **headers)
    print(f"\n--- {url}")
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            print(f"\n{sql[:300]}{'...' if len(sql) > 300 else ''}")
            print("\n".join(f"    {row[0]}" for row in cursor.fetchall()))


def run_lookups(n: int, per_message: int, lookups: int, show_plans: bool) -> list[tuple]:
    from django.contrib.auth import get_user_model
    from django.test import Client, override_settings

    from api.services import api_key_create

    seeder = Seeder(n, per_message, 0)
    rng = random.Random(7)
    picks = [rng.randint(1, n) for _ in range(lookups + 50)]

    def esp_id_url(i: int) -> str:
        # Shared-id ESPs: the message's own id; the others: one recipient's.
        value = seeder.recipient_esp_id(i, rng.randrange(per_message))
        return "/api/messages/?" + urlencode({"esp_message_id": value})

    kinds = {
        "API messages?esp_message_id=": [esp_id_url(i) for i in picks],
        "API messages?recipient= (customer)": [
            "/api/messages/?" + urlencode({"recipient": seeder.address(i, 0)}) for i in picks
        ],
        "API recipients?address= (customer)": [
            "/api/recipients/?" + urlencode({"address": seeder.address(i, 0)}) for i in picks
        ],
        "API messages/<id>/ (with timeline)": [f"/api/messages/{i}/" for i in picks],
    }
    if per_message > 1:
        kinds[f"API messages?recipient= ({n // HOT_ADDRESSES} msgs)"] = [
            "/api/messages/?"
            + urlencode({"recipient": f"records{i % HOT_ADDRESSES}@company.example"})
            for i in picks
        ]

    _key, raw_key = api_key_create(name="bench", scopes=["read"])
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}
    client = Client()

    def get(url: str):
        return client.get(url, **headers)

    def check(url: str, response) -> None:
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code} {response.content[:300]!r}")
        body = response.json()
        if not body.get("results", [body]):
            raise SystemExit(f"{url}: found nothing")

    results = []
    for label, urls in kinds.items():
        measure(get, urls[:50], check)  # warm-up: caches, connection
        samples = measure(get, urls[50:], check)
        results.append((label, *percentiles(samples), len(samples)))
        if show_plans:
            explain(client, urls[0], headers)

    # The admin changelist search, as an operator types an address into it.
    admin = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
    admin_client = Client()
    admin_client.force_login(admin)
    static = {"staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    searches = max(5, min(20, lookups // 10))
    with override_settings(STORAGES={**_storages(), **static}):
        for label, path in (
            ("admin messages search (address)", "/admin/sending/message/"),
            ("admin recipients search (address)", "/admin/sending/recipient/"),
        ):
            urls = [
                path + "?" + urlencode({"q": seeder.address(i, 0)}) for i in picks[: searches + 2]
            ]

            def admin_get(url: str):
                return admin_client.get(url)

            def admin_check(url: str, response) -> None:
                if response.status_code != 200:
                    raise SystemExit(f"{url}: HTTP {response.status_code}")

            measure(admin_get, urls[:2], admin_check)
            samples = measure(admin_get, urls[2:], admin_check)
            results.append((label, *percentiles(samples), len(samples)))
    return results


def _storages() -> dict:
    from django.conf import settings

    return dict(settings.STORAGES)


# ---------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--recipients", type=int, default=3, help="per message")
    parser.add_argument("--events", type=int, default=10, help="per message")
    parser.add_argument("--lookups", type=int, default=300, help="timed requests per kind")
    parser.add_argument("--database", help=f"server URL (default DATABASE_URL or {DEFAULT_SERVER})")
    parser.add_argument("--explain", action="store_true", help="print query plans")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", metavar="NAME", help="measure a database kept by an earlier --keep run"
    )
    args = parser.parse_args()
    if args.messages < 1 or args.recipients < 1 or args.lookups < 20:
        parser.error("--messages and --recipients must be 1 or more, --lookups 20 or more")

    server = server_url(args.database or os.environ.get("DATABASE_URL") or DEFAULT_SERVER)
    name = args.reuse or f"mailhub_bench_api_{os.getpid()}"
    url = database_url(server, name)
    if not args.reuse:
        create_database(server, name)
    os.environ.update(
        {
            # A persistent connection, as in production: without one every
            # request would pay for a new PostgreSQL connection.
            "DATABASE_URL": f"{url}?conn_max_age=600",
            "DJANGO_SETTINGS_MODULE": "mailhub.settings",
            "SECRET_KEY": os.environ.get("SECRET_KEY") or "bench-not-secret",
            "DEBUG": "false",
            "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
        }
    )
    import django

    # The bench serves no static files (whitenoise warns that none were collected).
    warnings.filterwarnings("ignore", message="No directory at")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    n = args.messages
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
        if args.reuse:
            # Migrations added since it was seeded (new indexes, say).
            call_command("migrate", verbosity=0)
            check_reused(n, args.recipients)
        else:
            call_command("migrate", verbosity=0)
            print(
                f"Seeding {name}: {n:,} messages, {n * args.recipients:,} recipients, "
                f"{n * args.events:,} events",
                flush=True,
            )
            started = time.perf_counter()
            timings = seed(url, n, args.recipients, args.events)
            print(
                f"Seeded in {time.perf_counter() - started:.0f}s (COPY {timings['copy']:.0f}s, "
                f"indexes and constraints {timings['indexes']:.0f}s, "
                f"VACUUM ANALYZE {timings['analyze']:.0f}s)\n",
                flush=True,
            )
        results = run_lookups(n, args.recipients, args.lookups, args.explain)
    finally:
        if not (args.keep or args.reuse):
            drop_database(server, name)
    report(version, n, args, results)
    if args.keep:
        print(f"\nKept the database: {url} (measure it again with --reuse {name})")


def check_reused(n: int, per_message: int) -> None:
    from api.models import ApiKey
    from sending.models import Message, Recipient

    found = (Message.objects.count(), Recipient.objects.count())
    if found != (n, n * per_message):
        sys.exit(
            f"--reuse: found {found[0]:,} messages, {found[1]:,} recipients; run with the "
            "--messages and --recipients the database was seeded with"
        )
    ApiKey.objects.filter(name="bench").delete()
    from django.contrib.auth import get_user_model

    get_user_model().objects.filter(username="bench").delete()


def report(version: str, n: int, args: argparse.Namespace, results: list[tuple]) -> None:
    print(
        f"\nbench/api.py  PostgreSQL {version}  {n:,} messages / {n * args.recipients:,} "
        f"recipients / {n * args.events:,} events  (Django test client, read-scoped API key)"
    )
    # Other work on the machine inflates every figure: say how busy it was.
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, load average {load} (1, 5, 15 min)\n")
    print(f"{'lookup':<40}{'p50 ms':>9}{'p95 ms':>9}{'min ms':>9}{'n':>6}")
    for label, p50, p95, low, count in results:
        print(f"{label:<40}{p50:>9.2f}{p95:>9.2f}{low:>9.2f}{count:>6}")


if __name__ == "__main__":
    main()
