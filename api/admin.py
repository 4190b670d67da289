"""Admin for API keys: create (the key is shown once, then never again), revoke."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import ApiKey, ApiKeyScope
from .services import api_key_issue, api_keys_revoke


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiKeyScope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[ApiKeyScope.READ],
        help_text="Read: look up messages, recipients, events, suppressions. "
        "Write: add and remove suppressions, resend messages.",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = (
        "name",
        "key_prefix",
        "scope_list",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = ("revoked_at", "created_at")
    search_fields = ("name", "=prefix")
    list_select_related = ("created_by",)
    readonly_fields = ("key_prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["name", "scopes"]
        return ["name", "scopes", *self.readonly_fields]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        obj.created_by = request.user
        raw_key = api_key_issue(api_key=obj)
        # The only time the key can be seen: only its hash is stored.
        messages.warning(
            request,
            f"The new API key is {raw_key} — copy it now: it can't be shown again. "
            'Send it as "Authorization: Bearer <key>".',
        )

    @admin.display(description="Key")
    def key_prefix(self, obj: ApiKey) -> str:
        return f"mh_{obj.prefix}_…"

    @admin.display(description="Scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes)

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = api_keys_revoke(api_keys=queryset)
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)
