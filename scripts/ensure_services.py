"""Make sure PostgreSQL and Redis answer (starting local ones that are installed but down) and
that the project's database exists. One clear line and exit 1 when something cannot be had."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import environ
import psycopg
import redis

env = environ.Env()
DATABASE_URL = env.str("DATABASE_URL", default="postgres:///kilo_billing")
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1", None}


def _postgres_up(conninfo: dict[str, object]) -> bool:
    try:
        psycopg.connect(**conninfo, dbname="postgres", connect_timeout=2).close()  # type: ignore[arg-type]
    except psycopg.OperationalError:
        return False
    return True


def _start_postgres() -> None:
    if not shutil.which("pg_ctlcluster") or not Path("/etc/postgresql").is_dir():
        return
    for version in sorted(os.listdir("/etc/postgresql")):
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False,
            capture_output=True,
        )


def _redis_up() -> bool:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False
    return True


def _start_redis() -> None:
    server = shutil.which("redis-server")
    if not server:
        return
    port = str(urlparse(REDIS_URL).port or 6379)
    Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            server,
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            port,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            "/var/lib/redis",
        ],
        check=False,
        capture_output=True,
    )


def _wait(check, start) -> bool:  # type: ignore[no-untyped-def]
    if check():
        return True
    start()
    for _ in range(30):
        if check():
            return True
        time.sleep(0.5)
    return False


def main() -> int:
    db = env.db_url_config(DATABASE_URL)
    conninfo = {
        key: value
        for key, value in {
            "host": db.get("HOST") or None,
            "port": db.get("PORT") or None,
            "user": db.get("USER") or None,
            "password": db.get("PASSWORD") or None,
        }.items()
        if value
    }
    local_db = db.get("HOST") in LOCAL_HOSTS
    if not _wait(lambda: _postgres_up(conninfo), _start_postgres if local_db else lambda: None):
        print(
            f"PostgreSQL is not reachable at {DATABASE_URL} and could not be started here: "
            "install and start it (Debian: apt-get install postgresql) or set DATABASE_URL."
        )
        return 1
    local_redis = urlparse(REDIS_URL).hostname in LOCAL_HOSTS
    if not _wait(_redis_up, _start_redis if local_redis else lambda: None):
        print(
            f"Redis is not reachable at {REDIS_URL} and could not be started here: "
            "install and start it (Debian: apt-get install redis-server) or set REDIS_URL."
        )
        return 1
    name = db["NAME"]
    with psycopg.connect(**conninfo, dbname="postgres", autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')
            print(f"Created database {name}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
