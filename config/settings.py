"""Settings, all from the environment (README lists every variable).

Development defaults apply only with DEBUG on; with DEBUG off the secrets have no default and the
process refuses to start without them.
"""

import secrets
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.dateparse import parse_duration

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()


def env_duration(name: str, default: timedelta) -> timedelta:
    """A duration: "3d", "72h", "90m", "45s", plain seconds, or ISO 8601 ("P3D")."""
    raw = env.str(name, default="").strip()
    if not raw:
        return default
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    try:
        if raw[-1] in units and raw[:-1].replace(".", "", 1).isdigit():
            return timedelta(**{units[raw[-1]]: float(raw[:-1])})
        if raw.replace(".", "", 1).isdigit():
            return timedelta(seconds=float(raw))
    except OverflowError:
        pass
    parsed = parse_duration(raw)
    if parsed is None or parsed <= timedelta(0):
        raise ImproperlyConfigured(f"{name}={raw!r} is not a duration such as 3d, 72h or P3D.")
    return parsed


DEBUG = env.bool("DEBUG", default=False)

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-secret-key-change-me")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
else:
    SECRET_KEY = env.str("SECRET_KEY", default="")
    ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
    if not SECRET_KEY or not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "DEBUG is off: set SECRET_KEY and ALLOWED_HOSTS (or DEBUG=1 for development)."
        )

SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    # First-party apps, bottom layer first (DESIGN.md "Layout"; `make lint` checks the layers).
    "accounts",
    "organizations",
    "payments.apps.PaymentsConfig",
    "billing.apps.BillingConfig",
    "seats",
    "credits",
    "invoices",
    "reconciliation",
    "analytics",
    "dunning",
    "dashboard",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.security.ContentSecurityPolicy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "config.admin_dates.AdminDateHierarchyGuard",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "credits.middleware.ApiBodyLimit",
    "config.busy.BusyAnswer",
]

# The extension API's own chain (config/wsgi.py): only what its answers need.
API_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "credits.middleware.ApiBodyLimit",
]

ROOT_URLCONF = "config.urls"

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
                "organizations.context_processors.profiles",
                "dunning.context_processors.billing_lifecycle",
            ],
        },
    },
]

WSGI_APPLICATION = "config.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default="postgres:///kilo_billing")}
# Each process keeps a bounded pool of connections (psycopg's, through Django). Without it, every
# thread of `runserver` kept its own connection for CONN_MAX_AGE, and a burst of concurrent
# requests exhausted PostgreSQL's max_connections. DB_POOL_MAX_SIZE=0 turns the pool off (e.g.
# behind PgBouncer); then CONN_MAX_AGE says how long a thread keeps its connection.
DB_POOL_MIN_SIZE = env.int("DB_POOL_MIN_SIZE", default=1)
DB_POOL_MAX_SIZE = env.int("DB_POOL_MAX_SIZE", default=10)
DB_POOL_TIMEOUT = env.float("DB_POOL_TIMEOUT", default=30.0)
if DB_POOL_MAX_SIZE:
    if not 0 <= DB_POOL_MIN_SIZE <= DB_POOL_MAX_SIZE or DB_POOL_TIMEOUT <= 0:
        raise ImproperlyConfigured(
            "Set 0 <= DB_POOL_MIN_SIZE <= DB_POOL_MAX_SIZE and DB_POOL_TIMEOUT > 0 (seconds)."
        )
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": DB_POOL_MIN_SIZE,
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": DB_POOL_TIMEOUT,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps the connections
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
# A connection that died (PostgreSQL restarted) is replaced before a request gets it; with the
# pool this is the pool's check when a connection is handed out.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Short timeouts: Redis holds only the cache, rate limits and the Celery queue, so a Redis outage
# must degrade those, not hang the dashboard.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "kb",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}

AUTH_USER_MODEL = "accounts.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# A form whose session changed meanwhile gets a page saying so, in the site's layout.
CSRF_FAILURE_VIEW = "dashboard.views.csrf_failure"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Sessions live in the database so that the dashboard keeps working while Redis is down.
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# Log-in attempts allowed within the window per (email, client address), and per email from any
# address (0: four times the first), counted before the password is checked; then refused until
# the window ends (accounts/ratelimit.py).
LOGIN_ATTEMPTS_LIMIT = env.int("LOGIN_ATTEMPTS_LIMIT", default=5)
LOGIN_ATTEMPTS_PER_EMAIL_LIMIT = env.int("LOGIN_ATTEMPTS_PER_EMAIL_LIMIT", default=0)
LOGIN_ATTEMPTS_WINDOW = timedelta(minutes=15)
# Proxies in front of the app that append the client's address to X-Forwarded-For (the TLS proxy
# of the docker compose deployment is one). 0: the connection's address (REMOTE_ADDR) is the
# client's, and X-Forwarded-For is ignored.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT < 0 or LOGIN_ATTEMPTS_LIMIT < 1 or LOGIN_ATTEMPTS_PER_EMAIL_LIMIT < 0:
    raise ImproperlyConfigured(
        "TRUSTED_PROXY_COUNT must be 0 or more, LOGIN_ATTEMPTS_LIMIT 1 or more and "
        "LOGIN_ATTEMPTS_PER_EMAIL_LIMIT 0 (four times LOGIN_ATTEMPTS_LIMIT) or more."
    )

