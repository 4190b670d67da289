"""The record of every send: written before the ESP call, completed after, never lost."""

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from sending.backends import test as test_backend
from sending.exceptions import AnymailAPIError, AnymailRecipientsRefused
from sending.message import AnymailMessage, AnymailRecipientStatus
from sending.models import Message, MessageStatus, Recipient, SendStatus, Suppression
from sending.services import message_rebuild, suppression_add, suppression_remove

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\nfake-image-bytes"


def full_message(**kwargs) -> AnymailMessage:
    message = AnymailMessage(
        subject="Your order",
        body="Plain text",
        from_email="Shop <shop@example.com>",
        to=["Ann <ann@example.com>", "bob@example.com"],
        cc=["carol@example.com"],
        bcc=["dave@example.com"],
        reply_to=["help@example.com"],
        headers={"X-Order": "42"},
        tags=["order"],
        metadata={"order_id": "42"},
        track_opens=True,
        track_clicks=False,
        **kwargs,
    )
    message.attach_alternative("<p>HTML</p>", "text/html")
    message.attach("invoice.txt", b"invoice bytes", "text/plain")
    message.attach_inline_image(PNG, filename="logo.png")
    return message


class ObservingBackend(test_backend.EmailBackend):
    """Checks what the database holds at the moment the ESP is called."""

    seen_at_call: list = []

    def post_to_esp(self, payload, message):
        record = Message.objects.get()
        ObservingBackend.seen_at_call.append(
            (record.status, sorted(record.recipients.values_list("address", "send_status")))
        )
        return super().post_to_esp(payload, message)


def test_record_exists_before_the_esp_is_called():
    ObservingBackend.seen_at_call = []
    ObservingBackend().send_messages([full_message()])
    assert ObservingBackend.seen_at_call == [
        (
            MessageStatus.SENDING,
            [
                ("ann@example.com", SendStatus.PENDING),
                ("bob@example.com", SendStatus.PENDING),
                ("carol@example.com", SendStatus.PENDING),
                ("dave@example.com", SendStatus.PENDING),
            ],
        )
    ]


def test_success_records_message_and_each_recipient():
    message = full_message()
    test_backend.EmailBackend().send_messages([message])
    record = Message.objects.get()
    message_id = message.anymail_status.message_id
    assert record.status == MessageStatus.SENT
    assert record.esp == "test"
    assert record.backend == "sending.backends.test.EmailBackend"
    assert record.esp_message_id == message_id
    assert record.sent_at is not None
    assert record.attempts == 1
    assert record.from_email == "Shop <shop@example.com>"
    assert record.to == ["Ann <ann@example.com>", "bob@example.com"]
    assert record.cc == ["carol@example.com"]
    assert record.bcc == ["dave@example.com"]
    assert record.reply_to == ["help@example.com"]
    assert record.subject == "Your order"
    assert record.body == "Plain text"
    assert record.html_body == "<p>HTML</p>"
    assert record.extra_headers == {"X-Order": "42"}
    assert record.tags == ["order"]
    assert record.metadata == {"order_id": "42"}
    assert (record.track_opens, record.track_clicks) == (True, False)
    recipients = {
        r.address: (r.kind, r.display_name, r.send_status, r.esp_message_id)
        for r in record.recipients.all()
    }
    assert recipients == {
        "ann@example.com": ("to", "Ann", "sent", message_id),
        "bob@example.com": ("to", "", "sent", message_id),
        "carol@example.com": ("cc", "", "sent", message_id),
        "dave@example.com": ("bcc", "", "sent", message_id),
    }


def test_attachments_are_stored_by_content_hash_once():
    test_backend.EmailBackend().send_messages([full_message(), full_message()])
    first, second = Message.objects.order_by("id")
    names = [a.file.name for a in first.attachments.all()]
    assert names == [a.file.name for a in second.attachments.all()]
    invoice, logo = first.attachments.all()
    assert (invoice.filename, invoice.mimetype, invoice.inline, invoice.size) == (
        "invoice.txt",
        "text/plain",
        False,
        13,
    )
    assert logo.inline and logo.content_id.startswith("<") and logo.filename == "logo.png"
    with default_storage.open(invoice.file.name) as file:
        assert file.read() == b"invoice bytes"


