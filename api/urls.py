"""URLs of the JSON API (mounted under api/), its OpenAPI schema and docs page."""

from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=True)
router.register("messages", views.MessageViewSet, basename="api-message")
router.register("recipients", views.RecipientViewSet, basename="api-recipient")
router.register("events", views.EventViewSet, basename="api-event")
router.register("suppressions", views.SuppressionViewSet, basename="api-suppression")

urlpatterns = [
    *router.urls,
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    re_path(r"^.*$", views.not_found),
]
