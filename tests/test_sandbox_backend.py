"""The sandbox ESP: realistic statuses and ids, failures on request, no network."""

import re

import pytest

from sending.backends.sandbox import EmailBackend
from sending.exceptions import AnymailAPIError, AnymailRecipientsRefused
from sending.message import AnymailMessage
from sending.models import Message, MessageStatus

pytestmark = pytest.mark.django_db

MESSAGE_ID = re.compile(r"^<[0-9a-f]+\.[0-9a-f]{16}@sandbox\.mailhub>$")


def send(to, **kwargs):
    message = AnymailMessage("Hello", "Body", "from@example.com", to, **kwargs)
    EmailBackend().send_messages([message])
    return message


def test_each_recipient_is_queued_with_its_own_message_id():
    message = send(["a@example.com", "b@example.com"])
    statuses = message.anymail_status.recipients
    assert {s.status for s in statuses.values()} == {"queued"}
    ids = {s.message_id for s in statuses.values()}
    assert len(ids) == 2 and all(MESSAGE_ID.match(i) for i in ids)


@pytest.mark.parametrize(
    "tag, status", [("invalid", "invalid"), ("rejected", "rejected"), ("failed", "failed")]
)
def test_local_part_tag_makes_a_recipient_fail(tag, status):
    message = send(["ok@example.com", f"user+{tag}@example.com"])
    assert message.anymail_status.recipients[f"user+{tag}@example.com"].status == status
    assert message.anymail_status.recipients["ok@example.com"].status == "queued"
    record = Message.objects.get()
    assert record.recipients.get(address=f"user+{tag}@example.com").send_status == status


def test_every_recipient_refused_raises():
    with pytest.raises(AnymailRecipientsRefused):
        send(["user+rejected@example.com"])
    assert Message.objects.get().status == MessageStatus.REJECTED


def test_esp_extra_simulates_an_outage():
    with pytest.raises(AnymailAPIError, match="HTTP 503") as info:
        send(["a@example.com"], esp_extra={"sandbox_error": 503})
    assert info.value.status_code == 503
    record = Message.objects.get()
    assert record.status == MessageStatus.FAILED
    assert "HTTP 503" in record.error


def test_supports_every_anymail_feature():
    message = send(
        ["a@example.com"],
        tags=["t"],
        metadata={"k": "v"},
        template_id="tpl",
        merge_data={"a@example.com": {"n": 1}},
        merge_global_data={"g": 2},
        track_opens=True,
        track_clicks=True,
        envelope_sender="bounces@example.com",
    )
    assert message.anymail_send_params["template_id"] == "tpl"
    assert message.anymail_status.status == {"queued"}
