from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "API"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the API key scheme with drf-spectacular (OpenAPI security scheme).
        from . import schema  # noqa: F401
