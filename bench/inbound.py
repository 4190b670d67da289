"""Peak memory and time to receive, parse and store large inbound messages.

Posts 1 MB and 25 MB messages (text, html, and several attachments) to
the raw-MIME inbound webhook through Django's request handling, and prints
the peak Python memory allocated while handling each (tracemalloc) as a
multiple of the message size, and the time. Target: peak under 5x the
message size.

    .venv/bin/python bench/inbound.py [--sizes 1,25] [--attachments 4]
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import tempfile
import time
import tracemalloc
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_message(total_bytes: int, attachments: int) -> bytes:
    """A message whose encoded size is about total_bytes, split over attachments."""
    msg = EmailMessage()
    msg["From"] = "Sender <sender@example.com>"
    msg["To"] = "inbox@inbound.example.com"
    msg["Subject"] = f"Bench message {total_bytes // 1024} KiB"
    msg["Message-ID"] = f"<bench-{os.getpid()}-{total_bytes}@example.com>"
    msg.set_content("See the attached files.\n" * 20)
    msg.add_alternative("<p>See the attached files.</p>" * 20, subtype="html")
    # base64 grows content by 4/3: size the raw parts so the message is total_bytes
    each = int(total_bytes * 3 / 4 / attachments)
    for index in range(attachments):
        msg.add_attachment(
            os.urandom(each),
            maintype="application",
            subtype="octet-stream",
            filename=f"part{index}.bin",
        )
    return msg.as_bytes(policy=SMTP)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,25", help="message sizes in MB, comma-separated")
    parser.add_argument("--attachments", type=int, default=4)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="mailhub-bench-inbound-")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="mailhub.settings",
        SECRET_KEY="bench",
        DEBUG="false",
        DATABASE_URL=f"sqlite:///{workdir}/bench.sqlite3",
        MEDIA_ROOT=f"{workdir}/media",
        ALLOWED_HOSTS="testserver,localhost",
    )
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.test import Client

    from inbound.models import InboundMessage

    call_command("migrate", verbosity=0)
    settings.ANYMAIL = {"WEBHOOK_SECRET": "bench:secret"}
    auth = "Basic " + base64.b64encode(b"bench:secret").decode()
    client = Client()

    print(f"bench/inbound.py  attachments={args.attachments}  (peak: tracemalloc, while handling)")
    print(f"{'message':>10}{'size MB':>10}{'peak MB':>10}{'peak/size':>11}{'seconds':>10}")
    for size_mb in [float(size) for size in args.sizes.split(",")]:
        raw = build_message(int(size_mb * 1024 * 1024), args.attachments)
        tracemalloc.start()
        tracemalloc.reset_peak()
        baseline, _ = tracemalloc.get_traced_memory()
        start = time.perf_counter()
        response = client.generic(
            "POST",
            "/anymail/sandbox/inbound/",
            raw,
            content_type="message/rfc822",
            HTTP_AUTHORIZATION=auth,
        )
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert response.status_code == 200, response.content
        stored = InboundMessage.objects.order_by("-id").first()
        assert stored.attachments.count() == args.attachments
        size = len(raw) / 1024 / 1024
        peak_mb = (peak - baseline) / 1024 / 1024
        ratio = peak_mb / size
        print(f"{size_mb:>8.0f}MB{size:>10.1f}{peak_mb:>10.1f}{ratio:>10.1f}x{elapsed:>10.2f}")


if __name__ == "__main__":
    main()
