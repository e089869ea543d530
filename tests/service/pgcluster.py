"""A throw-away PostgreSQL cluster on loopback for the integration tests.

``python -m tests.service.pgcluster start DIR`` initialises and starts a cluster in DIR (as the
``postgres`` user when run as root, since PostgreSQL refuses root), with password
authentication on 127.0.0.1 and a random password, and prints shell ``export`` lines;
``stop DIR`` stops it. The tests use the running cluster named by those variables, or start
their own the same way.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

USER = "xaisearch"
DATABASE = "xaisearch_test"


TOOLS = ("initdb", "pg_ctl", "createdb")


def find_bin(name: str) -> str | None:
    """``name`` from a folder that holds all the server tools (Debian keeps them off PATH)."""
    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    on_path = shutil.which(name)
    if on_path:
        folders.append(str(Path(on_path).parent))
    for folder in folders:
        if all((Path(folder) / tool).exists() for tool in TOOLS):
            return str(Path(folder) / name)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_owner(command: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@dataclass
class Cluster:
    data_dir: Path
    port: int
    password: str
    bin_dir: Path

    @property
    def url(self) -> str:
        """URL without the password (it travels in PGPASSWORD)."""
        return f"postgresql+psycopg2://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = _as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", "-t", "60", *args])
        return subprocess.run(command, check=check, capture_output=True, text=True)

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "fast", "-l", str(self.data_dir / "server.log"))

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast", check=False)

    def env(self) -> dict[str, str]:
        return {
            "XAISEARCH_TEST_PG_URL": self.url,
            "XAISEARCH_TEST_PG_PASSWORD": self.password,
            "XAISEARCH_TEST_PG_DIR": str(self.data_dir),
            "XAISEARCH_TEST_PG_PORT": str(self.port),
            "XAISEARCH_TEST_PG_BIN": str(self.bin_dir),
        }

    @classmethod
    def from_env(cls) -> Cluster | None:
        if "XAISEARCH_TEST_PG_DIR" not in os.environ:
            return None
        return cls(
            Path(os.environ["XAISEARCH_TEST_PG_DIR"]),
            int(os.environ["XAISEARCH_TEST_PG_PORT"]),
            os.environ["XAISEARCH_TEST_PG_PASSWORD"],
            Path(os.environ["XAISEARCH_TEST_PG_BIN"]),
        )


def start(data_dir: Path) -> Cluster:
    initdb = find_bin("initdb")
    if initdb is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb); install the postgresql package")
    bin_dir = Path(initdb).parent
    data_dir.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    password_file = data_dir.parent / f"{data_dir.name}.pw"
    password_file.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
        shutil.chown(password_file, "postgres", "postgres")
    subprocess.run(
        _as_owner(
            [
                initdb,
                "-D",
                str(data_dir),
                "-U",
                USER,
                "--pwfile",
                str(password_file),
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        text=True,
    )
    password_file.unlink()
    port = _free_port()
    with open(data_dir / "postgresql.conf", "a") as conf:
        conf.write(
            f"\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{data_dir}'\n"
            "fsync = off\nmax_connections = 100\n"
        )
    cluster = Cluster(data_dir, port, password, bin_dir)
    cluster.pg_ctl("start", "-l", str(data_dir / "server.log"))
    env = {**os.environ, "PGPASSWORD": password}
    for _ in range(50):
        done = subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:
            return cluster
        time.sleep(0.2)
    raise RuntimeError(f"could not create the test database: {done.stderr.strip()}")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tests.service.pgcluster start|stop DIR", file=sys.stderr)
        return 2
    data_dir = Path(argv[1]).resolve()
    if argv[0] == "start":
        cluster = start(data_dir)
        for key, value in cluster.env().items():
            print(f"export {key}={value}")
        return 0
    owner = subprocess.run(
        _as_owner([find_bin("pg_ctl") or "pg_ctl", "-D", str(data_dir), "stop", "-m", "fast"]),
        capture_output=True,
        text=True,
    )
    return owner.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
