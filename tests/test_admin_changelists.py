"""Changelists for big tables: search, filters, read-only records, constant query counts."""

import html
import json

import pytest
from django.db import connection
from django.urls import reverse

from sending.admin_tools import EstimatedCountPaginator, postgres_row_estimate
from sending.models import Message, Recipient
from tests.admin_helpers import record_id, sandbox_send, staff_client
from tracking.models import Event, WebhookCall

pytestmark = pytest.mark.django_db

MESSAGES = reverse("admin:sending_message_changelist")
RECIPIENTS = reverse("admin:sending_recipient_changelist")
EVENTS = reverse("admin:tracking_event_changelist")
CALLS = reverse("admin:tracking_webhookcall_changelist")
SUPPRESSIONS = reverse("admin:sending_suppression_changelist")


@pytest.fixture
def mail():
    invoice = sandbox_send(
        "ann+open@example.com",
        subject="Invoice 1001",
        tags=["invoice"],
        metadata={"order_id": "A-42", "customer": 7},
    )
    welcome = sandbox_send(
        "bob+click@example.com", "cy+bounce@example.com", subject="Welcome aboard", tags=["welcome"]
    )
    return {"invoice": invoice, "welcome": welcome}


def results(response):
    assert response.status_code == 200, response.content[:500]
    return list(response.context["cl"].result_list)


def subjects(response):
    return sorted(message.subject for message in results(response))


# -- messages: search ------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ANN+open@Example.com", ["Invoice 1001"]),  # address, normalized
        ("to:cy+bounce@example.com", ["Welcome aboard"]),
        ("aboard", ["Welcome aboard"]),  # words of the subject
        ("Welcome aboard", ["Welcome aboard"]),
        ("subject:invoice", ["Invoice 1001"]),
        ("tag:welcome", ["Welcome aboard"]),
        ("invoice", ["Invoice 1001"]),  # a bare tag (and subject) also matches
        ("meta:order_id=A-42", ["Invoice 1001"]),
        ("meta:A-42", ["Invoice 1001"]),  # a metadata value under any key
        ("meta:customer=7", ["Invoice 1001"]),  # numbers match their text
        ("meta:order_id=nope", []),
        ("nobody@example.com", []),
    ],
)
def test_message_search(admin_client, mail, query, expected):
    assert subjects(admin_client.get(MESSAGES, {"q": query})) == expected


def test_message_search_by_esp_message_id_of_a_recipient(admin_client, mail):
    recipient = Recipient.objects.get(address="cy+bounce@example.com")
    for query in (recipient.esp_message_id, f"id:{recipient.esp_message_id}"):
        assert subjects(admin_client.get(MESSAGES, {"q": query})) == ["Welcome aboard"]


# -- messages: filters -----------------------------------------------------


def test_message_filters_by_status_esp_tag_and_date(admin_client, mail):
    today = Message.objects.first().created_at.date().isoformat()
    params = {"status__exact": "sent", "esp": "sandbox", "tag": "invoice", "created_at__gte": today}
    assert subjects(admin_client.get(MESSAGES, params)) == ["Invoice 1001"]
    assert subjects(admin_client.get(MESSAGES, {"created_at__lt": today})) == []
    assert subjects(admin_client.get(MESSAGES, {"esp": "mailgun"})) == []


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"created_at__gte": "yesterday"}, "created at from: 'yesterday' is not a date"),
        ({"created_at__lt": "2026-13-45"}, "created at before: '2026-13-45' is not a date"),
    ],
)
def test_malformed_date_filter_is_a_clear_400(admin_client, mail, params, message):
    response = admin_client.get(MESSAGES, params)
    assert response.status_code == 400
    assert message in html.unescape(response.content.decode())


def test_lookup_through_a_relation_is_refused(admin_client, mail):
    params = {"requested_by__password__startswith": "md5"}
    assert admin_client.get(MESSAGES, params).status_code == 400


