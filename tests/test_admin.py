"""Admin, first cut: sent mail is searchable, filterable and read-only."""

import pytest
from django.urls import reverse

from sending.backends.sandbox import EmailBackend
from sending.message import AnymailMessage
from sending.models import Message, Recipient

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent():
    messages = [
        AnymailMessage("Invoice 1", "b", "shop@example.com", ["ann@example.com"]),
        AnymailMessage(
            "Greetings", "b", "shop@example.com", ["bob@example.com", "x+rejected@example.com"]
        ),
    ]
    EmailBackend().send_messages(messages)
    return messages


def test_message_changelist_searches_by_recipient(admin_client, sent):
    response = admin_client.get(
        reverse("admin:sending_message_changelist"), {"q": "bob@example.com"}
    )
    assert response.status_code == 200
    assert b"Greetings" in response.content
    assert b"Invoice 1" not in response.content


def test_message_changelist_searches_by_esp_message_id(admin_client, sent):
    esp_id = sent[0].anymail_status.message_id
    response = admin_client.get(reverse("admin:sending_message_changelist"), {"q": esp_id})
    assert b"Invoice 1" in response.content
    assert b"Greetings" not in response.content


def test_message_changelist_filters_by_status_and_esp(admin_client, sent):
    url = reverse("admin:sending_message_changelist")
    response = admin_client.get(url, {"status__exact": "sent", "esp__exact": "sandbox"})
    assert response.status_code == 200
    assert b"Invoice 1" in response.content


def test_message_page_shows_recipients_and_is_read_only(admin_client, sent):
    record = Message.objects.get(subject="Greetings")
    response = admin_client.get(reverse("admin:sending_message_change", args=[record.pk]))
    assert response.status_code == 200
    assert b"x+rejected@example.com" in response.content
    assert b'name="_save"' not in response.content


def test_sent_mail_cannot_be_added_or_changed(admin_client, sent):
    record = Message.objects.first()
    assert admin_client.get(reverse("admin:sending_message_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:sending_message_change", args=[record.pk]), {"subject": "edited"}
    )
    assert response.status_code == 403
    record.refresh_from_db()
    assert record.subject != "edited"


def test_recipient_changelist_filters_by_send_status(admin_client, sent):
    response = admin_client.get(
        reverse("admin:sending_recipient_changelist"), {"send_status__exact": "rejected"}
    )
    assert b"x+rejected@example.com" in response.content
    assert b"ann@example.com" not in response.content
    assert Recipient.objects.count() == 3


def test_suppression_added_in_admin_is_normalized(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:sending_suppression_add"),
        {
            "address": "Bob@Example.com",
            "esp": "",
            "reason": "manual",
            "source": "manual",
            "note": "",
        },
    )
    assert response.status_code == 302
    from sending.models import Suppression

    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.created_by) == ("bob@example.com", admin_user)


def test_anonymous_user_is_sent_to_login(client):
    response = client.get(reverse("admin:sending_message_changelist"))
    assert response.status_code == 302
    assert "/login/" in response["Location"]
