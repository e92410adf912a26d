"""Install and uninstall the agents, crmtool and the CIB templates.

Every path written is recorded in a manifest, and ``uninstall`` removes
exactly those (plus the directories install created, when empty), and only
where this installer writes: a manifest entry outside those places, not in
normal form, or reached through a symbolic link is refused, whatever the
manifest says.  Modes are explicit (files 0644, programs and directories
0755), whatever the caller's umask: the cluster reads meta-data as nobody.
Run with Debian's interpreter: ``/usr/bin/python3 tools/install.py install``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

SOURCE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, SOURCE)
from agents.registry import PROVIDER as DEFAULT_PROVIDER  # noqa: E402 (needs SOURCE on the path)

PACKAGES = ("agents", "crmtool", "dbbackup")
MANIFEST = "installed-files"
SYSTEM_SITE = "/usr/lib/python3/dist-packages"
FILE_MODE = 0o644
PROGRAM_MODE = 0o755
DIRECTORY_MODE = 0o755
PROGRAMS = ("crmtool", "openstack-ha-backup")
UNITS = ("openstack-ha-backup.service", "openstack-ha-backup.timer")

AGENT_LAUNCHER = """#!/usr/bin/python3 -IS
# {name}: OCF resource agent, provider {provider}; code in {lib}
import sys
sys.path.insert(0, {lib!r})
sys.path.append({site!r})
from agents.ocf.launch import run
run({name!r}, {module!r}, {cache!r})
"""

CRMTOOL_LAUNCHER = """#!/usr/bin/python3 -I
import sys
sys.path.insert(0, {lib!r})
from crmtool.cli import main
main(templates_dir={templates!r}, provider={provider!r})
"""

BACKUP_LAUNCHER = """#!/usr/bin/python3 -I
import sys
sys.path.insert(0, {lib!r})
from dbbackup.cli import main
main()
"""


class Installer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.destdir: str = args.destdir
        self.agent_dir = f"{args.ocf_root}/resource.d/{args.provider}"
        self.lib: str = args.libdir
        self.bindir: str = args.bindir
        self.templates = f"{args.datadir}/cib-templates"
        # systemd units beside the programs' prefix: /usr/local/bin -> /usr/local/lib/systemd/system
        self.unitdir = f"{os.path.dirname(args.bindir)}/lib/systemd/system"
        self.provider: str = args.provider
        self.written: list[str] = []
        self.created_dirs: list[str] = []

    def real(self, path: str) -> str:
        return self.destdir + path

    def mkdir(self, path: str) -> None:
        missing = []
        probe = path
        while probe not in ("", "/") and not os.path.isdir(self.real(probe)):
            missing.append(probe)
            probe = os.path.dirname(probe)
        for directory in reversed(missing):
            os.mkdir(self.real(directory), DIRECTORY_MODE)
            os.chmod(self.real(directory), DIRECTORY_MODE)  # mkdir's mode is cut by the umask
            self.created_dirs.append(directory)

    def write(self, path: str, data: bytes, mode: int) -> None:
        """Replace ``path`` atomically: a running agent sees the old file or the new one."""
        self.mkdir(os.path.dirname(path))
        staging = self.real(f"{path}.installing")
        with open(staging, "wb") as handle:
            handle.write(data)
        os.chmod(staging, mode)
        os.replace(staging, self.real(path))
        self.written.append(path)

    def copy_tree(self, source: str, target: str, suffixes: tuple[str, ...],
                  transform: Callable[[bytes], bytes] = bytes) -> None:
        for root, dirs, files in os.walk(source):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                if name.endswith(suffixes):
                    rel = os.path.relpath(os.path.join(root, name), source)
                    with open(os.path.join(root, name), "rb") as handle:
                        self.write(os.path.join(target, rel), transform(handle.read()), FILE_MODE)

    def with_provider(self, profile: bytes) -> bytes:
        """Profiles name our agents ``ocf:openstack:*``; an install under another provider follows."""
        return profile.replace(f"ocf:{DEFAULT_PROVIDER}:".encode(), f"ocf:{self.provider}:".encode())

    def install(self) -> None:
        if self.destdir:
            os.makedirs(self.destdir, exist_ok=True)
        previous_files, previous_dirs = self.read_manifest()
        self.created_dirs.extend(d for d in previous_dirs if os.path.isdir(self.real(d)))
        for package in PACKAGES:
            self.copy_tree(os.path.join(SOURCE, package), f"{self.lib}/{package}", (".py",))
        self.copy_tree(os.path.join(SOURCE, "cib-templates"), self.templates, (".toml",), self.with_provider)
        self.install_agents()
        self.write(f"{self.bindir}/crmtool", CRMTOOL_LAUNCHER.format(
            lib=self.lib, templates=self.templates, provider=self.provider).encode(), PROGRAM_MODE)
        self.write(f"{self.bindir}/openstack-ha-backup", BACKUP_LAUNCHER.format(lib=self.lib).encode(),
                   PROGRAM_MODE)
        self.install_units()
        self.compile()
        self.remove_files(sorted(set(previous_files) - set(self.written)))
        manifest = [*self.written, *(f"{d}/" for d in dict.fromkeys(self.created_dirs))]
        self.write(f"{self.lib}/{MANIFEST}", ("\n".join(manifest) + "\n").encode(), FILE_MODE)

    def install_agents(self) -> None:
        sys.path.insert(0, SOURCE)
        from agents import registry
        from agents.ocf.metadata import render

        cache = f"{self.lib}/metadata"
        for name in registry.names():
            agent = registry.load(name)
            for version in ((1, 0), (1, 1)):
                text = render(agent, version)
                self.write(f"{cache}/{name}-{version[0]}.{version[1]}.xml", text.encode(), FILE_MODE)
            launcher = AGENT_LAUNCHER.format(name=name, provider=self.provider, lib=self.lib,
                                             site=SYSTEM_SITE, module=registry.AGENTS[name], cache=cache)
            self.write(f"{self.agent_dir}/{name}", launcher.encode(), PROGRAM_MODE)

    def install_units(self) -> None:
        for unit in UNITS:
            with open(os.path.join(SOURCE, "dbbackup", "systemd", unit), "rb") as handle:
                text = handle.read().replace(b"@BINDIR@", self.bindir.encode())
            self.write(f"{self.unitdir}/{unit}", text, FILE_MODE)

    def compile(self) -> None:
        import compileall

        for package in PACKAGES:
            top = self.real(f"{self.lib}/{package}")
            compileall.compile_dir(top, quiet=1)
            # compileall creates these files and directories itself: fix their modes, record them
            for root, _dirs, files in os.walk(top):
                if root.endswith("__pycache__"):
                    os.chmod(root, DIRECTORY_MODE)
                    self.created_dirs.append(root[len(self.destdir):])
                for name in files:
                    if name.endswith(".pyc"):
                        os.chmod(os.path.join(root, name), FILE_MODE)
                        self.written.append(os.path.join(root, name)[len(self.destdir):])

    def roots(self) -> tuple[str, ...]:
        """The directories that belong to this installation as a whole."""
        return (self.lib, self.templates)

    def owns(self, path: str, directory: bool = False) -> bool:
        """Whether ``path`` (a manifest entry) is a place this installer writes to."""
        if not path.startswith("/") or os.path.normpath(path) != path:
            return False
        exact = {f"{self.agent_dir}/{name}" for name in self.agent_names()}
        exact |= {f"{self.bindir}/{name}" for name in PROGRAMS}
        exact |= {f"{self.unitdir}/{unit}" for unit in UNITS}
        inside = any(path.startswith(f"{root}/") for root in self.roots())
        if directory:
            places = (*self.roots(), self.agent_dir, self.bindir, self.unitdir)
            inside = inside or any(place == path or place.startswith(f"{path}/") for place in places)
        if not (inside or path in exact):
            return False
        return self.no_links_above(path)

    def no_links_above(self, path: str) -> bool:
        """True when no directory on the way to ``path`` is a symbolic link."""
        parent = os.path.dirname(path)
        expected = os.path.join(os.path.realpath(self.destdir or "/"), parent.lstrip("/"))
        return os.path.realpath(self.real(parent)) == os.path.normpath(expected)

    def agent_names(self) -> list[str]:
        sys.path.insert(0, SOURCE)
        from agents import registry

        return registry.names()

    def read_manifest(self) -> tuple[list[str], list[str]]:
        try:
            with open(self.real(f"{self.lib}/{MANIFEST}"), encoding="utf-8") as handle:
                entries = [line for line in handle.read().splitlines() if line]
        except FileNotFoundError:
            return [], []
        return ([e for e in entries if not e.endswith("/")],
                [e.rstrip("/") for e in entries if e.endswith("/")])

    def remove_files(self, paths: list[str]) -> None:
        for path in paths:
            if not self.owns(path):
                print(f"not removing {path}: this installer never writes there", file=sys.stderr)
                continue
            try:
                os.unlink(self.real(path))
            except FileNotFoundError:
                pass

    def uninstall(self) -> None:
        files, dirs = self.read_manifest()
        if not files:
            print(f"nothing to uninstall: no manifest in {self.real(self.lib)}", file=sys.stderr)
            return
        self.remove_files([*files, f"{self.lib}/{MANIFEST}"])
        for directory in sorted(set(dirs), key=len, reverse=True):
            if not self.owns(directory, directory=True):
                print(f"not removing {directory}/: this installer never creates it", file=sys.stderr)
                continue
            try:
                os.rmdir(self.real(directory))
            except OSError:
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=("install", "uninstall"))
    parser.add_argument("--destdir", default="")
    parser.add_argument("--ocf-root", default="/usr/lib/ocf")
    parser.add_argument("--provider", default=DEFAULT_PROVIDER)
    parser.add_argument("--libdir", default="/usr/local/lib/openstack-ha")
    parser.add_argument("--bindir", default="/usr/local/bin")
    parser.add_argument("--datadir", default="/usr/share/openstack-ha")
    args = parser.parse_args()
    os.umask(0o022)  # compileall and open() create files too: their modes must not follow the caller's
    installer = Installer(args)
    if args.command == "install":
        installer.install()
    else:
        installer.uninstall()


if __name__ == "__main__":
    main()
