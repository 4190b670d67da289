"""The message page: recipients with their event timelines, headers, text, sandboxed
HTML and safe attachment downloads."""

import re

import pytest
from django.urls import reverse

from sending.admin_views import safe_content_type, safe_download_name
from sending.models import Message, StoredAttachment
from tests.admin_helpers import record_id, sandbox_send, staff_client
from tracking.models import Event

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01"
HTML = (
    '<h1>Hi</h1><script>alert("x")</script>'
    '<img src="https://tracker.example.com/p.gif"><img src="cid:logo">'
)


@pytest.fixture
def message():
    sent = sandbox_send(
        "Ann <ann+click@example.com>",
        "bob+bounce@example.com",
        subject="Your receipt",
        body="Thanks for your order.",
        html=HTML,
        headers={"X-Campaign": "autumn"},
        cc=["carol@example.com"],
    )
    return Message.objects.get(pk=record_id(sent))


@pytest.fixture
def with_attachments():
    from sending.backends.sandbox import EmailBackend
    from sending.message import AnymailMessage

    email = AnymailMessage("Files", "See attached", "shop@example.com", ["dan@example.com"])
    email.attach("../../etc/passwd\r\n.html", b"<script>evil()</script>", "text/html")
    email.attach("Résumé 2024.pdf", b"%PDF-1.4", "application/pdf")
    cid = email.attach_inline_image(PNG, filename="logo.png")
    email.attach_alternative(f'<p>Logo: <img src="cid:{cid}"></p>', "text/html")
    EmailBackend().send_messages([email])
    return Message.objects.get(pk=email.mailhub_record_id)


def page(client, message):
    return client.get(reverse("admin:sending_message_change", args=[message.pk]))


def test_page_shows_headers_text_and_recipients(admin_client, message):
    response = page(admin_client, message)
    assert response.status_code == 200
    content = response.content.decode()
    for expected in (
        "Your receipt",
        "X-Campaign",
        "autumn",
        "Thanks for your order.",
        "Ann &lt;ann+click@example.com&gt;",
        "carol@example.com",
        "bob+bounce@example.com",
    ):
        assert expected in content, expected


def test_each_recipient_has_its_events_in_time_order(admin_client, message):
    response = page(admin_client, message)
    recipients = {r.address: r for r in response.context["recipients"]}
    ann = recipients["ann+click@example.com"]
    assert [e.event_type for e in ann.timeline] == ["delivered", "opened", "clicked"]
    assert [e.event_type for e in recipients["bob+bounce@example.com"].timeline] == ["bounced"]
    content = response.content.decode()
    block = content[content.index(f'id="recipient-{ann.pk}"') :]
    block = block[: block.index("</ol>")]
    assert re.findall(r'data-event="(\w+)"', block) == ["delivered", "opened", "clicked"]
    assert "550 5.1.1" in content  # the bounce's MTA response


def test_html_is_in_a_sandboxed_iframe(admin_client, message):
    content = page(admin_client, message).content.decode()
    iframe = re.search(r"<iframe[^>]*>", content).group(0)
    assert 'sandbox=""' in iframe
    assert "allow-scripts" not in content and "allow-same-origin" not in content
    html_url = reverse("admin:sending_message_html", args=[message.pk])
    assert f'src="{html_url}"' in iframe
    assert f'href="{html_url}?remote_images=1" target="message-html"' in content


