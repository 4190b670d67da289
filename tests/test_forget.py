"""Forgetting an address (erasure requests): every app's records, one transaction."""

import json
from io import StringIO

import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from mailhub.operations import forget_address
from sending.backends.sandbox import EmailBackend
from sending.message import AnymailMessage
from sending.models import Message, Recipient, StoredAttachment, Suppression
from sending.services import FORGOTTEN, message_rebuild, recipient_forget, suppression_add
from tests.admin_helpers import sandbox_send
from tracking.models import Event, WebhookCall
from tracking.services import events_forget

pytestmark = pytest.mark.django_db

ANN = "ann+click@example.com"


@pytest.fixture
def history():
    """Ann got a batch message (with Bob) and a private one with an attachment; Bob got
    one of his own with the same attachment; Ann bounced once, so she is suppressed."""
    batch = AnymailMessage(
        "Hello Ann and Bob",
        "Hi both",
        "shop@example.com",
        ["Ann <ANN+click@example.com>", "bob@example.com"],
        reply_to=["support@example.com"],
        headers={"List-Unsubscribe": "<mailto:unsub@example.com?subject=ann+click@example.com>"},
    )
    batch.merge_data = {
        "ANN+click@example.com": {"name": "Ann"},
        "bob@example.com": {"name": "Bob"},
    }
    batch.attach_alternative("<p>Hi Ann</p>", "text/html")
    private = AnymailMessage("Your CV", "Attached", "shop@example.com", [ANN])
    private.attach("ann-cv.pdf", b"%PDF ann", "application/pdf")
    private.attach("terms.pdf", b"%PDF shared terms", "application/pdf")
    bobs = AnymailMessage("Terms", "Attached", "shop@example.com", ["bob@example.com"])
    bobs.attach("terms.pdf", b"%PDF shared terms", "application/pdf")
    EmailBackend().send_messages([batch, private, bobs])
    sandbox_send("ann+bounce@example.com")  # someone else, untouched
    suppression_add(address=ANN, reason="complained")
    return {
        "batch": Message.objects.get(pk=batch.mailhub_record_id),
        "private": Message.objects.get(pk=private.mailhub_record_id),
        "bobs": Message.objects.get(pk=bobs.mailhub_record_id),
    }


def test_forget_redacts_recipients_messages_and_events(history, django_capture_on_commit_callbacks):
    events_before = Event.objects.filter(recipient_address=ANN).count()
    with django_capture_on_commit_callbacks(execute=True):
        counts = forget_address(address="Ann+Click@Example.com")
    assert counts == {
        "events": events_before,
        "webhook_calls": 2,
        "recipients": 2,
        "messages": 2,
        "attachments": 2,
        "attachment_files": 1,
        "suppressions": 0,
        "inbound_messages": 0,
        "inbound_attachments": 0,
    }
    assert not Recipient.objects.filter(address=ANN).exists()
    assert Recipient.objects.filter(address=FORGOTTEN, display_name="").count() == 2
    batch = Message.objects.get(pk=history["batch"].pk)
    assert batch.to == [FORGOTTEN, "bob@example.com"]
    assert batch.reply_to == ["support@example.com"]
    assert (batch.subject, batch.body, batch.alternatives) == (
        FORGOTTEN,
        FORGOTTEN,
        [[FORGOTTEN, "text/html"]],
    )
    assert batch.merge_data == {"bob@example.com": {"name": "Bob"}}
    assert ANN not in json.dumps(batch.extra_headers).lower()
    assert batch.content_stored is False
    with pytest.raises(ValueError, match="without its content"):
        message_rebuild(record=batch)
    # Bob's own message (and the other address) are untouched.
    bobs = Message.objects.get(pk=history["bobs"].pk)
    assert (bobs.subject, bobs.content_stored) == ("Terms", True)
    assert Recipient.objects.filter(address="ann+bounce@example.com").exists()


