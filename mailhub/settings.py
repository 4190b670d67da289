"""mailhub settings, read from the environment (and an optional .env file).

Every value can be set as an environment variable; see README.md
("Configuration") for the list.
"""

from pathlib import Path

import django
import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if DEBUG:
        SECRET_KEY = "insecure-development-key-set-SECRET_KEY-in-production"
    else:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable (or add "
            "SECRET_KEY=... to .env), e.g. with: python -c 'import secrets; "
            "print(secrets.token_urlsafe(50))'. For local development, DEBUG=true "
            "uses a throwaway key."
        )

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "mailhub.apps.MailhubAdminConfig",  # django.contrib.admin with mailhub's dashboard
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_filters",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "sending",
    "tracking",
    "inbound",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "mailhub.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "mailhub.wsgi.application"
ASGI_APPLICATION = "mailhub.asgi.application"

# Database: a SQLite file in the project by default; PostgreSQL in production
# (DATABASE_URL=postgres://user:pass@host:5432/name).
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'mailhub.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; "synchronous=NORMAL"
    # is durable across application crashes (not power loss) and much faster.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command",
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
    )
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Webhook bodies (inbound mail with attachments) can be large; the webhook
# views enforce their own caps (MAILHUB["WEBHOOK_MAX_BODY_BYTES"]) and answer
# 413, so Django's generic 2.5 MB limit is lifted here.
DATA_UPLOAD_MAX_MEMORY_SIZE = None

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
MEDIA_URL = "media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=BASE_DIR / "var" / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

# Email. The sandbox ESP needs no credentials and sends nothing anywhere.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="sending.backends.sandbox.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="mailhub@localhost")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
ADMINS = [("Admin", address) for address in env.list("ADMINS", default=[])]

if django.VERSION >= (6, 1):
    # Django 6.1 replaces EMAIL_BACKEND with MAILERS; configure the default
    # mailer from the same variable so both Django versions behave alike.
    MAILERS = {"default": {"BACKEND": EMAIL_BACKEND, "OPTIONS": {}}}
    del EMAIL_BACKEND

# Anymail-compatible settings: ANYMAIL_<NAME> environment variables become
# ANYMAIL["<NAME>"] (e.g. ANYMAIL_MAILGUN_API_KEY -> ANYMAIL["MAILGUN_API_KEY"]).
_ANYMAIL_BOOLS = {"IGNORE_UNSUPPORTED_FEATURES", "IGNORE_RECIPIENT_STATUS", "DEBUG_API_REQUESTS"}
_ANYMAIL_LISTS = {"WEBHOOK_SECRET"}
ANYMAIL = {}
for _name in sorted(env.ENVIRON):
    if _name.startswith("ANYMAIL_") and _name != "ANYMAIL_":
        _key = _name[len("ANYMAIL_") :]
        if _key in _ANYMAIL_BOOLS:
            ANYMAIL[_key] = env.bool(_name)
        elif _key in _ANYMAIL_LISTS:
            ANYMAIL[_key] = env.list(_name)
        elif _key == "REQUESTS_TIMEOUT":
            ANYMAIL[_key] = env.float(_name)
        else:
            ANYMAIL[_key] = env.str(_name)


def _retention_days(kind: str, default: int | None) -> int | None:
    """MAILHUB_RETENTION_<KIND>_DAYS: a number of days, or "forever"."""
    value = env.str(f"MAILHUB_RETENTION_{kind}_DAYS", default=str(default))
    return None if value.strip().lower() in ("", "none", "forever") else int(value)


