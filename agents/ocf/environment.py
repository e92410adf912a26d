"""Everything an action learns from its environment, parsed in one place."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

META = "OCF_RESKEY_CRM_meta_"
DEFAULT_RSCTMP = "/run/resource-agents"


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text not in (None, "") else default  # type: ignore[arg-type]
    except ValueError:
        return default


class Environment:
    def __init__(self, action: str, env: Mapping[str, str]) -> None:
        self.action = action
        self.raw = env
        self.instance = env.get("OCF_RESOURCE_INSTANCE", "") or "default"
        self.check_level = _int(env.get("OCF_CHECK_LEVEL"), 0)
        self.interval_ms = _int(env.get(META + "interval"), -1)
        self.timeout_ms = _int(env.get(META + "timeout"), 0)
        self.node = env.get(META + "on_node", "")
        self.rsctmp = env.get("HA_RSCTMP", "") or DEFAULT_RSCTMP
        self.ocf_version = (_int(env.get("OCF_RA_VERSION_MAJOR"), 1),
                            _int(env.get("OCF_RA_VERSION_MINOR"), 0))

    @property
    def is_probe(self) -> bool:
        """A one-time status check: a monitor with interval zero."""
        return self.action == "monitor" and self.interval_ms == 0

    @property
    def clone_max(self) -> int:
        return _int(self.raw.get(META + "clone_max"), 1)

    def meta(self, name: str, default: str = "") -> str:
        return self.raw.get(META + name, default)

    def notify(self) -> Notification:
        return Notification(self.raw)


class Notification:
    """The ``notify`` action's variables: what happened, before or after, to whom."""

    LISTS = (
        "active", "inactive", "start", "stop", "promote", "demote",
        "promoted", "unpromoted", "available",
    )

    def __init__(self, env: Mapping[str, str]) -> None:
        self.type = env.get(META + "notify_type", "")
        self.operation = env.get(META + "notify_operation", "")
        self._env = env

    def unames(self, which: str) -> list[str]:
        """Node names of a notification list, e.g. ``unames("promote")``."""
        legacy = {"promoted": "master", "unpromoted": "slave"}
        raw = self._env.get(f"{META}notify_{which}_uname")
        if raw is None and which in legacy:
            raw = self._env.get(f"{META}notify_{legacy[which]}_uname", "")
        return (raw or "").split()
