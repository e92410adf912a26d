"""A fence agent for namespace nodes (test use only).

pacemaker-fenced runs it inside a node, where other nodes' processes are
invisible, so the agent only hands the request to the harness's broker in the
root namespace through the run's shared state directory and waits for the
answer. The harness installs a launcher for it as ``/usr/sbin/fence_nsc_<run>``
(fenced looks for agents in /usr/sbin only) and removes it at teardown.

It speaks the fence-agents calling convention: ``key=value`` lines on stdin
(or ``-o ACTION`` / ``--action=ACTION`` and ``-n PLUG`` on the command line),
actions on, off, reboot, status, monitor, list, metadata, validate-all.
Exit codes: 0 success, 1 failure, 2 "off" for status.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

from nscluster import broker_protocol as protocol

POWER_ACTIONS = ("on", "off", "reboot")
ALL_ACTIONS = (*POWER_ACTIONS, "status", "monitor", "list", "metadata", "validate-all")
PARAMETERS = (
    ("action", "Fencing action", "reboot"),
    ("port", "Name of the node to fence", None),
    ("plug", "Name of the node to fence (alias of port)", None),
    ("nodename", "Name of the node requesting the action", None),
    ("delay", "Seconds to wait before acting (a slow fence device)", "0"),
    ("timeout", "Seconds to wait for the broker's answer", "20"),
)


def metadata(agent_name: str) -> str:
    from xml.etree import ElementTree as ET

    root = ET.Element("resource-agent", name=agent_name,
                      shortdesc="Fence agent for nscluster namespace nodes (test use only)")
    ET.SubElement(root, "longdesc").text = (
        "Asks the nscluster broker in the root namespace to power a namespace node off or on.")
    parameters = ET.SubElement(root, "parameters")
    for name, description, default in PARAMETERS:
        parameter = ET.SubElement(parameters, "parameter", name=name, unique="0", required="0")
        ET.SubElement(parameter, "getopt", mixed=f"--{name}=[value]")
        content = ET.SubElement(parameter, "content", type="string")
        if default is not None:
            content.set("default", default)
        ET.SubElement(parameter, "shortdesc", lang="en").text = description
    actions = ET.SubElement(root, "actions")
    for action in ALL_ACTIONS:
        attributes = {"name": action}
        if action == "monitor":
            attributes["timeout"] = "20s"
        ET.SubElement(actions, "action", attributes)
    return '<?xml version="1.0" ?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def parse_request(argv: list[str], stdin_text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for line in stdin_text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            options[key] = value
    args = iter(argv)
    for arg in args:
        if arg in ("-o", "--action"):
            options["action"] = next(args, "")
        elif arg in ("-n", "--plug", "--port"):
            options["port"] = next(args, "")
        elif arg.startswith("--") and "=" in arg:
            key, _, value = arg[2:].partition("=")
            options[key] = value
    if "option" in options and "action" not in options:
        options["action"] = options["option"]
    return options


def ask_broker(state_dir: str, request: dict[str, str], timeout_s: float) -> dict[str, object]:
    requests = os.path.join(state_dir, protocol.REQUEST_DIR)
    ident = uuid.uuid4().hex
    temporary = os.path.join(requests, f".{ident}.tmp")
    with open(temporary, "w") as handle:
        json.dump(request, handle)
    os.rename(temporary, os.path.join(requests, ident + protocol.REQUEST_SUFFIX))
    answer_path = os.path.join(requests, ident + protocol.ANSWER_SUFFIX)
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            with open(answer_path) as handle:
                answer: dict[str, object] = json.load(handle)
        except FileNotFoundError:
            time.sleep(0.05)
            continue
        os.unlink(answer_path)
        return answer
    return {"rc": 1, "error": "no answer from the nscluster broker"}


def run(state_dir: str, agent_name: str, argv: list[str], stdin_text: str) -> int:
    options = parse_request(argv, stdin_text)
    action = options.get("action", "reboot")
    if action == "metadata":
        sys.stdout.write(metadata(agent_name))
        return 0
    if action not in ALL_ACTIONS:
        sys.stderr.write(f"unsupported action {action!r}\n")
        return 1
    if action == "validate-all":
        return 0
    target = options.get("port") or options.get("plug") or ""
    if action in (*POWER_ACTIONS, "status") and not target:
        sys.stderr.write(f"action {action} needs port=NODE\n")
        return 1
    if action in POWER_ACTIONS:
        time.sleep(float(options.get("delay") or 0))
    answer = ask_broker(state_dir, {"action": action, "target": target,
                                    "requester": options.get("nodename", "")},
                        float(options.get("timeout") or 20))
    if action == "list" and answer.get("rc") == 0:
        nodes = answer.get("nodes")
        for name in nodes if isinstance(nodes, list) else []:
            sys.stdout.write(f"{name}\n")
    if answer.get("error"):
        sys.stderr.write(f"{answer['error']}\n")
    rc = answer.get("rc", 1)
    return rc if isinstance(rc, int) else 1


def main(state_dir: str, agent_name: str) -> None:
    stdin_text = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    sys.exit(run(state_dir, agent_name, sys.argv[1:], stdin_text))
