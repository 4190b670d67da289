"""manage.py purge: data retention by MAILHUB["RETENTION"], keeping aggregate counts."""

import io
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.utils import timezone

from mailhub.operations import retention_purge
from sending.backends.sandbox import EmailBackend as SandboxBackend
from sending.message import AnymailMessage
from sending.models import Message, Recipient, StoredAttachment
from tracking.models import Event, WebhookCall

pytestmark = pytest.mark.django_db

RETENTION = {
    "message_content_days": 30,
    "messages_days": 365,
    "events_days": 90,
    "webhook_calls_days": 30,
}


@pytest.fixture
def retention(settings):
    settings.MAILHUB = {**settings.MAILHUB, "RETENTION": dict(RETENTION)}
    return settings.MAILHUB["RETENTION"]


def send(subject, to, attachment=b"shared bytes"):
    email = AnymailMessage(subject, f"{subject} body", "shop@example.com", [to])
    email.attach_alternative(f"<p>{subject}</p>", "text/html")
    email.attach("a.txt", attachment, "text/plain")
    SandboxBackend().send_messages([email])
    return Message.objects.get(subject=subject)


def age(message, days):
    """Make message, its events and webhook calls days old."""
    when = timezone.now() - timedelta(days=days)
    Message.objects.filter(pk=message.pk).update(created_at=when)
    events = Event.objects.filter(recipient__message=message)
    WebhookCall.objects.filter(events__in=events).update(received_at=when)
    events.update(created_at=when)


@pytest.fixture
def history(retention):
    """Messages (with events and webhook calls) 400, 100 and 40 days old, and one new."""
    ancient = send("Ancient", "a+click@example.com", b"ancient only")
    old = send("Old", "o+click@example.com")
    month = send("Month", "m+open@example.com", b"month only")
    new = send("New", "n+open@example.com")  # shares its attachment bytes with Old
    age(ancient, 400)
    age(old, 100)
    age(month, 40)
    return {"ancient": ancient, "old": old, "month": month, "new": new}


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("purge", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def snapshot():
    return (
        list(Message.objects.order_by("pk").values()),
        list(Recipient.objects.order_by("pk").values()),
        list(Event.objects.order_by("pk").values()),
        list(WebhookCall.objects.order_by("pk").values_list("pk", flat=True)),
        list(StoredAttachment.objects.order_by("pk").values()),
    )


def test_dry_run_counts_and_changes_nothing(history):
    before = snapshot()
    out, _err = run("--dry-run")
    assert "Events deleted: 6 (dry run: nothing changed)" in out
    assert "Messages deleted (with their recipients): 1 (dry run" in out
    assert "Message bodies and attachments blanked: 3 (dry run" in out
    assert "Webhook calls deleted: 3 (dry run" in out
    assert snapshot() == before


def test_purge_blanks_old_content_but_keeps_rows_and_counts(
    history, django_capture_on_commit_callbacks
):
    old, month, new = history["old"], history["month"], history["new"]
    state = {
        r.pk: (r.status, r.send_status, r.open_count, r.click_count, r.delivered_at)
        for r in Recipient.objects.filter(message__in=[old, month])
    }
    month_file = month.attachments.get().file.name
    shared_file = new.attachments.get().file.name
    with django_capture_on_commit_callbacks(execute=True):
        run()

    for message in (old, month):
        message.refresh_from_db()
        assert (message.body, message.alternatives, message.content_stored) == ("", [], False)
        assert message.subject in ("Old", "Month") and message.status == "sent"
        attachment = message.attachments.get()
        assert (attachment.filename, attachment.size, attachment.file.name) == (
            "a.txt",
            attachment.size,
            "",
        )
    assert {
        r.pk: (r.status, r.send_status, r.open_count, r.click_count, r.delivered_at)
        for r in Recipient.objects.filter(message__in=[old, month])
    } == state
    assert not default_storage.exists(month_file)
    # Old's attachment had the same bytes as New's: the file stays for New.
    assert default_storage.exists(shared_file)
    new.refresh_from_db()
    assert new.content_stored and new.body == "New body" and new.attachments.get().file


def test_purge_deletes_old_messages_events_and_webhook_calls(
    history, django_capture_on_commit_callbacks
):
    ancient, old, month, new = (history[k] for k in ("ancient", "old", "month", "new"))
    ancient_file = ancient.attachments.get().file.name
    with django_capture_on_commit_callbacks(execute=True):
        out, err = run()
    assert not Message.objects.filter(pk=ancient.pk).exists()
    assert not Recipient.objects.filter(message_id=ancient.pk).exists()
    assert not default_storage.exists(ancient_file)
    # Events older than 90 days are gone; younger ones stay, linked.
    assert set(Event.objects.values_list("recipient__message", flat=True)) == {month.pk, new.pk}
    assert Event.objects.filter(recipient__message=old).count() == 0
    # Webhook calls older than 30 days are gone; their younger events stay, unlinked.
    assert not Event.objects.filter(recipient__message=month, webhook_call__isnull=False).exists()
    assert Event.objects.filter(recipient__message=new, webhook_call__isnull=False).exists()
    assert "Messages deleted (with their recipients): 1" in out
    assert "Messages deleted (with their recipients): 1/1 (100%)" in err


def test_purge_twice_purges_nothing_more(history):
    run()
    before = snapshot()
    out, _err = run()
    assert snapshot() == before
    assert "Events deleted: 0" in out and "Message bodies and attachments blanked: 0" in out


def test_none_keeps_a_kind_forever(history, retention):
    retention.update(messages_days=None, events_days=None, webhook_calls_days=None)
    events, calls = Event.objects.count(), WebhookCall.objects.count()
    out, _err = run()
    assert Message.objects.count() == 4
    assert (Event.objects.count(), WebhookCall.objects.count()) == (events, calls)
    assert out.splitlines() == ["Message bodies and attachments blanked: 3"]


def test_everything_kept_forever_purges_nothing(history, settings):
    settings.MAILHUB = {**settings.MAILHUB, "RETENTION": dict.fromkeys(RETENTION)}
    out, _err = run()
    assert "keeps everything" in out
    assert Message.objects.filter(content_stored=True).count() == 4


@pytest.mark.parametrize("bad", [0, -5, "30", 1.5, True])
def test_bad_retention_settings_are_reported(retention, bad):
    retention["events_days"] = bad
    with pytest.raises(CommandError, match=r'MAILHUB\["RETENTION"\]\["events_days"\]'):
        run()


def test_content_purged_messages_cannot_be_resent(history):
    from sending.services import message_resend

    run()
    with pytest.raises(ValueError, match="without its content"):
        message_resend(record=Message.objects.get(pk=history["old"].pk))


def test_retention_purge_reports_each_batch(history):
    seen = []
    counts = retention_purge(on_batch=lambda name, rows: seen.append((name, rows)))
    assert counts["messages_days"] == 1
    assert sum(rows for name, rows in seen if name == "message_content_days") == 3


def test_purged_webhook_calls_take_their_body_files(retention, django_capture_on_commit_callbacks):
    from django.core.files.base import ContentFile

    call = WebhookCall(esp="sandbox", kind="tracking", path="/x/", body_sha256="ab" * 32)
    call.body_file.save("big", ContentFile(b"{}" * 10), save=False)
    call.save()
    name = call.body_file.name
    WebhookCall.objects.filter(pk=call.pk).update(received_at=timezone.now() - timedelta(days=31))
    with django_capture_on_commit_callbacks(execute=True):
        run()
    assert not WebhookCall.objects.exists()
    assert not default_storage.exists(name)
