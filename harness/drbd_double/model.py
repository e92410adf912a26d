"""The state of one replicated resource across all its nodes, and DRBD 9's rules.

Everything lives in one directory shared by every node (``$DRBD_DOUBLE_STATE/<res>``):

* ``state.json``: per node what the kernel would hold (resource up, minor created,
  disk attached, role, loop device, which connections are enabled) and what the
  on-disk meta data would hold (disk state, current and history UUIDs, where the
  node's data is), plus the connected pairs and the administratively cut links.
* ``data/*.img``: data images.  Connected replicas point at the same image
  (protocol C: a write acknowledged on the Primary is on every connected replica).
  When a connection breaks and the two sides end up in different components, the
  side without the Primary gets a private copy, and a baseline copy is kept to
  count each side's changes ("out-of-sync").
* ``kernel.log`` (what ``dmesg`` would say) and ``events.log`` (events2 changes).
* ``lock``: every command holds an exclusive ``fcntl`` lock while it reads,
  changes and writes the state, so commands from different namespaces are atomic.

The device node of a replica (``/dev/drbdN``, a distinct minor per host so that
nodes sharing ``/dev`` do not collide) is a block device node: on a Primary it
has the major/minor of a read-write loop device over the image; on a Secondary it
has DRBD's major 147, for which no driver exists here, so every open fails with
ENXIO: a Secondary cannot be mounted or written (real DRBD 9 answers EMEDIUMTYPE
or auto-promotes; auto-promote is not modelled).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator

from harness.drbd_double import volatile
from harness.drbd_double.config import ConfigError, Resource

DRBD_MAJOR = 147
BLOCK = 4096
HISTORY = 4


class DrbdError(Exception):
    """A failure with drbdsetup's exit code and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def state_root() -> str:
    return os.environ.get("DRBD_DOUBLE_STATE") or "/var/lib/drbd-double"


def this_node() -> str:
    return os.environ.get("DRBD_DOUBLE_NODE") or os.uname().nodename


def _new_uuid() -> str:
    return os.urandom(8).hex().upper()


def _fresh_node() -> dict:
    return {
        "up": False, "minor": False, "attached": False, "role": "Secondary", "loop": "",
        "net": {}, "discard": [], "md": None, "data": "", "promoted_at": 0.0,
    }


class PeerView:
    """One connection as this node sees it: state Connected/Connecting/StandAlone, peer role and disk."""

    def __init__(self, name: str, node_id: int, connection: str, role: str, disk: str,
                 out_of_sync_kib: int) -> None:
        self.name = name
        self.node_id = node_id
        self.connection = connection
        self.role = role
        self.disk = disk
        self.out_of_sync_kib = out_of_sync_kib