INVITATION_VALID_FOR = timedelta(days=7)

# Requests per minute per API token; over it the API answers 429 with Retry-After.
API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=600)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Kilo Billing <billing@localhost>")
# Where customers reach a person: every page and email that says "contact support" shows it
# (accounts/templatetags/support.py). By default the address the emails come from.
SUPPORT_EMAIL = env.str("SUPPORT_EMAIL", default="") or parseaddr(DEFAULT_FROM_EMAIL)[1]
# The seller on every invoice (the Invoices tab, the sandbox's hosted invoice page and PDF), as
# Stripe prints the account's business name, address and tax ID; with Stripe, keep them the same
# as the account's public details. SELLER_ADDRESS: lines separated by "\n".
SELLER_NAME = env.str("SELLER_NAME", default="Kilo Billing")
SELLER_ADDRESS = env.str("SELLER_ADDRESS", default="", multiline=True)
SELLER_VAT_ID = env.str("SELLER_VAT_ID", default="")

# Payments: Stripe when a secret key is set; the local sandbox (no real money) only in development
# or when chosen explicitly with BILLING_GATEWAY=sandbox (DESIGN.md, "Payments": production never
# runs on the sandbox by accident).
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
BILLING_GATEWAYS = ("stripe", "sandbox")
BILLING_GATEWAY = env.str("BILLING_GATEWAY", default="").strip().lower()
if BILLING_GATEWAY and BILLING_GATEWAY not in BILLING_GATEWAYS:
    raise ImproperlyConfigured(
        f"BILLING_GATEWAY={BILLING_GATEWAY!r}: use stripe or sandbox (or leave it empty)."
    )
if BILLING_GATEWAY == "stripe" and not STRIPE_SECRET_KEY:
    raise ImproperlyConfigured("BILLING_GATEWAY=stripe: set STRIPE_SECRET_KEY.")
if not BILLING_GATEWAY:
    if STRIPE_SECRET_KEY:
        BILLING_GATEWAY = "stripe"
    elif DEBUG:
        BILLING_GATEWAY = "sandbox"
    else:
        raise ImproperlyConfigured(
            "DEBUG is off and STRIPE_SECRET_KEY is not set: set STRIPE_SECRET_KEY to take real "
            "payments, or BILLING_GATEWAY=sandbox for a demo or staging site where no real money "
            "moves (every page then says so)."
        )
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str(
    "STRIPE_WEBHOOK_SECRET", default="whsec_sandbox_dev_only" if DEBUG else ""
)
if not DEBUG and not STRIPE_WEBHOOK_SECRET:
    raise ImproperlyConfigured("DEBUG is off: set STRIPE_WEBHOOK_SECRET.")
# Webhook processing (payments.dispatch): a worker claims an event for this long; if it dies, the
# retry sweep takes the event up again once the claim has lapsed. An error that waiting cannot
# heal (the gateway's 404 or 400) is tried this many times, then set aside for a person.
WEBHOOK_PROCESSING_LEASE = env_duration("WEBHOOK_PROCESSING_LEASE", timedelta(minutes=10))
WEBHOOK_PERMANENT_ERROR_ATTEMPTS = env.int("WEBHOOK_PERMANENT_ERROR_ATTEMPTS", default=3)
if WEBHOOK_PERMANENT_ERROR_ATTEMPTS < 1:
    raise ImproperlyConfigured("WEBHOOK_PERMANENT_ERROR_ATTEMPTS must be 1 or more.")

# The failed-payment lifecycle.
BILLING_GRACE_PERIOD = env_duration("BILLING_GRACE_PERIOD", timedelta(days=3))
BILLING_RETENTION_PERIOD = env_duration("BILLING_RETENTION_PERIOD", timedelta(days=30))
BILLING_FAILED_ATTEMPTS_BEFORE_GRACE = env.int("BILLING_FAILED_ATTEMPTS_BEFORE_GRACE", default=2)
# An unpaid seat invoice starts grace after this long overdue, whatever else (DESIGN.md).
BILLING_OVERDUE_DAYS_BEFORE_GRACE = 7

