"""mailhub URL configuration.

Webhooks live under anymail/ so ESP webhook settings carry over unchanged
from a project that used the same URLs.
"""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("anymail/", include("tracking.urls")),
    path("anymail/", include("inbound.urls")),
    path("api/", include("api.urls")),
]
