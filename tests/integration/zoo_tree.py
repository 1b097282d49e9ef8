"""The real ZooKeeper on 127.0.0.1:2181 for tests: a private tree per test, the server held
shared (or exclusive, for a test that stops it), and the server's own start/stop script.

Each test works under ``/imperium-test/<random>`` and deletes it afterwards. Session timeouts
are kept short (the server's minimum, 2 ticks: 4 s with Debian's tickTime 2000) so that
failover tests stay quick.
"""

from __future__ import annotations

import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import held_service, need_module

need_module("kazoo")
from kazoo.client import KazooClient  # noqa: E402
from kazoo.exceptions import NodeExistsError, NoNodeError  # noqa: E402

HOSTS = "127.0.0.1:2181"
ZKSERVER = "/usr/share/zookeeper/bin/zkServer.sh"
#: the session timeout the tests ask for; the server clamps it to at least 2 ticks
SESSION_TIMEOUT = 4


def zk_ready() -> bool:
    """The server answers the one four-letter word it allows by default."""
    try:
        with socket.create_connection(("127.0.0.1", 2181), timeout=2) as s:
            s.sendall(b"srvr")
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        return b"Mode:" in data
    except OSError:
        return False


def zk_ctl(action: str) -> None:
    # a session of its own: the server a test restarts must outlive the test's process group
    # (a runner that kills the group when the test command ends would take ZooKeeper along)
    subprocess.run([ZKSERVER, action], check=True, capture_output=True, timeout=60,
                   start_new_session=True)


class Tree:
    """A vassal path of our own (``<base>/vassals``), written through a kazoo client."""

    def __init__(self, auth: tuple[str, str] | None = None) -> None:
        #: digest identities the test used: the cleanup needs them to delete what they own
        self.identities: set[str] = {f"{auth[0]}:{auth[1]}"} if auth else set()
        self.base = f"/imperium-test/{uuid.uuid4().hex[:10]}"
        self.path = f"{self.base}/vassals"
        self.client = KazooClient(HOSTS, timeout=10,
                                  auth_data=[("digest", f"{auth[0]}:{auth[1]}")] if auth else None)
        self.client.start(timeout=15)

    def arg(self, path: str | None = None, creds: str = "", timeout: float = SESSION_TIMEOUT,
            hosts: str = HOSTS, **params: str) -> str:
        query = "&".join([f"timeout={timeout:g}", *(f"{k}={v}" for k, v in params.items())])
        return f"zoo://{creds}{hosts}{path or self.path}?{query}"

    def creds(self, user: str, password: str) -> str:
        """``user:password@`` for a URI, remembered for the cleanup."""
        self.identities.add(f"{user}:{password}")
        return f"{user}:{password}@"

    def acl(self, user: str, password: str) -> list:
        from kazoo.security import make_digest_acl

        self.identities.add(f"{user}:{password}")
        return [make_digest_acl(user, password, all=True)]

    def node(self, name: str) -> str:
        return f"{self.path}/{name}"

    def put(self, name: str, config: str | bytes, **kw: object) -> None:
        data = config.encode() if isinstance(config, str) else config
        try:
            self.client.create(self.node(name), data, makepath=True, **kw)
        except NodeExistsError:
            self.client.set(self.node(name), data)

    def delete(self, name: str) -> None:
        self.client.delete(self.node(name))

    def members(self) -> list[str]:
        try:
            return sorted(self.client.get_children(self.path + ".members"))
        except NoNodeError:
            return []

    def close(self) -> None:
        try:
            if not self.client.connected:
                self.client.stop()
                self.client = KazooClient(HOSTS, timeout=10)
                self.client.start(timeout=15)
            for identity in self.identities:
                self.client.add_auth("digest", identity)
            self.client.delete(self.base, recursive=True)
        except Exception:  # a test that broke the server leaves its tree; it is tiny
            pass
        finally:
            self.client.stop()
            self.client.close()


@contextmanager
def zk_tree(exclusive: bool = False, auth: tuple[str, str] | None = None) -> Iterator[Tree]:
    """A fresh tree, with the server held shared (or exclusive, to stop it)."""
    with held_service("zookeeper", 2181, zk_ready, "ZooKeeper on 127.0.0.1:2181", exclusive, 60):
        tree = Tree(auth)
        try:
            yield tree
        finally:
            tree.close()


class CutProxy:
    """A TCP proxy to ZooKeeper that a test can cut and heal: a network partition between one
    emperor and the ensemble, on loopback. Cut, it drops every connection and closes new ones
    at once (the emperor sees a dead network, ZooKeeper sees a client gone silent)."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 2181)) -> None:
        import threading

        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut_off = threading.Event()
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        import threading

        while not self.stopped.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.cut_off.set()
        with self.lock:
            for s in self.open:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.open.clear()

    def heal(self) -> None:
        self.cut_off.clear()

    def close(self) -> None:
        self.stopped.set()
        self.cut()
        self.listener.close()
