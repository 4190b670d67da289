"""Suppressions in the admin: add, remove, expire, CSV import/export, and forgetting."""

import csv
import html
import io
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from sending.models import Recipient, Suppression
from sending.services import FORGOTTEN, suppression_add
from tests.admin_helpers import sandbox_send, staff_client

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:sending_suppression_changelist")
ADD = reverse("admin:sending_suppression_add")
IMPORT = reverse("admin:sending_suppression_import")
EXPORT = reverse("admin:sending_suppression_export")
FORGET = reverse("admin:sending_recipient_forget")
RECIPIENTS = reverse("admin:sending_recipient_changelist")


def text(response):
    return html.unescape(response.content.decode())


def upload(content: bytes | str, name="suppressions.csv"):
    if isinstance(content, str):
        content = content.encode()
    return SimpleUploadedFile(name, content, content_type="text/csv")


# -- add, remove, expire -----------------------------------------------------


def test_add_calls_the_service(admin_client, admin_user):
    response = admin_client.post(
        ADD, {"address": " Bob@Example.COM ", "esp": "", "reason": "manual", "note": "asked"}
    )
    assert response.status_code == 302
    suppression = Suppression.objects.get()
    assert (suppression.address, suppression.esp, suppression.source) == (
        "bob@example.com",
        "",
        "manual",
    )
    assert suppression.created_by == admin_user


def test_adding_an_existing_suppression_updates_it(admin_client):
    suppression_add(address="bob@example.com", reason="bounced")
    response = admin_client.post(
        ADD, {"address": "bob@example.com", "esp": "", "reason": "complained", "note": ""}
    )
    assert response.status_code == 302
    assert Suppression.objects.get().reason == "complained"


def test_add_rejects_a_non_address(admin_client):
    response = admin_client.post(ADD, {"address": "bob", "esp": "", "reason": "manual"})
    assert response.status_code == 200
    assert "Not an email address: &#x27;bob&#x27;" in response.content.decode()
    assert not Suppression.objects.exists()


def test_add_scoped_to_one_esp(admin_client):
    admin_client.post(ADD, {"address": "bob@example.com", "esp": "mailgun", "reason": "manual"})
    assert Suppression.objects.get().esp == "mailgun"
    response = admin_client.post(
        ADD, {"address": "x@example.com", "esp": "nope", "reason": "manual"}
    )
    assert response.status_code == 200 and "Select a valid choice" in text(response)


def test_change_page_is_read_only(admin_client):
    suppression = suppression_add(address="bob@example.com")
    url = reverse("admin:sending_suppression_change", args=[suppression.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert b'name="_save"' not in response.content
    admin_client.post(url, {"address": "eve@example.com", "reason": "manual"})
    assert Suppression.objects.get().address == "bob@example.com"


def test_remove_through_delete_selected_calls_the_service(admin_client, monkeypatch):
    calls = []
    from sending import admin as sending_admin

    original = sending_admin.suppression_remove
    monkeypatch.setattr(
        sending_admin,
        "suppression_remove",
        lambda **kwargs: calls.append(kwargs) or original(**kwargs),
    )
    keep = suppression_add(address="keep@example.com")
    gone = suppression_add(address="gone@example.com", esp="mailgun")
    response = admin_client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [gone.pk], "post": "yes"}
    )
    assert response.status_code == 302
    assert calls == [{"address": "gone@example.com", "esp": "mailgun"}]
    assert list(Suppression.objects.all()) == [keep]


def test_expire_action(admin_client):
    first = suppression_add(address="a@example.com")
    second = suppression_add(address="b@example.com")
    response = admin_client.post(
        CHANGELIST,
        {"action": "expire_suppressions", "_selected_action": [first.pk, second.pk]},
        follow=True,
    )
    assert "Expired 2 suppression(s)." in text(response)
    assert not Suppression.objects.active().exists()
    active = admin_client.get(CHANGELIST, {"active": "yes"})
    assert list(active.context["cl"].result_list) == []
    expired = admin_client.get(CHANGELIST, {"active": "no"})
    assert len(expired.context["cl"].result_list) == 2


def test_suppression_permissions():
    suppression = suppression_add(address="bob@example.com")
    viewer = staff_client("viewer", ("sending.view_suppression",))
    assert viewer.get(CHANGELIST).status_code == 200
    assert viewer.get(ADD).status_code == 403
    viewer.post(CHANGELIST, {"action": "expire_suppressions", "_selected_action": [suppression.pk]})
    viewer.post(
        CHANGELIST,
        {"action": "delete_selected", "_selected_action": [suppression.pk], "post": "yes"},
    )
    suppression.refresh_from_db()
    assert suppression.is_active
    assert staff_client("nobody").get(CHANGELIST).status_code == 403


# -- CSV import ---------------------------------------------------------------


