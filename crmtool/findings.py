"""Report codes, findings and the errors that end a crmtool run.

Every code is declared once here; the checks, the CLI and the documentation
table read this declaration.
"""

from __future__ import annotations

from crmtool.exits import Exit

ERROR = "error"
WARNING = "warning"


class Code:
    __slots__ = ("code", "name", "severity", "summary")

    def __init__(self, code: str, name: str, severity: str, summary: str) -> None:
        self.code = code
        self.name = name
        self.severity = severity
        self.summary = summary

    def __str__(self) -> str:
        return f"{self.code} {self.name}"


TOML_SYNTAX = Code("CRM001", "toml-syntax", ERROR, "the file is not valid TOML")
UNKNOWN_PROFILE = Code("CRM002", "unknown-profile", ERROR, "the profile named by `profile` does not exist")
UNKNOWN_KEY = Code("CRM003", "unknown-key", ERROR, "a key the description format does not know (a typo)")
WRONG_TYPE = Code("CRM004", "wrong-type", ERROR, "a value of the wrong TOML type or an unknown keyword")
MISSING_KEY = Code("CRM005", "missing-key", ERROR, "a required key is missing")
DANGLING_REFERENCE = Code("CRM101", "dangling-reference", ERROR, "a group, clone or constraint names a "
                          "resource or node that does not exist, or the wrong kind (a clone's child, a "
                          "non-primitive group member)")
INVALID_ID = Code("CRM102", "invalid-id", ERROR, "a name that is not a valid XML id for Pacemaker")
ID_COLLISION = Code("CRM103", "id-collision", ERROR, "two elements would get the same id")
COLOCATION_DIRECTION = Code("CRM104", "colocation-direction", ERROR, "a clone is colocated with a single "
                            "resource: the dependent and the anchor are swapped")
PROMOTE_WITHOUT_ROLE_COLOCATION = Code("CRM105", "promote-without-role-colocation", ERROR, "an order after "
                                       "`promote` without a colocation with the Promoted role: the "
                                       "dependent may start where nothing was promoted")
ORDER_CYCLE = Code("CRM106", "order-cycle", ERROR, "mandatory orders form a loop: everything stays stopped")
NON_INTERLEAVED_CLONE_CHAIN = Code("CRM107", "non-interleaved-clone-chain", ERROR, "a clone ordered or "
                                   "colocated after another clone without interleave=true: one instance "
                                   "restarts every instance")
EQUAL_ROLE_MONITOR_INTERVALS = Code("CRM108", "equal-role-monitor-intervals", ERROR, "two monitors of one "
                                    "resource share an interval (role monitors must differ)")
UNKNOWN_PARAMETER = Code("CRM109", "unknown-parameter", ERROR, "a parameter our agent does not declare")
MISSING_REQUIRED_PARAMETER = Code("CRM110", "missing-required-parameter", ERROR, "a required parameter of "
                                  "our agent is not set")
INVALID_PARAMETER_VALUE = Code("CRM111", "invalid-parameter-value", ERROR, "a value our agent's declaration "
                               "rejects")
DEPRECATED_PARAMETER = Code("CRM112", "deprecated-parameter", WARNING, "a parameter our agent replaced by "
                            "another")
UNREGISTERED_AGENT = Code("CRM113", "unregistered-agent", WARNING, "an agent of our provider that is "
                          "registered but cannot be imported: its parameters cannot be checked")
SECRET_IN_CLEAR = Code("CRM114", "secret-in-clear", ERROR, "a password or other secret written in the "
                       "description instead of referenced (file, script)")
MANDATORY_ORDER_INTO_CLONE = Code("CRM115", "mandatory-order-into-clone", ERROR, "a mandatory order from a "
                                  "single resource to a clone: when the resource moves, every instance "
                                  "restarts on every node")
