from django.apps import AppConfig


class TrackingConfig(AppConfig):
    name = "tracking"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sending import services as sending_services

        from .services import events_link_after_send

        if events_link_after_send not in sending_services.RESULT_RECORDED_HOOKS:
            sending_services.RESULT_RECORDED_HOOKS.append(events_link_after_send)

        from sending.backends import sandbox

        from .webhooks.sandbox import deliver_sandbox_events

        if deliver_sandbox_events not in sandbox.EVENT_SINKS:
            sandbox.EVENT_SINKS.append(deliver_sandbox_events)