def test_esp_filter_lists_known_esps_without_querying_the_table(admin_client, mail):
    response = admin_client.get(MESSAGES)
    esp_filter = next(spec for spec in response.context["cl"].filter_specs if spec.title == "ESP")
    keys = [value for value, _ in esp_filter.lookup_choices]
    assert {"sandbox", "mailgun", "amazon_ses", "postmark"} <= set(keys)


# -- query counts do not grow with rows --------------------------------------


@pytest.mark.parametrize("url", [MESSAGES, RECIPIENTS, EVENTS, CALLS, SUPPRESSIONS])
def test_changelist_queries_do_not_grow_with_rows(admin_client, url, django_assert_max_num_queries):
    for index in range(3):
        sandbox_send(f"few{index}+bounce@example.com", tags=["t"])
    with django_assert_max_num_queries(12) as few:
        assert admin_client.get(url).status_code == 200
    for index in range(25):
        sandbox_send(f"many{index}+bounce@example.com", f"more{index}@example.com", tags=["t"])
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert admin_client.get(url).status_code == 200


def test_message_changelist_loads_no_bodies(admin_client, mail):
    response = admin_client.get(MESSAGES)
    message = response.context["cl"].result_list[0]
    assert "body" in message.get_deferred_fields()
    assert "alternatives" in message.get_deferred_fields()


def test_changelists_skip_the_full_count():
    from sending.admin import MessageAdmin, RecipientAdmin
    from tracking.admin import EventAdmin, WebhookCallAdmin

    for model_admin in (MessageAdmin, RecipientAdmin, EventAdmin, WebhookCallAdmin):
        assert model_admin.show_full_result_count is False
        assert model_admin.paginator is EstimatedCountPaginator
        assert model_admin.list_per_page == 50


# -- recipients, events, webhook calls -------------------------------------


def test_recipient_search_and_filters(admin_client, mail):
    addresses = lambda response: sorted(r.address for r in results(response))  # noqa: E731
    assert addresses(admin_client.get(RECIPIENTS, {"q": "BOB+click@example.com"})) == [
        "bob+click@example.com"
    ]
    assert addresses(admin_client.get(RECIPIENTS, {"q": "tag:invoice"})) == ["ann+open@example.com"]
    assert addresses(admin_client.get(RECIPIENTS, {"q": "meta:A-42"})) == ["ann+open@example.com"]
    assert addresses(admin_client.get(RECIPIENTS, {"q": "aboard"})) == [
        "bob+click@example.com",
        "cy+bounce@example.com",
    ]
    assert addresses(admin_client.get(RECIPIENTS, {"status__exact": "bounced"})) == [
        "cy+bounce@example.com"
    ]
    assert addresses(admin_client.get(RECIPIENTS, {"tag": "welcome", "esp": "sandbox"})) == [
        "bob+click@example.com",
        "cy+bounce@example.com",
    ]
    esp_id = Recipient.objects.get(address="ann+open@example.com").esp_message_id
    assert addresses(admin_client.get(RECIPIENTS, {"q": esp_id})) == ["ann+open@example.com"]


def test_event_search_and_filters(admin_client, mail):
    types = lambda response: sorted(e.event_type for e in results(response))  # noqa: E731
    assert types(admin_client.get(EVENTS, {"q": "cy+bounce@example.com"})) == ["bounced"]
    esp_id = Recipient.objects.get(address="ann+open@example.com").esp_message_id
    assert types(admin_client.get(EVENTS, {"q": esp_id})) == ["delivered", "opened"]
    assert types(admin_client.get(EVENTS, {"q": "tag:invoice"})) == ["delivered", "opened"]
    assert types(admin_client.get(EVENTS, {"q": "meta:order_id=A-42"})) == ["delivered", "opened"]
    assert types(admin_client.get(EVENTS, {"event_type__exact": "clicked"})) == ["clicked"]
    assert types(admin_client.get(EVENTS, {"tag": "welcome", "event_type__exact": "bounced"})) == [
        "bounced"
    ]
    event = Event.objects.get(event_type="bounced")
    assert types(admin_client.get(EVENTS, {"q": f"event:{event.event_id}"})) == ["bounced"]


