"""The JSON status API: messages, recipients, events, suppressions and resend."""

import base64
import json
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import timezone
from rest_framework import serializers

from api.selectors import MESSAGE_DETAIL_FIELDS, MESSAGE_FIELDS
from api.serializers import (
    AttachmentSerializer,
    MessageDetailSerializer,
    MessageRecipientSerializer,
    MessageSerializer,
    RecipientSerializer,
    TimelineEventSerializer,
)
from api.services import api_key_create
from sending.backends import test as test_backend
from sending.backends.sandbox import EmailBackend as SandboxBackend
from sending.message import AnymailMessage
from sending.models import Message, Recipient, StoredAttachment, Suppression
from sending.services import suppression_add
from tracking.models import Event

pytestmark = pytest.mark.django_db

TEST_BACKEND = "sending.backends.test.EmailBackend"
SANDBOX_BACKEND = "sending.backends.sandbox.EmailBackend"


@pytest.fixture
def operator():
    return get_user_model().objects.create_user("operator", password="x")


@pytest.fixture
def api(client, operator):
    """A client sending a read+write API key."""
    _key, raw = api_key_create(name="ops", scopes=["read", "write"], created_by=operator)
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    return client


@pytest.fixture
def read_only_api(client):
    _key, raw = api_key_create(name="dashboards", scopes=["read"])
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {raw}"
    return client


@pytest.fixture
def sent():
    """Two sandbox sends (recorded, with their tracking events)."""
    invoice = AnymailMessage(
        "Invoice 1", "Your invoice", "shop@example.com", ["Ann <Ann@Example.com>"]
    )
    invoice.tags = ["billing", "monthly"]
    invoice.attach("invoice.txt", b"total: 12", "text/plain")
    greeting = AnymailMessage(
        "Greetings", "Hello", "shop@example.com", ["bob+open@example.com", "x+rejected@example.com"]
    )
    greeting.tags = ["welcome"]
    SandboxBackend().send_messages([invoice, greeting])
    return {
        "invoice": Message.objects.get(subject="Invoice 1"),
        "greeting": Message.objects.get(subject="Greetings"),
    }


def post_json(client, url, data):
    return client.post(url, json.dumps(data), content_type="application/json")


def ids(response):
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


# ---------------------------------------------------------------------------
# Messages


def test_message_list_shows_status_recipients_and_counts(api, sent):
    response = api.get("/api/messages/")
    assert response.status_code == 200
    body = response.json()
    assert [row["subject"] for row in body["results"]] == ["Greetings", "Invoice 1"]
    greeting = body["results"][0]
    assert greeting["status"] == "sent"
    assert {r["address"]: r["send_status"] for r in greeting["recipients"]} == {
        "bob+open@example.com": "queued",
        "x+rejected@example.com": "rejected",
    }
    bob = next(r for r in greeting["recipients"] if r["address"].startswith("bob"))
    assert bob["status"] == "opened" and bob["delivered_at"] and bob["open_count"] == 1
    assert greeting["counts"] == {
        "recipients": 2,
        "accepted": 1,
        "suppressed": 0,
        "refused": 1,
        "failed": 0,
        "delivered": 1,
        "bounced": 0,
        "complained": 0,
        "opened": 1,
        "clicked": 0,
        "opens": 1,
        "clicks": 0,
    }
    assert "body" not in greeting


def test_message_list_query_count_does_not_grow_with_the_page(
    api, sent, django_assert_max_num_queries
):
    SandboxBackend().send_messages(
        [
            AnymailMessage(f"More {i}", "b", "shop@example.com", [f"m{i}@example.com"])
            for i in range(5)
        ]
    )
    # key lookup + last_used_at touch + page + its recipients
    with django_assert_max_num_queries(4):
        assert len(ids(api.get("/api/messages/"))) == 7


def test_status_lookups_make_a_fixed_number_of_queries(api, sent, django_assert_num_queries):
    invoice = sent["invoice"]
    assert api.get("/api/messages/").status_code == 200  # notes the key's last use
    # key lookup + page + its recipients
    with django_assert_num_queries(3):
        assert ids(api.get("/api/messages/", {"recipient": "ann@example.com"})) == [invoice.pk]
    esp_message_id = invoice.recipients.get().esp_message_id
    with django_assert_num_queries(3):
        assert ids(api.get("/api/messages/", {"esp_message_id": esp_message_id})) == [invoice.pk]
    # key lookup + page
    with django_assert_num_queries(2):
        assert len(ids(api.get("/api/recipients/", {"address": "ann@example.com"}))) == 1
    # key lookup + message + recipients + attachments + events
    with django_assert_num_queries(5):
        assert api.get(f"/api/messages/{invoice.pk}/").status_code == 200


