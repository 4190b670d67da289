"""Forget an address everywhere mailhub recorded it (an erasure request)."""

from django.core.management.base import BaseCommand, CommandError

from mailhub.operations import forget_address


class Command(BaseCommand):
    help = (
        "Redact an address (and the content of messages it took part in) from every "
        "record: sent mail, events, webhook calls. Its suppressions are kept unless "
        "--drop-suppression."
    )

    def add_arguments(self, parser):
        parser.add_argument("address")
        parser.add_argument(
            "--dry-run", action="store_true", help="Report what would change; change nothing."
        )
        parser.add_argument(
            "--drop-suppression",
            action="store_true",
            help="Also delete the address's suppressions (by default they're kept, "
            "so it is never mailed again).",
        )

    def handle(self, *args, address: str, dry_run: bool, drop_suppression: bool, **options):
        try:
            counts = forget_address(
                address=address, keep_suppression=not drop_suppression, dry_run=dry_run
            )
        except ValueError as error:
            raise CommandError(str(error)) from error
        verb = "Would forget" if dry_run else "Forgot"
        summary = ", ".join(f"{name.replace('_', ' ')}: {count}" for name, count in counts.items())
        self.stdout.write(f"{verb} {address}: {summary}")
