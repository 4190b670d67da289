"""Import and export suppression lists as CSV (address, reason, esp, expires_at, note)."""

import codecs
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from django.core.management.base import BaseCommand, CommandError

from sending.models import Suppression
from sending.services import suppressions_export_csv, suppressions_import_csv


class Command(BaseCommand):
    help = "Import suppressions from a CSV file, or export them as CSV."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="import|export")
        importing = actions.add_parser(
            "import",
            help="Add or update suppressions from CSV (nothing is written if any row is bad)",
        )
        importing.add_argument("file", help='CSV file with a header row ("-": standard input)')
        importing.add_argument("--dry-run", action="store_true", help="Check and count only")
        importing.add_argument("--max-rows", type=int, default=100_000)
        exporting = actions.add_parser("export", help="Write every suppression as CSV")
        exporting.add_argument("file", nargs="?", default="-", help='Default "-": standard output')
        exporting.add_argument("--esp", help="Only those scoped to this ESP key")
        exporting.add_argument("--active", action="store_true", help="Only unexpired ones")

    def handle(self, *args, action, **options):
        if action == "import":
            self.import_csv(options["file"], options["dry_run"], options["max_rows"])
        else:
            self.export_csv(options["file"], options["esp"], options["active"])

    def import_csv(self, file: str, dry_run: bool, max_rows: int) -> None:
        stream = sys.stdin.buffer if file == "-" else self._open(file, "rb")
        try:
            result = suppressions_import_csv(
                lines=decoded_lines(stream), dry_run=dry_run, max_rows=max_rows
            )
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        for line, error in result.errors:
            self.stderr.write(f"line {line}: {error}")
        if result.errors:
            raise CommandError(f"{len(result.errors)} bad row(s): nothing was imported.")
        done = "Would add" if dry_run else "Added"
        self.stdout.write(f"{done} {result.created} and update {result.updated} suppression(s).")

    def export_csv(self, file: str, esp: str | None, active: bool) -> None:
        suppressions = Suppression.objects.order_by("address", "esp")
        if esp is not None:
            suppressions = suppressions.filter(esp=esp)
        if active:
            suppressions = suppressions.active()
        rows = suppressions.iterator(chunk_size=2000)
        if file == "-":
            suppressions_export_csv(suppressions=rows, out=self.stdout)
            return
        with self._open(file, "w") as out:
            count = suppressions_export_csv(suppressions=rows, out=out)
        self.stderr.write(f"Wrote {count} suppression(s) to {file}.")

    def _open(self, file: str, mode: str) -> IO:
        try:
            if "b" in mode:
                return Path(file).open(mode)
            return Path(file).open(mode, encoding="utf-8", newline="")
        except OSError as error:
            raise CommandError(f"Can't open {file}: {error.strerror}") from None


def decoded_lines(stream: IO[bytes]) -> Iterator[str]:
    """stream's lines as text; a line that isn't UTF-8 stops the import, naming it."""
    for number, line in enumerate(stream, start=1):
        if number == 1:
            line = line.removeprefix(codecs.BOM_UTF8)  # spreadsheet programs write one
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError(f"line {number}: not UTF-8 text: nothing was imported.") from None
