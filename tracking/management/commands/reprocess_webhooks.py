"""Parse stored webhook calls again: after a parser fix or an outage. Idempotent."""

from django.core.management.base import BaseCommand, CommandError

from sending.exceptions import AnymailError
from sending.management.cli import Progress, in_chunks, parse_when
from tracking.models import WebhookCall
from tracking.services import webhook_call_reprocess


class Command(BaseCommand):
    help = (
        "Reprocess stored webhook calls: the failed ones (the default), or those received "
        "in --since/--until (add --failed for only the failed ones among them)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--failed", action="store_true", help="Only failed calls (default)")
        parser.add_argument("--since", type=parse_when, help="Received at or after (ISO 8601)")
        parser.add_argument("--until", type=parse_when, help="Received before (ISO 8601)")
        parser.add_argument("--esp", help='ESP key, e.g. "mailgun"')
        parser.add_argument("--dry-run", action="store_true", help="List what would be done")

    def handle(self, *args, failed, since, until, esp, dry_run, verbosity, **options):
        calls = WebhookCall.objects.all()
        if failed or not (since or until):
            calls = calls.failed()
        if since:
            calls = calls.filter(received_at__gte=since)
        if until:
            calls = calls.filter(received_at__lt=until)
        if esp:
            calls = calls.for_esp(esp)
        # Ids first: reprocessing changes the statuses the selection is made on.
        ids = list(calls.order_by("received_at", "pk").values_list("pk", flat=True))
        label = "Checked" if dry_run else "Reprocessed"
        progress = Progress(self.stderr, len(ids), label, quiet=verbosity < 1)
        events = still_failing = 0
        # Small chunks: each call carries its raw body.
        for chunk in in_chunks(ids, 50):
            for call in WebhookCall.objects.filter(pk__in=chunk).order_by("received_at", "pk"):
                if dry_run:
                    self.stdout.write(
                        f"call {call.pk}: would reprocess ({call.esp} {call.kind}, "
                        f"received {call.received_at:%Y-%m-%d %H:%M:%S}, {call.status})"
                    )
                else:
                    try:
                        events += webhook_call_reprocess(call=call)
                    except AnymailError as error:
                        still_failing += 1
                        self.stderr.write(f"call {call.pk}: still failing: {error}")
                progress.advance()
        progress.finish()
        if dry_run:
            self.stdout.write(f"Would reprocess {len(ids)} call(s) (dry run: nothing changed).")
            return
        self.stdout.write(f"Reprocessed {len(ids)} call(s): {events} new event(s).")
        if still_failing:
            raise CommandError(f"{still_failing} call(s) still fail (see above).")
