"""Filters for mailhub's admin pages."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def percent(rate: float | None) -> str:
    """0.0523 -> "5.23%"; None (nothing to divide by) -> "-"."""
    if rate is None:
        return "-"
    shown = f"{rate * 100:.2f}".rstrip("0").rstrip(".")
    return f"{shown}%"


@register.filter
def metric(counts: Any, name: str) -> Any:
    """counts.<name>, for a metric name held in a variable."""
    return getattr(counts, name)


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def filesize_or_dash(size: int | None) -> str:
    from django.template.defaultfilters import filesizeformat

    return filesizeformat(size) if size else "-"
