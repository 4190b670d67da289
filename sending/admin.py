"""Admin for sent mail (read-only records) and suppressions."""

from django.contrib import admin

from .models import Message, Recipient, StoredAttachment, Suppression


class ReadOnlyAdminMixin:
    """Sent-mail records are history: they can be viewed, not edited."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RecipientInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Recipient
    extra = 0
    can_delete = False
    fields = ("kind", "address", "display_name", "send_status", "esp_message_id", "status")
    readonly_fields = fields


class StoredAttachmentInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = StoredAttachment
    extra = 0
    can_delete = False
    fields = ("position", "filename", "mimetype", "inline", "content_id", "size")
    readonly_fields = fields


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "created_at", "esp", "status", "from_email", "subject", "recipient_count")
    list_filter = ("status", "esp", "created_at")
    search_fields = (
        "subject",
        "from_email",
        "esp_message_id",
        "=recipients__address",
        "=recipients__esp_message_id",
    )
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False
    inlines = (RecipientInline, StoredAttachmentInline)
    readonly_fields = [field.name for field in Message._meta.fields]

    def get_queryset(self, request):
        from django.db.models import Count

        return super().get_queryset(request).annotate(_recipient_count=Count("recipients"))

    @admin.display(description="Recipients", ordering="_recipient_count")
    def recipient_count(self, obj):
        return obj._recipient_count


@admin.register(Recipient)
class RecipientAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "address",
        "kind",
        "send_status",
        "status",
        "esp",
        "esp_message_id",
        "message_link",
    )
    list_filter = ("send_status", "status", "esp", "message__created_at")
    search_fields = ("=address", "=esp_message_id", "message__subject")
    list_select_related = ("message",)
    list_per_page = 50
    show_full_result_count = False
    readonly_fields = [field.name for field in Recipient._meta.fields]

    @admin.display(description="Message", ordering="message__created_at")
    def message_link(self, obj):
        from django.urls import reverse
        from django.utils.html import format_html

        url = reverse("admin:sending_message_change", args=[obj.message_id])
        return format_html('<a href="{}">{}</a>', url, obj.message)


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ("address", "esp", "reason", "source", "created_at", "expires_at")
    list_filter = ("reason", "source", "esp", "created_at")
    search_fields = ("address", "note")
    list_per_page = 50
    readonly_fields = ("created_at", "created_by")

    def save_model(self, request, obj, form, change):
        from .utils import normalize_address

        obj.address = normalize_address(obj.address)
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
