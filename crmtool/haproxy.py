"""haproxy: HAProxy's configuration generated from the description, and its checks.

HAProxy runs on every controller (a clone of ``ocf:<provider>:haproxy``); the public VIP follows a
running HAProxy.  Each HAProxy binds the VIP's address at each API's port with ``transparent`` (a
node that does not hold the VIP can bind it too) and balances over every controller's instance of
that API at the node's own address, same port.

The fronted APIs are derived, never listed: every primitive of one of our HTTP API agents (those
declaring ``version_path``) that is cloned.  Their port and health path are the primitive's
parameters, else the agent's declared defaults.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re

from crmtool.findings import (
    ADDRESS_OUTSIDE_NETWORK,
    DANGLING_REFERENCE,
    FRONTEND_PORT_CLASH,
    HAPROXY_CHECK_FAILED,
    HAPROXY_NETWORK,
    HAPROXY_NOT_CHECKED,
    HAPROXY_VIP,
    HOST_NOT_NETWORK,
    MISSING_NODE_ADDRESS,
    NODE_ADDRESS,
    Finding,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

    from crmtool.model import Description, Haproxy, Primitive

DEFAULT_CONFIG = "/etc/haproxy/haproxy.cfg"
DEFAULT_BINARY = "/usr/sbin/haproxy"
AGENT_TYPE = "haproxy"
IP_AGENTS = ("vip", "IPaddr2", "IPaddr")
CHECK_TIMEOUT_S = 30
MAXCONN = 4096
# [haproxy.timeouts]: the generated defaults section's timeouts (HAProxy's names).
TIMEOUTS = {
    # A live server on the API network accepts within a millisecond (its kernel does, however busy the
    # service): a crashed one costs each request sent to it this much before the retry elsewhere, and
    # each health check of it too (HAProxy connects a check within min(connect, inter)).
    "connect": "500ms",
    "client": "120s",          # nova and glance calls can be slow: long enough for them
    "server": "120s",
    "check": "2s",             # a health check that takes longer counts as failed
    "queue": "30s",
    "http-request": "10s",     # a client that never finishes its request headers
    "http-keep-alive": "10s",  # an idle client connection between requests
}
IDEMPOTENT_METHODS = "GET HEAD OPTIONS PUT DELETE"
HEALTHY_STATUSES = "200,300"   # what the agents' own depth-10 checks accept
# Agents whose service keeps a login in a store of its own node: horizon's default session store is a
# cache (local to the node unless the site shares one), so a browser stays on the node that holds its
# session (a cookie HAProxy inserts); should that node fail, redispatch moves it (a new login).
STICKY = ("dashboard",)
STICKY_COOKIE = "HAPROXY_SERVER"
# one of HAProxy's configuration errors: "parsing [/tmp/x/haproxy.cfg:12] : ..."
ERROR_LINE = re.compile(r"\[[^\]\n]*:(\d+)\]")


class Frontend:
    """One fronted API: a frontend on the VIP and a backend over every node."""

    __slots__ = ("name", "path", "port", "primitive", "sticky", "token_path")

    def __init__(self, primitive: Primitive, port: int, path: str, token_path: str | None) -> None:
        self.primitive = primitive
        self.sticky = primitive.agent.type in STICKY
        self.name = primitive.id
        self.port = port
        self.path = path
        self.token_path = token_path  # keystone: POST here issues a token (safe to repeat)


def _declared(primitive: Primitive, provider: str) -> dict[str, object] | None:
    """Our API agent's declared parameter defaults (and whether it issues tokens), else None."""
    from agents import registry

    agent = primitive.agent
    if agent.standard != "ocf" or agent.provider != provider or agent.type not in registry.AGENTS:
        return None
    try:
        declared = registry.load(agent.type)
    except ImportError:
        return None
    defaults = {p.name: p.default for p in declared.params}
    if "version_path" not in defaults:
        return None
    return {**defaults, "issues_tokens": bool(getattr(declared, "issues_tokens", False))}


def fronted(desc: Description, provider: str) -> list[Frontend]:
    """The cloned primitives of our HTTP API agents, in id order."""
    frontends = []
    for primitive in sorted(desc.primitives, key=lambda p: p.id):
        declared = _declared(primitive, provider)
        if declared is None or desc.clone_of(primitive.id) is None:
            continue
        port_text = primitive.params.get("port", str(declared["port"]))
        path = primitive.params.get("version_path", str(declared["version_path"]))
        port = int(port_text) if port_text.isdecimal() else 0  # a bad port is the parameter check's finding
        token_path = f"{path.rstrip('/')}/auth/tokens" if declared["issues_tokens"] else None
        frontends.append(Frontend(primitive, port, path, token_path))
    return frontends


