"""Network namespaces for tests: created with unique names, always removed.

Every packet a test sends stays inside these namespaces: the agent under test
runs in one (``ip netns exec``), its peer on the other end of a veth pair is
the "rest of the network".  Only documentation addresses are used
(192.0.2.0/24, 2001:db8::/64).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence

IPV4_NET = "192.0.2"
IPV6_NET = "2001:db8:"


def unique_name(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(3)}"


def sh(argv: Sequence[str], check: bool = True, timeout: float = 30,
       input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command (argv, never a shell) and return its completed process."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=check,
                          input=input)


class Namespace:
    def __init__(self, name: str) -> None:
        self.name = name

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], check: bool = True, timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return sh(self.argv(argv), check=check, timeout=timeout, input=input)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(["ip", "-n", self.name, *args], check=check)

    def pids(self) -> list[int]:
        done = sh(["ip", "netns", "pids", self.name], check=False)
        return [int(p) for p in done.stdout.split()]

    def addresses(self, dev: str) -> list[str]:
        """Addresses on ``dev`` as ``address/prefix``, from ``ip -json`` (parsed, not grepped)."""
        import json

        done = self.ip("-json", "address", "show", "dev", dev)
        return [f"{a['local']}/{a['prefixlen']}" for link in json.loads(done.stdout)
                for a in link.get("addr_info", [])]

    def link(self, dev: str) -> dict[str, object]:
        import json

        data: list[dict[str, object]] = json.loads(self.ip("-json", "link", "show", "dev", dev).stdout)
        return data[0]


class Lab:
    """Two namespaces joined by a veth pair: ``node`` (agent side) and ``peer``.

    node: veth0 192.0.2.1/24, 2001:db8::1/64; peer: veth0 192.0.2.2/24, 2001:db8::2/64.
    """

    NODE_V4 = f"{IPV4_NET}.1"
    PEER_V4 = f"{IPV4_NET}.2"
    NODE_V6 = f"{IPV6_NET}:1"
    PEER_V6 = f"{IPV6_NET}:2"

    def __init__(self, prefix: str = "vipt") -> None:
        self.node = Namespace(unique_name(prefix + "n"))
        self.peer = Namespace(unique_name(prefix + "p"))
        self._created: list[Namespace] = []

    def __enter__(self) -> Lab:
        try:
            self.setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def setup(self) -> None:
        for ns in (self.node, self.peer):
            sh(["ip", "netns", "add", ns.name])
            self._created.append(ns)
            ns.ip("link", "set", "lo", "up")
        self.node.ip("link", "add", "veth0", "type", "veth", "peer", "name", "veth0", "netns", self.peer.name)
        for ns, v4, v6 in ((self.node, self.NODE_V4, self.NODE_V6), (self.peer, self.PEER_V4, self.PEER_V6)):
            ns.ip("address", "add", f"{v4}/24", "dev", "veth0")
            ns.ip("address", "add", f"{v6}/64", "dev", "veth0", "nodad")
            ns.ip("link", "set", "veth0", "up")
        self.wait_carrier(self.node, "veth0")
        self.wait_ready(self.node, "veth0", self.NODE_V6)
        self.wait_ready(self.peer, "veth0", self.PEER_V6)

    def wait_carrier(self, ns: Namespace, dev: str, timeout: float = 10) -> None:
        until = time.monotonic() + timeout
        while "LOWER_UP" not in ns.link(dev).get("flags", []):  # type: ignore[operator]
            if time.monotonic() > until:
                raise TimeoutError(f"{dev} in {ns.name} has no carrier")
            time.sleep(0.05)

    def wait_ready(self, ns: Namespace, dev: str, address: str, timeout: float = 10) -> None:
        """Wait until the kernel has activated ``dev``: until then even a nodad address is tentative.

        Carrier shows before the activation, which the kernel may delay by up
        to a second; before it, the peer does not answer for its addresses.
        """
        import json

        until = time.monotonic() + timeout
        while True:
            shown = json.loads(ns.ip("-json", "address", "show", "dev", dev).stdout)
            if not [a for link in shown for a in link["addr_info"] if a.get("local") == address and
                    a.get("tentative")]:
                return
            if time.monotonic() > until:
                raise TimeoutError(f"{address} on {dev} in {ns.name} stayed tentative")
            time.sleep(0.05)

    def teardown(self) -> None:
        for ns in reversed(self._created):
            for pid in ns.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            sh(["ip", "netns", "del", ns.name], check=False)
        self._created.clear()


@contextlib.contextmanager
def lab(prefix: str = "vipt") -> Iterator[Lab]:
    with Lab(prefix) as made:
        yield made
