"""Purge records older than MAILHUB["RETENTION"] allows (run it daily, e.g. from cron)."""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from mailhub.operations import retention_purge
from sending.management.cli import Progress

LABELS = {
    "events_days": "Events deleted",
    "webhook_calls_days": "Webhook calls deleted",
    "messages_days": "Messages deleted (with their recipients)",
    "message_content_days": "Message bodies and attachments blanked",
}


class Command(BaseCommand):
    help = (
        'Purge what MAILHUB["RETENTION"] says is too old: message content (messages and '
        "recipients stay, so counts survive), whole messages, events, webhook calls."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count only; change nothing")

    def handle(self, *args, dry_run, verbosity, **options):
        now = timezone.now()
        try:
            totals = retention_purge(now=now, dry_run=True)
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
        if not totals:
            self.stdout.write('Nothing to purge: MAILHUB["RETENTION"] keeps everything.')
            return
        if dry_run:
            for name, count in totals.items():
                self.stdout.write(f"{LABELS[name]}: {count} (dry run: nothing changed)")
            return
        progress = {
            name: Progress(self.stderr, total, LABELS[name], every=1000, quiet=verbosity < 1)
            for name, total in totals.items()
        }
        counts = retention_purge(now=now, on_batch=lambda name, rows: progress[name].advance(rows))
        for name, count in counts.items():
            progress[name].finish()
            self.stdout.write(f"{LABELS[name]}: {count}")
