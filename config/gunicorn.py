"""The production web server: `make serve`, the Dockerfile and docker-compose all run
`gunicorn --config config/gunicorn.py config.wsgi`. Chosen by measurement (bench/README.md):
threads in few processes (about one per core) with keep-alive, so that an API client's
connection and each process's pool of database connections are reused between requests."""

import os

bind = os.environ.get("GUNICORN_BIND") or f"127.0.0.1:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))
keepalive = 5
backlog = 2048
timeout = 30
graceful_timeout = 30
# Restart workers now and then, a little apart, so that a slow leak never grows for long; rarely,
# because a restart is felt: the restarted worker's clients reconnect and its connections to the
# database open again. The master loads the application once and forks each worker from it, so
# a restart costs a fork, not Django's start-up. Measured (bench/README.md) with a restart every
# ~4,000 requests: p99 644 ms without preloading, 136 ms with it, 28 ms without restarts. Nothing
# opens a connection at import; each worker opens its own database pool and Redis connections.
preload_app = True
max_requests = 1_000_000
max_requests_jitter = 100_000