RESOURCE_REUSED = Code("CRM116", "resource-reused", ERROR, "a resource is a member of two groups or clones")
ROLE_ON_NON_PROMOTABLE = Code("CRM117", "role-on-non-promotable", ERROR, "a Promoted/Unpromoted role or "
                              "promote/demote action used on a resource that is not a promotable clone")
FENCING_DISABLED = Code("CRM118", "fencing-disabled", WARNING, "stonith-enabled is false: a lost node's "
                        "resources cannot be recovered safely")
TOO_FEW_NODES = Code("CRM119", "too-few-nodes", ERROR, "fewer than three nodes: no quorum survives a failure")
CLUSTER_OWNED_PROPERTY = Code("CRM120", "cluster-owned-property", ERROR, "a property the cluster maintains "
                              "itself (dc-version, cluster-infrastructure, cluster-name, last-lrm-refresh): "
                              "crmtool would overwrite the DC's value")
STORAGE_NODES = Code("CRM121", "storage-nodes", ERROR, "storage nodes unknown, named twice, fewer than two, "
                     "or not matching the clone-max of a resource bound to them")
EVEN_STORAGE_NODES = Code("CRM122", "even-storage-nodes", WARNING, "an even number of storage nodes: DRBD's "
                          "majority quorum survives no more failures than with one node fewer")
NODE_ID = Code("CRM123", "node-id", ERROR, "a node id that is not a corosync node id (1 to 4294967295) or is "
               "given to two nodes")
NODE_NAME_CASE = Code("CRM124", "node-name-case", ERROR, "two node names that differ only in case")
SHARED_FENCE_TARGET = Code("CRM125", "shared-fence-target", ERROR, "two nodes fenced at the same address "
                           "(and plug): fencing one powers off the other")
SHARED_VIP = Code("CRM126", "shared-vip", ERROR, "two IP address resources with the same address (the "
                  "database VIP equal to the public VIP)")
UNKNOWN_OPTION = Code("CRM127", "unknown-option", ERROR, "a cluster property, resource or operation default "
                      "Pacemaker does not know (a typo)")
INVALID_OPTION_VALUE = Code("CRM128", "invalid-option-value", ERROR, "a cluster property or default whose "
                            "value Pacemaker's option metadata rejects")
QUORUM_IGNORED = Code("CRM129", "quorum-ignored", WARNING, "no-quorum-policy=ignore: a partition without "
                      "quorum keeps running resources (split brain)")
UNKNOWN_AGENT = Code("CRM130", "unknown-agent", ERROR, "an agent under our own provider that does not exist")
OP_TIMEOUT_BELOW_ADVERT = Code("CRM131", "op-timeout-below-advert", WARNING, "an operation of our agent "
                                "with a timeout shorter than the agent advertises for it")
NODE_ADDRESS = Code("CRM132", "node-address", ERROR, "a node address that is not an IPv4 or IPv6 address, or "
                    "that two nodes share")
MISSING_NODE_ADDRESS = Code("CRM133", "missing-node-address", ERROR, "a node without an address while "
                            "HAProxy fronts the APIs (its API instances could not be balanced to)")
HAPROXY_NETWORK = Code("CRM134", "haproxy-network", ERROR, "the [haproxy] network is missing or not a "
                       "network in CIDR form (10.0.0.0/24, 2001:db8::/64)")
ADDRESS_OUTSIDE_NETWORK = Code("CRM135", "address-outside-network", ERROR, "a node address outside the "
                               "[haproxy] network: the node's APIs would not listen where HAProxy sends "
                               "requests")
FRONTEND_PORT_CLASH = Code("CRM136", "frontend-port-clash", ERROR, "two APIs fronted by HAProxy on one port")
HAPROXY_VIP = Code("CRM137", "haproxy-vip", ERROR, "the [haproxy] vip is missing or names no IP address "
                   "resource with an address")
HOST_NOT_NETWORK = Code("CRM138", "host-not-network", WARNING, "a fronted API's host set to something other "
                        "than the [haproxy] network")
