"""The production web server: `make serve`, the Dockerfile and docker-compose all run
`gunicorn --config config/gunicorn.py config.wsgi`. Chosen by measurement (bench/README.md):
threads in few processes (about one per core) with keep-alive, so that an API client's
connection and each thread's database connection (CONN_MAX_AGE) are reused between requests."""

import os

bind = os.environ.get("GUNICORN_BIND") or f"127.0.0.1:{os.environ.get('PORT', '8000')}"
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "8"))
keepalive = 5
backlog = 2048
timeout = 30
graceful_timeout = 30
# Restart workers now and then, a little apart, so that a slow leak never grows for long.
max_requests = 100_000
max_requests_jitter = 10_000