def network(haproxy: Haproxy) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if haproxy.network is None:
        return None
    try:
        return ipaddress.ip_network(haproxy.network, strict=True)
    except ValueError:
        return None


def address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if text is None:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def vip_address(desc: Description, haproxy: Haproxy) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    primitive = desc.primitive(haproxy.vip) if haproxy.vip else None
    if primitive is None or primitive.agent.type not in IP_AGENTS:
        return None
    return address(primitive.params.get("ip"))


def resource(desc: Description, provider: str) -> Primitive | None:
    """The haproxy primitive crmtool sets config and config_digest on (our agent only)."""
    haproxy = desc.haproxy
    primitive = desc.primitive(haproxy.resource) if haproxy is not None and haproxy.resource else None
    if primitive is None:
        return None
    agent = primitive.agent
    ours = (agent.standard, agent.provider, agent.type) == ("ocf", provider, AGENT_TYPE)
    return primitive if ours else None


# Generation ------------------------------------------------------------------


def _word(text: str) -> str:
    """One word of HAProxy's configuration: its special characters escaped (the path is printable ASCII)."""
    return re.sub(r"([\\#'\"$ ])", r"\\\1", text)


def _endpoint(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def _duration(text: str) -> str:
    from crmtool.load import interval_ms

    ms = interval_ms(text)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _site_name(site: str) -> str:
    return re.sub(r"[^\x21-\x7e]", "?", site) or "-"


def generate(desc: Description, provider: str) -> str | None:
    """The configuration text, or None when the description lacks what it needs (the checks say what)."""
    from agents.haproxy import fallback_of

    haproxy = desc.haproxy
    if haproxy is None:
        return None
    vip = vip_address(desc, haproxy)
    servers = [(node.name, ip) for node in desc.nodes if (ip := address(node.address)) is not None]
    if vip is None or len(servers) != len(desc.nodes):
        return None
    timeouts = {**TIMEOUTS, **{name: _duration(value) for name, value in haproxy.timeouts.items()}}
    lines = [
        f"# HAProxy in front of the OpenStack APIs of site {_site_name(desc.site)}.",
        "# generated by crmtool; do not edit: change the site description and run `crmtool haproxy`.",
        "# `crmtool render` puts this file's sha256 into the haproxy resource's config_digest: a changed",
        "# file reloads HAProxy on every node (reload-agent), it does not restart it.",
        "",
        "global",
        # the agent runs the master as root (it binds the VIP, transparent); the workers drop to this user
        "    user haproxy",
        "    group haproxy",
        f"    maxconn {MAXCONN}",
        "    log stdout format raw local0",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option httplog",
        "    # the APIs log the client's address from X-Forwarded-For (HAProxy appends, never trusts it)",
        "    option forwardfor",
        "    # A new server connection per request: an idle keep-alive connection may be closed by the",
        "    # server (uWSGI closes without saying so) just as HAProxy sends the next request on it, and",
        "    # a POST lost that way cannot be retried safely.  With http-server-close no request ever",
        "    # goes out on a pooled connection, so the retries below only ever cover real failures",
        "    # (http-reuse never would still reuse a client's own server connection).",
        "    option http-server-close",
        *(f"    timeout {name} {value}" for name, value in timeouts.items()),
        "    # Failed requests are retried, each retry on another server (redispatch 1): a refused",
        "    # connection always; an empty response or a response timeout only for requests that are",
        "    # safe to repeat (each backend disables L7 retries for the others).",
        "    retries 3",
        "    # a request is retried only once HAProxy holds it whole: wait for its body (up to a buffer)",
        "    option http-buffer-request",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response response-timeout",
        "    # a dead instance leaves the rotation after two failed checks, 1 s apart (~2 s; a hung one",
        "    # after two checks of timeout check each, ~5 s)",
        "    default-server inter 1s fall 2 rise 2",
    ]
    for frontend in fronted(desc, provider):
        rule = f"    http-request disable-l7-retry if !{{ method {IDEMPOTENT_METHODS} }}"
        lines += [
            "",
            f"frontend {frontend.name}",
            f"    bind {_endpoint(vip, frontend.port)} transparent",
            f"    default_backend {frontend.name}",
            "",
            f"backend {frontend.name}",
            "    balance roundrobin",
            # HTTP/1.1 with the Host clients send through the VIP (Django's ALLOWED_HOSTS judges it)
            "    option httpchk",
            f"    http-check send meth GET uri {_word(frontend.path)} ver HTTP/1.1 hdr Host "
            f"{_endpoint(vip, frontend.port)}",
            f"    http-check expect status {HEALTHY_STATUSES}",
        ]
        if frontend.token_path is not None:
            lines += ["    # issuing a token is safe to repeat (a second token, no lasting change)",
                      f"{rule} !{{ path {_word(frontend.token_path)} }}"]
        else:
            lines.append(rule)
        if frontend.sticky:
            lines += ["    # a browser stays on the node holding its session (horizon's session store)",
                      f"    cookie {STICKY_COOKIE} insert indirect nocache httponly"]
        for name, ip in servers:
            cookie = f" cookie {name}" if frontend.sticky else ""
            lines.append(f"    server {name} {_endpoint(ip, frontend.port)} check{cookie}")
        lines += ["    # when every server fails its checks (slowed down, its checks queued behind the",
                  "    # requests), requests wait for them rather than get a 503 at once: unchecked twins,",
                  "    # all in turn",
                  "    option allbackups"]
        lines += [f"    server {fallback_of(name)} {_endpoint(ip, frontend.port)} backup"
                  for name, ip in servers]
    return "\n".join(lines) + "\n"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def prepare(desc: Description, provider: str) -> None:
    """What the [haproxy] table implies for the primitives: each fronted API's host, and the haproxy
    resource's config and config_digest (so that a changed configuration reloads it everywhere)."""
    haproxy = desc.haproxy
    if haproxy is None:
        return
    net = network(haproxy)
    target = resource(desc, provider)
    for frontend in fronted(desc, provider):
        primitive = frontend.primitive
        if net is not None and "host" not in primitive.params:
            primitive.params["host"] = str(net)
            primitive.param_paths["host"] = f"{haproxy.path}.network"
        if target is not None:
            drain_before_stop(desc, primitive, target.id, haproxy.path)
    if target is None:
        return
    primitive = target
    if "config" not in primitive.params:
        primitive.params["config"] = haproxy.config
        primitive.param_paths["config"] = f"{haproxy.path}.config"
    text = generate(desc, provider)
    if text is not None:
        primitive.params["config_digest"] = digest(text)
        primitive.param_paths["config_digest"] = haproxy.path


def drain_before_stop(desc: Description, primitive: Primitive, proxy: str, path: str) -> None:
    """The API's clone notifies its instances (notify=true) and the API names the haproxy resource:
    before an instance stops, every node's HAProxy takes it out of rotation and lets its requests
    finish; after it started, puts it back (the API agent's notify action)."""
    clone = desc.clone_of(primitive.id)
    if clone is not None and "notify" not in clone.meta:
        clone.meta["notify"] = "true"
    if "haproxy_resource" not in primitive.params:
        primitive.params["haproxy_resource"] = proxy
        primitive.param_paths["haproxy_resource"] = f"{path}.resource"


# Checks ----------------------------------------------------------------------


def _node_addresses(desc: Description, provider: str) -> Iterator[Finding]:
    """Node addresses: optional in general, required (and inside the network) when HAProxy fronts APIs."""
    haproxy = desc.haproxy
    net = network(haproxy) if haproxy is not None else None
    seen: dict[str, str] = {}
    for node in desc.nodes:
        path = f"{node.path}.address"
        if node.address is None:
            if haproxy is not None:
                yield Finding(MISSING_NODE_ADDRESS, path, "HAProxy balances over every node's APIs at its "
                              "address: give this node its address on the API network")
            continue
        ip = address(node.address)
        if ip is None:
            yield Finding(NODE_ADDRESS, path, f"{node.address!r} is not an IPv4 or IPv6 address")
            continue
        first = seen.setdefault(str(ip), node.name)
        if first != node.name:
            yield Finding(NODE_ADDRESS, path, f"{ip} is already the address of {first!r}")
        elif net is not None and ip not in net:
            yield Finding(ADDRESS_OUTSIDE_NETWORK, path, f"{ip} is outside the [haproxy] network {net}: the "
                          "node's APIs listen on its address in that network")


def _haproxy_table(desc: Description, provider: str) -> Iterator[Finding]:
    haproxy = desc.haproxy
    if haproxy is None:
        return
    if haproxy.network is None:
        yield Finding(HAPROXY_NETWORK, f"{haproxy.path}.network", "name the controllers' API network (CIDR): "
                      "each fronted API listens on its node's address there, HAProxy on the VIP")
    elif network(haproxy) is None:
        yield Finding(HAPROXY_NETWORK, f"{haproxy.path}.network",
                      f"{haproxy.network!r} is not a network in CIDR form without host bits (10.0.0.0/24, "
                      "2001:db8::/64)")
    yield from _vip(desc, haproxy)
    if haproxy.resource is not None and desc.primitive(haproxy.resource) is None:
        yield Finding(DANGLING_REFERENCE, f"{haproxy.path}.resource",
                      f"no primitive named {haproxy.resource!r}")
    net = network(haproxy)
    ports: dict[int, str] = {}
    for frontend in fronted(desc, provider):
        primitive = frontend.primitive
        other = ports.setdefault(frontend.port, frontend.name)
        if other != frontend.name and frontend.port:
            where = primitive.param_path("port") if "port" in primitive.params else primitive.path
            yield Finding(FRONTEND_PORT_CLASH, where, f"{frontend.name} and {other} are both fronted on port "
                          f"{frontend.port}: give one of them another port")
        host = primitive.params.get("host")
        if net is not None and host is not None and not _same_network(host, net):
            yield Finding(HOST_NOT_NETWORK, primitive.param_path("host"),
                          f"host {host} is not the [haproxy] network {net}: HAProxy sends {frontend.name}'s "
                          "requests to each node's address in that network")


def _same_network(host: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_network(host, strict=True) == net
    except ValueError:
        return False


def _vip(desc: Description, haproxy: Haproxy) -> Iterator[Finding]:
    path = f"{haproxy.path}.vip"
    if haproxy.vip is None:
        yield Finding(HAPROXY_VIP, path, "name the VIP primitive whose address the frontends bind")
        return
    primitive = desc.primitive(haproxy.vip)
    if primitive is None:
        yield Finding(HAPROXY_VIP, path, f"no primitive named {haproxy.vip!r}")
    elif primitive.agent.type not in IP_AGENTS:
        yield Finding(HAPROXY_VIP, path,
                      f"{haproxy.vip!r} is not an IP address resource ({', '.join(IP_AGENTS)})")
    elif vip_address(desc, haproxy) is None:
        yield Finding(HAPROXY_VIP, path, f"{haproxy.vip!r} has no IP address in its ip parameter")


RULES = (_node_addresses, _haproxy_table)


# haproxy -c ------------------------------------------------------------------


def check_config(desc: Description, provider: str, text: str) -> list[Finding]:
    """``haproxy -c`` on the generated text, in a private temporary file (the binary the resource runs)."""
    import os
    import subprocess
    import tempfile

    haproxy = desc.haproxy
    path = haproxy.path if haproxy is not None else "haproxy"
    primitive = resource(desc, provider)
    binary = (primitive.params.get("binary") if primitive is not None else None) or DEFAULT_BINARY
    if not os.access(binary, os.X_OK):
        return [Finding(HAPROXY_NOT_CHECKED, path, f"{binary} is not installed here: the generated "
                        "configuration was not checked (install haproxy to check it)")]
    with tempfile.TemporaryDirectory(prefix="crmtool-haproxy-") as private:
        config = os.path.join(private, "haproxy.cfg")
        with open(config, "x", encoding="utf-8") as handle:
            handle.write(text)
        try:
            # not -q: its error lines carry the line number (only the number is kept, never the text)
            done = subprocess.run([binary, "-c", "-f", config], capture_output=True, check=False,
                                  timeout=CHECK_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return [Finding(HAPROXY_CHECK_FAILED, path, f"haproxy -c did not finish in {CHECK_TIMEOUT_S} s")]
        except OSError as exc:
            return [Finding(HAPROXY_NOT_CHECKED, path, f"{binary} cannot be run ({exc.strerror}): the "
                            "generated configuration was not checked")]
    if done.returncode == 0:
        return []
    match = ERROR_LINE.search(done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace"))
    where = f" (first error at line {match.group(1)} of the generated file)" if match else ""
    return [Finding(HAPROXY_CHECK_FAILED, path, f"haproxy -c rejects the generated configuration, exit "
                    f"status {done.returncode}{where}: see `crmtool haproxy` and run haproxy -c on it")]
