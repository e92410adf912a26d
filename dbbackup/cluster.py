"""What the backup command asks of Pacemaker, and the two things it asks Pacemaker to do."""

from __future__ import annotations

import subprocess

from dbbackup.errors import UNAVAILABLE, BackupError

AGE_ATTRIBUTE = "openstack-ha-backup-age"
WAIT_TIMEOUT_S = 300


def tool(argv: list[str], what: str, timeout: float = 60.0) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"cannot ask Pacemaker ({what}): {exc}", UNAVAILABLE) from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise BackupError(f"cannot ask Pacemaker ({what}): {last}", UNAVAILABLE)
    return done.stdout


def local_node() -> str:
    return tool(["crm_node", "-n"], "crm_node -n").strip()


def locate(resource: str) -> list[str]:
    """Nodes where ``resource`` is active, from crm_resource's XML."""
    from lxml import etree

    text = tool(["crm_resource", "--locate", "-r", resource, "--output-as=xml"], f"locate {resource}")
    root = etree.fromstring(text.encode())
    return [str(node.text).strip() for node in root.iterfind("nodes/node") if node.text]


def set_target_role(resource: str, role: str) -> None:
    tool(["crm_resource", "--resource", resource, "--meta", "--set-parameter", "target-role",
          "--parameter-value", role], f"target-role {role} on {resource}")


def wait_settled() -> None:
    tool(["crm_resource", "--wait", f"--timeout={WAIT_TIMEOUT_S}s"], "crm_resource --wait",
         timeout=WAIT_TIMEOUT_S + 30)


def publish_age(node: str, seconds: int) -> None:
    tool(["crm_attribute", "--node", node, "--lifetime", "reboot", "--name", AGE_ATTRIBUTE,
          "--update", str(seconds)], f"publish {AGE_ATTRIBUTE}")