def plain_serializer(model, fields):
    """DRF's ModelSerializer for fields of model: what the status lookups' rows must show."""
    meta = type("Meta", (), {"model": model, "fields": list(fields)})
    return type("PlainSerializer", (serializers.ModelSerializer,), {"Meta": meta})


@pytest.mark.parametrize("time_zone", ["UTC", "America/Sao_Paulo"])
def test_status_rows_are_shown_as_model_serializers_show_instances(api, sent, settings, time_zone):
    settings.TIME_ZONE = time_zone
    invoice, greeting = sent["invoice"], sent["greeting"]
    Message.objects.filter(pk=invoice.pk).update(
        resend_of=greeting, send_at=timezone.now(), track_opens=True, error="x"
    )
    body = api.get(f"/api/messages/{invoice.pk}/").json()
    assert list(body) == MessageDetailSerializer.Meta.fields

    message = plain_serializer(Message, [*MESSAGE_FIELDS, *MESSAGE_DETAIL_FIELDS])
    expected = message(Message.objects.get(pk=invoice.pk)).data
    assert {name: body[name] for name in expected} == expected
    recipient = plain_serializer(Recipient, MessageRecipientSerializer.Meta.fields)
    assert body["recipients"] == recipient(invoice.recipients.all(), many=True).data
    event = plain_serializer(Event, TimelineEventSerializer.Meta.fields)
    events = Event.objects.filter(pk__in=[e["id"] for e in body["events"]]).order_by(
        "timestamp", "id"
    )
    assert body["events"] == event(events, many=True).data
    attachment = plain_serializer(StoredAttachment, AttachmentSerializer.Meta.fields[:-1])
    [shown] = body["attachments"]
    assert shown == {**attachment(invoice.attachments.get()).data, "stored": True}

    [listed] = api.get("/api/messages/", {"id": invoice.pk}).json()["results"]
    assert listed == {name: body[name] for name in MessageSerializer.Meta.fields}
    rows = api.get("/api/recipients/", {"message": greeting.pk}).json()["results"]
    recipients = greeting.recipients.order_by("-id")
    assert (
        rows
        == plain_serializer(Recipient, RecipientSerializer.Meta.fields)(recipients, many=True).data
    )


def test_messages_filter_by_esp_message_id_of_message_or_recipient(api, sent):
    invoice = sent["invoice"]
    recipient_id = invoice.recipients.get().esp_message_id
    assert ids(api.get("/api/messages/", {"esp_message_id": recipient_id})) == [invoice.pk]
    Message.objects.filter(pk=invoice.pk).update(esp_message_id="<batch-1@esp>")
    assert ids(api.get("/api/messages/", {"esp_message_id": "<batch-1@esp>"})) == [invoice.pk]
    assert ids(api.get("/api/messages/", {"esp_message_id": "<nope@esp>"})) == []


def test_messages_filter_by_recipient_address_ignores_case(api, sent):
    assert ids(api.get("/api/messages/", {"recipient": "ANN@example.com"})) == [sent["invoice"].pk]


def test_messages_filter_by_recipient_pages_newest_first_each_message_once(api, sent):
    SandboxBackend().send_messages(
        [
            AnymailMessage(f"News {i}", "b", "shop@example.com", ["fan@example.com"])
            for i in range(3)
        ]
        + [
            AnymailMessage(
                "Twice", "b", "shop@example.com", ["fan@example.com"], bcc=["FAN@example.com"]
            )
        ]
    )
    newest_first = list(
        Message.objects.filter(recipients__address="fan@example.com")
        .distinct()
        .order_by("-id")
        .values_list("id", flat=True)
    )
    assert len(newest_first) == 4
    assert ids(api.get("/api/messages/", {"recipient": "fan@example.com"})) == newest_first

    seen, page = [], api.get("/api/messages/", {"recipient": "fan@example.com", "page_size": 1})
    while True:
        seen += ids(page)
        if not page.json()["next"]:
            break
        page = api.get(page.json()["next"])
    assert seen == newest_first
    previous = api.get(page.json()["previous"])
    assert ids(previous) == newest_first[-2:-1]