class Cluster:
    """The resource's shared state, loaded under the lock by ``open_cluster``."""

    def __init__(self, res: Resource, directory: str, state: dict) -> None:
        self.res = res
        self.dir = directory
        self.state = state
        for name in res.hosts:
            state["nodes"].setdefault(name, _fresh_node())

    # -- views ---------------------------------------------------------------

    def node(self, name: str) -> dict:
        self.res.host(name)
        return self.state["nodes"][name]

    def edges(self) -> set[tuple[str, str]]:
        return {(a, b) for a, b in self.state["edges"]}

    def connected(self, a: str, b: str) -> bool:
        return tuple(sorted((a, b))) in self.edges()

    def component(self, name: str) -> set[str]:
        seen, todo = {name}, [name]
        edges = self.edges()
        while todo:
            cur = todo.pop()
            for a, b in edges:
                for x, y in ((a, b), (b, a)):
                    if x == cur and y not in seen:
                        seen.add(y)
                        todo.append(y)
        return seen

    def disk_state(self, name: str) -> str:
        node = self.node(name)
        if not node["up"] or not node["attached"] or node["md"] is None:
            return "Diskless"
        return str(node["md"]["disk"])

    def has_quorum(self, name: str) -> bool:
        node = self.node(name)
        if not node["up"]:
            return False
        if not self.res.quorum_majority:
            return True
        voters = 1 + sum(1 for p in self.res.peers(name) if self.connected(name, p.name))
        return voters * 2 > len(self.res.hosts)

    def peer_views(self, name: str, statistics: bool = False) -> list[PeerView]:
        node = self.node(name)
        views = []
        for peer in self.res.peers(name):
            other = self.node(peer.name)
            if self.connected(name, peer.name):
                conn, role, disk = "Connected", other["role"], self.disk_state(peer.name)
            elif node["net"].get(peer.name) == "want":
                conn, role, disk = "Connecting", "Unknown", "DUnknown"
            else:
                conn, role, disk = "StandAlone", "Unknown", "DUnknown"
            oos = self.out_of_sync_kib(name) if statistics and conn != "Connected" else 0
            views.append(PeerView(peer.name, peer.node_id, conn, role, disk, oos))
        return views

    def out_of_sync_kib(self, name: str) -> int:
        """KiB this node changed since it was split from its peers (its bitmap)."""
        node = self.node(name)
        md = node["md"]
        base = md.get("base") if md else None
        if not base or not node["data"] or not os.path.exists(base):
            return 0
        changed = 0
        with open(node["data"], "rb") as mine, open(base, "rb") as old:
            while True:
                a, b = mine.read(BLOCK * 256), old.read(BLOCK * 256)
                if not a and not b:
                    break
                if a == b:  # DRBD's bitmap answers at once; compare block by block only where it differs
                    continue
                for off in range(0, max(len(a), len(b)), BLOCK):
                    if a[off:off + BLOCK] != b[off:off + BLOCK]:
                        changed += BLOCK // 1024
        return changed

    # -- logs ----------------------------------------------------------------

    def kernel_log(self, name: str, message: str) -> None:
        host = self.res.hosts[name]
        line = f"{time.time():.6f} {name} drbd {self.res.name}/0 drbd{host.minor}: {message}\n"
        with open(os.path.join(self.dir, "kernel.log"), "a", encoding="utf-8") as handle:
            handle.write(line)

    def event(self, name: str, text: str) -> None:
        with open(os.path.join(self.dir, "events.log"), "a", encoding="utf-8") as handle:
            handle.write(f"{name} {text}\n")

    # -- device nodes and loop devices ----------------------------------------

    def _device(self, name: str) -> str:
        return self.res.hosts[name].device

    def _make_node(self, name: str, major: int, minor: int) -> None:
        path = self._device(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.mknod(path, stat.S_IFBLK | 0o660, os.makedev(major, minor))

    def _remove_node(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._device(name))

    def _attach_loop(self, name: str) -> None:
        node = self.node(name)
        backing = volatile.start(node["data"], os.path.join(self.dir, "volatile", name))
        node["volatile"] = backing.record()
        try:
            loop = subprocess.run(["losetup", "--find", "--show", backing.path], check=True,
                                  capture_output=True, text=True).stdout.strip()
        except subprocess.CalledProcessError:
            volatile.kill(node.pop("volatile"))
            raise
        node["loop"] = loop
        st = os.stat(loop)
        self._make_node(name, os.major(st.st_rdev), os.minor(st.st_rdev))

    def _busy(self, name: str) -> bool:
        loop = self.node(name)["loop"]
        if not loop:
            return False
        try:
            fd = os.open(loop, os.O_RDONLY | os.O_EXCL)
        except OSError as exc:
            return exc.errno == errno.EBUSY
        os.close(fd)
        return False

    def _detach_loop(self, name: str) -> None:
        node = self.node(name)
        if node["loop"]:
            subprocess.run(["losetup", "--detach", node["loop"]], check=False, capture_output=True)
            node["loop"] = ""
        if node.get("volatile"):
            volatile.stop(node.pop("volatile"))
        if node["minor"]:
            self._make_node(name, DRBD_MAJOR, self.res.hosts[name].minor)

    # -- data images -----------------------------------------------------------

    def _data_dir(self) -> str:
        path = os.path.join(self.dir, "data")
        os.makedirs(path, exist_ok=True)
        return path

    def _copy_image(self, src: str, tag: str) -> str:
        dst = os.path.join(self._data_dir(), f"{tag}-{_new_uuid()}.img")
        subprocess.run(["cp", "--sparse=always", "--reflink=auto", src, dst], check=True)
        return dst

    def _relink(self, name: str) -> None:
        """The configured ``disk`` path is a symlink to the image holding the node's data."""
        disk, data = self.res.hosts[name].disk, self.node(name)["data"]
        if not data or (os.path.exists(disk) and not os.path.islink(disk)):
            return
        tmp = f"{disk}.tmp-{os.getpid()}"
        os.symlink(data, tmp)
        os.replace(tmp, disk)

    def _garbage(self) -> None:
        used = {n["data"] for n in self.state["nodes"].values()}
        used |= {n["md"].get("base") for n in self.state["nodes"].values() if n["md"]}
        data_dir = self._data_dir()
        for entry in os.listdir(data_dir):
            path = os.path.join(data_dir, entry)
            if path not in used:
                os.unlink(path)

    def set_data(self, members: set[str], path: str, md: dict | None = None) -> None:
        for member in members:
            node = self.node(member)
            node["data"] = path
            if md is not None:
                node["md"] = json.loads(json.dumps(md))
            self._relink(member)

    def _bump(self, members: set[str]) -> None:
        md = self.node(next(iter(members)))["md"]
        history = [md["uuid"], *md["history"]][:HISTORY]
        new = _new_uuid()
        for member in members:
            m = self.node(member)["md"]
            m["uuid"], m["history"] = new, list(history)

    # -- connections -------------------------------------------------------------

    def _wants(self, a: str, b: str) -> bool:
        na, nb = self.node(a), self.node(b)
        blocked = [sorted(x) for x in self.state["blocked"]]
        return (na["up"] and nb["up"] and na["attached"] and nb["attached"]
                and na["net"].get(b) == "want" and nb["net"].get(a) == "want"
                and sorted((a, b)) not in blocked)

    def reconcile(self) -> None:
        for a, b in sorted(self.edges()):
            if not self._wants(a, b):
                self._drop(a, b)
        names = sorted(self.res.hosts)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if self._wants(a, b) and not self.connected(a, b):
                    self._handshake(a, b)
        self._garbage()

    def _drop(self, a: str, b: str) -> None:
        self.state["edges"] = [e for e in self.state["edges"] if sorted(e) != sorted((a, b))]
        for x, y in ((a, b), (b, a)):
            if self.node(x)["up"]:
                self.kernel_log(x, f"{y}: conn( Connected -> Connecting )")
                self.event(x, f"change connection name:{self.res.name} conn-name:{y} connection:Connecting")
        side_a, side_b = self.component(a), self.component(b)
        if b in side_a:
            return
        loops_a = any(self.node(n)["loop"] for n in side_a)
        if loops_a or (not any(self.node(n)["loop"] for n in side_b)
                       and min(self.res.hosts[n].node_id for n in side_a)
                       < min(self.res.hosts[n].node_id for n in side_b)):
            keeper, other = side_a, side_b
        else:
            keeper, other = side_b, side_a
        shared = self.node(next(iter(keeper)))["data"]
        if not shared or not os.path.exists(shared):
            return
        base = self._copy_image(shared, "base")
        copy = self._copy_image(shared, "split")
        for member in keeper | other:
            md = self.node(member)["md"]
            if md is not None and not md.get("base"):
                md["base"] = base
        self.set_data(other, copy)
        for side in (keeper, other):
            if self._starts_new_generation(side):
                self._bump(side)

    def _starts_new_generation(self, side: set[str]) -> bool:
        """Whether ``side``, just split off, keeps a Primary that can write: its data diverge.

        A Primary that lost quorum (``quorum majority``; ``on-no-quorum io-error`` or
        ``suspend-io``) cannot write, so it starts no new data generation: when it
        reconnects it becomes the sync target of the partition that promoted a new
        Primary, as DRBD does since 9.0.28 (before, a split brain).  Without quorum
        configured every Primary keeps writing.  (The double does not fail the writes
        themselves: a Primary's device stays a plain loop device; they are lost on resync.)
        """
        writers = []
        for name in sorted(side):
            if self.node(name)["role"] != "Primary":
                continue
            if self.has_quorum(name):
                writers.append(name)
            else:
                self.kernel_log(name, "quorum( yes -> no ): no new current UUID")
        for name in writers:
            self.kernel_log(name, "new current UUID (Primary lost a peer, keeps quorum)")
        return bool(writers)

    def _handshake(self, a: str, b: str) -> None:
        side_a, side_b = self.component(a), self.component(b)
        if b in side_a:
            self._connect_edge(a, b)
            return
        na, nb = self.node(a), self.node(b)
        ma, mb = na["md"], nb["md"]
        discard_a, discard_b = b in na["discard"], a in nb["discard"]
        na["discard"] = [p for p in na["discard"] if p != b]
        nb["discard"] = [p for p in nb["discard"] if p != a]
        if ma["disk"] == "Inconsistent" and mb["disk"] == "Inconsistent":
            self._connect_edge(a, b)
        elif ma["disk"] == "Inconsistent" or ma["uuid"] in mb["history"]:
            self._sync(source=side_b, target=side_a, a=a, b=b)
        elif mb["disk"] == "Inconsistent" or mb["uuid"] in ma["history"]:
            self._sync(source=side_a, target=side_b, a=a, b=b)
        elif ma["uuid"] == mb["uuid"]:
            keep = side_b if any(self.node(n)["loop"] for n in side_b) else side_a
            self.set_data(side_a | side_b, self.node(next(iter(keep)))["data"])
            for n in side_a | side_b:
                self.node(n)["md"].pop("base", None)
            self._connect_edge(a, b)
        elif discard_a and not discard_b:
            self._sync(source=side_b, target=side_a, a=a, b=b)
        elif discard_b and not discard_a:
            self._sync(source=side_a, target=side_b, a=a, b=b)
        else:
            self._split_brain(a, b)

    def _connect_edge(self, a: str, b: str) -> None:
        self.state["edges"].append(sorted((a, b)))
        for x, y in ((a, b), (b, a)):
            self.kernel_log(x, f"{y}: conn( Connecting -> Connected )")
            self.event(x, f"change connection name:{self.res.name} conn-name:{y} connection:Connected")

    def _sync(self, source: set[str], target: set[str], a: str, b: str) -> None:
        if any(self.node(n)["loop"] for n in target):
            for x, y in ((a, b), (b, a)):
                self.node(x)["net"][y] = "standalone"
                self.kernel_log(x, f"{y}: resync target is Primary with the device in use "
                                   "(not modelled by the double), dropping connection")
            return
        src = self.node(next(iter(source)))
        md = dict(src["md"])
        md.pop("base", None)
        for n in source:
            self.node(n)["md"].pop("base", None)
        self.set_data(target, src["data"], md)
        for n in sorted(target):
            self.kernel_log(n, f"resync from {sorted(source)}: now UpToDate")
        self._connect_edge(a, b)

    def _split_brain(self, a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            self.node(x)["net"][y] = "standalone"
            self.kernel_log(x, f"{y}: Split-Brain detected but unresolved, dropping connection!")
            self.event(x, f"call helper name:{self.res.name} conn-name:{y} volume:0 helper:split-brain")
            self.event(x, f"change connection name:{self.res.name} conn-name:{y} connection:StandAlone")
            handler = self.res.handlers.get("split-brain")
            if handler:
                self.event(x, f"response helper name:{self.res.name} conn-name:{y} "
                              "helper:split-brain status:0")

    # -- commands ----------------------------------------------------------------

    def create_md(self, name: str) -> None:
        node = self.node(name)
        if node["up"] and node["attached"]:
            raise DrbdError(20, f"{self.res.name}: device is attached, refusing to create meta data")
        disk = self.res.hosts[name].disk
        if not os.path.exists(disk):
            raise DrbdError(20, f"open({disk}) failed: No such file or directory")
        data = os.path.realpath(disk)
        if not os.path.islink(disk):
            adopted = os.path.join(self._data_dir(), f"{name}-{_new_uuid()}.img")
            try:
                os.rename(disk, adopted)
            except OSError:
                import shutil

                shutil.move(disk, adopted)
            data = adopted
        node["md"] = {"disk": "Inconsistent", "uuid": "0" * 16, "history": []}
        node["data"] = data
        self._relink(name)

    def new_resource(self, name: str) -> None:
        node = self.node(name)
        if not node["up"]:
            node.update(up=True, role="Secondary", net={}, discard=[], loop="")

    def new_minor(self, name: str) -> None:
        self._require_up(name)
        node = self.node(name)
        if not node["minor"]:
            node["minor"] = True
            self._make_node(name, DRBD_MAJOR, self.res.hosts[name].minor)

    def attach(self, name: str) -> None:
        self._require_up(name)
        node = self.node(name)
        if node["attached"]:
            return
        if node["md"] is None or not node["data"] or not os.path.exists(node["data"]):
            disk = self.res.hosts[name].disk
            raise DrbdError(10, f"{self.res.hosts[name].minor}: Failure: (119) No valid meta-data "
                                f"signature found.\n\n\t==> Use 'drbdadm create-md {self.res.name}' "
                                f"to initialize meta-data area. <==\n(backing device {disk})")
        node["attached"] = True

    def enable_net(self, name: str, peer: str | None, discard: bool = False) -> None:
        self._require_up(name)
        node = self.node(name)
        for host in self.res.peers(name):
            if peer in (None, host.name):
                node["net"][host.name] = "want"
                if discard and host.name not in node["discard"]:
                    node["discard"].append(host.name)

    def disconnect(self, name: str, peer: str | None) -> None:
        self._require_up(name)
        node = self.node(name)
        for host in self.res.peers(name):
            if peer in (None, host.name):
                node["net"][host.name] = "standalone"

    def up(self, name: str) -> None:
        self.new_resource(name)
        self.new_minor(name)
        self.attach(name)
        self.enable_net(name, None)

    def adjust(self, name: str, peer: str | None, skip_net: bool) -> None:
        self.new_resource(name)
        self.new_minor(name)
        self.attach(name)
        if not skip_net:
            self.enable_net(name, peer)

    def primary(self, name: str, force: bool) -> None:
        self._require_up(name)
        node = self.node(name)
        if node["role"] == "Primary":
            return
        res = self.res.name
        if not node["attached"] or (self.disk_state(name) != "UpToDate" and not force):
            raise DrbdError(17, f"{res}: State change failed: (-2) Need access to UpToDate data")
        if not self.has_quorum(name):
            raise DrbdError(11, f"{res}: State change failed: (-23) No quorum")
        if not self.res.allow_two_primaries and any(
            v.role == "Primary" for v in self.peer_views(name)
        ):
            raise DrbdError(11, f"{res}: State change failed: (-1) Multiple primaries not allowed by config")
        members = self.component(name)
        if force and self.disk_state(name) != "UpToDate":
            for n in members:
                self.node(n)["md"]["disk"] = "UpToDate"
            self._bump(members)
        elif len(members) < len(self.res.hosts):
            self._bump(members)
        self._attach_loop(name)
        node["role"] = "Primary"
        node["promoted_at"] = time.time()
        self.kernel_log(name, "role( Secondary -> Primary )")
        self.event(name, f"change resource name:{res} role:Primary")

    def secondary(self, name: str) -> None:
        self._require_up(name)
        node = self.node(name)
        if node["role"] != "Primary":
            return
        if self._busy(name):
            raise DrbdError(11, f"{self.res.name}: State change failed: (-12) Device is held open by someone")
        self._detach_loop(name)
        node["role"] = "Secondary"
        self.kernel_log(name, "role( Primary -> Secondary )")
        self.event(name, f"change resource name:{self.res.name} role:Secondary")

    def outdate(self, name: str) -> None:
        node = self.node(name)
        if node["role"] == "Primary":
            raise DrbdError(11, f"{self.res.name}: State change failed: (-7) Refusing to be Outdated "
                                "while Primary")
        if node["md"] and node["md"]["disk"] in ("UpToDate", "Consistent"):
            node["md"]["disk"] = "Outdated"

    def down(self, name: str) -> None:
        node = self.node(name)
        if not node["up"]:
            return
        if node["role"] == "Primary":
            self.secondary(name)
        self._remove_node(name)
        node.update(up=False, minor=False, attached=False, role="Secondary", net={}, discard=[])
        self.kernel_log(name, "down")

    def crash(self, name: str) -> None:
        """The node died: its kernel state is gone at once; meta data and flushed data stay."""
        node = self.node(name)
        if node.get("volatile"):  # first: nothing unflushed may reach the image after the crash
            volatile.kill(node.pop("volatile"))
        if node["loop"]:
            subprocess.run(["losetup", "--detach", node["loop"]], check=False, capture_output=True)
        self._remove_node(name)
        node.update(up=False, minor=False, attached=False, role="Secondary", net={}, discard=[], loop="")

    def block(self, a: str, b: str) -> None:
        pair = sorted((a, b))
        if pair not in [sorted(x) for x in self.state["blocked"]]:
            self.state["blocked"].append(pair)

    def unblock(self, a: str | None = None, b: str | None = None) -> None:
        if a is None:
            self.state["blocked"] = []
        else:
            self.state["blocked"] = [x for x in self.state["blocked"] if sorted(x) != sorted((a, b))]

    def _require_up(self, name: str) -> None:
        if not self.node(name)["up"]:
            raise DrbdError(10, f"{self.res.name}: No such resource")


def resource_dir(res_name: str) -> str:
    return os.path.join(state_root(), res_name)


@contextlib.contextmanager
def open_cluster(res: Resource, write: bool = True) -> Iterator[Cluster]:
    directory = resource_dir(res.name)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = os.path.join(directory, "state.json")
        try:
            with open(path, encoding="utf-8") as handle:
                state = json.load(handle)
        except FileNotFoundError:
            state = {"nodes": {}, "edges": [], "blocked": []}
        cluster = Cluster(res, directory, state)
        cluster.reconcile()
        yield cluster
        if write:
            cluster.reconcile()
        tmp = f"{path}.tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=1, sort_keys=True)
        os.replace(tmp, path)


def initialise(res: Resource, image: str) -> None:
    """All replicas UpToDate with identical data (as after the initial full sync)."""
    with open_cluster(res) as cluster:
        data = cluster._copy_image(image, "initial")
        uuid = _new_uuid()
        for name in res.hosts:
            cluster.node(name)["md"] = {"disk": "UpToDate", "uuid": uuid, "history": []}
        cluster.set_data(set(res.hosts), data)


def sha256_file(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["Cluster", "ConfigError", "DrbdError", "PeerView", "initialise", "open_cluster", "this_node"]
