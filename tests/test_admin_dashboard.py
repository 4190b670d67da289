"""The admin index is the delivery dashboard: charts, rates and warnings."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from mailhub.charts import Series, grouped_bar_chart, line_chart, nice_ceiling, short_number
from sending.models import Message, Recipient
from sending.selectors import delivery_stats
from tests.admin_helpers import sandbox_send, staff_client

pytestmark = pytest.mark.django_db

INDEX = "/admin/"


@pytest.fixture
def traffic():
    """Sandbox sends with known outcomes: 4 accepted (1 bounce, 1 complaint), 1 suppressed."""
    sandbox_send("ann+open@example.com", "bob+bounce@example.com", tags=["welcome"])
    sandbox_send("cy+complain@example.com", "dee+silent@example.com", tags=["receipt", "shop"])
    sandbox_send("bob+bounce@example.com", "eve+failed@example.com")  # bob is now suppressed


def test_staff_with_view_permission_sees_charts_and_rates(admin_client, traffic):
    response = admin_client.get(INDEX)
    assert response.status_code == 200
    content = response.content.decode()
    assert content.count('<svg class="mh-chart"') == 5  # volume, outcomes, rates, per ESP, per tag
    dashboard = response.context["dashboard"]
    totals = dashboard["totals"]
    assert (totals.sent, totals.bounced, totals.complained, totals.suppressed) == (4, 1, 1, 1)
    assert (totals.failed, totals.delivered, totals.opened) == (1, 2, 2)
    assert dashboard["bounce_rate"] == 0.25
    assert 'data-rate="bounce">25%' in content
    # Sandbox app list is still there, under the charts.
    assert "Messages" in content


def test_rates_above_thresholds_show_warnings(admin_client, traffic):
    content = admin_client.get(INDEX).content.decode()
    assert "Bounce rate 25% is above the warning threshold of 5%" in content
    assert "Complaint rate 25% is above the warning threshold of 0.1%" in content


def test_thresholds_come_from_settings(admin_client, traffic, settings):
    settings.MAILHUB = {
        **settings.MAILHUB,
        "BOUNCE_RATE_WARNING": 0.5,
        "COMPLAINT_RATE_WARNING": 0.5,
    }
    content = admin_client.get(INDEX).content.decode()
    assert "is above the warning threshold" not in content
    assert "warn &gt; 50%" in content


def test_no_warning_without_traffic(admin_client):
    response = admin_client.get(INDEX)
    assert response.status_code == 200
    assert response.context["dashboard"]["bounce_rate"] is None
    assert "is above the warning threshold" not in response.content.decode()
    assert "Nothing sent in this window." in response.content.decode()


@pytest.mark.parametrize("days", [7, 30, 90])
def test_window_is_selectable(admin_client, traffic, days):
    response = admin_client.get(INDEX, {"days": days})
    assert response.status_code == 200
    dashboard = response.context["dashboard"]
    assert dashboard["days"] == days
    assert f"<strong>Last {days} days</strong>" in response.content.decode()


@pytest.mark.parametrize("days", ["14", "abc", "-7", "7.0"])
def test_unknown_window_is_a_clear_400(admin_client, days):
    response = admin_client.get(INDEX, {"days": days})
    assert response.status_code == 400
    assert "days must be one of 7, 30, 90" in response.content.decode()


def test_old_messages_are_outside_the_window(admin_client, traffic):
    Message.objects.update(created_at=timezone.now() - datetime.timedelta(days=40))
    sandbox_send("new@example.com")
    assert admin_client.get(INDEX, {"days": 30}).context["dashboard"]["totals"].sent == 1
    assert admin_client.get(INDEX, {"days": 90}).context["dashboard"]["totals"].sent == 5


def test_breakdowns_per_esp_and_per_tag(traffic):
    stats = delivery_stats(days=7)
    assert [name for name, _ in stats.per_esp] == ["sandbox"]
    per_tag = dict(stats.per_tag)
    assert per_tag["welcome"].sent == 2
    assert per_tag["welcome"].bounced == 1
    assert per_tag["receipt"].complained == 1 and per_tag["shop"].complained == 1
    assert per_tag["(no tag)"].suppressed == 1
    by_day = dict(stats.per_day)
    assert by_day[timezone.localdate()].sent == 4
    assert len(stats.per_day) == 7


def test_dashboard_queries_dont_grow_with_data(admin_client, django_assert_max_num_queries):
    for index in range(30):
        sandbox_send(f"user{index}@example.com", tags=[f"tag{index % 12}"])
    with django_assert_max_num_queries(12):
        response = admin_client.get(INDEX)
    assert response.context["dashboard"]["totals"].sent == 30


def test_statistics_are_reused_for_the_cache_time(admin_client, traffic, settings):
    from django.core.cache import cache

    cache.clear()
    settings.MAILHUB = {**settings.MAILHUB, "DASHBOARD_CACHE_SECONDS": 60}
    first = admin_client.get(INDEX).context["dashboard"]
    sandbox_send("later@example.com")
    assert admin_client.get(INDEX).context["dashboard"]["totals"] == first["totals"]
    assert admin_client.get(INDEX, {"days": 7}).context["dashboard"]["totals"].sent == 5
    settings.MAILHUB = {**settings.MAILHUB, "DASHBOARD_CACHE_SECONDS": 0}
    assert admin_client.get(INDEX).context["dashboard"]["totals"].sent == 5
    cache.clear()


def test_staff_without_view_permission_gets_no_charts(traffic):
    response = staff_client().get(INDEX)
    assert response.status_code == 200
    assert "dashboard" not in response.context
    assert "mh-chart" not in response.content.decode()


def test_anonymous_is_sent_to_login(client):
    response = client.get(INDEX)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_tiles_link_to_the_matching_recipients(admin_client, traffic):
    dashboard = admin_client.get(INDEX, {"days": 7}).context["dashboard"]
    bounced = next(tile for tile in dashboard["tiles"] if tile["name"] == "bounced")
    response = admin_client.get(bounced["link"])
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == list(
        Recipient.objects.filter(status="bounced")
    )


# -- the SVG charts ---------------------------------------------------------


def test_chart_labels_are_escaped():
    svg = grouped_bar_chart(
        categories=["<script>alert(1)</script>"],
        series=[Series("<b>sent</b>", [3], "#000")],
        title="t<",
    )
    assert "<script>" not in svg and "<b>" not in svg
    assert "&lt;script&gt;" in svg


def test_line_chart_draws_a_point_per_day_with_its_value():
    svg = line_chart(
        labels=["Nov 1", "Nov 2"], series=[Series("Sent", [0, 1234], "#111")], title="x"
    )
    assert svg.count("<circle") == 2
    assert "Nov 2, Sent: 1,234" in svg


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (1, 1), (3, 5), (7, 10), (120, 200), (0.03, 0.05)]
)
def test_nice_ceiling(value, ceiling):
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_short_number():
    assert (short_number(950), short_number(1200), short_number(2_500_000)) == (
        "950",
        "1.2k",
        "2.5M",
    )
    assert short_number(0.05, percent=True) == "5%"


def test_index_url_is_the_dashboard():
    assert reverse("admin:index") == INDEX


@pytest.fixture
def day_cache(settings):
    from django.core.cache import cache

    cache.clear()
    settings.MAILHUB = {**settings.MAILHUB, "DASHBOARD_DAY_CACHE_SECONDS": 3600}
    yield
    cache.clear()


def test_past_days_are_reused_and_live_days_counted_afresh(admin_client, day_cache):
    sandbox_send("old@example.com")
    Message.objects.update(created_at=timezone.now() - datetime.timedelta(days=5))
    first = admin_client.get(INDEX, {"days": 7}).context["dashboard"]["totals"]
    assert first.sent == 1
    # A day before yesterday is reused: a change to it shows once its entry expires.
    sandbox_send("also-old@example.com")
    Message.objects.filter(to=["also-old@example.com"]).update(
        created_at=timezone.now() - datetime.timedelta(days=5)
    )
    assert admin_client.get(INDEX, {"days": 7}).context["dashboard"]["totals"].sent == 1
    # Today is always counted afresh.
    sandbox_send("today@example.com")
    assert admin_client.get(INDEX, {"days": 7}).context["dashboard"]["totals"].sent == 2


def test_a_longer_window_scans_only_the_days_not_kept(admin_client, day_cache):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from mailhub.dashboard import cached_day_groups

    today = timezone.localdate()
    recent = [today - datetime.timedelta(days=n) for n in range(6, -1, -1)]
    cached_day_groups(recent)
    older = [today - datetime.timedelta(days=n) for n in range(29, -1, -1)]
    with CaptureQueriesContext(connection) as queries:
        groups = cached_day_groups(older)
    assert sorted(groups) == older
    scans = [q["sql"] for q in queries if "sending_recipient" in q["sql"]]
    # Days 29..7 (never kept) and today and yesterday (live): two runs, two scans.
    assert len(scans) == 2