HAPROXY_CHECK_FAILED = Code("CRM139", "haproxy-check-failed", ERROR, "haproxy -c rejects the generated "
                            "configuration")
HAPROXY_NOT_CHECKED = Code("CRM140", "haproxy-not-checked", WARNING, "haproxy is not installed here: the "
                           "generated configuration was not checked with haproxy -c")

_DECLARED = (
    TOML_SYNTAX, UNKNOWN_PROFILE, UNKNOWN_KEY, WRONG_TYPE, MISSING_KEY, DANGLING_REFERENCE, INVALID_ID,
    ID_COLLISION, COLOCATION_DIRECTION, PROMOTE_WITHOUT_ROLE_COLOCATION, ORDER_CYCLE,
    NON_INTERLEAVED_CLONE_CHAIN, EQUAL_ROLE_MONITOR_INTERVALS, UNKNOWN_PARAMETER, MISSING_REQUIRED_PARAMETER,
    INVALID_PARAMETER_VALUE, DEPRECATED_PARAMETER, UNREGISTERED_AGENT, SECRET_IN_CLEAR,
    MANDATORY_ORDER_INTO_CLONE, RESOURCE_REUSED, ROLE_ON_NON_PROMOTABLE, FENCING_DISABLED, TOO_FEW_NODES,
    CLUSTER_OWNED_PROPERTY, STORAGE_NODES, EVEN_STORAGE_NODES, NODE_ID, NODE_NAME_CASE, SHARED_FENCE_TARGET,
    SHARED_VIP, UNKNOWN_OPTION, INVALID_OPTION_VALUE, QUORUM_IGNORED, UNKNOWN_AGENT, OP_TIMEOUT_BELOW_ADVERT,
    NODE_ADDRESS, MISSING_NODE_ADDRESS, HAPROXY_NETWORK, ADDRESS_OUTSIDE_NETWORK, FRONTEND_PORT_CLASH,
    HAPROXY_VIP, HOST_NOT_NETWORK, HAPROXY_CHECK_FAILED, HAPROXY_NOT_CHECKED,
)

CODES: dict[str, Code] = {c.code: c for c in _DECLARED}


class Finding:
    """One problem of a description, at one TOML path."""

    __slots__ = ("code", "message", "path")

    def __init__(self, code: Code, path: str, message: str) -> None:
        self.code = code
        self.path = path
        self.message = message

    @property
    def is_error(self) -> bool:
        return self.code.severity == ERROR

    def sort_key(self) -> tuple[str, str, str]:
        return (self.path, self.code.code, self.message)

    def __str__(self) -> str:
        return f"{self.code.severity} {self.code} {self.path}: {self.message}"

    def __repr__(self) -> str:
        return f"Finding({self})"


class CrmtoolError(Exception):
    """Ends a run with one message and an exit status."""

    exit_code = Exit.ERROR

    def __init__(self, message: str, exit_code: Exit | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class DescriptionError(CrmtoolError):
    """The description has errors: all of them are carried (a data error)."""

    exit_code = Exit.DATAERR

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__(f"{sum(f.is_error for f in findings)} error(s) in the description")
        self.findings = findings


class NoInput(CrmtoolError):
    exit_code = Exit.NOINPUT


class Unavailable(CrmtoolError):
    """A Pacemaker tool is missing or failed to run."""

    exit_code = Exit.UNAVAILABLE


class SoftwareBug(CrmtoolError):
    """crmtool produced something Pacemaker's schema rejects."""

    exit_code = Exit.SOFTWARE


class ConcurrentChange(CrmtoolError):
    """The CIB changed between diff and patch (Pacemaker's CRM_EX_TEMPFAIL: try again)."""

    exit_code = Exit.TEMPFAIL


class SimulationFailed(CrmtoolError):
    exit_code = Exit.ERROR
