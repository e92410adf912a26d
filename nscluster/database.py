"""A database on shared storage for the namespace cluster: the profile's ``db`` group for real.

Stand-in for the replicated device: one ext4 image on a loop device that every
node sees (devices are global; each node mounts it in its own mount namespace,
and only where Pacemaker runs ``db-fs``). A crashed node's mount disappears with
its mount namespace; the next mount replays the journal, as after a power cut.
DRBD itself cannot run here; its test double is not wired into the cluster yet.

``prepare`` builds the image, the MariaDB datadir and a ``writer`` account for
clients of the database VIP (its password lives only in a 0600 option file);
``overrides`` re-enables ``db-fs``, ``mysql`` and the ``db`` group of the profile
with the site's parameters.
"""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
import time
from pathlib import Path

from nscluster.cluster import Cluster, ClusterError, run_cmd
from nscluster.dbclient import DATABASE, TABLE

PORT = 13306
MOUNTPOINT = "/var/lib/mysql"
DATADIR = f"{MOUNTPOINT}/data"
RUNDIR = "/run/mysqld-nsc"
IMAGE_MB = 256


@dataclasses.dataclass
class SharedDatabase:
    cluster: Cluster
    device: str = ""

    @property
    def config(self) -> Path:
        return self.cluster.spec.state_dir / "my.cnf"

    @property
    def client_options(self) -> Path:
        return self.cluster.spec.state_dir / "writer.cnf"

    def prepare(self, via: str) -> None:
        state = self.cluster.spec.state_dir
        image = state / "db.img"
        with open(image, "wb") as handle:
            handle.truncate(IMAGE_MB * 1024 * 1024)
        run_cmd(["mkfs.ext4", "-q", "-F", str(image)])
        self.device = run_cmd(["losetup", "-f", "--show", str(image)]).stdout.strip()
        self.config.write_text("[mysqld]\nbind-address = 0.0.0.0\nskip-name-resolve\n"
                               "innodb_buffer_pool_size = 32M\n")
        self.config.chmod(0o644)
        password = secrets.token_hex(16)
        self.client_options.touch(mode=0o600)
        self.client_options.write_text(f"[client]\nuser = writer\npassword = {password}\n")
        run = self.cluster.run
        run(via, ["mount", self.device, MOUNTPOINT])
        try:
            run(via, ["install", "-d", "-o", "mysql", "-g", "mysql", DATADIR, RUNDIR])
            run(via, ["mariadb-install-db", f"--defaults-file={self.config}", f"--datadir={DATADIR}",
                      "--user=mysql", "--auth-root-authentication-method=normal", "--skip-test-db"],
                timeout=180)
            self._create_account(via, password)
        finally:
            run(via, ["umount", MOUNTPOINT], check=False)

    def _create_account(self, via: str, password: str) -> None:
        socket = f"{RUNDIR}/init.sock"
        server = subprocess.Popen(
            ["nsenter", "-t", str(self.cluster.nodes[via].pid1), "-m", "-u", "-i", "-n", "-p", "--",
             "mariadbd", f"--defaults-file={self.config}", f"--datadir={DATADIR}", f"--socket={socket}",
             "--skip-networking", "--user=mysql", f"--log-error={RUNDIR}/init.log"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            sql = (f"CREATE DATABASE {DATABASE};\n"
                   f"CREATE TABLE {TABLE} (id INT PRIMARY KEY, at DOUBLE) ENGINE=InnoDB;\n"
                   f"CREATE USER 'writer'@'%' IDENTIFIED BY '{password}';\n"
                   f"GRANT SELECT, INSERT ON {DATABASE}.* TO 'writer'@'%';\n")
            end = time.monotonic() + 60
            while True:
                done = self.cluster.run(via, ["mariadb", f"--socket={socket}", "-uroot"], input_text=sql,
                                        check=False)
                if done.returncode == 0:
                    break
                if time.monotonic() > end or server.poll() is not None:
                    raise ClusterError(f"could not prepare the database: {done.stderr.strip()}")
                time.sleep(0.2)
            self.cluster.run(via, ["mariadb-admin", f"--socket={socket}", "-uroot", "shutdown"])
            server.wait(60)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()

    def overrides(self) -> dict[str, dict[str, object]]:
        return {
            "primitive.db-fs": {"enabled": True},
            "primitive.db-fs.params": {"device": self.device, "directory": MOUNTPOINT, "fstype": "ext4"},
            "primitive.mysql": {"enabled": True},
            "primitive.mysql.params": {
                "config": str(self.config), "datadir": DATADIR, "socket": f"{RUNDIR}/mysqld.sock",
                "pid": f"{RUNDIR}/mysqld.pid", "log": f"{RUNDIR}/error.log", "port": PORT,
                "device": self.device},
            "group.db": {"enabled": True},
        }

    def writer_argv(self, mode: str, address: str, timeout_s: float, first_id: int = 0) -> list[str]:
        """A client in the bridge namespace: ``write`` (retry until one INSERT commits) or ``count``."""
        from nscluster.cluster import PACKAGE_DIR, SYSTEM_PYTHON, netns_inode

        inode = netns_inode(self.cluster.spec.bridge_netns)
        return self.cluster.client_argv([
            SYSTEM_PYTHON, "-I", str(PACKAGE_DIR / "dbclient.py"), str(inode), mode, address, str(PORT),
            str(self.client_options), str(timeout_s), str(first_id)])

    def write(self, address: str, row_id: int, timeout_s: float = 120) -> float:
        """Retry one INSERT through ``address`` until it commits; the monotonic time of the commit."""
        import json

        done = run_cmd(self.writer_argv("write", address, timeout_s, row_id), timeout=timeout_s + 30,
                       check=False)
        if done.returncode != 0:
            raise ClusterError(f"no write through {address} committed: {done.stderr.strip()[-300:]}")
        return float(json.loads(done.stdout)["t"])

    def ids(self, address: str) -> list[int]:
        import json

        return list(json.loads(run_cmd(self.writer_argv("count", address, 10), timeout=60).stdout)["ids"])