def test_messages_filter_by_recipient_combines_with_other_filters(api, sent):
    greeting = sent["greeting"]
    params = {"recipient": "bob+open@example.com", "esp": "sandbox", "tag": "welcome"}
    assert ids(api.get("/api/messages/", params)) == [greeting.pk]
    assert ids(api.get("/api/messages/", {**params, "status": "failed"})) == []


def test_messages_filter_by_status_esp_tag_and_id(api, sent):
    invoice, greeting = sent["invoice"], sent["greeting"]
    Message.objects.filter(pk=invoice.pk).update(status="failed")
    assert ids(api.get("/api/messages/", {"status": "failed"})) == [invoice.pk]
    assert ids(api.get("/api/messages/", {"esp": "sandbox"})) == [greeting.pk, invoice.pk]
    assert ids(api.get("/api/messages/", {"esp": "mailgun"})) == []
    assert ids(api.get("/api/messages/", {"tag": "monthly"})) == [invoice.pk]
    assert ids(api.get("/api/messages/", {"tag": "welcome", "esp": "sandbox"})) == [greeting.pk]
    assert ids(api.get("/api/messages/", {"tag": "month"})) == []
    assert ids(api.get("/api/messages/", {"id": greeting.pk})) == [greeting.pk]


def test_messages_filter_by_created_date_range(api, sent):
    invoice = sent["invoice"]
    old = timezone.now() - timedelta(days=10)
    Message.objects.filter(pk=invoice.pk).update(created_at=old)
    before = (old + timedelta(days=1)).isoformat()
    assert ids(api.get("/api/messages/", {"created_before": before})) == [invoice.pk]
    assert ids(api.get("/api/messages/", {"created_after": before})) == [sent["greeting"].pk]
    day = (old - timedelta(days=1)).date().isoformat()
    assert ids(api.get("/api/messages/", {"created_after": day, "created_before": before})) == [
        invoice.pk
    ]


@pytest.mark.parametrize(
    "params, field",
    [
        ({"status": "lost"}, "status"),
        ({"created_after": "last tuesday"}, "created_after"),
        ({"created_before": "2026-13-45"}, "created_before"),
        ({"id": "abc"}, "id"),
        ({"id": str(2**70)}, "id"),
        ({"resend_of": "-1"}, "resend_of"),
    ],
)
def test_malformed_message_filters_are_400_naming_the_filter(api, sent, params, field):
    response = api.get("/api/messages/", params)
    assert response.status_code == 400
    assert field in response.json()


def test_message_pages_follow_the_cursor(api, sent):
    first = api.get("/api/messages/", {"page_size": 1}).json()
    assert [row["subject"] for row in first["results"]] == ["Greetings"]
    second = api.get(first["next"]).json()
    assert [row["subject"] for row in second["results"]] == ["Invoice 1"]
    assert second["next"] is None


def test_a_bad_cursor_is_a_json_404(api, sent):
    response = api.get("/api/messages/", {"cursor": "garbage"})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid cursor"}


@pytest.mark.parametrize(
    "params, position",
    [
        ({"recipient": "ann@example.com"}, "2026-01-01 00:00:00+00:00"),  # pages by id
        ({}, "yesterday"),  # pages by created_at
    ],
)
def test_a_cursor_whose_position_does_not_fit_the_order_is_a_json_404(api, sent, params, position):
    cursor = base64.b64encode(urlencode({"p": position}).encode()).decode()
    response = api.get("/api/messages/", {**params, "cursor": cursor})
    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid cursor"}


def test_message_detail_has_timeline_and_attachments(api, sent):
    invoice = sent["invoice"]
    response = api.get(f"/api/messages/{invoice.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == invoice.pk and body["status"] == "sent"
    assert body["attachments"] == [
        {
            "filename": "invoice.txt",
            "mimetype": "text/plain",
            "size": 9,
            "inline": False,
            "content_id": "",
            "sha256": invoice.attachments.get().sha256,
            "stored": True,
        }
    ]
    events = body["events"]
    assert events and {e["recipient_address"] for e in events} == {"ann@example.com"}
    assert events[0]["event_type"] == "delivered"
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)


