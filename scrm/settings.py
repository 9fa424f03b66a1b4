"""Settings, configured from the environment with safe local defaults.

Every variable is documented in docs/operations.md.
"""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from scrm.env import env, env_bool, env_list

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = "insecure-local-development-key-never-use-in-production"  # noqa: S105 (DEBUG only)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "scrm",
    "accounts",
    "customers",
    "tags",
    "segments",
    "messaging",
    "journeys",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "scrm.urls"
WSGI_APPLICATION = "scrm.wsgi.application"

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
                "django.template.context_processors.i18n",
                "scrm.navigation.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/scrm"),
        conn_max_age=env("DB_CONN_MAX_AGE", default=60, cast=int),
        conn_health_checks=True,
    )
}
# No JIT compilation of query plans: it costs 0.1 s (a segment's count at a million customers) to close to a second
# (a layering model's recompute) per statement and won nothing on the aggregates measured (bench/). Off by a startup
# option unless DB_JIT_OFF_OPTION=0 (a pooler that refuses startup options: set jit = off on the database instead).
if env_bool("DB_JIT_OFF_OPTION", default=True):
    _DB_OPTIONS = DATABASES["default"].setdefault("OPTIONS", {})
    _DB_OPTIONS["options"] = f"{_DB_OPTIONS.get('options', '')} -c jit=off".strip()
# Sessions compress the full-page images they write to the WAL where the role may set it (scrm/db.py).
DB_COMPRESS_WAL = env_bool("DB_COMPRESS_WAL", default=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"

LANGUAGE_CODE = env("LANGUAGE_CODE", default="zh-hans")
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True
CURRENCY = env("CURRENCY", default="CNY")

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / "var" / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.RolePermission"],
    "DEFAULT_PARSER_CLASSES": [
        "scrm.api.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "scrm.pagination.IdCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "scrm.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SCRM API",
    "DESCRIPTION": "Customers, orders, behaviour events and everything built on them.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# Celery: Redis is the broker; a broker that is down must never hang a web request.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 1,
    "socket_timeout": 5,
    "max_retries": 0,
}
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE

# The WeCom welcome message has 20 seconds: its own queue and worker (Procfile, docker-compose "welcome").
CELERY_TASK_ROUTES = {"messaging.wecom_callbacks.send_welcome": {"queue": "messaging.welcome"}}
CELERY_TASK_PUBLISH_RETRY = False  # a dead broker fails the send at once; the domain-event sweep catches up

BULK_MAX_ROWS = 10_000
# Domain events are consumed per shard of customers (one worker per shard at a time keeps each customer's order).
DOMAIN_EVENT_SHARDS = env("DOMAIN_EVENT_SHARDS", default=4, cast=int)
# RFM runs are incremental (the customers whose orders changed, the window's edges) and full, checking everything,
# when the last full run is this many days old (docs/segments.md).
RFM_FULL_RECOMPUTE_DAYS = env("RFM_FULL_RECOMPUTE_DAYS", default=7, cast=int)

# Messaging (docs/messaging.md). A channel's backend is a dotted path, like Django's EMAIL_BACKEND; every channel
# writes to the console backend (the log and a table shown in the UI) until its own backend is configured.
MESSAGING_DEFAULT_BACKEND = env("MESSAGING_DEFAULT_BACKEND", default="messaging.backends.console.ConsoleBackend")
MESSAGING_BACKENDS = {
    channel: path
    for channel, path in {
        "wecom": env("MESSAGING_WECOM_BACKEND", default=""),
        "sms": env("MESSAGING_SMS_BACKEND", default=""),
        "email": env("MESSAGING_EMAIL_BACKEND", default=""),
        "webhook": env("MESSAGING_WEBHOOK_BACKEND", default=""),
    }.items()
    if path
}
# Credentials and options from the environment; they take precedence over what is saved in the UI.
MESSAGING_CHANNELS = {
    "wecom": {
        "corp_id": env("WECOM_CORP_ID", default=""),
        "secret": env("WECOM_SECRET", default=""),
        "agent_id": env("WECOM_AGENT_ID", default=""),
        "token": env("WECOM_TOKEN", default=""),
        "encoding_aes_key": env("WECOM_ENCODING_AES_KEY", default=""),
        "api_base": env("WECOM_API_BASE", default=""),
    },
    "sms": {
        "url": env("SMS_GATEWAY_URL", default=""),
        "app_key": env("SMS_GATEWAY_KEY", default=""),
        "app_secret": env("SMS_GATEWAY_SECRET", default=""),
        "sign_name": env("SMS_SIGN_NAME", default=""),
        "template_code": env("SMS_TEMPLATE_CODE", default=""),
    },
    "email": {"from_email": env("MESSAGING_FROM_EMAIL", default="")},
    "webhook": {
        "url": env("WEBHOOK_CHANNEL_URL", default=""),
        "secret": env("WEBHOOK_CHANNEL_SECRET", default=""),
        "receipt_secret": env("WEBHOOK_RECEIPT_SECRET", default=""),
    },
}
# The public address WeCom and people reach this site at (https://…); empty: the address a page was opened at.
SITE_URL = env("SITE_URL", default="")
# WeCom sandbox: the local fake WeCom (Procfile "wecom") stands in for the platform, so `make run` shows contacts,
# welcomes and mass sends with no corp account. On by default in development when no corp is configured.
WECOM_SANDBOX = env_bool("WECOM_SANDBOX", default=DEBUG and not env("WECOM_CORP_ID", default=""))
WECOM_SANDBOX_SITE_URL = env("WECOM_SANDBOX_SITE_URL", default="http://127.0.0.1:8000")  # where it posts callbacks
if WECOM_SANDBOX:
    MESSAGING_BACKENDS["wecom"] = "messaging.backends.wecom.WeComBackend"
    MESSAGING_CHANNELS["wecom"] = {
        **MESSAGING_CHANNELS["wecom"],
        "corp_id": "wwfakecorp",  # the fake's defaults (python -m messaging.wecom.fake)
        "secret": "fake-secret",  # the sandbox's, public by design
        "token": "sandboxtoken",
        "encoding_aes_key": "SCRMsandboxEncodingAESKeyForDemos0123456789",
        "api_base": env("WECOM_SANDBOX_API_BASE", default="http://127.0.0.1:8801"),
    }
MESSAGING_BATCH_SIZE = env("MESSAGING_BATCH_SIZE", default=500, cast=int)  # touchpoints claimed per cycle
MESSAGING_LEASE_SECONDS = env("MESSAGING_LEASE_SECONDS", default=30, cast=int)  # a dead worker's claim expires
MESSAGING_MAX_ATTEMPTS = env("MESSAGING_MAX_ATTEMPTS", default=5, cast=int)
MESSAGING_REQUEST_TIMEOUT = env("MESSAGING_REQUEST_TIMEOUT", default=5.0, cast=float)
MESSAGING_RETRY_BASE_SECONDS = env("MESSAGING_RETRY_BASE_SECONDS", default=10.0, cast=float)
MESSAGING_DISPATCH_SECONDS = env("MESSAGING_DISPATCH_SECONDS", default=20.0, cast=float)  # one task's time budget
MESSAGING_DISPATCH_TASKS = env("MESSAGING_DISPATCH_TASKS", default=2, cast=int)  # dispatch tasks kicked at once

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # httpx logs every request at INFO: noise (and CPU) at hundreds of messages a second.
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env("SECURE_HSTS_SECONDS", default=31_536_000, cast=int)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