def test_per_recipient_statuses_and_ids_are_recorded():
    message = AnymailMessage("s", "b", "from@example.com", ["a@example.com", "B@Example.com"])
    message.test_response = {
        "recipients": {
            "a@example.com": AnymailRecipientStatus("id-a", "queued"),
            "B@Example.com": AnymailRecipientStatus(None, "invalid"),
        }
    }
    test_backend.EmailBackend().send_messages([message])
    record = Message.objects.get()
    assert record.status == MessageStatus.SENT
    assert record.esp_message_id == "id-a"
    assert dict(record.recipients.values_list("address", "send_status")) == {
        "a@example.com": "queued",
        "b@example.com": "invalid",
    }


def test_esp_error_leaves_failed_record_and_reaches_caller():
    message = full_message()
    message.test_response = AnymailAPIError("Mailgun said: Domain not found")
    with pytest.raises(AnymailAPIError):
        test_backend.EmailBackend().send_messages([message])
    record = Message.objects.get()
    assert record.status == MessageStatus.FAILED
    assert "Domain not found" in record.error
    assert set(record.recipients.values_list("send_status", flat=True)) == {SendStatus.FAILED}


def test_unexpected_error_during_esp_call_is_recorded_and_raised():
    message = full_message()
    message.test_response = TimeoutError("read timed out")
    with pytest.raises(TimeoutError):
        test_backend.EmailBackend().send_messages([message])
    record = Message.objects.get()
    assert record.status == MessageStatus.FAILED
    assert record.error == "TimeoutError: read timed out"


def test_all_refused_is_recorded_as_rejected():
    message = AnymailMessage("s", "b", "from@example.com", ["a@example.com"])
    message.test_response = {
        "recipients": {"a@example.com": AnymailRecipientStatus(None, "rejected")}
    }
    with pytest.raises(AnymailRecipientsRefused):
        test_backend.EmailBackend().send_messages([message])
    assert Message.objects.get().status == MessageStatus.REJECTED


def test_recording_off_touches_no_database(no_store, django_assert_num_queries):
    message = full_message()
    with django_assert_num_queries(0):
        test_backend.EmailBackend().send_messages([message])
    assert message.anymail_status.status == {"sent"}


def test_content_not_stored_when_switched_off(settings):
    settings.MAILHUB = {**settings.MAILHUB, "STORE_CONTENT": False}
    test_backend.EmailBackend().send_messages([full_message()])
    record = Message.objects.get()
    assert record.content_stored is False
    assert record.body == ""
    assert record.alternatives == []
    assert [a.file.name for a in record.attachments.all()] == ["", ""]
    assert record.subject == "Your order"  # metadata is kept
    with pytest.raises(ValueError, match="recorded without its content"):
        message_rebuild(record=record)


def test_many_messages_are_each_recorded():
    messages = [
        AnymailMessage("s", "b", "from@example.com", [f"u{i}@example.com"]) for i in range(5)
    ]
    assert test_backend.EmailBackend().send_messages(messages) == 5
    assert Message.objects.count() == 5
    assert Recipient.objects.filter(send_status="sent").count() == 5


# Rebuilding


def test_rebuilt_message_sends_the_same_parameters(settings):
    settings.ANYMAIL = {"SEND_DEFAULTS": {"tags": ["default-tag"], "metadata": {"app": "shop"}}}
    original = full_message(send_at=timezone.now() + timedelta(hours=1))
    test_backend.EmailBackend().send_messages([original])
    rebuilt = message_rebuild(record=Message.objects.get())
    test_backend.EmailBackend().send_messages([rebuilt])

    before, after = original.anymail_send_params, rebuilt.anymail_send_params
    assert after["tags"] == ["default-tag", "order"]  # defaults not applied twice
    assert after["metadata"] == {"app": "shop", "order_id": "42"}
    for key in ("from", "to", "cc", "bcc", "reply_to", "subject", "text_body", "html_body"):
        assert after[key] == before[key], key
    assert after["extra_headers"] == before["extra_headers"]
    assert after["send_at"] == before["send_at"]
    assert [
        (a.name, a.content, a.mimetype, a.inline, a.content_id) for a in after["attachments"]
    ] == [(a.name, a.content, a.mimetype, a.inline, a.content_id) for a in before["attachments"]]


# Suppression at send time


