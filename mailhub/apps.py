"""The Django admin, with mailhub's site (its index is the dashboard)."""

from django.contrib.admin.apps import AdminConfig


class MailhubAdminConfig(AdminConfig):
    default_site = "mailhub.admin.MailhubAdminSite"

    def ready(self) -> None:
        super().ready()
        from . import checks  # noqa: F401 (registers the checks)
