"""Resolve messages left "sending" by a crash, and hand lost queued messages over again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sending.queueing import messages_sweep


class Command(BaseCommand):
    help = (
        'Resolve messages left "sending" by a crashed worker (sent again with their '
        'idempotency key where the ESP takes one, otherwise marked "unknown" for an '
        "operator), and hand queued messages whose task was lost to a worker again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--stuck-after",
            type=float,
            metavar="SECONDS",
            help='A message "sending" for longer is stuck (default: MAILHUB["QUEUE"]'
            '["STUCK_AFTER"]).',
        )
        parser.add_argument(
            "--queued-after",
            type=float,
            metavar="SECONDS",
            help="A queued message this long past due was lost by the broker (default: "
            'MAILHUB["QUEUE"]["QUEUED_LOST_AFTER"]; 0 with no broker).',
        )
        parser.add_argument("--limit", type=int, help="At most this many of each per run.")
        parser.add_argument("--dry-run", action="store_true", help="Report only; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        result = messages_sweep(
            stuck_after=options["stuck_after"],
            queued_lost_after=options["queued_after"],
            limit=options["limit"],
            dry_run=options["dry_run"],
        )
        verb = "would be" if options["dry_run"] else "were"
        self.stdout.write(
            f"{len(result.resent)} stuck messages {verb} sent again with their idempotency key"
        )
        self.stdout.write(f'{len(result.unknown)} stuck messages {verb} marked "unknown"')
        self.stdout.write(
            f"{len(result.redispatched)} queued messages {verb} handed to a worker again"
        )
