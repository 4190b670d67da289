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
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_filters",
    "rest_framework",
    "drf_spectacular",
    "sending",
    "tracking",
    "inbound",
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

# mailhub's own options.
MAILHUB = {
    # Record sends and webhook calls in the database (False: behave exactly
    # like the plain Anymail API, touching no database).
    "STORE": env.bool("MAILHUB_STORE", default=True),
    # Keep message bodies and attachment bytes (False for privacy: only
    # addresses, subjects, statuses and metadata are kept).
    "STORE_CONTENT": env.bool("MAILHUB_STORE_CONTENT", default=True),
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
