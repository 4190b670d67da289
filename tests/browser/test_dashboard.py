"""The admin dashboard in a real browser: find, inspect, resend, suppress; refusals.

Screenshots of the dashboard and a message page are written to
$MAILHUB_SCREENSHOTS_DIR (docs/screenshots/ in the repository) when it's
set, and to a temporary directory otherwise:

    MAILHUB_SCREENSHOTS_DIR=docs/screenshots .venv/bin/python -m pytest tests/browser
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from sending.models import Message, Suppression
from sending.services import suppression_add
from tests.admin_helpers import record_id, sandbox_send, staff_user
from tests.browser.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

TEST_BACKEND = "sending.backends.test.EmailBackend"


@pytest.fixture
def operator(django_user_model):
    django_user_model.objects.create_superuser("operator", "operator@example.com", "pw")
    return "operator"


@pytest.fixture
def receipt():
    sent = sandbox_send(
        "Ann Example <ann+click@example.com>",
        "bob+bounce@example.com",
        subject="Your receipt #1042",
        body="Thanks for your order.\n\nOrder #1042: 1 x Teapot",
        html=(
            "<h1 style='font-family:sans-serif;color:#264b5d'>Thanks for your order</h1>"
            "<p>Order #1042: 1 x Teapot</p><img src='https://images.example.com/teapot.png'>"
            "<script>document.body.innerHTML='scripts ran'</script>"
        ),
        tags=["receipt"],
        metadata={"order_id": "1042"},
        headers={"X-Campaign": "orders"},
    )
    return Message.objects.get(pk=record_id(sent))


def test_find_a_message_by_recipient_and_open_its_timeline(page, operator, receipt):
    sandbox_send("someone-else@example.com", subject="Unrelated")
    log_in(page, operator)
    page.get_by_role("link", name="Messages", exact=True).first.click()
    page.fill("#searchbar", "ann+click@example.com")
    page.press("#searchbar", "Enter")
    page.wait_for_url("**/admin/sending/message/?q=*")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    rows.first.locator("a", has_text="Your receipt #1042").click()
    page.wait_for_url(re.compile(rf"/admin/sending/message/{receipt.pk}/change/"))

    timeline = page.locator(".mh-recipient", has_text="ann+click@example.com").locator(
        ".mh-timeline li"
    )
    assert [item.get_attribute("data-event") for item in timeline.all()] == [
        "delivered",
        "opened",
        "clicked",
    ]
    bounce = page.locator(".mh-recipient", has_text="bob+bounce@example.com")
    assert "550 5.1.1" in bounce.inner_text()

    iframe = page.locator("iframe.mh-html-frame")
    assert iframe.get_attribute("sandbox") == ""
    frame = page.frame_locator("iframe.mh-html-frame")
    assert frame.locator("h1").inner_text() == "Thanks for your order"
    assert "scripts ran" not in frame.locator("body").inner_text()


def test_resend_a_message_to_another_backend(page, operator, receipt, settings):
    settings.MAILHUB = {**settings.MAILHUB, "RESEND_BACKENDS": [TEST_BACKEND]}
    log_in(page, operator)
    page.goto(f"/admin/sending/message/{receipt.pk}/change/")
    page.click("a.mh-resend")
    page.select_option("#id_backend", TEST_BACKEND)
    page.click("input[name=preview]")
    # bob bounced, so he is suppressed: the preview says he'll be skipped.
    assert "bob+bounce@example.com" in page.locator("#resend-plan .mh-skipped").inner_text()
    page.click("input[name=confirm]")
    page.wait_for_url(re.compile(r"/admin/sending/message/\d+/change/$"))
    assert "Resent 1 message(s)" in page.locator(".messagelist").inner_text()

    copy = Message.objects.get(resend_of=receipt)
    assert (copy.esp, copy.requested_by.username) == ("test", operator)
    assert dict(copy.recipients.values_list("address", "send_status")) == {
        "ann+click@example.com": "sent",
        "bob+bounce@example.com": "suppressed",
    }


def test_add_a_suppression(page, operator):
    log_in(page, operator)
    page.goto("/admin/sending/suppression/")
    page.click(".object-tools a.addlink")
    page.fill("#id_address", "Unsubscribed@Example.com")
    page.select_option("#id_reason", "unsubscribed")
    page.fill("#id_note", "Asked by phone")
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/sending/suppression/")
    assert "unsubscribed@example.com" in page.locator("#result_list").inner_text()
    suppression = Suppression.objects.get()
    assert (suppression.reason, suppression.created_by.username) == ("unsubscribed", operator)


def test_anonymous_users_are_sent_to_log_in(page, receipt):
    page.goto(f"/admin/sending/message/{receipt.pk}/change/")
    assert "/admin/login/" in page.url
    response = page.goto(f"/admin/sending/message/{receipt.pk}/html/")
    assert "/admin/login/" in page.url and response.ok
    assert "Thanks for your order" not in page.content()


def test_staff_without_permissions_are_refused(page, receipt):
    staff_user("clerk")
    log_in(page, "clerk")
    assert page.goto("/admin/sending/message/").status == 403
    assert page.goto(f"/admin/sending/message/{receipt.pk}/html/").status == 403
    assert page.goto("/admin/sending/recipient/forget/").status == 403
    assert "mh-chart" not in page.goto("/admin/").text()


def test_viewer_cannot_resend(page, receipt):
    staff_user("viewer", ("sending.view_message",))
    log_in(page, "viewer")
    page.goto(f"/admin/sending/message/{receipt.pk}/change/")
    assert page.locator("a.mh-resend").count() == 0
    assert page.goto(f"/admin/sending/message/resend/?ids={receipt.pk}").status == 403


# -- screenshots -----------------------------------------------------------------


def realistic_history(days: int = 30) -> None:
    """A month of sandbox traffic: receipts, newsletters and password resets, with a
    few bounces, failures and a complaint, spread over the window by send day."""
    suppression_add(address="former@example.net", reason="unsubscribed")
    now = timezone.now()
    for day in range(days):
        volume = 3 + (day * 7) % 5 + (2 if day % 7 in (1, 2) else 0)
        when = now - datetime.timedelta(days=day, hours=(day * 5) % 9)
        first = Message.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        for index in range(volume):
            n = day * 10 + index
            tag = ("receipt", "newsletter", "password-reset")[n % 3]
            outcome = "+bounce" if n % 23 == 5 else "+complain" if n == 21 else ""
            to = [f"customer{n}{outcome}@example.com"]
            if tag == "newsletter":
                to += [f"reader{n}-{k}@example.net" for k in range(4)]
                if n % 4 == 1:
                    to.append("former@example.net")  # suppressed: skipped
                if n % 9 == 4:
                    to.append(f"reader{n}+failed@example.net")
            sandbox_send(*to, subject=f"{tag.replace('-', ' ').title()} #{n}", tags=[tag])
        Message.objects.filter(pk__gt=first).update(created_at=when)


def whole_page_screenshot(page, path: Path) -> None:
    # Headless Chromium doesn't paint a sandboxed (separate-process) iframe that
    # is outside the viewport, so grow the viewport to the whole page first.
    height = page.evaluate("document.documentElement.scrollHeight")
    page.set_viewport_size({"width": 1280, "height": height})
    page.wait_for_timeout(300)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1280, "height": 900})


@pytest.fixture
def screenshots_dir(tmp_path) -> Path:
    target = os.environ.get("MAILHUB_SCREENSHOTS_DIR")
    path = Path(target) if target else tmp_path
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_screenshots_of_the_dashboard_and_a_message(page, operator, screenshots_dir):
    realistic_history()
    receipt = Message.objects.get(
        pk=record_id(
            sandbox_send(
                "Ann Example <ann+click@example.com>",
                "bob+bounce@example.com",
                subject="Your receipt #1042",
                body="Thanks for your order.\n\nOrder #1042: 1 x Teapot, 29.00 EUR",
                html=(
                    "<div style='font-family:Helvetica,Arial,sans-serif;max-width:560px'>"
                    "<h1 style='color:#264b5d'>Thanks for your order</h1>"
                    "<p>Order <b>#1042</b>: 1 x Teapot, 29.00 EUR</p>"
                    "<p><img src='https://images.example.com/teapot.png' alt='Teapot'></p>"
                    "<p style='color:#777'>Shop Example, 1 Main Street</p></div>"
                ),
                tags=["receipt"],
                metadata={"order_id": "1042"},
                headers={"X-Campaign": "orders"},
                attachments=[("invoice-1042.pdf", b"%PDF-1.4 invoice 1042", "application/pdf")],
            )
        )
    )
    suppression_add(address="former@example.com", reason="unsubscribed")
    log_in(page, operator)

    page.goto("/admin/?days=30")
    assert page.locator("svg.mh-chart").count() == 5
    whole_page_screenshot(page, screenshots_dir / "dashboard.png")

    page.goto(f"/admin/sending/message/{receipt.pk}/change/")
    page.frame_locator("iframe.mh-html-frame").locator("h1").wait_for()
    whole_page_screenshot(page, screenshots_dir / "message.png")
    assert (screenshots_dir / "dashboard.png").stat().st_size > 10_000
    assert (screenshots_dir / "message.png").stat().st_size > 10_000
