"""Management commands: resend, reprocess_webhooks, suppressions import|export."""

import io
import json
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from sending.backends import test as test_backend
from sending.message import AnymailMessage
from sending.models import Message, Suppression
from sending.services import suppression_add
from tracking.models import Event, WebhookCall, WebhookCallStatus
from tracking.webhooks.sandbox import SandboxTrackingWebhookView

pytestmark = pytest.mark.django_db

SANDBOX_BACKEND = "sending.backends.sandbox.EmailBackend"


def run(*args, **kwargs):
    """call_command, returning (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **kwargs)
    return out.getvalue(), err.getvalue()


def run_failing(*args, match):
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError, match=match):
        call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def messages():
    """Three messages through the test backend: two to ann, one to bob (failed)."""
    emails = [
        AnymailMessage("First", "1", "shop@example.com", ["ann@example.com"]),
        AnymailMessage("Second", "2", "shop@example.com", ["ann@example.com", "cat@example.com"]),
        AnymailMessage("Third", "3", "shop@example.com", ["bob@example.com"]),
    ]
    test_backend.EmailBackend().send_messages(emails)
    Message.objects.filter(subject="Third").update(status="failed")
    mail.outbox.clear()
    return {m.subject: m for m in Message.objects.all()}


# ---------------------------------------------------------------------------
# resend


def test_resend_by_id(messages):
    first = messages["First"]
    out, _err = run("resend", "--id", str(first.pk))
    new = Message.objects.get(resend_of=first)
    assert f"message {first.pk}: resent as {new.pk} (sent)" in out
    assert "Resent 1 message(s)." in out
    assert len(mail.outbox) == 1


def test_resend_by_recipient_status_and_dates(messages):
    run("resend", "--recipient", "ANN@example.com")
    assert set(
        Message.objects.filter(resend_of__isnull=False).values_list("subject", flat=True)
    ) == {
        "First",
        "Second",
    }
    Message.objects.filter(resend_of__isnull=False).delete()

    run("resend", "--status", "failed")
    assert list(
        Message.objects.filter(resend_of__isnull=False).values_list("subject", flat=True)
    ) == ["Third"]
    Message.objects.filter(resend_of__isnull=False).delete()

    old = timezone.now() - timedelta(days=3)
    Message.objects.filter(subject="First").update(created_at=old)
    since = (old - timedelta(hours=1)).isoformat()
    until = (old + timedelta(days=1)).date().isoformat()
    run("resend", "--since", since, "--until", until)
    assert list(
        Message.objects.filter(resend_of__isnull=False).values_list("subject", flat=True)
    ) == ["First"]


def test_resend_by_esp_message_id(messages):
    second = messages["Second"]
    esp_id = second.recipients.first().esp_message_id
    run("resend", "--esp-message-id", esp_id)
    assert Message.objects.get(resend_of__isnull=False).resend_of == second


def test_resend_through_another_backend(messages):
    run("resend", "--id", str(messages["First"].pk), "--backend", SANDBOX_BACKEND)
    assert Message.objects.get(resend_of=messages["First"]).esp == "sandbox"
    assert not mail.outbox


def test_resend_never_sends_to_suppressed_addresses(messages):
    suppression_add(address="cat@example.com", reason="bounced")
    run("resend", "--id", str(messages["Second"].pk))
    new = Message.objects.get(resend_of=messages["Second"])
    assert {r.address: r.send_status for r in new.recipients.all()} == {
        "ann@example.com": "sent",
        "cat@example.com": "suppressed",
    }
    [email] = mail.outbox
    assert [a.addr_spec for a in email.anymail_send_params["to"]] == ["ann@example.com"]


def test_resend_reports_failures_and_exits_nonzero(messages):
    suppression_add(address="bob@example.com", reason="complained")
    Message.objects.filter(subject="First").update(content_stored=False)
    _out, err = run_failing(
        "resend",
        "--id",
        str(messages["First"].pk),
        "--id",
        str(messages["Third"].pk),
        match="2 message",
    )
    assert f"message {messages['First'].pk}: not resent: " in err
    assert "without its content" in err
    recorded = Message.objects.get(resend_of=messages["Third"])
    assert recorded.status == "suppressed"
    assert f"message {messages['Third'].pk}: not resent (recorded as message {recorded.pk})" in err
    assert not mail.outbox


def test_resend_dry_run_lists_and_sends_nothing(messages):
    suppression_add(address="cat@example.com", reason="bounced")
    out, _err = run("resend", "--recipient", "ann@example.com", "--dry-run")
    first, second = messages["First"], messages["Second"]
    backend = "sending.backends.test.EmailBackend"
    assert f"message {first.pk}: would resend through {backend} to ann@example.com\n" in out
    assert f"message {second.pk}: would resend" in out
    assert "skipping suppressed cat@example.com" in out
    assert "Would resend 2 message(s)" in out
    assert Message.objects.count() == 3
    assert not mail.outbox


def test_resend_needs_a_selection():
    run_failing("resend", match="at least one of")


def test_resend_rejects_an_unimportable_backend(messages):
    run_failing("resend", "--id", "1", "--backend", "nope.EmailBackend", match="can't be imported")
    assert Message.objects.count() == 3


def test_resend_rejects_a_bad_date():
    run_failing("resend", "--since", "yesterday", match="not an ISO 8601 date")


def test_resend_shows_progress_on_stderr(messages):
    _out, err = run("resend", "--recipient", "ann@example.com")
    assert "Resent: 2/2 (100%)" in err


# ---------------------------------------------------------------------------
# reprocess_webhooks

EVENT = {
    "id": "evt_1",
    "event": "delivered",
    "timestamp": "2026-11-20T12:00:00+00:00",
    "message_id": "<m1@sandbox.mailhub>",
    "recipient": "r@example.com",
}


@pytest.fixture
def failed_call(client, monkeypatch):
    def buggy(self, event):
        raise KeyError("parser bug")

    with monkeypatch.context() as patch:
        patch.setattr(SandboxTrackingWebhookView, "parse_event", buggy)
        response = client.post(
            "/anymail/sandbox/tracking/",
            json.dumps({"events": [EVENT]}),
            content_type="application/json",
        )
    assert response.status_code == 400
    call = WebhookCall.objects.get()
    assert call.status == WebhookCallStatus.FAILED
    return call


def test_reprocess_failed_calls_by_default(failed_call):
    out, err = run("reprocess_webhooks")
    assert "Reprocessed 1 call(s): 1 new event(s)." in out
    assert "Reprocessed: 1/1 (100%)" in err
    failed_call.refresh_from_db()
    assert failed_call.status == WebhookCallStatus.PROCESSED
    assert Event.objects.get().event_id == "evt_1"


def test_reprocess_is_idempotent(failed_call):
    run("reprocess_webhooks")
    out, _err = run("reprocess_webhooks", "--since", "2000-01-01")
    assert "Reprocessed 1 call(s): 0 new event(s)." in out
    assert Event.objects.count() == 1


def test_reprocess_filters_by_esp_and_date(failed_call):
    out, _err = run("reprocess_webhooks", "--esp", "mailgun")
    assert "Reprocessed 0 call(s)" in out
    tomorrow = (timezone.now() + timedelta(days=1)).date().isoformat()
    out, _err = run("reprocess_webhooks", "--failed", "--since", tomorrow)
    assert "Reprocessed 0 call(s)" in out
    failed_call.refresh_from_db()
    assert failed_call.status == WebhookCallStatus.FAILED


def test_reprocess_dry_run_changes_nothing(failed_call):
    out, _err = run("reprocess_webhooks", "--dry-run")
    assert f"call {failed_call.pk}: would reprocess (sandbox tracking" in out
    assert "Would reprocess 1 call(s)" in out
    failed_call.refresh_from_db()
    assert (failed_call.status, failed_call.attempts) == (WebhookCallStatus.FAILED, 1)
    assert not Event.objects.exists()


def test_reprocess_reports_calls_that_still_fail(failed_call, monkeypatch):
    def buggy(self, event):
        raise KeyError("still broken")

    monkeypatch.setattr(SandboxTrackingWebhookView, "parse_event", buggy)
    _out, err = run_failing("reprocess_webhooks", match="1 call")
    assert f"call {failed_call.pk}: still failing" in err


# ---------------------------------------------------------------------------
# suppressions import | export


def write(tmp_path, text, name="list.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def test_import_adds_and_updates(tmp_path):
    suppression_add(address="old@example.com", reason="manual")
    path = write(
        tmp_path,
        "address,reason,esp,expires_at,note\r\n"
        "New@Example.com,bounced,,,from ESP\r\n"
        "old@example.com,complained,,2030-01-01T00:00:00Z,\r\n",
    )
    out, _err = run("suppressions", "import", path)
    assert "Added 1 and update 1 suppression(s)." in out
    assert set(Suppression.objects.values_list("address", "reason", "source")) == {
        ("new@example.com", "bounced", "import"),
        ("old@example.com", "complained", "import"),
    }


def test_import_reports_bad_rows_by_line_and_writes_nothing(tmp_path):
    path = write(
        tmp_path,
        "address,reason,esp\n"
        "good@example.com,bounced,\n"
        "not-an-address,bounced,\n"
        "x@example.com,lost,\n"
        f"{'a' * 400}@example.com,bounced,\n"
        f"y@example.com,bounced,{'e' * 60}\n"
        "z@example.com,bounced,,surplus\n",
    )
    _out, err = run_failing("suppressions", "import", path, match="5 bad row")
    assert err.splitlines() == [
        "line 3: Not an email address: 'not-an-address'",
        "line 4: Unknown reason 'lost' "
        "(one of: bounced, complained, invalid, manual, unsubscribed)",
        "line 5: address is longer than 320 characters.",
        "line 6: esp is longer than 50 characters.",
        "line 7: More fields than the header row names.",
    ]
    assert not Suppression.objects.exists()


def test_import_reports_malformed_csv(tmp_path):
    path = write(tmp_path, 'address\ngood@example.com\n"' + "x" * 200_000 + "\n")
    _out, err = run_failing("suppressions", "import", path, match="1 bad row")
    assert err.startswith("line 3: Not valid CSV: field larger than field limit")
    assert not Suppression.objects.exists()


def test_import_reports_text_that_is_not_utf8(tmp_path):
    path = write(tmp_path, b"address,note\na@example.com,ok\nb@example.com,caf\xe9\n")
    run_failing("suppressions", "import", path, match="line 3: not UTF-8")
    assert not Suppression.objects.exists()


def test_import_accepts_a_byte_order_mark(tmp_path):
    path = write(tmp_path, "\ufeffaddress\na@example.com\n")
    run("suppressions", "import", path)
    assert Suppression.objects.get().address == "a@example.com"


def test_import_refuses_too_many_rows(tmp_path):
    path = write(tmp_path, "address\n" + "".join(f"u{i}@example.com\n" for i in range(5)))
    _out, err = run_failing("suppressions", "import", path, "--max-rows", "3", match="bad row")
    assert "line 5: Too many rows: at most 3 per import." in err
    assert not Suppression.objects.exists()


def test_import_dry_run_writes_nothing(tmp_path):
    suppression_add(address="a@example.com")
    path = write(tmp_path, "address\na@example.com\nb@example.com\n")
    out, _err = run("suppressions", "import", path, "--dry-run")
    assert "Would add 1 and update 1 suppression(s)." in out
    assert list(Suppression.objects.values_list("address", flat=True)) == ["a@example.com"]


def test_import_of_a_missing_file_is_an_error(tmp_path):
    run_failing("suppressions", "import", str(tmp_path / "nope.csv"), match="Can't open")


def test_export_to_stdout_and_file_round_trips(tmp_path):
    suppression_add(address="b@example.com", reason="unsubscribed", esp="postmark", note="n")
    suppression_add(
        address="a@example.com", reason="bounced", expires_at=timezone.now() - timedelta(days=1)
    )
    out, _err = run("suppressions", "export")
    lines = out.splitlines()
    assert lines[0] == "address,reason,esp,expires_at,note,source,created_at"
    assert [line.split(",")[0] for line in lines[1:]] == ["a@example.com", "b@example.com"]

    out, _err = run("suppressions", "export", "--active")
    assert [line.split(",")[0] for line in out.splitlines()[1:]] == ["b@example.com"]
    out, _err = run("suppressions", "export", "--esp", "postmark")
    assert [line.split(",")[0] for line in out.splitlines()[1:]] == ["b@example.com"]

    path = str(tmp_path / "out.csv")
    _out, err = run("suppressions", "export", path)
    assert "Wrote 2 suppression(s)" in err
    Suppression.objects.all().delete()
    run("suppressions", "import", path)
    assert set(Suppression.objects.values_list("address", "esp", "reason", "note")) == {
        ("a@example.com", "", "bounced", ""),
        ("b@example.com", "postmark", "unsubscribed", "n"),
    }


def test_suppressions_needs_an_action():
    with pytest.raises(CommandError):
        call_command("suppressions", stdout=io.StringIO(), stderr=io.StringIO())
