"""Admin for received mail: read-only records, HTML only sandboxed, attachments only downloaded."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from sending.admin_tools import ReadOnlyAdminMixin, esp_filter, require_perms
from sending.admin_views import file_download_response, html_preview_response

from .models import InboundAttachment, InboundMessage


class InboundAttachmentInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = InboundAttachment
    extra = 0
    can_delete = False
    fields = ("position", "download", "declared_content_type", "inline", "content_id", "size")
    readonly_fields = fields

    @admin.display(description="File")
    def download(self, obj: InboundAttachment) -> str:
        if not obj.file:
            return obj.filename
        url = reverse("admin:inbound_inboundmessage_attachment", args=[obj.message_id, obj.pk])
        return format_html('<a href="{}">{}</a>', url, obj.filename)


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "received_at",
        "esp",
        "from_address",
        "envelope_recipient",
        "subject",
        "spam_detected",
        "has_parse_error",
    )
    list_filter = (esp_filter(), "spam_detected", "received_at")
    search_fields = ("=from_address", "=envelope_recipient", "=message_id", "subject")
    date_hierarchy = "received_at"
    list_per_page = 50
    show_full_result_count = False
    list_select_related = ("reply_to_message",)
    inlines = (InboundAttachmentInline,)
    exclude = ("html", "headers")
    readonly_fields = (
        "esp",
        "received_at",
        "event_id",
        "envelope_sender",
        "envelope_recipient",
        "from_email",
        "to",
        "cc",
        "subject",
        "date",
        "message_id",
        "in_reply_to",
        "references",
        "reply_to_message",
        "spam_detected",
        "spam_score",
        "size",
        "parse_error",
        "webhook_call",
        "header_list",
        "text",
        "stripped_text",
        "html_preview",
    )

    @admin.display(boolean=True, description="Parse error")
    def has_parse_error(self, obj: InboundMessage) -> bool:
        return bool(obj.parse_error)

    @admin.display(description="Headers")
    def header_list(self, obj: InboundMessage) -> str:
        return format_html_join("\n", "<div><b>{}</b>: {}</div>", obj.headers or [])

    @admin.display(description="HTML")
    def html_preview(self, obj: InboundMessage) -> str:
        if not obj.html:
            return "(none)"
        url = reverse("admin:inbound_inboundmessage_html", args=[obj.pk])
        # Received HTML is hostile: shown only in a sandbox with no scripts,
        # no same-origin access and no remote loads (see html_preview_response).
        return format_html(
            '<iframe sandbox src="{}" style="width:100%;height:400px;border:1px solid #ccc">'
            '</iframe><p><a href="{}?remote_images=1">Load remote images</a></p>',
            url,
            url,
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/html/", view(self.html_view), name="inbound_inboundmessage_html"
            ),
            path(
                "<path:object_id>/attachments/<int:attachment_id>/",
                view(self.attachment_view),
                name="inbound_inboundmessage_attachment",
            ),
            *super().get_urls(),
        ]

    def html_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        require_perms(request, "inbound.view_inboundmessage")
        message = self.get_object(request, unquote(object_id))
        if message is None or not message.html:
            raise Http404("No such message, or it has no HTML.")
        return html_preview_response(
            message.html, remote_images=request.GET.get("remote_images") == "1"
        )

    def attachment_view(
        self, request: HttpRequest, object_id: str, attachment_id: int
    ) -> HttpResponse:
        require_perms(request, "inbound.view_inboundmessage")
        if not str(object_id).isdigit():
            raise Http404("No such message.")
        attachment = InboundAttachment.objects.filter(
            pk=attachment_id, message_id=int(object_id)
        ).first()
        if attachment is None or not attachment.file:
            raise Http404("No such attachment.")
        return file_download_response(
            attachment.file,
            filename=attachment.filename,
            mimetype=attachment.declared_content_type,
            fallback=f"attachment-{attachment.position + 1}",
        )
