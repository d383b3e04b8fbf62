"""Settings for the HTTP benchmark: the project's production settings exactly (DEBUG off, the
same middleware, database and cache options, HTTPS redirect included: the load generator sends
`X-Forwarded-Proto: https` as the TLS proxy would), plus one trivial view to compare against."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