def test_event_list_links_to_the_message(admin_client, mail):
    content = admin_client.get(EVENTS, {"q": "cy+bounce@example.com"}).content.decode()
    message_id = record_id(mail["welcome"])
    assert reverse("admin:sending_message_change", args=[message_id]) in content


def test_webhook_call_search(admin_client, mail):
    calls = lambda response: [c.pk for c in results(response)]  # noqa: E731
    bounce_call = Event.objects.get(event_type="bounced").webhook_call_id
    assert calls(admin_client.get(CALLS, {"q": "cy+bounce@example.com"})) == [bounce_call]
    assert calls(admin_client.get(CALLS, {"q": str(bounce_call)})) == [bounce_call]
    sha = WebhookCall.objects.get(pk=bounce_call).body_sha256
    assert calls(admin_client.get(CALLS, {"q": f"sha256:{sha}"})) == [bounce_call]
    assert calls(admin_client.get(CALLS, {"status__exact": "failed"})) == []


def test_webhook_call_page_shows_body_and_headers(admin_client, mail):
    call = WebhookCall.objects.first()
    content = admin_client.get(reverse("admin:tracking_webhookcall_change", args=[call.pk])).content
    assert json.loads(call.get_body())["events"][0]["recipient"].encode() in content


def test_event_page_shows_the_raw_event(admin_client, mail):
    event = Event.objects.get(event_type="bounced")
    content = admin_client.get(reverse("admin:tracking_event_change", args=[event.pk])).content
    assert b"550 5.1.1" in content


@pytest.mark.parametrize(
    "name", ["sending_message", "sending_recipient", "tracking_event", "tracking_webhookcall"]
)
def test_history_records_are_read_only(admin_client, mail, name):
    model = {
        "sending_message": Message,
        "sending_recipient": Recipient,
        "tracking_event": Event,
        "tracking_webhookcall": WebhookCall,
    }[name]
    obj = model.objects.first()
    assert admin_client.get(reverse(f"admin:{name}_add")).status_code == 403
    assert admin_client.get(reverse(f"admin:{name}_delete", args=[obj.pk])).status_code == 403
    response = admin_client.get(reverse(f"admin:{name}_change", args=[obj.pk]))
    assert response.status_code == 200
    assert b'name="_save"' not in response.content
    actions = response.context.get("actions") or []
    assert "delete_selected" not in [a for a in actions]


def test_staff_without_view_permission_is_refused(mail):
    client = staff_client()
    for url in (MESSAGES, RECIPIENTS, EVENTS, CALLS, SUPPRESSIONS):
        assert client.get(url).status_code == 403


def test_staff_with_view_permission_only_sees_no_actions(mail):
    client = staff_client(perms=("sending.view_message",))
    response = client.get(MESSAGES)
    assert response.status_code == 200
    assert response.context["action_form"] is None


# -- counting --------------------------------------------------------------


def test_paginator_counts_exactly_on_small_tables(mail):
    paginator = EstimatedCountPaginator(Recipient.objects.order_by("pk"), 50)
    assert paginator.count == 3
    assert paginator.estimated is False


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL planner statistics")
def test_postgres_estimates_huge_tables(mail, monkeypatch):
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE sending_recipient")
    assert postgres_row_estimate(Recipient.objects.all()) == 3  # pg_class.reltuples
    estimate = postgres_row_estimate(Recipient.objects.filter(address="ann+open@example.com"))
    assert estimate is not None and estimate >= 1
    monkeypatch.setattr(EstimatedCountPaginator, "estimate_above", 0)
    paginator = EstimatedCountPaginator(Recipient.objects.filter(kind="to").order_by("pk"), 50)
    assert paginator.count >= 1
    assert paginator.estimated is True
