"""A reader for the subset of drbd.conf that the double needs.

It understands the real syntax (nested sections, ``key value...;`` statements,
``include`` of files and globs, comments) and extracts, per resource, the
hosts with their node id, device, minor, disk and address, the options
``quorum`` and ``allow-two-primaries``, and the ``handlers`` section.
Real ``drbdadm dump`` parses the same files (the double's tests check that).
"""

from __future__ import annotations

import glob
import os
import re

TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{};]|[^\s{};"]+')


class ConfigError(Exception):
    pass


class Host:
    def __init__(self, name: str, node_id: int, minor: int, device: str, disk: str, address: str) -> None:
        self.name = name
        self.node_id = node_id
        self.minor = minor
        self.device = device
        self.disk = disk
        self.address = address


class Resource:
    def __init__(self, name: str) -> None:
        self.name = name
        self.hosts: dict[str, Host] = {}
        self.options: dict[str, str] = {}
        self.net: dict[str, str] = {}
        self.handlers: dict[str, str] = {}

    @property
    def quorum_majority(self) -> bool:
        return self.options.get("quorum") == "majority"

    @property
    def allow_two_primaries(self) -> bool:
        return self.net.get("allow-two-primaries", "no") in ("yes", "")

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise ConfigError(f"'{self.name}' not defined in your config (for this host).") from None

    def peers(self, name: str) -> list[Host]:
        return sorted((h for h in self.hosts.values() if h.name != name), key=lambda h: h.node_id)


def _tokens(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        text = "\n".join(line.split("#", 1)[0] for line in handle)
    out: list[str] = []
    words = TOKEN.findall(text)
    i = 0
    while i < len(words):
        if words[i] == "include" and i + 2 < len(words) and words[i + 2] == ";":
            pattern = words[i + 1].strip('"')
            if not os.path.isabs(pattern):
                pattern = os.path.join(os.path.dirname(path), pattern)
            for included in sorted(glob.glob(pattern)):
                out.extend(_tokens(included))
            i += 3
            continue
        out.append(words[i].strip('"') if words[i].startswith('"') else words[i])
        i += 1
    return out


Node = tuple[list[str], list["Node"]]  # (words of the statement, children if a section)


def _parse(tokens: list[str], pos: int = 0, depth: int = 0) -> tuple[list[Node], int]:
    nodes: list[Node] = []
    words: list[str] = []
    while pos < len(tokens):
        tok = tokens[pos]
        pos += 1
        if tok == ";":
            if words:
                nodes.append((words, []))
            words = []
        elif tok == "{":
            children, pos = _parse(tokens, pos, depth + 1)
            nodes.append((words, children))
            words = []
        elif tok == "}":
            if depth == 0:
                raise ConfigError("unbalanced '}'")
            return nodes, pos
        else:
            words.append(tok)
    if depth:
        raise ConfigError("missing '}'")
    return nodes, pos


def _host(name: str, body: list[Node]) -> Host:
    node_id, minor, device, disk, address = -1, -1, "", "", ""
    for words, _children in body:
        key, args = words[0], words[1:]
        if key == "node-id":
            node_id = int(args[0])
        elif key == "device":
            for i, arg in enumerate(args):
                if arg == "minor":
                    minor = int(args[i + 1])
                elif arg.startswith("/dev/"):
                    device = arg
        elif key == "disk":
            disk = args[0]
        elif key == "address":
            address = args[-1]
    if minor < 0 and device:
        match = re.fullmatch(r"/dev/drbd(\d+)", device)
        minor = int(match.group(1)) if match else -1
    if not device and minor >= 0:
        device = f"/dev/drbd{minor}"
    if node_id < 0 or minor < 0 or not disk:
        raise ConfigError(f"host {name}: node-id, device/minor and disk are required")
    return Host(name, node_id, minor, device, disk, address)


def _settings(body: list[Node]) -> dict[str, str]:
    return {words[0]: " ".join(words[1:]) for words, _children in body if words}


def load(path: str) -> dict[str, Resource]:
    try:
        tree, _ = _parse(_tokens(path))
    except OSError as exc:
        raise ConfigError(f"open({path}) failed: {exc.strerror}") from None
    resources: dict[str, Resource] = {}
    common: dict[str, dict[str, str]] = {}
    for words, body in tree:
        if words == ["common"]:
            for sub_words, sub_body in body:
                common[sub_words[0]] = _settings(sub_body)
        if len(words) == 2 and words[0] == "resource":
            res = Resource(words[1])
            res.options.update(common.get("options", {}))
            res.net.update(common.get("net", {}))
            res.handlers.update(common.get("handlers", {}))
            for sub_words, sub_body in body:
                if sub_words and sub_words[0] == "on":
                    host = _host(sub_words[1], sub_body)
                    res.hosts[host.name] = host
                elif sub_words == ["options"]:
                    res.options.update(_settings(sub_body))
                elif sub_words == ["net"]:
                    res.net.update(_settings(sub_body))
                elif sub_words == ["handlers"]:
                    res.handlers.update(_settings(sub_body))
            resources[res.name] = res
    return resources