def test_message_detail_includes_events_not_linked_yet(api, sent):
    invoice = sent["invoice"]
    recipient = invoice.recipients.get()
    Event.objects.filter(recipient=recipient).update(recipient=None)
    events = api.get(f"/api/messages/{invoice.pk}/").json()["events"]
    assert events and all(e["recipient"] is None for e in events)


@pytest.mark.parametrize("path", ["999999", "abc", str(2**70), "1.5"])
def test_unknown_message_ids_are_json_404s(api, sent, path):
    response = api.get(f"/api/messages/{path}/")
    assert response.status_code == 404
    assert response.json()["detail"]


def test_unknown_api_urls_are_json_404s(api):
    response = api.get("/api/nothing-here/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_methods_an_endpoint_lacks_are_405(api, sent):
    response = post_json(api, "/api/messages/", {"subject": "x"})
    assert response.status_code == 405
    assert response.json()["detail"]


# ---------------------------------------------------------------------------
# Recipients and events


def test_recipient_list_and_filters(api, sent):
    invoice = sent["invoice"]
    ann = invoice.recipients.get()
    assert ids(api.get("/api/recipients/", {"address": "Ann@example.com"})) == [ann.pk]
    assert ids(api.get("/api/recipients/", {"esp_message_id": ann.esp_message_id})) == [ann.pk]
    rejected = Recipient.objects.get(address="x+rejected@example.com")
    assert ids(api.get("/api/recipients/", {"send_status": "rejected"})) == [rejected.pk]
    opened = Recipient.objects.filter(status="opened").order_by("-id")
    assert "bob+open@example.com" in {r.address for r in opened}
    assert ids(api.get("/api/recipients/", {"status": "opened", "esp": "sandbox"})) == [
        r.pk for r in opened
    ]
    assert ids(api.get("/api/recipients/", {"message": invoice.pk})) == [ann.pk]
    row = api.get(f"/api/recipients/{ann.pk}/").json()
    assert row["message"] == invoice.pk and row["delivered_at"]


@pytest.mark.parametrize(
    "params", [{"send_status": "lost"}, {"status": "sent-ish"}, {"message": "x"}]
)
def test_malformed_recipient_filters_are_400(api, params):
    response = api.get("/api/recipients/", params)
    assert response.status_code == 400
    assert list(response.json()) == list(params)


def test_unknown_recipient_is_404(api):
    assert api.get("/api/recipients/123456/").status_code == 404


def test_event_list_and_filters(api, sent):
    ann = sent["invoice"].recipients.get()
    events = api.get("/api/events/", {"recipient": "ANN@example.com"}).json()["results"]
    assert events and {e["message"] for e in events} == {sent["invoice"].pk}
    assert ids(api.get("/api/events/", {"message_id": ann.esp_message_id})) == [
        e["id"] for e in events
    ]
    all_opened = list(Event.objects.filter(event_type="opened").order_by("-id"))
    assert ids(api.get("/api/events/", {"event_type": "opened", "esp": "sandbox"})) == [
        e.pk for e in all_opened
    ]
    opened = Event.objects.get(event_type="opened", recipient_address="bob+open@example.com")
    assert ids(
        api.get("/api/events/", {"message": sent["greeting"].pk, "event_type": "opened"})
    ) == [opened.pk]
    later = (timezone.now() + timedelta(days=1)).isoformat()
    assert ids(api.get("/api/events/", {"timestamp_after": later})) == []
    assert len(ids(api.get("/api/events/", {"timestamp_before": later}))) == Event.objects.count()
    detail = api.get(f"/api/events/{opened.pk}/").json()
    assert detail["esp_event"]["event"] == "opened" and detail["webhook_call"]


def test_unlinked_events_have_no_message(api, sent):
    Event.objects.update(recipient=None)
    rows = api.get("/api/events/").json()["results"]
    assert rows and all(row["message"] is None for row in rows)


@pytest.mark.parametrize(
    "params", [{"event_type": "exploded"}, {"timestamp_after": "yesterday"}, {"message": "1e3"}]
)
def test_malformed_event_filters_are_400(api, params):
    response = api.get("/api/events/", params)
    assert response.status_code == 400
    assert list(response.json()) == list(params)


# ---------------------------------------------------------------------------
# Suppressions


def test_create_suppression_normalizes_and_records_who(api, operator):
    response = post_json(
        api,
        "/api/suppressions/",
        {"address": "Someone@Example.com", "reason": "complained", "note": "by phone"},
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["address"], body["reason"], body["esp"], body["source"], body["active"]) == (
        "someone@example.com",
        "complained",
        "",
        "manual",
        True,
    )
    suppression = Suppression.objects.get()
    assert suppression.created_by == operator and suppression.note == "by phone"


def test_creating_an_existing_suppression_updates_it(api):
    suppression_add(address="a@example.com", reason="bounced")
    response = post_json(api, "/api/suppressions/", {"address": "a@example.com", "esp": ""})
    assert response.status_code == 201
    assert Suppression.objects.get().reason == "manual"


@pytest.mark.parametrize(
    "data, field",
    [
        ({"address": "not an address"}, "address"),
        ({}, "address"),
        ({"address": "a@example.com", "reason": "annoyed"}, "reason"),
        ({"address": "a@example.com", "expires_at": "soon"}, "expires_at"),
        ({"address": "a@example.com", "esp": "x" * 51}, "esp"),
        ({"address": ("a" * 320) + "@example.com"}, "address"),
    ],
)
def test_bad_suppressions_are_400_naming_the_field(api, data, field):
    response = post_json(api, "/api/suppressions/", data)
    assert response.status_code == 400
    assert field in response.json()
    assert not Suppression.objects.exists()


def test_bad_json_is_400(api):
    response = api.post("/api/suppressions/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_a_json_list_body_is_400(api):
    response = post_json(api, "/api/suppressions/", ["a@example.com"])
    assert response.status_code == 400


def test_form_bodies_are_415(api):
    response = api.post("/api/suppressions/", {"address": "a@example.com"})
    assert response.status_code == 415
    assert response.json()["detail"]


def test_list_filter_and_delete_suppressions(api):
    kept = suppression_add(address="keep@example.com", reason="bounced")
    gone = suppression_add(address="gone@example.com", reason="manual", esp="mailgun")
    suppression_add(
        address="old@example.com", reason="manual", expires_at=timezone.now() - timedelta(days=1)
    )
    assert ids(api.get("/api/suppressions/", {"address": "KEEP@example.com"})) == [kept.pk]
    assert ids(api.get("/api/suppressions/", {"esp": "mailgun"})) == [gone.pk]
    assert ids(api.get("/api/suppressions/", {"reason": "bounced"})) == [kept.pk]
    assert len(ids(api.get("/api/suppressions/", {"active": "true"}))) == 2
    assert len(ids(api.get("/api/suppressions/", {"active": "false"}))) == 1
    assert api.get(f"/api/suppressions/{kept.pk}/").json()["address"] == "keep@example.com"
    response = api.delete(f"/api/suppressions/{gone.pk}/")
    assert response.status_code == 204
    assert set(Suppression.objects.values_list("address", flat=True)) == {
        "keep@example.com",
        "old@example.com",
    }
    assert api.delete(f"/api/suppressions/{gone.pk}/").status_code == 404


def test_bad_suppression_filter_is_400(api):
    assert api.get("/api/suppressions/", {"reason": "annoyed"}).status_code == 400


# ---------------------------------------------------------------------------
# Resend


@pytest.fixture
def sent_with_test_backend():
    message = AnymailMessage(
        "Receipt", "Thanks", "shop@example.com", ["a@example.com", "b@example.com"]
    )
    test_backend.EmailBackend().send_messages([message])
    mail.outbox.clear()
    return Message.objects.get(subject="Receipt")


def test_resend_sends_a_new_linked_message(api, operator, sent_with_test_backend):
    original = sent_with_test_backend
    response = post_json(api, f"/api/messages/{original.pk}/resend/", {})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["resend_of"] == original.pk and body["status"] == "sent"
    new = Message.objects.get(pk=body["id"])
    assert new.backend == TEST_BACKEND and new.requested_by == operator
    assert len(mail.outbox) == 1


def test_resend_through_the_sandbox(api, sent_with_test_backend):
    response = post_json(
        api, f"/api/messages/{sent_with_test_backend.pk}/resend/", {"backend": SANDBOX_BACKEND}
    )
    assert response.status_code == 201
    assert response.json()["esp"] == "sandbox"
    assert not mail.outbox


def test_resend_backends_come_from_the_setting(api, sent, settings):
    original = sent["invoice"]
    url = f"/api/messages/{original.pk}/resend/"
    response = post_json(api, url, {"backend": TEST_BACKEND})
    assert response.status_code == 400
    assert SANDBOX_BACKEND in response.json()["backend"][0]
    assert not Message.objects.filter(resend_of=original).exists()

    settings.MAILHUB = {**settings.MAILHUB, "RESEND_BACKENDS": [TEST_BACKEND]}
    response = post_json(api, url, {"backend": TEST_BACKEND})
    assert response.status_code == 201
    assert response.json()["backend"] == TEST_BACKEND


def test_resend_never_sends_to_a_suppressed_address(api, sent_with_test_backend):
    suppression_add(address="b@example.com", reason="bounced")
    response = post_json(api, f"/api/messages/{sent_with_test_backend.pk}/resend/", {})
    assert response.status_code == 201
    statuses = {r["address"]: r["send_status"] for r in response.json()["recipients"]}
    assert statuses == {"a@example.com": "sent", "b@example.com": "suppressed"}
    [sent_email] = mail.outbox
    assert [a.addr_spec for a in sent_email.anymail_send_params["to"]] == ["a@example.com"]


def test_resend_to_only_suppressed_addresses_is_409_and_sends_nothing(api, sent_with_test_backend):
    suppression_add(address="a@example.com", reason="bounced")
    suppression_add(address="b@example.com", reason="complained")
    response = post_json(api, f"/api/messages/{sent_with_test_backend.pk}/resend/", {})
    assert response.status_code == 409
    body = response.json()
    assert body["detail"] and body["message"]["status"] == "suppressed"
    assert not mail.outbox


def test_resend_esp_failure_is_502_with_the_failed_record(api, sent):
    original = sent["invoice"]
    Message.objects.filter(pk=original.pk).update(esp_extra={"sandbox_error": 503})
    response = post_json(api, f"/api/messages/{original.pk}/resend/", {})
    assert response.status_code == 502
    body = response.json()
    assert "503" in body["detail"]
    assert body["message"]["status"] == "failed" and body["message"]["resend_of"] == original.pk


def test_resend_without_stored_content_is_409(api, sent):
    original = sent["invoice"]
    Message.objects.filter(pk=original.pk).update(content_stored=False)
    response = post_json(api, f"/api/messages/{original.pk}/resend/", {})
    assert response.status_code == 409
    assert "without its content" in response.json()["detail"]
    assert not Message.objects.filter(resend_of=original).exists()


def test_resend_through_an_unusable_backend_is_400(api, sent, settings):
    settings.MAILHUB = {
        **settings.MAILHUB,
        "RESEND_BACKENDS": ["sending.backends.nope.EmailBackend"],
    }
    response = post_json(
        api,
        f"/api/messages/{sent['invoice'].pk}/resend/",
        {"backend": "sending.backends.nope.EmailBackend"},
    )
    assert response.status_code == 400
    assert "Can't resend through" in response.json()["detail"]


def test_resend_of_an_unknown_message_is_404(api):
    assert post_json(api, "/api/messages/424242/resend/", {}).status_code == 404


def test_resend_with_bad_json_is_400(api, sent):
    response = api.post(
        f"/api/messages/{sent['invoice'].pk}/resend/", "{", content_type="application/json"
    )
    assert response.status_code == 400
    assert not Message.objects.filter(resend_of=sent["invoice"]).exists()


def test_resend_needs_the_write_scope(read_only_api, sent):
    response = post_json(read_only_api, f"/api/messages/{sent['invoice'].pk}/resend/", {})
    assert response.status_code == 403
    assert "write" in response.json()["detail"]
    assert not Message.objects.filter(resend_of=sent["invoice"]).exists()


def test_read_scope_cannot_change_suppressions(read_only_api):
    suppression = suppression_add(address="a@example.com")
    assert (
        post_json(read_only_api, "/api/suppressions/", {"address": "b@example.com"}).status_code
        == 403
    )
    assert read_only_api.delete(f"/api/suppressions/{suppression.pk}/").status_code == 403
    assert list(Suppression.objects.values_list("address", flat=True)) == ["a@example.com"]
    assert read_only_api.get("/api/suppressions/").status_code == 200
