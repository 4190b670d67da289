"""Admin for sent mail (read-only records) and suppressions, with their operations.

Every operation calls a service (``sending.services``, or
``mailhub.operations.forget_address`` for erasure) and needs its own model
permission: resend (``sending.resend_message``), forget
(``sending.forget_recipient``), and add/change/delete/view on suppressions.
"""

from __future__ import annotations

import io
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme

from .admin_forms import (
    FORGET_MAX_ADDRESSES,
    ForgetForm,
    ResendForm,
    SuppressionAddForm,
    SuppressionImportForm,
)
from .admin_tools import (
    BigTableAdminMixin,
    DateRangeFilter,
    InvalidChangelistQuery,
    ReadOnlyAdminMixin,
    esp_filter,
    looks_like_address,
    parse_ids,
    require_perms,
    tag_filter,
)
from .admin_views import attachment_download_response, html_preview_response
from .exceptions import AnymailError
from .json_lookups import json_dict_has_value, json_list_has
from .models import Message, Recipient, StoredAttachment, Suppression, SuppressionSource
from .selectors import (
    message_html_for_preview,
    message_recipients,
    messages_by_ids,
    resend_plans,
)
from .services import (
    message_resend,
    suppression_add,
    suppression_expire,
    suppression_remove,
    suppressions_export_csv,
    suppressions_import_csv,
)
from .utils import normalize_address


def metadata_condition(queryset: QuerySet, value: str) -> Q:
    """Rows whose metadata has value: "key=value" under that key, a bare value under any."""
    key, equals, wanted = value.partition("=")
    if equals and key.strip():
        return json_dict_has_value(queryset, "metadata", wanted.strip(), key.strip())
    return json_dict_has_value(queryset, "metadata", value)


def _bad_request(request: HttpRequest, title: str, error: str) -> TemplateResponse:
    context = {**admin.site.each_context(request), "title": title, "error": error}
    return TemplateResponse(request, "admin/mailhub/invalid_query.html", context, status=400)


# ---------------------------------------------------------------------------
# Messages