def test_html_view_blocks_scripts_and_remote_images(admin_client, message):
    response = admin_client.get(reverse("admin:sending_message_html", args=[message.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    csp = response["Content-Security-Policy"]
    assert csp.startswith("sandbox; default-src 'none';")
    assert "img-src data: cid;" not in csp and "img-src data: cid:;" in csp
    assert "https:" not in csp and "script-src" not in csp
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["Referrer-Policy"] == "no-referrer"
    assert b"<h1>Hi</h1>" in response.content


def test_html_view_allows_remote_images_on_request(admin_client, message):
    url = reverse("admin:sending_message_html", args=[message.pk])
    response = admin_client.get(url, {"remote_images": "1"})
    assert "img-src data: cid: https:;" in response["Content-Security-Policy"]
    assert response["Content-Security-Policy"].startswith("sandbox; default-src 'none';")


def test_inline_images_are_embedded_as_data_uris(admin_client, with_attachments):
    url = reverse("admin:sending_message_html", args=[with_attachments.pk])
    content = admin_client.get(url).content.decode()
    assert "cid:" not in content
    assert 'src="data:image/png;base64,' in content


@pytest.mark.parametrize("object_id", ["999999", "abc"])
def test_html_view_of_unknown_message_is_404(admin_client, object_id):
    assert admin_client.get(f"/admin/sending/message/{object_id}/html/").status_code == 404


def test_html_view_of_text_only_message_is_404(admin_client):
    plain = Message.objects.get(pk=record_id(sandbox_send("x@example.com")))
    assert (
        admin_client.get(reverse("admin:sending_message_html", args=[plain.pk])).status_code == 404
    )
    assert 'id="html"' not in page(admin_client, plain).content.decode()


def test_attachments_download_safely(admin_client, with_attachments):
    attachments = {a.mimetype: a for a in with_attachments.attachments.all()}
    html_part = attachments["text/html"]
    response = admin_client.get(
        reverse("admin:sending_message_attachment", args=[with_attachments.pk, html_part.pk])
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"] == 'attachment; filename="passwd_.html"'
    assert response["X-Content-Type-Options"] == "nosniff"
    assert b"".join(response.streaming_content) == b"<script>evil()</script>"

    pdf = attachments["application/pdf"]
    response = admin_client.get(
        reverse("admin:sending_message_attachment", args=[with_attachments.pk, pdf.pk])
    )
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == 'attachment; filename="Resume 2024.pdf"'


def test_message_page_lists_attachments_with_download_links(admin_client, with_attachments):
    content = page(admin_client, with_attachments).content.decode()
    for attachment in with_attachments.attachments.all():
        url = reverse("admin:sending_message_attachment", args=[with_attachments.pk, attachment.pk])
        assert f'href="{url}"' in content


def test_attachment_of_another_message_is_404(admin_client, with_attachments, message):
    attachment = with_attachments.attachments.first()
    url = reverse("admin:sending_message_attachment", args=[message.pk, attachment.pk])
    assert admin_client.get(url).status_code == 404
    assert (
        admin_client.get(f"/admin/sending/message/x/attachments/{attachment.pk}/").status_code
        == 404
    )


def test_attachment_without_stored_content_is_404(admin_client, with_attachments):
    attachment = with_attachments.attachments.first()
    StoredAttachment.objects.filter(pk=attachment.pk).update(file="")
    url = reverse("admin:sending_message_attachment", args=[with_attachments.pk, attachment.pk])
    assert admin_client.get(url).status_code == 404


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\x\\evil.exe", "evil.exe"),
        ('a"b;c\r\nd.txt', "a_b_c_d.txt"),
        (".htaccess", "htaccess"),
        ("", "attachment-1"),
        ("日本語", "attachment-1"),
        ("x" * 300 + ".pdf", "x" * 96 + ".pdf"),
    ],
)
def test_safe_download_name(filename, expected):
    assert safe_download_name(filename, "attachment-1") == expected


@pytest.mark.parametrize(
    ("mimetype", "expected"),
    [
        ("application/pdf", "application/pdf"),
        ("IMAGE/PNG; name=x", "image/png"),
        ("text/html", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("application/javascript", "application/octet-stream"),
        ("", "application/octet-stream"),
    ],
)
def test_safe_content_type(mimetype, expected):
    assert safe_content_type(mimetype) == expected


def test_message_page_queries_do_not_grow_with_recipients(
    admin_client, django_assert_max_num_queries
):
    small = Message.objects.get(pk=record_id(sandbox_send("a+click@example.com")))
    with django_assert_max_num_queries(20) as baseline:
        page(admin_client, small)
    big = Message.objects.get(
        pk=record_id(sandbox_send(*[f"user{i}+click@example.com" for i in range(40)]))
    )
    assert Event.objects.filter(recipient__message=big).count() == 120
    with django_assert_max_num_queries(len(baseline.captured_queries)):
        page(admin_client, big)


def test_staff_without_view_permission_is_refused(message, with_attachments):
    client = staff_client()
    attachment = with_attachments.attachments.first()
    for url in (
        reverse("admin:sending_message_change", args=[message.pk]),
        reverse("admin:sending_message_html", args=[message.pk]),
        reverse("admin:sending_message_attachment", args=[with_attachments.pk, attachment.pk]),
    ):
        assert client.get(url).status_code == 403, url


def test_anonymous_is_sent_to_login(client, message):
    response = client.get(reverse("admin:sending_message_html", args=[message.pk]))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_resend_button_only_with_permission(message):
    viewer = staff_client("viewer", ("sending.view_message",))
    assert b"mh-resend" not in page(viewer, message).content
    resender = staff_client("resender", ("sending.view_message", "sending.resend_message"))
    assert b"mh-resend" in page(resender, message).content
