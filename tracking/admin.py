"""Admin for tracking records: events and webhook calls (read-only), and reprocessing.

Reprocessing calls ``tracking.services.webhook_call_reprocess`` and needs the
``tracking.reprocess_webhookcall`` permission.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from sending.admin_tools import (
    BigTableAdminMixin,
    DateRangeFilter,
    ReadOnlyAdminMixin,
    esp_filter,
    looks_like_address,
    tag_filter,
)
from sending.exceptions import AnymailWebhookPayloadError
from sending.json_lookups import json_dict_has_value, json_list_has
from sending.utils import normalize_address

from .models import Event, WebhookCall
from .services import webhook_call_reprocess

#: How much of a stored webhook body its page shows.
BODY_PREVIEW_BYTES = 64 * 1024


@admin.register(Event)
class EventAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "timestamp",
        "event_type",
        "esp",
        "recipient_address",
        "message_id",
        "reject_reason",
        "message_link",
    )
    list_display_links = ("timestamp", "event_type")
    list_filter = (
        "event_type",
        esp_filter(),
        ("timestamp", DateRangeFilter),
        tag_filter(lambda queryset, tag: queryset.filter(json_list_has(queryset, "tags", tag))),
        "reject_reason",
    )
    search_fields = ("recipient_address",)
    search_help_text = (
        'An address or an ESP message id (exact). Prefixes: "event:" (the ESP\'s event id), '
        '"tag:", "meta:" (a value, or key=value).'
    )
    search_prefixes = {"event": "search_event_id", "tag": "search_tag", "meta": "search_metadata"}
    ordering = ("-timestamp", "-id")
    list_select_related = ("recipient",)
    changelist_fields = (
        "id",
        "timestamp",
        "event_type",
        "esp",
        "recipient_address",
        "message_id",
        "reject_reason",
        "recipient__id",
        "recipient__message_id",
    )
    readonly_fields = [
        *(field.name for field in Event._meta.fields if field.name != "esp_event"),
        "esp_event_display",
    ]
    exclude = ("esp_event",)

    @admin.display(description="Message")
    def message_link(self, obj: Event) -> str:
        if obj.recipient is None:
            return "-"
        url = reverse("admin:sending_message_change", args=[obj.recipient.message_id])
        return format_html('<a href="{}">#{}</a>', url, obj.recipient.message_id)

    @admin.display(description="ESP event (raw)")
    def esp_event_display(self, obj: Event) -> str:
        from sending.templatetags.mailhub_admin import pretty_json

        return format_html("<pre>{}</pre>", pretty_json(obj.esp_event))

    def search_default(self, queryset: QuerySet, term: str) -> QuerySet:
        if looks_like_address(term):
            return queryset.filter(recipient_address=normalize_address(term))
        return queryset.filter(message_id=term)

    def search_event_id(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(event_id=term)

    def search_tag(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(json_list_has(queryset, "tags", term))

    def search_metadata(self, queryset: QuerySet, term: str) -> QuerySet:
        key, equals, value = term.partition("=")
        if equals and key.strip():
            return queryset.filter(
                json_dict_has_value(queryset, "metadata", value.strip(), key.strip())
            )
        return queryset.filter(json_dict_has_value(queryset, "metadata", term))


@admin.register(WebhookCall)
class WebhookCallAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "received_at",
        "esp",
        "kind",
        "status",
        "event_count",
        "attempts",
        "body_size",
        "error_summary",
    )
    list_filter = ("status", "kind", esp_filter(), ("received_at", DateRangeFilter))
    search_fields = ("id",)
    search_help_text = (
        "A call id, or an address or ESP message id its events mention. Prefixes: "
        '"error:" (words of the error), "sha256:" (the body\'s hash).'
    )
    search_prefixes = {"error": "search_error", "sha256": "search_sha256"}
    changelist_fields = (
        "id",
        "received_at",
        "esp",
        "kind",
        "status",
        "event_count",
        "attempts",
        "body_size",
        "error",
    )
    readonly_fields = [
        *(f.name for f in WebhookCall._meta.fields if f.name not in ("body", "headers")),
        "headers_display",
        "body_display",
    ]
    exclude = ("body", "headers")
    actions = ("reprocess_calls",)
    #: Most calls one admin action reprocesses (it parses them while the page waits).
    reprocess_max = 500

    @admin.display(description="Error")
    def error_summary(self, obj: WebhookCall) -> str:
        return obj.error[:120] + ("…" if len(obj.error) > 120 else "")

    @admin.display(description="Headers (credentials redacted)")
    def headers_display(self, obj: WebhookCall) -> str:
        from sending.templatetags.mailhub_admin import pretty_json

        return format_html("<pre>{}</pre>", pretty_json(obj.headers))

    @admin.display(description="Body")
    def body_display(self, obj: WebhookCall) -> str:
        body = obj.get_body()
        shown = body[:BODY_PREVIEW_BYTES].decode("utf-8", errors="replace")
        more = len(body) - BODY_PREVIEW_BYTES
        note = f"\n… {more:,} more bytes" if more > 0 else ""
        return format_html("<pre>{}{}</pre>", shown, note)

    def search_default(self, queryset: QuerySet, term: str) -> QuerySet:
        if term.isdigit():
            return queryset.filter(pk=int(term))
        if looks_like_address(term):
            events = Event.objects.filter(recipient_address=normalize_address(term))
        else:
            events = Event.objects.filter(message_id=term)
        return queryset.filter(pk__in=events.exclude(webhook_call=None).values("webhook_call_id"))

    def search_error(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(error__icontains=term)

    def search_sha256(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(body_sha256=term.lower())

    # -- reprocess ---------------------------------------------------------

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perms(
            ["tracking.view_webhookcall", "tracking.reprocess_webhookcall"]
        )

    @admin.action(description="Reprocess selected webhook calls", permissions=["reprocess"])
    def reprocess_calls(self, request: HttpRequest, queryset: QuerySet) -> None:
        calls = list(queryset.order_by("pk")[: self.reprocess_max + 1])
        if len(calls) > self.reprocess_max:
            self.message_user(
                request,
                f"Select at most {self.reprocess_max} calls to reprocess from the admin "
                "(`manage.py reprocess_webhooks` takes any number).",
                messages.ERROR,
            )
            return
        self._reprocess(request, calls)

    def _reprocess(self, request: HttpRequest, calls: list[WebhookCall]) -> None:
        new_events, done = 0, 0
        for call in calls:
            try:
                new_events += webhook_call_reprocess(call=call)
            except AnymailWebhookPayloadError as error:
                self.message_user(
                    request, f"Webhook call #{call.pk} still fails: {error}", messages.ERROR
                )
            else:
                done += 1
        if done:
            self.message_user(
                request, f"Reprocessed {done} webhook call(s): {new_events} new event(s)."
            )

    def get_urls(self):
        return [
            path(
                "<path:object_id>/reprocess/",
                self.admin_site.admin_view(require_POST(self.reprocess_view)),
                name="tracking_webhookcall_reprocess",
            ),
            *super().get_urls(),
        ]

    def reprocess_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_reprocess_permission(request):
            raise PermissionDenied
        call = self.get_object(request, unquote(object_id))
        if call is None:
            raise Http404("No such webhook call.")
        self._reprocess(request, [call])
        return HttpResponseRedirect(reverse("admin:tracking_webhookcall_change", args=[call.pk]))

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["can_reprocess"] = obj is not None and self.has_reprocess_permission(request)
        return super().render_change_form(request, context, add, change, form_url, obj)
