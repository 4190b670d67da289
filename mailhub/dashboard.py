"""The admin dashboard: delivery statistics turned into charts, rates and warnings."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.core.cache import cache
from django.urls import reverse
from django.utils import timezone

from sending.selectors import (
    METRICS,
    STATS_WINDOWS,
    DayGroups,
    DeliveryCounts,
    DeliveryStats,
    delivery_day_groups,
    delivery_stats,
    rate_thresholds,
)
from sending.utils import get_mailhub_setting
from tracking.selectors import webhook_call_counts

from .charts import Series, grouped_bar_chart, line_chart, stacked_bar_chart

DEFAULT_WINDOW = 30

#: One color per metric, the same in every chart.
COLORS = {
    "sent": "#417690",
    "delivered": "#2e7d32",
    "bounced": "#ef6c00",
    "complained": "#c62828",
    "opened": "#7b1fa2",
    "clicked": "#0288d1",
    "failed": "#6d4c41",
    "suppressed": "#9e9e9e",
}
LABELS = {
    "sent": "Sent",
    "delivered": "Delivered",
    "bounced": "Bounced",
    "complained": "Complained",
    "opened": "Opened",
    "clicked": "Clicked",
    "failed": "Failed",
    "suppressed": "Suppressed",
}


class InvalidWindow(ValueError):
    pass


def parse_window(raw: str | None) -> int:
    """The window in days from ?days= (default 30); InvalidWindow for anything else."""
    if raw in (None, ""):
        return DEFAULT_WINDOW
    if not raw.isdigit() or int(raw) not in STATS_WINDOWS:
        choices = ", ".join(str(days) for days in STATS_WINDOWS)
        raise InvalidWindow(f"days must be one of {choices}, not {raw!r}.")
    return int(raw)


@dataclass(frozen=True)
class Breakdown:
    """A row of the per-ESP or per-tag table."""

    name: str
    counts: DeliveryCounts
    bounce_warning: bool
    complaint_warning: bool
    link: str


def _series(metrics: tuple[str, ...], rows: list[DeliveryCounts]) -> list[Series]:
    return [
        Series(LABELS[name], [getattr(row, name) for row in rows], COLORS[name]) for name in metrics
    ]


def _over(rate: float | None, threshold: float) -> bool:
    return rate is not None and rate > threshold


def cached_delivery_stats(*, days: int) -> DeliveryStats:
    """delivery_stats, kept for MAILHUB["DASHBOARD_CACHE_SECONDS"] (0: always fresh).

    The statistics scan every recipient of the window; the landing page is
    opened far more often than the numbers change meaningfully.
    """
    seconds = int(get_mailhub_setting("DASHBOARD_CACHE_SECONDS", 60))
    if seconds <= 0:
        return delivery_stats(days=days, day_groups=cached_day_groups)
    key = f"mailhub:dashboard:{days}:{timezone.get_current_timezone_name()}:{timezone.localdate()}"
    stats = cache.get(key)
    if stats is None:
        stats = delivery_stats(days=days, day_groups=cached_day_groups)
        cache.set(key, stats, seconds)
    return stats


#: Days counted live on every computation: today and yesterday, whose
#: numbers still move the most (deliveries, bounces, first opens).
LIVE_DAYS = 2


def cached_day_groups(days: list[datetime.date]) -> dict[datetime.date, DayGroups]:
    """delivery_day_groups, keeping days before yesterday for a while.

    For MAILHUB["DASHBOARD_DAY_CACHE_SECONDS"]: a day's breakdown changes
    little once it is over (late opens, clicks), so a 90-day window scans
    its two live days, not 90 days of recipients, each time the dashboard
    is computed again.
    """
    seconds = int(get_mailhub_setting("DASHBOARD_DAY_CACHE_SECONDS", 3600))
    first_live = timezone.localdate() - datetime.timedelta(days=LIVE_DAYS - 1)
    zone = timezone.get_current_timezone_name()
    keys = {day: f"mailhub:dashboard-day:{zone}:{day.isoformat()}" for day in days}
    cacheable = [day for day in days if day < first_live] if seconds > 0 else []
    found = cache.get_many([keys[day] for day in cacheable])
    groups = {day: found[keys[day]] for day in cacheable if keys[day] in found}
    computed = delivery_day_groups([day for day in days if day not in groups])
    cache.set_many(
        {keys[day]: day_groups for day, day_groups in computed.items() if day in cacheable},
        seconds,
    )
    return {**groups, **computed}


def dashboard_context(*, days: int) -> dict[str, Any]:
    """Everything the dashboard template shows for a window of days days."""
    stats = cached_delivery_stats(days=days)
    bounce_threshold, complaint_threshold = rate_thresholds()
    labels = [f"{day:%b} {day.day}" for day in stats.days]
    daily = [counts for _, counts in stats.per_day]
    since = stats.since.date().isoformat()
    recipients_url = reverse("admin:sending_recipient_changelist")
    messages_url = reverse("admin:sending_message_changelist")

    def recipients_link(**params: str) -> str:
        return f"{recipients_url}?{urlencode({'message__created_at__gte': since, **params})}"

    def breakdown(rows: list[tuple[str, DeliveryCounts]], param: str) -> list[Breakdown]:
        return [
            Breakdown(
                name=name,
                counts=counts,
                bounce_warning=_over(counts.bounce_rate, bounce_threshold),
                complaint_warning=_over(counts.complaint_rate, complaint_threshold),
                link=(
                    f"{messages_url}?{urlencode({'created_at__gte': since, param: name})}"
                    if param != "tag" or not name.startswith("(")
                    else ""
                ),
            )
            for name, counts in rows
        ]

    totals = stats.totals
    webhook_calls = webhook_call_counts(since=stats.since)
    esp_chart = (
        grouped_bar_chart(
            categories=[name for name, _ in stats.per_esp],
            series=_series(METRICS, [counts for _, counts in stats.per_esp]),
            title=f"Outcomes per ESP, last {days} days",
        )
        if stats.per_esp
        else None
    )
    tag_chart = (
        grouped_bar_chart(
            categories=[name for name, _ in stats.per_tag],
            series=_series(METRICS, [counts for _, counts in stats.per_tag]),
            title=f"Outcomes per tag (busiest {len(stats.per_tag)}), last {days} days",
        )
        if stats.per_tag
        else None
    )
    return {
        "days": days,
        "windows": STATS_WINDOWS,
        "since": stats.since,
        "computed_at": stats.computed_at,
        "totals": totals,
        "tiles": [
            {
                "name": name,
                "label": LABELS[name],
                "value": getattr(totals, name),
                "color": COLORS[name],
                "link": recipients_link(**_TILE_FILTERS[name]) if name in _TILE_FILTERS else "",
            }
            for name in METRICS
        ],
        "bounce_rate": totals.bounce_rate,
        "complaint_rate": totals.complaint_rate,
        "bounce_threshold": bounce_threshold,
        "complaint_threshold": complaint_threshold,
        "bounce_warning": _over(totals.bounce_rate, bounce_threshold),
        "complaint_warning": _over(totals.complaint_rate, complaint_threshold),
        "volume_chart": stacked_bar_chart(
            labels=labels,
            series=_series(("sent", "failed", "suppressed"), daily),
            title=f"Recipients per day, last {days} days",
        ),
        "outcome_chart": line_chart(
            labels=labels,
            series=_series(("delivered", "opened", "clicked", "bounced", "complained"), daily),
            title=f"Outcomes per day, last {days} days",
        ),
        "rate_chart": line_chart(
            labels=labels,
            series=[
                Series("Bounce rate", [_rate(c.bounce_rate) for c in daily], COLORS["bounced"]),
                Series(
                    "Complaint rate",
                    [_rate(c.complaint_rate) for c in daily],
                    COLORS["complained"],
                ),
            ],
            title=f"Bounce and complaint rates per day, last {days} days",
            percent=True,
            height=200,
            thresholds=[
                ("Bounce warning", bounce_threshold, COLORS["bounced"]),
                ("Complaint warning", complaint_threshold, COLORS["complained"]),
            ],
        ),
        "breakdowns": [
            ("Per ESP", esp_chart, breakdown(stats.per_esp, "esp"), "ESP"),
            ("Per tag", tag_chart, breakdown(stats.per_tag, "tag"), "Tag"),
        ],
        "metrics": [(name, LABELS[name]) for name in METRICS],
        "webhook_calls": webhook_calls,
        "failed_calls_link": (
            f"{reverse('admin:tracking_webhookcall_changelist')}?"
            f"{urlencode({'status__exact': 'failed', 'received_at__gte': since})}"
        ),
    }


def _rate(rate: float | None) -> float:
    return rate or 0.0


#: Changelist filters behind a tile: the recipients of the window's messages
#: in that state (only where the state alone matches the tile's count).
_TILE_FILTERS: dict[str, dict[str, str]] = {
    "bounced": {"status__exact": "bounced"},
    "complained": {"status__exact": "complained"},
    "suppressed": {"send_status__exact": "suppressed"},
}
