"""Suppression lists in and out as CSV."""

import io

import pytest

from sending.models import Suppression
from sending.services import suppression_add, suppressions_export_csv, suppressions_import_csv

pytestmark = pytest.mark.django_db


def test_import_creates_and_updates_rows():
    suppression_add(address="old@example.com", reason="manual")
    text = (
        "address,reason,esp,expires_at,note\n"
        "New@Example.com,bounced,,,from ESP\n"
        "old@example.com,complained,mailgun,2030-01-01T00:00:00Z,\n"
    )
    result = suppressions_import_csv(lines=io.StringIO(text))
    assert result.ok and (result.created, result.updated) == (2, 0)
    assert Suppression.objects.get(address="new@example.com").reason == "bounced"
    assert Suppression.objects.get(address="old@example.com", esp="mailgun").expires_at.year == 2030


def test_bad_rows_are_reported_by_line_and_nothing_is_written():
    text = "address,reason\ngood@example.com,bounced\nnot-an-address,bounced\nx@example.com,lost\n"
    result = suppressions_import_csv(lines=io.StringIO(text))
    assert result.errors == [
        (3, "Not an email address: 'not-an-address'"),
        (4, "Unknown reason 'lost' (one of: bounced, complained, invalid, manual, unsubscribed)"),
    ]
    assert not Suppression.objects.exists()


def test_missing_address_column_is_an_error():
    result = suppressions_import_csv(lines=io.StringIO("email,reason\na@example.com,bounced\n"))
    assert result.errors == [(1, "The header row must include an 'address' column.")]


def test_too_many_rows_is_an_error():
    text = "address\n" + "".join(f"u{i}@example.com\n" for i in range(5))
    result = suppressions_import_csv(lines=io.StringIO(text), max_rows=3)
    assert result.errors == [(5, "Too many rows: at most 3 per import.")]


def test_dry_run_counts_without_writing():
    text = "address\na@example.com\nb@example.com\n"
    result = suppressions_import_csv(lines=io.StringIO(text), dry_run=True)
    assert (result.created, result.updated) == (2, 0)
    assert not Suppression.objects.exists()


def test_export_round_trips_through_import():
    suppression_add(address="a@example.com", reason="bounced", note="n1")
    suppression_add(address="b@example.com", reason="unsubscribed", esp="postmark")
    out = io.StringIO()
    assert (
        suppressions_export_csv(suppressions=Suppression.objects.order_by("address"), out=out) == 2
    )
    Suppression.objects.all().delete()
    result = suppressions_import_csv(lines=io.StringIO(out.getvalue()))
    assert result.ok and result.created == 2
    assert set(Suppression.objects.values_list("address", "esp", "reason")) == {
        ("a@example.com", "", "bounced"),
        ("b@example.com", "postmark", "unsubscribed"),
    }
