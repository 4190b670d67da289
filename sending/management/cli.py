"""Pieces shared by mailhub's management commands: date options and a progress counter."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TextIO, TypeVar

from django.core.management.base import OutputWrapper
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

T = TypeVar("T")


def parse_when(value: str) -> datetime:
    """An argparse type: an ISO 8601 date or datetime (naive: in the current time zone)."""
    try:
        when = parse_datetime(value)
        if when is None:
            day = parse_date(value)
            when = datetime.combine(day, datetime.min.time()) if day else None
    except ValueError:
        when = None
    if when is None:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not an ISO 8601 date or datetime (e.g. 2026-11-23 or 2026-11-23T08:00)"
        )
    return timezone.make_aware(when) if timezone.is_naive(when) else when


class Progress:
    """Write "label: done/total (pct%)" to stream every `every` items, and once at the end.

    On a terminal the line is redrawn in place; in a log each report is a line.
    """

    def __init__(
        self, stream: TextIO, total: int, label: str, *, every: int = 100, quiet: bool = False
    ) -> None:
        self.stream, self.total, self.label, self.every = stream, total, label, max(1, every)
        self.quiet = quiet or total == 0
        self.done = 0
        self._tty = getattr(stream, "isatty", lambda: False)()
        self._started = time.monotonic()

    def advance(self, count: int = 1) -> None:
        before = self.done
        self.done += count
        if self.done // self.every > before // self.every:
            self._write()

    def finish(self) -> None:
        if self.done % self.every:
            self._write()
        if self._tty and not self.quiet:
            self._emit("\n")

    def _write(self) -> None:
        if self.quiet:
            return
        percent = 100 * self.done // self.total if self.total else 100
        elapsed = time.monotonic() - self._started
        line = f"{self.label}: {self.done}/{self.total} ({percent}%) in {elapsed:.0f}s"
        self._emit(f"\r{line}" if self._tty else f"{line}\n")

    def _emit(self, text: str) -> None:
        if isinstance(self.stream, OutputWrapper):
            # As written: no added line ending, no error colouring on stderr.
            self.stream.write(text, style_func=str, ending="")
        else:
            self.stream.write(text)
        self.stream.flush()


def in_chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """items in consecutive slices of at most size."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
