"""``drbdadm``, ``drbdsetup`` and ``drbd-double`` command lines over the model.

Arguments, output formats and exit codes follow DRBD 9 (drbd-utils 9.22 with a
9.2 kernel module): see docs/drbd.md for what is and is not emulated.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

from harness.drbd_double import config as drbdconf
from harness.drbd_double.model import Cluster, DrbdError, open_cluster, resource_dir, state_root, this_node

KERNEL_VERSION = "9.2.8"
KERNEL_VERSION_CODE = "0x090208"
DEFAULT_CONF = "/etc/drbd.conf"


class Usage(Exception):
    pass


# A node without the DRBD kernel module (a diskless controller of a larger
# cluster, a fresh node), as drbd-utils 9.22 behave there: what takes things
# down succeeds (there is nothing to take down), everything else that needs
# the kernel fails, drbdsetup with 20 and drbdadm with its drbdsetup's code,
# except that bringing a resource up reports 1. Config-only commands work.
NO_MODULE_VARIABLE = "DRBD_DOUBLE_NO_MODULE"
NO_MODULE_CODE = 20
NO_MODULE_MESSAGE = ("Failed to modprobe drbd (No such file or directory)\n"
                     "Could not connect to 'drbd' generic netlink family")
TEARDOWN_COMMANDS = frozenset(("down", "secondary", "disconnect", "detach", "del-minor", "del-resource"))
BRING_UP_COMMANDS = frozenset(("up", "adjust", "attach", "connect", "new-resource"))
CONFIG_ONLY_COMMANDS = frozenset(("sh-resources", "sh-mod-parms", "sh-dev", "sh-md-dev", "sh-ll-dev",
                                  "sh-nop", "dump"))


def _module_missing() -> bool:
    return os.environ.get(NO_MODULE_VARIABLE) == "1"


def _without_module(tool: str, command: str, target: str) -> int:
    """What ``tool command target`` answers on a node without the module."""
    sys.stderr.write(NO_MODULE_MESSAGE + "\n")
    if command in TEARDOWN_COMMANDS:
        return 0
    if tool == "drbdsetup":
        return NO_MODULE_CODE
    setup_command = "new-resource" if command in BRING_UP_COMMANDS else command
    sys.stderr.write(f"Command 'drbdsetup {setup_command} {target}' terminated with exit code "
                     f"{NO_MODULE_CODE}\n")
    return 1 if command in BRING_UP_COMMANDS else NO_MODULE_CODE


# -- resources known to this machine -------------------------------------------------

def _remember_config(res: drbdconf.Resource, path: str) -> None:
    directory = resource_dir(res.name)
    os.makedirs(directory, exist_ok=True)
    record = os.path.join(directory, "config.path")
    try:
        with open(record, encoding="utf-8") as handle:
            if handle.read() == path:
                return
    except FileNotFoundError:
        pass
    with open(record, "w", encoding="utf-8") as handle:
        handle.write(path)


def _known_resources() -> dict[str, drbdconf.Resource]:
    """What drbdsetup sees: resources some drbdadm call brought to the double."""
    found: dict[str, drbdconf.Resource] = {}
    root = state_root()
    if not os.path.isdir(root):
        return found
    for name in sorted(os.listdir(root)):
        try:
            with open(os.path.join(root, name, "config.path"), encoding="utf-8") as handle:
                path = handle.read()
            res = drbdconf.load(path).get(name)
        except (OSError, drbdconf.ConfigError):
            continue
        if res is not None:
            found[name] = res
    return found


# -- views ---------------------------------------------------------------------------

def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def events2_now(cluster: Cluster, node: str) -> list[str]:
    n = cluster.node(node)
    if not n["up"]:
        return []
    res, host = cluster.res, cluster.res.hosts[node]
    views = cluster.peer_views(node)
    lines = [f"exists resource name:{res.name} role:{n['role']} suspended:no force-io-failures:no "
             f"may_promote:{_yes(n['role'] != 'Primary' and cluster.has_quorum(node))} promotion_score:0"]
    for v in views:
        lines.append(f"exists connection name:{res.name} peer-node-id:{v.node_id} conn-name:{v.name} "
                     f"connection:{v.connection} role:{v.role}")
    if n["minor"]:
        disk = cluster.disk_state(node)
        backing = f" backing_dev:{host.disk}" if disk != "Diskless" else ""
        lines.append(f"exists device name:{res.name} volume:0 minor:{host.minor}{backing} disk:{disk} "
                     f"client:no quorum:{_yes(cluster.has_quorum(node))}")
        for v in views:
            replication = "Established" if v.connection == "Connected" else "Off"
            lines.append(f"exists peer-device name:{res.name} peer-node-id:{v.node_id} conn-name:{v.name} "
                         f"volume:0 replication:{replication} peer-disk:{v.disk} peer-client:no "
                         "resync-suspended:no")
    return lines


def status_text(cluster: Cluster, node: str, verbose: bool, statistics: bool) -> str:
    n = cluster.node(node)
    res, host = cluster.res, cluster.res.hosts[node]
    node_id = f" node-id:{host.node_id}" if verbose else ""
    head = f"{res.name}{node_id} role:{n['role']}"
    lines = [head + (" suspended:no" if verbose else "")]
    if n["minor"]:
        quorum = "" if cluster.has_quorum(node) else " quorum:no"
        minor = f"volume:0 minor:{host.minor} " if verbose else ""
        lines.append(f"  {minor}disk:{cluster.disk_state(node)}{quorum}")
    for v in cluster.peer_views(node, statistics):
        if v.connection == "Connected":
            lines.append(f"  {v.name}" + (f" node-id:{v.node_id}" if verbose else "") + f" role:{v.role}")
            lines.append(f"    peer-disk:{v.disk}")
        else:
            lines.append(f"  {v.name}" + (f" node-id:{v.node_id}" if verbose else "")
                         + f" connection:{v.connection}")
            if statistics:
                lines.append("    volume:0 replication:Off peer-disk:DUnknown "
                             f"out-of-sync:{v.out_of_sync_kib}")
    return "\n".join(lines) + "\n"


def status_json(cluster: Cluster, node: str, statistics: bool) -> dict:
    n = cluster.node(node)
    res, host = cluster.res, cluster.res.hosts[node]
    devices = []
    if n["minor"]:
        devices.append({
            "volume": 0, "minor": host.minor, "disk-state": cluster.disk_state(node), "client": False,
            "quorum": cluster.has_quorum(node), "size": _size(cluster, node), "read": 0, "written": 0,
            "al-writes": 0, "bm-writes": 0, "upper-pending": 0, "lower-pending": 0,
        })
    connections = []
    for v in cluster.peer_views(node, statistics):
        connections.append({
            "peer-node-id": v.node_id, "name": v.name, "connection-state": v.connection,
            "congested": False, "peer-role": v.role, "ap-in-flight": 0, "rs-in-flight": 0,
            "peer_devices": [{
                "volume": 0,
                "replication-state": "Established" if v.connection == "Connected" else "Off",
                "peer-disk-state": v.disk, "peer-client": False, "resync-suspended": "no",
                "received": 0, "sent": 0, "out-of-sync": v.out_of_sync_kib, "pending": 0, "unacked": 0,
                "has-sync-details": False, "has-online-verify-details": False,
                "percent-in-sync": 100.0 if v.out_of_sync_kib == 0 else 0.0,
            }],
        })
    return {"name": res.name, "node-id": host.node_id, "role": n["role"], "suspended": False,
            "write-ordering": "flush", "devices": devices, "connections": connections}


def _size(cluster: Cluster, node: str) -> int:
    data = cluster.node(node)["data"]
    try:
        return os.path.getsize(data) // 1024
    except OSError:
        return 0


# -- drbdsetup -----------------------------------------------------------------------

def _split_options(args: list[str]) -> tuple[list[str], set[str]]:
    words, options = [], set()
    for arg in args:
        if arg.startswith("--"):
            options.add(arg[2:].split("=", 1)[0])
        elif arg.startswith("-") and len(arg) > 1:
            options.update(arg[1:])
        else:
            words.append(arg)
    return words, options


def drbdsetup(argv: list[str]) -> int:
    words, options = _split_options(argv)
    if not words:
        raise Usage("USAGE: drbdsetup command {arguments} [options]")
    command, args = words[0], words[1:]
    if _module_missing():
        return _without_module("drbdsetup", command, " ".join(args))
    node = this_node()
    known = _known_resources()
    if command in ("status", "events2"):
        names = [a for a in args if a != "all"] or sorted(known)
        return _setup_show(command, names, known, node, options)
    if not args:
        raise Usage(f"USAGE: drbdsetup {command} resource")
    res = known.get(args[0])
    if res is None:
        raise DrbdError(10, f"{args[0]}: No such resource")
    simple: dict[str, Callable[[Cluster], object]] = {
        "primary": lambda c: c.primary(node, "force" in options),
        "secondary": lambda c: c.secondary(node),
        "down": lambda c: c.down(node),
        "outdate": lambda c: c.outdate(node),
        "role": lambda c: _print_role(c, node),
        "cstate": lambda c: _print_cstate(c, node, None),
        "dstate": lambda c: _print_dstate(c, node),
        "wait-connect-resource": lambda c: None,
        "wait-connect-connection": lambda c: None,
    }
    if command not in simple:
        raise Usage(f"drbdsetup: unknown command '{command}' (not emulated by the DRBD double)")
    with open_cluster(res) as cluster:
        simple[command](cluster)
    return 0


def _setup_show(command: str, names: list[str], known: dict[str, drbdconf.Resource], node: str,
                options: set[str]) -> int:
    if command == "events2" and "now" not in options:
        raise Usage("drbdsetup events2: only --now is emulated by the DRBD double")
    out: list[str] = []
    doc: list[dict] = []
    for name in names:
        res = known.get(name)
        if res is None or node not in res.hosts:
            if command == "status":
                raise DrbdError(10, f"{name}: No such resource")
            continue
        with open_cluster(res) as cluster:
            if not cluster.node(node)["up"]:
                if command == "status" and len(names) == 1 and name in names:
                    raise DrbdError(10, f"{name}: No such resource")
                continue
            if command == "events2":
                out.extend(events2_now(cluster, node))
            elif "json" in options:
                doc.append(status_json(cluster, node, "statistics" in options or "s" in options))
            else:
                out.append(status_text(cluster, node, "verbose" in options or "v" in options,
                                       "statistics" in options or "s" in options))
    if command == "events2":
        out.append("exists -")
        sys.stdout.write("\n".join(out) + "\n")
    elif "json" in options:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write("\n".join(out))
    return 0


def _print_role(cluster: Cluster, node: str) -> None:
    cluster._require_up(node)
    print(cluster.node(node)["role"])


def _print_cstate(cluster: Cluster, node: str, peer: str | None) -> None:
    cluster._require_up(node)
    for v in cluster.peer_views(node):
        if peer in (None, v.name):
            print(v.connection)


def _print_dstate(cluster: Cluster, node: str) -> None:
    cluster._require_up(node)
    print("/".join([cluster.disk_state(node), *(v.disk for v in cluster.peer_views(node))]))


def _print_gi(cluster: Cluster, node: str) -> None:
    """drbdadm get-gi: current:bitmap:history...:flags; the agent reads the current UUID."""
    cluster._require_up(node)
    md = cluster.node(node)["md"] or {"uuid": "0" * 16, "history": []}
    history = [*md["history"], "0" * 16, "0" * 16][:2]
    print(":".join([md["uuid"], "0" * 16, *history, "1", "1", *"0" * 8]))


# -- drbdadm -------------------------------------------------------------------------

ADM_SHORT_WITH_ARG = {"c", "t", "n"}


def _parse_adm(argv: list[str]) -> tuple[dict[str, str], str, list[str], set[str]]:
    glob: dict[str, str] = {}
    words: list[str] = []
    options: set[str] = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            pass
        elif arg in ("-c", "--config-file"):
            glob["config"] = argv[i + 1]
            i += 1
        elif arg.startswith("--config-file="):
            glob["config"] = arg.split("=", 1)[1]
        elif arg in ("-d", "--dry-run"):
            glob["dry"] = "1"
        elif arg in ("-v", "--verbose", "-S", "--stacked", "-s"):
            glob[arg.lstrip("-")[0]] = "1"
        elif arg == "--version":
            glob["version"] = "1"
        elif arg.startswith("--"):
            options.add(arg[2:].split("=", 1)[0])
        elif arg.startswith("-") and len(arg) > 1:
            raise Usage(f"drbdadm: unrecognized option '{arg}'\ntry 'drbdadm help'")
        else:
            words.append(arg)
        i += 1
    command = words[0] if words else ""
    return glob, command, words[1:], options


def _version() -> int:
    print("DRBDADM_BUILDTAG=GIT-hash:\\ drbd-double\\ reproducible\\ build")
    print("DRBDADM_API_VERSION=2")
    loaded = not _module_missing()  # without it, drbd-utils print zeros
    print(f"DRBD_KERNEL_VERSION_CODE={KERNEL_VERSION_CODE if loaded else '0x000000'}")
    print(f"DRBD_KERNEL_VERSION={KERNEL_VERSION if loaded else '0'}")
    print("DRBDADM_VERSION_CODE=0x091600")
    print("DRBDADM_VERSION=9.22.0")
    return 0


def drbdadm(argv: list[str]) -> int:
    glob, command, targets, options = _parse_adm(argv)
    if "version" in glob:
        return _version()
    if not command:
        raise Usage("USAGE: drbdadm COMMAND [OPTION...] {all|RESOURCE...}")
    conf_path = glob.get("config") or os.environ.get("DRBD_DOUBLE_CONF") or DEFAULT_CONF
    try:
        resources = drbdconf.load(conf_path)
    except drbdconf.ConfigError as exc:
        raise DrbdError(10, str(exc)) from None
    node = this_node()
    if _module_missing() and command not in CONFIG_ONLY_COMMANDS:
        return _without_module("drbdadm", command, " ".join(targets))
    if command in ("sh-resources", "sh-mod-parms"):
        if command == "sh-resources":
            print(" ".join(sorted(n for n, r in resources.items() if node in r.hosts)))
        return 0
    if not targets and command in ("status", "role", "cstate", "dstate"):
        targets = ["all"]
    if not targets:
        raise Usage(f"USAGE: drbdadm {command} [OPTION...] {{all|RESOURCE...}}")
    names = sorted(n for n, r in resources.items() if node in r.hosts) if targets == ["all"] else targets
    code = 0
    for target in names:
        res_name, _, peer = target.partition(":")
        res = resources.get(res_name)
        if res is None or node not in res.hosts:
            raise DrbdError(10, f"'{res_name}' not defined in your config (for this host).")
        if peer and peer not in res.hosts:
            raise DrbdError(10, f"{res_name}: no connection to '{peer}' in your config")
        _remember_config(res, os.path.abspath(conf_path))
        code = max(code, _adm_one(res, node, command, peer or None, options, "dry" in glob))
    return code


def _dry(res: drbdconf.Resource, node: str, command: str, peer: str | None, options: set[str]) -> int:
    host = res.hosts[node]
    peers = [h for h in res.peers(node) if peer in (None, h.name)]
    lines: list[str] = []
    if command in ("up", "adjust"):
        lines.append(f"drbdsetup new-resource {res.name} {host.node_id}")
        lines.append(f"drbdsetup new-minor {res.name} {host.minor} 0")
        for h in peers if "skip-net" not in options else []:
            lines.append(f"drbdsetup new-peer {res.name} {h.node_id} --_name={h.name}")
        lines.append(f"drbdsetup attach {host.minor} {host.disk} {host.disk} internal")
        for h in peers if "skip-net" not in options else []:
            lines.append(f"drbdsetup connect {res.name} {h.node_id}")
    elif command in ("connect", "disconnect"):
        extra = " --discard-my-data" if "discard-my-data" in options else ""
        lines += [f"drbdsetup {command} {res.name} {h.node_id}{extra}" for h in peers]
    elif command in ("primary", "secondary", "down", "outdate"):
        lines.append(f"drbdsetup {command} {res.name}" + (" --force" if "force" in options else ""))
    print("\n".join(lines))
    return 0


def _dump(res: drbdconf.Resource) -> None:
    print(f"resource {res.name} {{")
    for host in sorted(res.hosts.values(), key=lambda h: h.node_id):
        print(f"    on {host.name} {{\n        node-id {host.node_id};\n"
              f"        device {host.device} minor {host.minor};\n        disk {host.disk};\n"
              f"        meta-disk internal;\n        address ipv4 {host.address};\n    }}")
    for section, values in (("options", res.options), ("net", res.net), ("handlers", res.handlers)):
        if values:
            print(f"    {section} {{")
            for key, value in values.items():
                print(f"        {key} {value};" if value else f"        {key};")
            print("    }")
    print("}")


def _adm_one(res: drbdconf.Resource, node: str, command: str, peer: str | None, options: set[str],
             dry: bool) -> int:
    host = res.hosts[node]
    show = {"sh-dev": host.device, "sh-minor": str(host.minor), "sh-ll-dev": host.disk,
            "sh-md-dev": host.disk, "sh-md-idx": "internal"}
    if command in show:
        print(show[command])
        return 0
    if command == "dump":
        _dump(res)
        return 0
    if dry:
        return _dry(res, node, command, peer, options)
    actions: dict[str, Callable[[Cluster], object]] = {
        "up": lambda c: c.up(node),
        "down": lambda c: c.down(node),
        "adjust": lambda c: c.adjust(node, peer, "skip-net" in options),
        "new-resource": lambda c: c.new_resource(node),
        "new-minor": lambda c: c.new_minor(node),
        "attach": lambda c: c.attach(node),
        "primary": lambda c: c.primary(node, "force" in options or "overwrite-data-of-peer" in options),
        "secondary": lambda c: c.secondary(node),
        "connect": lambda c: c.enable_net(node, peer, "discard-my-data" in options),
        "disconnect": lambda c: c.disconnect(node, peer),
        "outdate": lambda c: c.outdate(node),
        "create-md": lambda c: c.create_md(node),
        "role": lambda c: _print_role(c, node),
        "cstate": lambda c: _print_cstate(c, node, peer),
        "dstate": lambda c: _print_dstate(c, node),
        "get-gi": lambda c: _print_gi(c, node),
        "status": lambda c: sys.stdout.write(status_text(c, node, "verbose" in options,
                                                         "statistics" in options)),
        "check-resize": lambda c: None,
        "unfence-peer": lambda c: None,
        "wait-connect": lambda c: None,
    }
    if command not in actions:
        raise Usage(f"drbdadm: unknown command '{command}' (not emulated by the DRBD double)")
    if command == "status":
        with open_cluster(res) as cluster:
            cluster._require_up(node)
            actions[command](cluster)
        return 0
    with open_cluster(res) as cluster:
        actions[command](cluster)
    return 0


# -- drbd-double: the test harness's controls ---------------------------------------

def control(argv: list[str]) -> int:
    """drbd-double -c CONF {crash NODE|block A B|unblock [A B]|init IMAGE|dmesg [NODE]} RES"""
    glob, command, args, _options = _parse_adm(argv)
    conf_path = glob.get("config") or os.environ.get("DRBD_DOUBLE_CONF") or DEFAULT_CONF
    if not args:
        raise Usage(control.__doc__ or "")
    res = drbdconf.load(conf_path)[args[0]]
    _remember_config(res, os.path.abspath(conf_path))
    rest = args[1:]
    if command == "init":
        from harness.drbd_double.model import initialise

        initialise(res, rest[0])
        return 0
    if command == "dmesg":
        path = os.path.join(resource_dir(res.name), "kernel.log")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                for line in handle:
                    if not rest or line.split()[1] == rest[0]:
                        sys.stdout.write(line)
        return 0
    with open_cluster(res) as cluster:
        if command == "crash":
            cluster.crash(rest[0])
        elif command == "block":
            cluster.block(rest[0], rest[1])
        elif command == "unblock":
            cluster.unblock(*rest[:2]) if rest else cluster.unblock()
        else:
            raise Usage(control.__doc__ or "")
    return 0


def main(tool: str) -> None:
    entry = {"drbdadm": drbdadm, "drbdsetup": drbdsetup, "drbd-double": control}[tool]
    try:
        code = entry(sys.argv[1:])
    except Usage as exc:
        sys.stderr.write(f"{exc}\n")
        code = 20
    except DrbdError as exc:
        sys.stderr.write(f"{exc.message}\n")
        code = exc.code
    except drbdconf.ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        code = 10
    sys.stdout.flush()
    raise SystemExit(code)
