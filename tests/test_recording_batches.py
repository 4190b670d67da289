"""send_messages() records in chunks: before each chunk's first ESP call, outcomes together.

Whatever the chunking, what callers and receivers see is what sending one
message at a time gives: records before ESP calls, outcomes recorded before
post_send, and the first error that isn't silenced stops the send there.
"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sending import signals
from sending.backends import test as test_backend
from sending.exceptions import AnymailAPIError, AnymailInvalidAddress, AnymailRecipientsRefused
from sending.message import AnymailMessage, AnymailRecipientStatus
from sending.models import Message, MessageStatus, Recipient, SendStatus
from sending.services import RECORD_ID_ATTR, suppression_add

pytestmark = pytest.mark.django_db


def messages(count: int) -> list[AnymailMessage]:
    return [
        AnymailMessage(f"Message {i}", "Body", "shop@example.com", [f"user{i}@example.com"])
        for i in range(count)
    ]


def statuses_by_subject() -> dict[str, str]:
    return dict(Message.objects.values_list("subject", "status"))


class ObservingBackend(test_backend.EmailBackend):
    """Notes, at each ESP call, which messages are recorded and in what status."""

    calls: list[dict[str, str]] = []

    def post_to_esp(self, payload, message):
        ObservingBackend.calls.append(statuses_by_subject())
        return super().post_to_esp(payload, message)


@pytest.fixture
def batch_settings(settings):
    def apply(size: int, flush_seconds: float = 1.0) -> None:
        settings.MAILHUB = {
            **settings.MAILHUB,
            "RECORD_BATCH_SIZE": size,
            "RECORD_FLUSH_SECONDS": flush_seconds,
        }

    return apply


def test_a_chunk_is_recorded_before_its_first_esp_call(batch_settings):
    batch_settings(2)
    ObservingBackend.calls = []
    assert ObservingBackend().send_messages(messages(3)) == 3
    first, second, third = ObservingBackend.calls
    # Chunk one: both records written before the first call.
    assert first == {"Message 0": "sending", "Message 1": "sending"}
    assert second == {"Message 0": "sending", "Message 1": "sending"}
    # Chunk two starts after chunk one's outcomes are recorded.
    assert third == {"Message 0": "sent", "Message 1": "sent", "Message 2": "sending"}
    assert set(statuses_by_subject().values()) == {"sent"}
    assert Recipient.objects.filter(send_status=SendStatus.SENT).count() == 3


def test_a_chunk_writes_each_table_once(batch_settings):
    batch_settings(50)
    with CaptureQueriesContext(connection) as queries:
        test_backend.EmailBackend().send_messages(messages(20))
    # executemany() is logged once, as "<n> times: <sql>".
    statements = [q["sql"].split(" times: ")[-1] for q in queries]
    inserts = [sql for sql in statements if sql.startswith("INSERT")]
    updates = [sql for sql in statements if sql.startswith("UPDATE")]
    selects = [sql for sql in statements if sql.startswith("SELECT")]
    # Messages (one multi-row statement), recipients (one statement run per row).
    assert len(inserts) == 2
    assert 'INTO "sending_message"' in inserts[0]
    assert 'INTO "sending_recipient"' in inserts[1]
    # Outcomes: messages, then recipients, each one statement for the chunk.
    assert len(updates) == 2
    assert len(selects) == 2  # the suppression list, once; orphan events, once
    assert Message.objects.filter(status=MessageStatus.SENT).count() == 20


def test_post_send_sees_its_outcome_recorded(batch_settings):
    batch_settings(10)
    seen = []

    def receiver(sender, message, status, esp_name, **kwargs):
        seen.append(Message.objects.get(pk=getattr(message, RECORD_ID_ATTR)).status)

    signals.post_send.connect(receiver)
    try:
        test_backend.EmailBackend().send_messages(messages(3))
    finally:
        signals.post_send.disconnect(receiver)
    assert seen == ["sent", "sent", "sent"]


def test_outcomes_are_written_as_time_passes(batch_settings):
    batch_settings(10, flush_seconds=0)
    ObservingBackend.calls = []
    ObservingBackend().send_messages(messages(3))
    assert ObservingBackend.calls[2] == {
        "Message 0": "sent",
        "Message 1": "sent",
        "Message 2": "sending",
    }


def test_esp_error_stops_the_send_after_recording_what_went_before(batch_settings):
    batch_settings(10)
    batch = messages(5)
    batch[2].test_response = AnymailAPIError("Domain not found")
    sent_signals = []
    signals.post_send.connect(receiver := lambda message, **kwargs: sent_signals.append(message))
    try:
        with pytest.raises(AnymailAPIError, match="Domain not found"):
            test_backend.EmailBackend().send_messages(batch)
    finally:
        signals.post_send.disconnect(receiver)
    # As one at a time: 0 and 1 sent, 2 failed, 3 and 4 never handed over.
    assert statuses_by_subject() == {
        "Message 0": "sent",
        "Message 1": "sent",
        "Message 2": "failed",
    }
    assert "Domain not found" in Message.objects.get(subject="Message 2").error
    assert sent_signals == batch[:2]
    assert not hasattr(batch[3], RECORD_ID_ATTR)
    assert Recipient.objects.count() == 3


def test_esp_error_with_fail_silently_goes_on(batch_settings):
    batch_settings(10)
    batch = messages(4)
    batch[1].test_response = AnymailAPIError("Domain not found")
    assert test_backend.EmailBackend(fail_silently=True).send_messages(batch) == 3
    assert statuses_by_subject() == {
        "Message 0": "sent",
        "Message 1": "failed",
        "Message 2": "sent",
        "Message 3": "sent",
    }


def test_unexpected_error_is_recorded_and_stops_the_send(batch_settings):
    batch_settings(10)
    batch = messages(3)
    batch[1].test_response = TimeoutError("read timed out")
    with pytest.raises(TimeoutError):
        test_backend.EmailBackend(fail_silently=True).send_messages(batch)
    assert statuses_by_subject() == {"Message 0": "sent", "Message 1": "failed"}


def test_invalid_address_stops_before_recording_that_message(batch_settings):
    batch_settings(10)
    batch = messages(4)
    batch[2].to = ["not an address"]
    with pytest.raises(AnymailInvalidAddress):
        test_backend.EmailBackend().send_messages(batch)
    assert statuses_by_subject() == {"Message 0": "sent", "Message 1": "sent"}


def test_invalid_address_with_fail_silently_skips_that_message(batch_settings):
    batch_settings(10)
    batch = messages(4)
    batch[2].to = ["not an address"]
    assert test_backend.EmailBackend(fail_silently=True).send_messages(batch) == 3
    assert sorted(statuses_by_subject()) == ["Message 0", "Message 1", "Message 3"]


def test_refused_message_raises_after_its_post_send(batch_settings):
    batch_settings(10)
    batch = messages(3)
    batch[1].test_response = {
        "recipients": {"user1@example.com": AnymailRecipientStatus(None, "rejected")}
    }
    sent_signals = []
    signals.post_send.connect(receiver := lambda message, **kwargs: sent_signals.append(message))
    try:
        with pytest.raises(AnymailRecipientsRefused):
            test_backend.EmailBackend().send_messages(batch)
    finally:
        signals.post_send.disconnect(receiver)
    assert sent_signals == batch[:2]
    assert statuses_by_subject() == {"Message 0": "sent", "Message 1": "rejected"}


def test_post_send_error_is_raised_once_every_receiver_ran(batch_settings):
    batch_settings(10)
    seen = []

    def failing(sender, message, **kwargs):
        seen.append(message.subject)
        raise RuntimeError(f"receiver failed for {message.subject}")

    signals.post_send.connect(failing)
    try:
        with pytest.raises(RuntimeError, match="Message 0"):
            test_backend.EmailBackend().send_messages(messages(2))
    finally:
        signals.post_send.disconnect(failing)
    assert seen == ["Message 0", "Message 1"]
    assert set(statuses_by_subject().values()) == {"sent"}


def test_suppression_applies_to_every_message_of_a_chunk(batch_settings):
    batch_settings(10)
    suppression_add(address="user1@example.com")
    batch = messages(3)
    batch[2].cc = ["USER1@example.com"]
    with pytest.raises(AnymailRecipientsRefused):
        test_backend.EmailBackend().send_messages(batch)
    assert batch[1].anymail_status.status == {"suppressed"}
    assert Message.objects.get(subject="Message 1").status == MessageStatus.SUPPRESSED
    # The refusal stopped the send before message 2: not recorded.
    assert "Message 2" not in statuses_by_subject()


def test_suppressed_cc_in_a_later_message_is_dropped(batch_settings):
    batch_settings(10)
    suppression_add(address="user0@example.com")
    batch = messages(2)[1:] + messages(1)  # message 1, then message 0 (all suppressed)
    batch[0].cc = ["USER0@example.com"]
    assert test_backend.EmailBackend(fail_silently=True).send_messages(batch) == 1
    recipient = Recipient.objects.get(message__subject="Message 1", address="user0@example.com")
    assert recipient.send_status == SendStatus.SUPPRESSED
    assert batch[0].anymail_status.recipients["USER0@example.com"].status == "suppressed"


def test_unsent_records_leave_no_attachment_files(
    batch_settings, django_capture_on_commit_callbacks
):
    import hashlib

    from django.core.files.storage import default_storage

    from sending.models import StoredAttachment

    batch_settings(10)
    batch = messages(3)
    batch[0].test_response = AnymailAPIError("Domain not found")
    content = b"bytes only an unsent message has"
    batch[2].attach("only-here.txt", content, "text/plain")
    sha256 = hashlib.sha256(content).hexdigest()
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(AnymailAPIError):
            test_backend.EmailBackend().send_messages(batch)
    assert statuses_by_subject() == {"Message 0": "failed"}
    assert not StoredAttachment.objects.exists()
    assert not default_storage.exists(f"mailhub/attachments/{sha256[:2]}/{sha256}")
