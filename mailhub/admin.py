"""mailhub's admin site: the Django admin, whose index is the sending dashboard."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from .dashboard import InvalidWindow, dashboard_context, parse_window


class MailhubAdminSite(admin.AdminSite):
    site_header = "mailhub"
    site_title = "mailhub admin"
    index_title = "Dashboard"
    index_template = "admin/mailhub/dashboard.html"

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> TemplateResponse:
        """The app list, with delivery charts for staff who may view messages."""
        context = dict(extra_context or {})
        status = 200
        if request.user.has_perm("sending.view_message"):
            try:
                days = parse_window(request.GET.get("days"))
            except InvalidWindow as error:
                context["dashboard_error"] = str(error)
                status = 400
            else:
                context["dashboard"] = dashboard_context(days=days)
        response = super().index(request, context)
        response.status_code = status
        return response