# mailhub's own options.
MAILHUB = {
    # Record sends and webhook calls in the database (False: behave exactly
    # like the plain Anymail API, touching no database).
    "STORE": env.bool("MAILHUB_STORE", default=True),
    # Keep message bodies and attachment bytes (False for privacy: only
    # addresses, subjects, statuses and metadata are kept).
    "STORE_CONTENT": env.bool("MAILHUB_STORE_CONTENT", default=True),
    # send_messages() records messages in chunks of this many: one transaction
    # writes a chunk's records before its first ESP call, and outcomes are
    # written together, at the latest every RECORD_FLUSH_SECONDS.
    "RECORD_BATCH_SIZE": env.int("MAILHUB_RECORD_BATCH_SIZE", default=100),
    "RECORD_FLUSH_SECONDS": env.float("MAILHUB_RECORD_FLUSH_SECONDS", default=1.0),
    # Largest webhook body accepted (bytes); larger requests get a 413.
    "WEBHOOK_MAX_BODY_BYTES": env.int("MAILHUB_WEBHOOK_MAX_BODY_BYTES", default=10 * 1024 * 1024),
    # Inbound mail: largest webhook body and largest single attachment (bytes);
    # larger ones get a 413.
    "INBOUND_MAX_BODY_BYTES": env.int("MAILHUB_INBOUND_MAX_BODY_BYTES", default=40 * 1024 * 1024),
    "INBOUND_MAX_ATTACHMENT_BYTES": env.int(
        "MAILHUB_INBOUND_MAX_ATTACHMENT_BYTES", default=25 * 1024 * 1024
    ),
    # Suppressions added from bounce/complaint/unsubscribe events apply to
    # "all" ESPs, or only to the "esp" that reported them.
    "SUPPRESSION_SCOPE": env.str("MAILHUB_SUPPRESSION_SCOPE", default="all"),
    # Backends (dotted paths) the admin offers for resending, besides each
    # message's own backend and the sandbox.
    "RESEND_BACKENDS": env.list("MAILHUB_RESEND_BACKENDS", default=[]),
    # The admin dashboard warns when a bounce or complaint rate (per recipient
    # accepted by the ESP) passes these; ESPs suspend senders above roughly
    # 5% bounces and 0.1% complaints.
    "BOUNCE_RATE_WARNING": env.float("MAILHUB_BOUNCE_RATE_WARNING", default=0.05),
    "COMPLAINT_RATE_WARNING": env.float("MAILHUB_COMPLAINT_RATE_WARNING", default=0.001),
    # How long the admin dashboard's statistics are reused (seconds; 0: never).
    "DASHBOARD_CACHE_SECONDS": env.int("MAILHUB_DASHBOARD_CACHE_SECONDS", default=60),
    # How long a past day's breakdown is reused (seconds; 0: never); today and
    # yesterday are always counted afresh.
    "DASHBOARD_DAY_CACHE_SECONDS": env.int("MAILHUB_DASHBOARD_DAY_CACHE_SECONDS", default=3600),
    # Largest suppression CSV the admin accepts for import (bytes).
    "SUPPRESSION_IMPORT_MAX_BYTES": env.int(
        "MAILHUB_SUPPRESSION_IMPORT_MAX_BYTES", default=5 * 1024 * 1024
    ),
    # How long `manage.py purge` keeps each kind of record, in days (None:
    # forever). Purging content blanks bodies and attachment files but keeps
    # the Message and Recipient rows, so counts and statuses survive.
    "RETENTION": {
        "message_content_days": _retention_days("MESSAGE_CONTENT", 30),
        "messages_days": _retention_days("MESSAGES", 365),
        "events_days": _retention_days("EVENTS", 90),
        "webhook_calls_days": _retention_days("WEBHOOK_CALLS", 30),
    },
    # Queued sending (sending.backends.queued), retries, rate limits and
    # failover (sending.backends.routing). Defaults in sending.resilience.
    "QUEUE": {
        # The backend a queued message is sent through by the worker.
        "BACKEND": env.str(
            "MAILHUB_QUEUE_BACKEND", default="sending.backends.sandbox.EmailBackend"
        ),
        # ESP calls per message before it is marked failed; transient failures
        # wait up to BACKOFF_BASE * 2**(n-1) seconds (at most BACKOFF_MAX)
        # between calls, "full" jitter or "none", never less than Retry-After.
        "MAX_ATTEMPTS": env.int("MAILHUB_QUEUE_MAX_ATTEMPTS", default=8),
        "BACKOFF_BASE": env.float("MAILHUB_QUEUE_BACKOFF_BASE", default=2.0),
        "BACKOFF_MAX": env.float("MAILHUB_QUEUE_BACKOFF_MAX", default=600.0),
        "JITTER": env.str("MAILHUB_QUEUE_JITTER", default="full"),
        # Retry a read timeout (the ESP may have taken it) even without an
        # idempotency key; false marks such a message "unknown" instead.
        "RETRY_AMBIGUOUS": env.bool("MAILHUB_QUEUE_RETRY_AMBIGUOUS", default=True),
        # Messages per second per ESP key, for every send: "mailgun=50,postmark=10".
        "RATE_LIMITS": env.dict("MAILHUB_QUEUE_RATE_LIMITS", cast={"value": float}, default={}),
        # Shared rate limits and ESP health ("": the broker, when it is Redis).
        "REDIS_URL": env.str("MAILHUB_REDIS_URL", default=""),
        # The routing backend's backends, tried in order.
        "FAILOVER_BACKENDS": env.list("MAILHUB_FAILOVER_BACKENDS", default=[]),
        # An ESP with UNHEALTHY_ERROR_RATE failures over HEALTH_WINDOW seconds
        # (and at least HEALTH_MIN_CALLS calls) is tried last.
        "HEALTH_WINDOW": env.float("MAILHUB_HEALTH_WINDOW", default=60.0),
        "HEALTH_MIN_CALLS": env.int("MAILHUB_HEALTH_MIN_CALLS", default=10),
        "UNHEALTHY_ERROR_RATE": env.float("MAILHUB_UNHEALTHY_ERROR_RATE", default=0.5),
        # The sweep: "sending" for longer than STUCK_AFTER seconds is stuck;
        # queued and QUEUED_LOST_AFTER seconds past due was lost by the broker.
        "STUCK_AFTER": env.float("MAILHUB_STUCK_AFTER", default=600.0),
        "QUEUED_LOST_AFTER": env.float("MAILHUB_QUEUED_LOST_AFTER", default=300.0),
    },
}

# Celery, for queued sending: `celery -A mailhub worker` and `celery -A mailhub beat`.
# With no broker, queued messages are sent inline once their transaction commits.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="mailhub")
CELERY_TASK_IGNORE_RESULT = True
# A task is acknowledged when done, so a killed worker's messages are delivered
# again (the claim in sending.queueing makes a repeat a no-op).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=4)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Don't hold a request for long when the broker is down: the message is
# recorded as queued either way, and the sweep hands it over later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BEAT_SCHEDULE = {
    "mailhub-sweep-sending": {
        "task": "mailhub.sweep_sending",
        "schedule": env.float("MAILHUB_SWEEP_INTERVAL", default=60.0),
    },
}

# The JSON API (api/): API keys only, JSON only.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.authentication.HasApiKeyScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "mailhub API",
    "DESCRIPTION": "Status of sent messages, recipients and tracking events; suppressions; resend.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/",
    # The docs page's Swagger UI comes from this site's static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One schema enum per status vocabulary, named after it.
    "ENUM_NAME_OVERRIDES": {
        "MessageStatusEnum": "sending.models.MessageStatus",
        "SendStatusEnum": "sending.models.SendStatus",
        "EventTypeEnum": "sending.signals.EventType",
        "RejectReasonEnum": "sending.signals.RejectReason",
        "SuppressionReasonEnum": "sending.models.SuppressionReason",
        "SuppressionSourceEnum": "sending.models.SuppressionSource",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="WARNING")},
}

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
