"""Admin for received mail, and erasure of inbound records."""

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.storage import default_storage
from django.urls import reverse

from inbound.models import InboundMessage
from inbound.services import inbound_forget
from mailhub.operations import forget_address
from tests.inbound_contract import basic_auth, sample_mime

pytestmark = pytest.mark.django_db


@pytest.fixture
def received(client, settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": "username:password"}
    raw = sample_mime(attachment_name="../evil\x07.pdf").replace(
        b"<p>Hello, ", b"<p><script>alert(1)</script>Hello, "
    )
    response = client.generic(
        "POST",
        "/anymail/sandbox/inbound/",
        raw,
        content_type="message/rfc822",
        HTTP_AUTHORIZATION=basic_auth(),
        HTTP_X_ENVELOPE_RECIPIENT="support@inbound.example.com",
    )
    assert response.status_code == 200
    return InboundMessage.objects.get()


def test_changelist_searches_by_sender(admin_client, received):
    url = reverse("admin:inbound_inboundmessage_changelist")
    response = admin_client.get(url, {"q": "ann@example.com"})
    assert response.status_code == 200
    assert b"Invoice question" in response.content
    assert b"Invoice question" not in admin_client.get(url, {"q": "nobody@example.com"}).content


def test_message_page_shows_html_only_in_a_sandboxed_iframe(admin_client, received):
    response = admin_client.get(reverse("admin:inbound_inboundmessage_change", args=[received.pk]))
    assert response.status_code == 200
    assert b"<script>alert(1)</script>" not in response.content
    assert b"<iframe sandbox" in response.content
    assert b'name="_save"' not in response.content


def test_html_view_is_locked_down(admin_client, received):
    response = admin_client.get(reverse("admin:inbound_inboundmessage_html", args=[received.pk]))
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "https:" not in csp
    remote = admin_client.get(
        reverse("admin:inbound_inboundmessage_html", args=[received.pk]), {"remote_images": "1"}
    )
    assert "img-src data: cid: https:" in remote["Content-Security-Policy"]


def test_attachment_downloads_with_a_safe_name_and_type(admin_client, received):
    attachment = received.attachments.get(inline=False)
    url = reverse("admin:inbound_inboundmessage_attachment", args=[received.pk, attachment.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert "evil" in response["Content-Disposition"] and ".." not in response["Content-Disposition"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == b"%PDF-1.4 fake"


def test_unknown_attachment_is_404(admin_client, received):
    url = reverse("admin:inbound_inboundmessage_attachment", args=[received.pk, 999999])
    assert admin_client.get(url).status_code == 404
    url = reverse("admin:inbound_inboundmessage_attachment", args=["abc", 1])
    assert admin_client.get(url).status_code == 404


def test_staff_without_permission_is_refused(client, received):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    assert (
        client.get(reverse("admin:inbound_inboundmessage_html", args=[received.pk])).status_code
        == 403
    )
    user.user_permissions.add(Permission.objects.get(codename="view_inboundmessage"))
    assert (
        client.get(reverse("admin:inbound_inboundmessage_html", args=[received.pk])).status_code
        == 200
    )


def test_anonymous_is_sent_to_login(client, received):
    response = client.get(reverse("admin:inbound_inboundmessage_changelist"))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_inbound_forget_redacts_and_deletes_files(received, django_capture_on_commit_callbacks):
    raw_name = received.raw_file.name
    files = [a.file.name for a in received.attachments.all()]
    with django_capture_on_commit_callbacks(execute=True):
        counts = inbound_forget(address="ANN@example.com")
    assert counts == {"inbound_messages": 1, "inbound_attachments": 2}
    received.refresh_from_db()
    assert (received.from_address, received.subject, received.text) == ("[forgotten]",) * 3
    assert received.to == [] and received.headers == [] and not received.raw_file
    assert not default_storage.exists(raw_name)
    assert not any(default_storage.exists(name) for name in files)


def test_forget_address_includes_inbound_and_dry_run_changes_nothing(received):
    counts = forget_address(address="ann@example.com", dry_run=True)
    assert counts["inbound_messages"] == 1
    received.refresh_from_db()
    assert received.from_address == "ann@example.com"


def test_forget_leaves_unrelated_mail(received):
    assert inbound_forget(address="someone-else@example.com") == {
        "inbound_messages": 0,
        "inbound_attachments": 0,
    }