# The sandbox gateway. Stripe sends one action's events in no guaranteed order: with
# SANDBOX_SHUFFLE_EVENTS the sandbox shuffles them too (SANDBOX_SHUFFLE_SEED makes a run
# repeatable). SANDBOX_END_OF_RETRIES is the Stripe dashboard's "if all retries for a payment
# fail" setting: unpaid (what the README asks operators to choose), cancel or past_due.
SANDBOX_SHUFFLE_EVENTS = env.bool("SANDBOX_SHUFFLE_EVENTS", default=False)
SANDBOX_SHUFFLE_SEED = env.int("SANDBOX_SHUFFLE_SEED", default=None)
SANDBOX_END_OF_RETRIES = env.str("SANDBOX_END_OF_RETRIES", default="unpaid")
if SANDBOX_END_OF_RETRIES not in ("unpaid", "cancel", "past_due"):
    raise ImproperlyConfigured("SANDBOX_END_OF_RETRIES: use unpaid, cancel or past_due.")
# SANDBOX_DELIVERY=chaos: events delivered late (up to a day of the sandbox's clock), in any order
# across actions, some twice, some lost and redelivered later, as Stripe allows itself
# (payments/sandbox/chaos.py); "immediate" (the default): each action's events right after it.
# SANDBOX_CHAOS_SEED replays a run; without it one is drawn here, so that it can be printed.
SANDBOX_DELIVERY = env.str("SANDBOX_DELIVERY", default="immediate").strip().lower()
if SANDBOX_DELIVERY not in ("immediate", "chaos"):
    raise ImproperlyConfigured("SANDBOX_DELIVERY: use immediate or chaos.")
SANDBOX_CHAOS_SEED = env.int("SANDBOX_CHAOS_SEED", default=None)
if SANDBOX_CHAOS_SEED is None:
    SANDBOX_CHAOS_SEED = secrets.randbelow(2**31)

# Reads of the gateway per second, per process (payments.ratelimit): every page the reconciler
# reads from Stripe waits for a token. Stripe allows 100 reads a second in live mode (25 in test
# mode) for the whole account; 25 leaves room for the requests people wait on.
GATEWAY_READS_PER_SECOND = env.float("GATEWAY_READS_PER_SECOND", default=25.0)
if GATEWAY_READS_PER_SECOND <= 0:
    raise ImproperlyConfigured("GATEWAY_READS_PER_SECOND must be more than 0.")

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY = False
# With Redis down, queueing fails at once (the sweeps pick the work up later) instead of holding
# the request while kombu retries the connection.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 1,
    "socket_timeout": 5,
    "max_retries": 0,
}
# Every periodic job, once: (name, Celery task, seconds between runs). The beat schedule and
# `manage.py billing_jobs` (each job once, in this order) are both built from this list.
PERIODIC_JOBS: tuple[tuple[str, str, int], ...] = (
    ("sandbox_tick", "payments.sandbox.tasks.sandbox_tick", 60),
    ("sandbox_redeliver", "payments.sandbox.tasks.sandbox_events_redeliver", 60),
    ("webhook_retry", "payments.tasks.webhook_events_retry", 300),
    ("hold_expiry", "credits.tasks.holds_expire", 60),
    ("auto_topup", "credits.tasks.auto_topup_sweep", 300),
    ("dunning_sweep", "dunning.tasks.dunning_sweep", 300),
    ("retention_sweep", "dunning.tasks.retention_sweep", 3600),
    ("usage_weeks_sum", "analytics.tasks.usage_weeks_sum", 3600),
    ("seat_resync", "seats.tasks.seat_subscriptions_resync", 86400),
    # The gateway's books against ours (reconciliation/): the payers with gateway activity since
    # the last run, and every payer and credit account once a day.
    ("reconcile_recent", "reconciliation.tasks.reconcile_recent", 300),
    ("reconcile_full", "reconciliation.tasks.reconcile_full", 86400),
)
CELERY_BEAT_SCHEDULE = {
    name: {"task": task, "schedule": every} for name, task, every in PERIODIC_JOBS
}

# Who is emailed about what must never happen silently (a ledger key naming another operation).
ADMINS = [("Kilo Billing staff", email) for email in env.list("ADMINS", default=[])]
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {
        "console": {"class": "logging.StreamHandler"},
        "mail_admins": {"class": "django.utils.log.AdminEmailHandler", "level": "ERROR"},
    },
    "loggers": {"credits.ledger": {"handlers": ["mail_admins"], "level": "ERROR"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# Production hardening; all of it is inert on plain http://127.0.0.1 with DEBUG on.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = not DEBUG
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = 0 if DEBUG else 60 * 60 * 24 * 365
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[SITE_URL])