def test_forget_redacts_events_and_raw_webhook_bodies(history):
    forget_address(address=ANN)
    assert not Event.objects.filter(recipient_address=ANN).exists()
    for event in Event.objects.filter(recipient_address=FORGOTTEN):
        assert (event.esp_event, event.user_agent, event.click_url) == (None, "", "")
    for call in WebhookCall.objects.all():
        assert ANN.encode() not in call.get_body().lower()
    assert any(b"ann+bounce@example.com" in call.get_body() for call in WebhookCall.objects.all())


def test_attachment_files_are_deleted_unless_still_used(
    history, django_capture_on_commit_callbacks
):
    files = {
        a.filename: a.file.name for a in StoredAttachment.objects.filter(message=history["private"])
    }
    with django_capture_on_commit_callbacks(execute=True):
        forget_address(address=ANN)
    assert not default_storage.exists(files["ann-cv.pdf"])
    assert default_storage.exists(files["terms.pdf"])  # Bob's message still has it
    private = StoredAttachment.objects.filter(message=history["private"])
    assert set(private.values_list("filename", "file")) == {(FORGOTTEN, "")}


def test_suppressions_are_kept_unless_dropped(history):
    forget_address(address=ANN)
    assert Suppression.objects.filter(address=ANN).exists()
    counts = forget_address(address=ANN, keep_suppression=False)
    assert counts["suppressions"] == 1
    assert not Suppression.objects.filter(address=ANN).exists()


def test_dry_run_counts_and_changes_nothing(history, django_capture_on_commit_callbacks):
    files = list(StoredAttachment.objects.values_list("file", flat=True))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        dry = forget_address(address=ANN, keep_suppression=False, dry_run=True)
    assert callbacks == []
    assert dry["recipients"] == 2 and dry["suppressions"] == 1
    assert Recipient.objects.filter(address=ANN).count() == 2
    assert Message.objects.get(pk=history["batch"].pk).subject == "Hello Ann and Bob"
    assert Suppression.objects.filter(address=ANN).exists()
    assert all(default_storage.exists(name) for name in files)
    assert forget_address(address=ANN, keep_suppression=False) == dry


def test_reply_to_messages_are_forgotten_too():
    contact = AnymailMessage(
        "Contact form", "I'd like a refund", "web@example.com", ["support@example.com"],
        reply_to=["Ann <ann@example.com>"],
    )  # fmt: skip
    EmailBackend().send_messages([contact])
    counts = recipient_forget(address="ann@example.com")
    assert counts["messages"] == 1 and counts["recipients"] == 0
    record = Message.objects.get()
    assert (record.reply_to, record.body) == ([FORGOTTEN], FORGOTTEN)


def test_forgetting_an_unknown_address_changes_nothing(history):
    counts = forget_address(address="nobody@example.com")
    assert set(counts.values()) == {0}


@pytest.mark.parametrize("address", ["", "not-an-address", FORGOTTEN])
def test_forgetting_needs_an_address(address):
    with pytest.raises(ValueError, match="Not an email address"):
        forget_address(address=address)
    with pytest.raises(ValueError):
        events_forget(address=address)


def test_command(history):
    out = StringIO()
    call_command("forget_recipient", ANN, "--dry-run", stdout=out)
    assert out.getvalue().startswith(f"Would forget {ANN}: events: ")
    assert Recipient.objects.filter(address=ANN).count() == 2
    out = StringIO()
    call_command("forget_recipient", ANN, "--drop-suppression", stdout=out)
    assert "recipients: 2" in out.getvalue() and "suppressions: 1" in out.getvalue()
    assert not Recipient.objects.filter(address=ANN).exists()
    assert not Suppression.objects.filter(address=ANN).exists()


def test_command_rejects_a_non_address():
    with pytest.raises(CommandError, match="Not an email address"):
        call_command("forget_recipient", "nope")


def test_forgotten_message_stays_in_stats(history):
    from sending.selectors import delivery_stats

    before = delivery_stats(days=7).totals
    forget_address(address=ANN)
    assert delivery_stats(days=7).totals == before