def test_suppressed_recipient_is_dropped_and_recorded():
    suppression_add(address="Bob@Example.com", reason="bounced")
    message = AnymailMessage("s", "b", "from@example.com", ["ann@example.com", "bob@example.com"])
    test_backend.EmailBackend().send_messages([message])
    assert [a.addr_spec for a in message.anymail_send_params["to"]] == ["ann@example.com"]
    assert message.anymail_status.recipients["bob@example.com"].status == "suppressed"
    assert message.anymail_status.status == {"sent", "suppressed"}
    record = Message.objects.get()
    assert dict(record.recipients.values_list("address", "send_status")) == {
        "ann@example.com": "sent",
        "bob@example.com": "suppressed",
    }


def test_all_suppressed_does_not_call_esp_and_is_refused():
    suppression_add(address="bob@example.com", reason="complained")
    message = AnymailMessage("s", "b", "from@example.com", ["bob@example.com"])
    message.test_response = AssertionError("the ESP must not be called")
    with pytest.raises(AnymailRecipientsRefused):
        test_backend.EmailBackend().send_messages([message])
    assert message.anymail_status.status == {"suppressed"}
    assert Message.objects.get().status == MessageStatus.SUPPRESSED


def test_all_suppressed_with_ignore_recipient_status_sends_nothing_quietly(settings):
    settings.ANYMAIL = {"IGNORE_RECIPIENT_STATUS": True}
    suppression_add(address="bob@example.com")
    message = AnymailMessage("s", "b", "from@example.com", ["bob@example.com"])
    assert test_backend.EmailBackend().send_messages([message]) == 0
    assert Message.objects.get().status == MessageStatus.SUPPRESSED


def test_expired_suppression_does_not_apply():
    suppression_add(address="bob@example.com", expires_at=timezone.now() - timedelta(minutes=1))
    message = AnymailMessage("s", "b", "from@example.com", ["bob@example.com"])
    assert test_backend.EmailBackend().send_messages([message]) == 1


def test_suppression_scoped_to_another_esp_does_not_apply():
    suppression_add(address="bob@example.com", esp="mailgun")
    message = AnymailMessage("s", "b", "from@example.com", ["bob@example.com"])
    assert test_backend.EmailBackend().send_messages([message]) == 1
    suppression_add(address="bob@example.com", esp="test")
    with pytest.raises(AnymailRecipientsRefused):
        test_backend.EmailBackend().send_messages(
            [AnymailMessage("s", "b", "from@example.com", ["bob@example.com"])]
        )


def test_suppressed_cc_and_bcc_are_dropped_too():
    suppression_add(address="cc@example.com")
    suppression_add(address="bcc@example.com")
    message = AnymailMessage(
        "s",
        "b",
        "from@example.com",
        ["to@example.com"],
        cc=["cc@example.com"],
        bcc=["bcc@example.com"],
    )
    test_backend.EmailBackend().send_messages([message])
    assert "cc" not in message.anymail_send_params
    assert "bcc" not in message.anymail_send_params


def test_suppression_add_normalizes_and_updates():
    suppression_add(address=" Bob@Example.COM ", reason="bounced")
    suppression_add(address="bob@example.com", reason="complained", note="second")
    (suppression,) = Suppression.objects.all()
    assert (suppression.address, suppression.reason, suppression.note) == (
        "bob@example.com",
        "complained",
        "second",
    )
    assert suppression_remove(address="BOB@example.com") == 1
    assert not Suppression.objects.exists()


def test_suppression_add_rejects_non_address():
    with pytest.raises(ValueError, match="Not an email address"):
        suppression_add(address="nobody")


# Resending


def test_resend_records_a_new_message_linked_to_the_original(admin_user):
    from sending.services import message_resend

    original = full_message()
    test_backend.EmailBackend().send_messages([original])
    first = Message.objects.get()
    resent = message_resend(record=first, requested_by=admin_user)
    assert resent.pk != first.pk
    assert (resent.resend_of, resent.requested_by, resent.status) == (first, admin_user, "sent")
    assert resent.subject == first.subject and resent.to == first.to
    assert resent.attachments.count() == 2


def test_resend_through_another_backend_still_applies_suppression():
    from sending.services import message_resend

    test_backend.EmailBackend().send_messages([full_message()])
    first = Message.objects.get()
    suppression_add(address="bob@example.com", reason="bounced")
    resent = message_resend(record=first, backend_path="sending.backends.sandbox.EmailBackend")
    assert resent.esp == "sandbox"
    statuses = dict(resent.recipients.values_list("address", "send_status"))
    assert statuses["bob@example.com"] == "suppressed"
    assert statuses["ann@example.com"] == "queued"
