"""Resend stored messages: each becomes a new message linked by resend_of."""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.utils.module_loading import import_string

from sending.exceptions import AnymailError
from sending.management.cli import Progress, in_chunks, parse_when
from sending.models import MessageStatus
from sending.selectors import ResendPlan, messages_by_ids, messages_matching, resend_plans
from sending.services import message_resend

SELECTION = ("ids", "esp_message_id", "recipient", "status", "esp", "since", "until")


class Command(BaseCommand):
    help = (
        "Resend the stored messages matching every option given, through their own backend "
        "or --backend. Suppressed recipients are skipped, as for any send."
    )

    def add_arguments(self, parser):
        parser.add_argument("--id", type=int, action="append", dest="ids", metavar="ID")
        parser.add_argument("--esp-message-id", help="The message's or any recipient's")
        parser.add_argument("--recipient", metavar="ADDRESS")
        parser.add_argument("--status", choices=MessageStatus.values)
        parser.add_argument("--esp", help='ESP key, e.g. "mailgun"')
        parser.add_argument("--since", type=parse_when, help="Created at or after (ISO 8601)")
        parser.add_argument("--until", type=parse_when, help="Created before (ISO 8601)")
        parser.add_argument("--backend", help="Dotted path of the backend to send through")
        parser.add_argument("--dry-run", action="store_true", help="List what would be resent")

    def handle(self, *args, backend, dry_run, verbosity, **options):
        selection = {name: options[name] for name in SELECTION}
        if not any(selection.values()):
            raise CommandError(
                "Choose messages with at least one of --id, --esp-message-id, "
                "--recipient, --status, --esp, --since, --until."
            )
        if backend:
            try:
                import_string(backend)
            except ImportError as error:
                raise CommandError(f"--backend {backend!r} can't be imported: {error}") from None
        # Ids first: the resends are new messages, which must not join the selection.
        ids = list(messages_matching(**selection).values_list("pk", flat=True))
        label = "Checked" if dry_run else "Resent"
        progress = Progress(self.stderr, len(ids), label, quiet=verbosity < 1)
        resent = failed = 0
        for chunk in in_chunks(ids, 200):
            messages = list(messages_by_ids(ids=chunk).order_by("created_at", "pk"))
            if dry_run:
                for plan in resend_plans(messages=messages, backend_path=backend):
                    self.stdout.write(describe(plan))
                progress.advance(len(messages))
                continue
            for message in messages:
                try:
                    new = message_resend(record=message, backend_path=backend)
                except (AnymailError, ValueError, ImproperlyConfigured, ImportError) as error:
                    failed += 1
                    recorded = getattr(error, "mailhub_record_id", None)
                    note = f" (recorded as message {recorded})" if recorded else ""
                    self.stderr.write(f"message {message.pk}: not resent{note}: {error}")
                else:
                    resent += 1
                    self.stdout.write(f"message {message.pk}: resent as {new.pk} ({new.status})")
                progress.advance()
        progress.finish()
        if dry_run:
            self.stdout.write(f"Would resend {len(ids)} message(s) (dry run: nothing sent).")
            return
        self.stdout.write(f"Resent {resent} message(s).")
        if failed:
            raise CommandError(f"{failed} message(s) could not be resent (see above).")


def describe(plan: ResendPlan) -> str:
    if plan.problem:
        return f"message {plan.message.pk}: can't be resent: {plan.problem}"
    line = f"message {plan.message.pk}: would resend through {plan.backend_path} to "
    line += ", ".join(plan.recipients)
    if plan.skipped:
        line += f"; skipping suppressed {', '.join(plan.skipped)}"
    return line