def test_import(admin_client, admin_user):
    response = admin_client.post(
        IMPORT,
        {
            "file": upload(
                "address,reason,esp,expires_at,note\n"
                "Ann@Example.com,bounced,,,from old ESP\n"
                "bob@example.com,,mailgun,2030-01-01T00:00:00,\n"
            )
        },
        follow=True,
    )
    assert "Imported suppressions: 2 added, 0 updated." in text(response)
    rows = {s.address: s for s in Suppression.objects.all()}
    assert rows["ann@example.com"].reason == "bounced"
    assert (rows["bob@example.com"].esp, rows["bob@example.com"].source) == ("mailgun", "import")
    assert rows["bob@example.com"].created_by == admin_user


def test_import_dry_run_changes_nothing(admin_client):
    response = admin_client.post(
        IMPORT, {"file": upload("address\nann@example.com\n"), "dry_run": "on"}
    )
    assert response.status_code == 200
    assert "importing it would add 1 and update 0" in text(response)
    assert not Suppression.objects.exists()


def test_import_reports_bad_rows_by_line(admin_client):
    response = admin_client.post(
        IMPORT,
        {
            "file": upload(
                "address,reason,expires_at\n"
                "ok@example.com,manual,\n"
                "not-an-address,manual,\n"
                "x@example.com,angry,\n"
                "y@example.com,manual,next tuesday\n"
            )
        },
    )
    assert response.status_code == 400
    assert [tuple(e) for e in response.context["result"].errors] == [
        (3, "Not an email address: 'not-an-address'"),
        (4, "Unknown reason 'angry' (one of: bounced, complained, invalid, manual, unsubscribed)"),
        (5, "expires_at is not an ISO 8601 datetime: 'next tuesday'"),
    ]
    content = text(response)
    assert "Nothing was imported: 3 rows" in content
    assert "<td>4</td><td>Unknown reason 'angry'" in content
    assert not Suppression.objects.exists()


def test_import_without_address_column(admin_client):
    response = admin_client.post(IMPORT, {"file": upload("email\nann@example.com\n")})
    assert response.status_code == 400
    assert "The header row must include an 'address' column." in text(response)


def test_oversized_import_is_refused_before_reading(admin_client, settings):
    settings.MAILHUB = {**settings.MAILHUB, "SUPPRESSION_IMPORT_MAX_BYTES": 100}
    response = admin_client.post(IMPORT, {"file": upload("address\n" + "a@example.com\n" * 20)})
    assert response.status_code == 400
    assert re.search(
        r"The file is \d+ bytes; the most an import takes is 100 bytes\.", text(response)
    )
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"address\n\xff\xfeann@example.com\n", "The file isn't UTF-8 text"),
        (b"address\nann\x00@example.com\n", "The file isn't CSV text"),
    ],
)
def test_import_rejects_binary_files(admin_client, content, error):
    response = admin_client.post(IMPORT, {"file": upload(content)})
    assert response.status_code == 400
    assert error in text(response)


def test_import_accepts_a_utf8_bom_and_crlf(admin_client):
    admin_client.post(IMPORT, {"file": upload("\ufeffaddress,note\r\nann@example.com,Zoë\r\n")})
    assert Suppression.objects.get().note == "Zoë"


def test_import_needs_add_and_change_permissions():
    viewer = staff_client("viewer", ("sending.view_suppression", "sending.add_suppression"))
    assert viewer.get(IMPORT).status_code == 403
    assert viewer.post(IMPORT, {"file": upload("address\nann@example.com\n")}).status_code == 403
    assert not Suppression.objects.exists()
    importer = staff_client(
        "importer",
        ("sending.view_suppression", "sending.add_suppression", "sending.change_suppression"),
    )
    assert importer.get(IMPORT).status_code == 200


def test_import_anonymous_is_sent_to_login(client):
    response = client.post(IMPORT, {"file": upload("address\nann@example.com\n")})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


# -- CSV export -------------------------------------------------------------


def test_export_follows_the_changelist_filters(admin_client):
    suppression_add(address="ann@example.com", reason="bounced")
    suppression_add(address="bob@example.com", reason="complained", esp="mailgun")
    response = admin_client.get(EXPORT, {"reason__exact": "complained"})
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="suppressions.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["address"], r["esp"], r["reason"]) for r in rows] == [
        ("bob@example.com", "mailgun", "complained")
    ]
    everything = admin_client.get(EXPORT).content.decode()
    assert everything.count("@example.com") == 2


def test_export_round_trips_through_import(admin_client):
    suppression_add(address="ann@example.com", reason="bounced", note="x, y")
    exported = admin_client.get(EXPORT).content
    Suppression.objects.all().delete()
    admin_client.post(IMPORT, {"file": upload(exported)})
    restored = Suppression.objects.get()
    assert (restored.address, restored.reason, restored.note) == (
        "ann@example.com",
        "bounced",
        "x, y",
    )