@admin.register(Message)
class MessageAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "created_at",
        "esp",
        "status",
        "from_email",
        "subject_display",
        "recipients_display",
        "tags_display",
    )
    list_display_links = ("id", "subject_display")
    list_filter = (
        "status",
        esp_filter(),
        ("created_at", DateRangeFilter),
        tag_filter(lambda queryset, tag: queryset.filter(json_list_has(queryset, "tags", tag))),
    )
    # The search box parses each term (see search_default and search_prefixes).
    search_fields = ("subject",)
    search_help_text = (
        "An address or an ESP message id (exact), or words of the subject (or a tag). "
        'Prefixes: "to:", "id:", "subject:", "tag:", "meta:" (a metadata value; '
        '"meta:key=value" is fastest).'
    )
    search_prefixes = {
        "to": "search_address",
        "id": "search_esp_message_id",
        "subject": "search_subject",
        "tag": "search_tag",
        "meta": "search_metadata",
    }
    changelist_fields = (
        "id",
        "created_at",
        "esp",
        "status",
        "from_email",
        "subject",
        "to",
        "cc",
        "bcc",
        "tags",
    )
    actions = ("resend_messages",)
    fieldsets = (
        (
            None,
            {
                "fields": (
                    ("status", "esp"),
                    "backend",
                    "esp_message_id",
                    ("created_at", "sent_at", "updated_at"),
                    ("attempts", "requested_by"),
                    ("queue_backend", "next_attempt_at"),
                    "idempotency_key",
                    "resend_of",
                    "error",
                    "content_stored",
                )
            },
        ),
        (
            "Anymail attributes",
            {
                "classes": ("collapse",),
                "fields": (
                    "tags",
                    "metadata",
                    "template_id",
                    "merge_data",
                    "merge_global_data",
                    "merge_metadata",
                    "merge_headers",
                    "esp_extra",
                    ("track_opens", "track_clicks"),
                    "send_at",
                    "envelope_sender",
                ),
            },
        ),
    )
    readonly_fields = [field.name for field in Message._meta.fields]
    #: Most messages one resend (from the admin) handles; it sends while the page waits.
    resend_max = 200

    # -- changelist --------------------------------------------------------

    @admin.display(description="Subject", ordering="subject")
    def subject_display(self, obj: Message) -> str:
        return obj.subject or "(no subject)"

    @admin.display(description="Recipients")
    def recipients_display(self, obj: Message) -> str:
        addresses = [*obj.to, *obj.cc, *obj.bcc]
        if not addresses:
            return "-"
        more = f" +{len(addresses) - 1}" if len(addresses) > 1 else ""
        return f"{addresses[0]}{more}"

    @admin.display(description="Tags")
    def tags_display(self, obj: Message) -> str:
        return ", ".join(str(tag) for tag in obj.tags) or "-"

    def search_default(self, queryset: QuerySet, term: str) -> QuerySet:
        if looks_like_address(term):
            return self.search_address(queryset, term)
        if any(c.isspace() for c in term):
            return self.search_subject(queryset, term)
        # An ESP message id is exact and indexed: when it matches, that's the answer.
        by_id = Message.objects.by_esp_message_id(term).values_list("pk", flat=True)
        by_id = list(by_id[: self.list_max_show_all])
        if by_id:
            return queryset.filter(pk__in=by_id)
        # Conditions on the message row itself, so PostgreSQL ORs their indexes
        # (trigram on the subject, GIN on tags) in one bitmap scan. Metadata
        # under any key can't use an index, so it needs the "meta:" prefix.
        return queryset.filter(Q(subject__icontains=term) | json_list_has(queryset, "tags", term))

    def search_address(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(
            pk__in=Recipient.objects.filter(address=normalize_address(term)).values("message_id")
        )

    def search_esp_message_id(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(pk__in=Message.objects.by_esp_message_id(term).values("pk"))

    def search_subject(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(subject__icontains=term)

    def search_tag(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(json_list_has(queryset, "tags", term))

    def search_metadata(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(metadata_condition(queryset, term))

    # -- the message page --------------------------------------------------

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(self.message_page_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def message_page_context(self, request: HttpRequest, message: Message) -> dict[str, Any]:
        headers = [
            ("From", message.from_email),
            ("To", ", ".join(message.to)),
            ("Cc", ", ".join(message.cc)),
            ("Bcc", ", ".join(message.bcc)),
            ("Reply-To", ", ".join(message.reply_to)),
            ("Subject", message.subject or ""),
            *((str(name), str(value)) for name, value in (message.extra_headers or {}).items()),
        ]
        text_bodies = []
        if message.content_subtype != "html" and message.body:
            text_bodies.append(message.body)
        other_parts = []
        for content, mimetype in message.alternatives or []:
            if mimetype == "text/plain":
                text_bodies.append(content)
            elif mimetype != "text/html":
                other_parts.append(mimetype)
        has_html = message.html_body is not None
        html_url = reverse("admin:sending_message_html", args=[message.pk]) if has_html else ""
        return {
            "message_headers": [(name, value) for name, value in headers if value],
            "text_bodies": text_bodies,
            "other_parts": other_parts,
            "html_url": html_url,
            "recipients": message_recipients(message=message),
            "attachments": list(message.attachments.all()),
            "resends": list(message.resends.only("pk", "created_at", "status", "esp")),
            "can_resend": self.has_resend_permission(request),
            "resend_url": f"{reverse('admin:sending_message_resend')}?ids={message.pk}",
        }

    # -- custom views ------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("resend/", view(self.resend_view), name="sending_message_resend"),
            path("<path:object_id>/html/", view(self.html_view), name="sending_message_html"),
            path(
                "<path:object_id>/attachments/<int:attachment_id>/",
                view(self.attachment_view),
                name="sending_message_attachment",
            ),
            *super().get_urls(),
        ]

    def html_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The message's HTML, for the sandboxed iframe on its page."""
        require_perms(request, "sending.view_message")
        message = self.get_object(request, unquote(object_id))
        if message is None:
            raise Http404("No such message.")
        html = message_html_for_preview(message=message)
        if html is None:
            raise Http404("This message has no HTML body.")
        return html_preview_response(html, remote_images=request.GET.get("remote_images") == "1")

    def attachment_view(
        self, request: HttpRequest, object_id: str, attachment_id: int
    ) -> HttpResponse:
        require_perms(request, "sending.view_message")
        if not str(object_id).isdigit():
            raise Http404("No such message.")
        attachment = StoredAttachment.objects.filter(
            pk=attachment_id, message_id=int(object_id)
        ).first()
        if attachment is None:
            raise Http404("No such attachment.")
        if not attachment.file:
            raise Http404("This attachment's content was not stored.")
        return attachment_download_response(attachment)

    # -- resend ------------------------------------------------------------

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perms(["sending.view_message", "sending.resend_message"])

    @admin.action(description="Resend selected messages…", permissions=["resend"])
    def resend_messages(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        ids = list(queryset.order_by().values_list("pk", flat=True)[: self.resend_max + 1])
        if len(ids) > self.resend_max:
            self.message_user(
                request,
                f"Select at most {self.resend_max} messages to resend from the admin "
                "(`manage.py resend` takes any number).",
                messages.ERROR,
            )
            return None
        url = reverse("admin:sending_message_resend")
        return HttpResponseRedirect(f"{url}?ids={','.join(str(pk) for pk in ids)}")

    def resend_view(self, request: HttpRequest) -> HttpResponse:
        """Show what resending the messages in ?ids= will do; POST with confirm does it."""
        if not self.has_resend_permission(request):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else request.GET
        try:
            ids = parse_ids(data.getlist("ids"))
        except ValueError as error:
            return _bad_request(request, "Can't resend", str(error))
        if not ids:
            return _bad_request(request, "Can't resend", "Choose at least one message.")
        if len(ids) > self.resend_max:
            return _bad_request(
                request, "Can't resend", f"At most {self.resend_max} messages at a time."
            )
        records = list(messages_by_ids(ids=ids))
        if len(records) != len(ids):
            missing = sorted(set(ids) - {record.pk for record in records})
            raise Http404(f"No message with id {', '.join(map(str, missing))}.")

        form = ResendForm(
            {"ids": ",".join(map(str, ids)), "backend": data.get("backend", "")},
        )
        if not form.is_valid():
            plans = resend_plans(messages=records, backend_path=None)
            return self._resend_page(request, form, plans, status=400)
        backend = form.cleaned_data["backend"] or None
        plans = resend_plans(messages=records, backend_path=backend)
        if request.method != "POST" or "confirm" not in request.POST:
            return self._resend_page(request, form, plans)

        sent, failed = [], []
        for plan in plans:
            if plan.problem:
                failed.append((plan.message, plan.problem))
                continue
            try:
                new = message_resend(
                    record=plan.message, backend_path=backend, requested_by=request.user
                )
            except (AnymailError, ValueError) as error:
                failed.append((plan.message, str(error)))
            else:
                sent.append(new)
        if sent:
            links = format_html_join(
                ", ",
                '<a href="{}">#{}</a>',
                ((reverse("admin:sending_message_change", args=[m.pk]), m.pk) for m in sent),
            )
            self.message_user(request, format_html("Resent {} message(s) as {}.", len(sent), links))
        for original, error in failed:
            self.message_user(
                request, f"Message #{original.pk} was not resent: {error}", messages.ERROR
            )
        if len(records) == 1 and len(sent) == 1:
            return HttpResponseRedirect(reverse("admin:sending_message_change", args=[sent[0].pk]))
        return HttpResponseRedirect(reverse("admin:sending_message_changelist"))

    def _resend_page(
        self, request: HttpRequest, form: ResendForm, plans: list, status: int = 200
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Resend messages",
            "opts": self.model._meta,
            "form": form,
            "plans": plans,
            "sendable": sum(1 for plan in plans if plan.will_send),
            "skipped": sum(len(plan.skipped) for plan in plans),
            "recipients": sum(len(plan.recipients) - len(plan.skipped) for plan in plans),
            "blocked": sum(1 for plan in plans if plan.problem),
        }
        return TemplateResponse(
            request, "admin/sending/message/resend.html", context, status=status
        )


# ---------------------------------------------------------------------------
# Recipients


@admin.register(Recipient)
class RecipientAdmin(BigTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "address",
        "kind",
        "send_status",
        "status",
        "esp",
        "esp_message_id",
        "open_count",
        "click_count",
        "message_link",
    )
    list_filter = (
        "send_status",
        "status",
        esp_filter(),
        ("message__created_at", DateRangeFilter),
        tag_filter(
            lambda queryset, tag: queryset.filter(
                message__in=Message.objects.filter(
                    json_list_has(Message.objects.all(), "tags", tag)
                ).values("pk")
            )
        ),
    )
    search_fields = ("address",)
    search_help_text = (
        "An address or an ESP message id (exact), or words of the message's subject. "
        'Prefixes: "subject:", "tag:", "meta:" (a value, or key=value).'
    )
    search_prefixes = {
        "subject": "search_subject",
        "tag": "search_tag",
        "meta": "search_metadata",
    }
    list_select_related = ("message",)
    changelist_fields = (
        "id",
        "address",
        "kind",
        "send_status",
        "status",
        "esp",
        "esp_message_id",
        "open_count",
        "click_count",
        "message__id",
        "message__subject",
        "message__esp",
    )
    readonly_fields = [field.name for field in Recipient._meta.fields]
    actions = ("forget_addresses",)

    @admin.display(description="Message", ordering="message_id")
    def message_link(self, obj: Recipient) -> str:
        url = reverse("admin:sending_message_change", args=[obj.message_id])
        return format_html('<a href="{}">{}</a>', url, obj.message)

    def search_default(self, queryset: QuerySet, term: str) -> QuerySet:
        if looks_like_address(term):
            return queryset.filter(address=normalize_address(term))
        if any(c.isspace() for c in term):
            return self.search_subject(queryset, term)
        return queryset.filter(Q(esp_message_id=term) | Q(message__subject__icontains=term))

    def search_subject(self, queryset: QuerySet, term: str) -> QuerySet:
        return queryset.filter(message__subject__icontains=term)

    def search_tag(self, queryset: QuerySet, term: str) -> QuerySet:
        messages = Message.objects.all()
        matching = messages.filter(json_list_has(messages, "tags", term))
        return queryset.filter(message__in=matching.values("pk"))

    def search_metadata(self, queryset: QuerySet, term: str) -> QuerySet:
        messages = Message.objects.all()
        matching = messages.filter(metadata_condition(messages, term))
        return queryset.filter(message__in=matching.values("pk"))

    # -- forget ------------------------------------------------------------

    def has_forget_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("sending.forget_recipient")

    @admin.action(description="Forget these addresses (erasure)…", permissions=["forget"])
    def forget_addresses(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        addresses = list(
            queryset.exclude(address="[forgotten]")
            .order_by("address")
            .values_list("address", flat=True)
            .distinct()[: FORGET_MAX_ADDRESSES + 1]
        )
        if len(addresses) > FORGET_MAX_ADDRESSES:
            self.message_user(
                request,
                f"Select recipients with at most {FORGET_MAX_ADDRESSES} different addresses "
                "(or use `manage.py forget_recipient`).",
                messages.ERROR,
            )
            return None
        if not addresses:
            self.message_user(request, "These addresses are already forgotten.", messages.INFO)
            return None
        form = ForgetForm(initial={"address": "\n".join(addresses), "keep_suppression": True})
        return self._forget_page(request, form, addresses, next_url=request.get_full_path())

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("forget/", view(self.forget_view), name="sending_recipient_forget"),
            *super().get_urls(),
        ]

    def forget_view(self, request: HttpRequest) -> HttpResponse:
        """GET: a form for addresses. POST: their preview (counts); POST with confirm: forget."""
        from mailhub.operations import forget_address

        if not self.has_forget_permission(request):
            raise PermissionDenied
        next_url = request.POST.get("next") or request.GET.get("next") or ""
        if not url_has_allowed_host_and_scheme(
            next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            next_url = ""
        if request.method != "POST":
            form = ForgetForm(initial={"keep_suppression": True})
            return self._forget_page(request, form, [], next_url=next_url)
        form = ForgetForm(request.POST)
        if not form.is_valid():
            return self._forget_page(request, form, [], next_url=next_url, status=400)
        addresses = form.cleaned_data["address"]
        keep = form.cleaned_data["keep_suppression"]
        if "confirm" not in request.POST:
            return self._forget_page(request, form, addresses, next_url=next_url)
        for address in addresses:
            counts = forget_address(address=address, keep_suppression=keep)
            self.message_user(request, f"Forgot {address}: {_describe_counts(counts)}.")
        return HttpResponseRedirect(next_url or reverse("admin:sending_recipient_changelist"))

    def _forget_page(
        self,
        request: HttpRequest,
        form: ForgetForm,
        addresses: list[str],
        next_url: str = "",
        status: int = 200,
    ) -> TemplateResponse:
        from mailhub.operations import forget_address

        previews = [
            (address, forget_address(address=address, keep_suppression=False, dry_run=True))
            for address in addresses
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Forget addresses" if addresses else "Forget an address",
            "opts": self.model._meta,
            "form": form,
            "previews": previews,
            "addresses": addresses,
            "next_url": next_url,
            "forget_url": reverse("admin:sending_recipient_forget"),
        }
        return TemplateResponse(
            request, "admin/sending/recipient/forget.html", context, status=status
        )


def _describe_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {name.replace('_', ' ')}" for name, count in counts.items())


# ---------------------------------------------------------------------------
# Suppressions


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "active"

    def lookups(self, request, model_admin):
        return [("yes", "Active"), ("no", "Expired")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.active()
        if self.value() == "no":
            return queryset.filter(expires_at__lte=timezone.now())
        return queryset


@admin.register(Suppression)
class SuppressionAdmin(BigTableAdminMixin, admin.ModelAdmin):
    list_display = (
        "address",
        "scope",
        "reason",
        "source",
        "created_at",
        "expires_at",
        "active",
        "created_by",
    )
    list_filter = ("reason", "source", ActiveFilter, esp_filter(), ("created_at", DateRangeFilter))
    search_fields = ("address", "note")
    search_help_text = "Part of an address (or a domain), or of the note."
    list_select_related = ("created_by",)
    form = SuppressionAddForm
    actions = ("expire_suppressions", "export_suppressions")

    @admin.display(description="ESP", ordering="esp")
    def scope(self, obj: Suppression) -> str:
        return obj.esp or "all ESPs"

    @admin.display(description="Active", boolean=True)
    def active(self, obj: Suppression) -> bool:
        return obj.is_active

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        # A suppression is replaced (add it again), expired or removed; not edited.
        return [field.name for field in Suppression._meta.fields]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("address", "esp", "reason", "expires_at", "note")
        return (
            "address",
            "esp",
            "reason",
            "source",
            "created_at",
            "expires_at",
            "note",
            "created_by",
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if change:
            return  # nothing on the change page is editable
        saved = suppression_add(
            address=form.cleaned_data["address"],
            esp=form.cleaned_data["esp"] or "",
            reason=form.cleaned_data["reason"],
            expires_at=form.cleaned_data["expires_at"],
            note=form.cleaned_data["note"],
            source=SuppressionSource.MANUAL,
            created_by=request.user,
        )
        obj.pk = saved.pk
        obj.address, obj.esp = saved.address, saved.esp

    def delete_model(self, request, obj):
        suppression_remove(address=obj.address, esp=obj.esp)

    def delete_queryset(self, request, queryset):
        for address, esp in queryset.values_list("address", "esp"):
            suppression_remove(address=address, esp=esp)

    @admin.action(description="Expire selected suppressions now", permissions=["change"])
    def expire_suppressions(self, request: HttpRequest, queryset: QuerySet) -> None:
        expired = 0
        for suppression in queryset.active().iterator():
            suppression_expire(suppression=suppression)
            expired += 1
        self.message_user(request, f"Expired {expired} suppression(s).")

    @admin.action(description="Export selected suppressions as CSV", permissions=["view"])
    def export_suppressions(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse:
        return self._csv_response(queryset)

    # -- import, export, forget -------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("import/", view(self.import_view), name="sending_suppression_import"),
            path("export/", view(self.export_view), name="sending_suppression_export"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_import": request.user.has_perms(
                ["sending.add_suppression", "sending.change_suppression"]
            ),
            "can_forget": request.user.has_perm("sending.forget_recipient"),
            "forget_form": ForgetForm(initial={"keep_suppression": True}),
            "export_query": request.GET.urlencode(),
        }
        return super().changelist_view(request, extra_context)

    def import_view(self, request: HttpRequest) -> HttpResponse:
        require_perms(request, "sending.add_suppression", "sending.change_suppression")
        result = None
        status = 200
        if request.method == "POST":
            form = SuppressionImportForm(request.POST, request.FILES)
            if form.is_valid():
                dry_run = form.cleaned_data["dry_run"]
                result = suppressions_import_csv(
                    lines=io.StringIO(form.cleaned_data["file"], newline=""),
                    created_by=request.user,
                    dry_run=dry_run,
                )
                if result.ok and not dry_run:
                    self.message_user(
                        request,
                        f"Imported suppressions: {result.created} added, {result.updated} updated.",
                    )
                    return HttpResponseRedirect(reverse("admin:sending_suppression_changelist"))
                status = 200 if result.ok else 400
            else:
                status = 400
        else:
            form = SuppressionImportForm()
        context = {
            **self.admin_site.each_context(request),
            "title": "Import suppressions",
            "opts": self.model._meta,
            "form": form,
            "result": result,
        }
        return TemplateResponse(
            request, "admin/sending/suppression/import.html", context, status=status
        )

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The changelist's suppressions (its filters and search applied), as CSV."""
        require_perms(request, "sending.view_suppression")
        try:
            changelist = self.get_changelist_instance(request)
        except InvalidChangelistQuery as error:
            return _bad_request(request, "Can't export these suppressions", str(error))
        return self._csv_response(changelist.get_queryset(request))

    def _csv_response(self, queryset: QuerySet) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="suppressions.csv"'
        suppressions_export_csv(suppressions=queryset.order_by("pk").iterator(), out=response)
        return response