def test_export_selected_action(admin_client):
    ann = suppression_add(address="ann@example.com")
    suppression_add(address="bob@example.com")
    response = admin_client.post(
        CHANGELIST, {"action": "export_suppressions", "_selected_action": [ann.pk]}
    )
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert "ann@example.com" in response.content.decode()
    assert "bob@example.com" not in response.content.decode()


def test_export_with_a_malformed_filter_is_a_400(admin_client):
    response = admin_client.get(EXPORT, {"created_at__gte": "soon"})
    assert response.status_code == 400


def test_export_needs_view_permission():
    assert staff_client().get(EXPORT).status_code == 403


# -- forget ---------------------------------------------------------------------


@pytest.fixture
def ann():
    sandbox_send("ann+click@example.com", "bob@example.com", subject="For Ann and Bob")
    suppression_add(address="ann+click@example.com", reason="complained")
    return "ann+click@example.com"


def test_changelist_has_the_forget_form_for_permitted_staff(admin_client):
    content = admin_client.get(CHANGELIST).content.decode()
    assert f'action="{FORGET}"' in content
    viewer = staff_client("viewer", ("sending.view_suppression",))
    assert f'action="{FORGET}"' not in viewer.get(CHANGELIST).content.decode()


def test_forget_form_previews_then_forgets(admin_client, ann):
    response = admin_client.post(
        FORGET, {"address": "ANN+click@example.com", "keep_suppression": "on", "next": CHANGELIST}
    )
    assert response.status_code == 200
    [(address, counts)] = response.context["previews"]
    assert (address, counts["recipients"], counts["suppressions"]) == (ann, 1, 1)
    assert Recipient.objects.filter(address=ann).exists()  # nothing changed yet

    response = admin_client.post(
        FORGET,
        {"address": ann, "keep_suppression": "on", "confirm": "1", "next": CHANGELIST},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == CHANGELIST
    assert f"Forgot {ann}:" in text(response)
    assert not Recipient.objects.filter(address=ann).exists()
    assert Suppression.objects.filter(address=ann).exists()


def test_forget_can_drop_the_suppression(admin_client, ann):
    admin_client.post(FORGET, {"address": ann, "confirm": "1"})
    assert not Suppression.objects.filter(address=ann).exists()


def test_recipient_action_forgets_the_selected_addresses(admin_client, ann):
    selected = list(Recipient.objects.values_list("pk", flat=True))
    response = admin_client.post(
        RECIPIENTS, {"action": "forget_addresses", "_selected_action": selected}
    )
    assert response.status_code == 200
    assert [address for address, _ in response.context["previews"]] == [
        "ann+click@example.com",
        "bob@example.com",
    ]
    content = response.content.decode()
    assert '<input type="hidden" name="address" value="bob@example.com">' in content
    admin_client.post(
        FORGET,
        {"address": [ann, "bob@example.com"], "keep_suppression": "on", "confirm": "1"},
    )
    assert set(Recipient.objects.values_list("address", flat=True)) == {FORGOTTEN}


@pytest.mark.parametrize(
    ("address", "error"),
    [("", "This field is required."), ("nope", "Not an email address: 'nope'")],
)
def test_forget_bad_input(admin_client, address, error):
    response = admin_client.post(FORGET, {"address": address, "confirm": "1"})
    assert response.status_code == 400
    assert error in text(response)


def test_forget_too_many_addresses(admin_client):
    addresses = "\n".join(f"user{i}@example.com" for i in range(21))
    response = admin_client.post(FORGET, {"address": addresses})
    assert response.status_code == 400
    assert "At most 20 addresses at a time" in text(response)


def test_forget_refuses_an_offsite_next(admin_client, ann):
    response = admin_client.post(
        FORGET, {"address": ann, "confirm": "1", "next": "https://evil.example.com/"}
    )
    assert response["Location"] == RECIPIENTS


def test_forget_needs_its_permission(ann):
    viewer = staff_client(
        "viewer",
        ("sending.view_recipient", "sending.view_suppression", "sending.delete_suppression"),
    )
    assert viewer.get(FORGET).status_code == 403
    assert viewer.post(FORGET, {"address": ann, "confirm": "1"}).status_code == 403
    viewer.post(RECIPIENTS, {"action": "forget_addresses", "_selected_action": [1, 2]})
    assert Recipient.objects.filter(address=ann).exists()
    forgetter = staff_client("forgetter", ("sending.forget_recipient",))
    assert forgetter.get(FORGET).status_code == 200
    forgetter.post(FORGET, {"address": ann, "confirm": "1", "keep_suppression": "on"})
    assert not Recipient.objects.filter(address=ann).exists()


def test_forget_anonymous_is_sent_to_login(client, ann):
    response = client.post(FORGET, {"address": ann, "confirm": "1"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert Recipient.objects.filter(address=ann).exists()


def test_suppression_created_at_filter(admin_client):
    suppression_add(address="ann@example.com")
    today = timezone.localdate().isoformat()
    response = admin_client.get(CHANGELIST, {"created_at__gte": today})
    assert len(response.context["cl"].result_list) == 1
