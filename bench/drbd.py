"""drbd against ocf:linbit:drbd, both on the DRBD double, same resource, alternating runs.

Both agents run as node alpha of a three-replica resource (beta and gamma up and
connected) inside the same wrapper (a private mount/UTS namespace with a
/proc/drbd, which LINBIT's agent needs); the wrapper alone is measured too and
subtracted.  The double's own ``drbdsetup status --json`` is the floor every call
pays (a Python process per DRBD command, instead of a netlink round trip).
"""

from __future__ import annotations

import os
import subprocess

from bench.core import Bench, alternate, ms, ratio, time_once
from harness.drbd_double.agent import CLONE_META, OUR_AGENT
from harness.drbd_double.fixture import BIN, replicas
from harness.drbd_double.pacemaker import make_cib

LINBIT = "/usr/lib/ocf/resource.d/linbit/drbd"


def _env(drbd, cib: str, instance: str, extra: dict[str, str]) -> dict[str, str]:
    env = drbd.env("alpha")
    env.pop("DRBD_DOUBLE_NODE")
    env.update(CIB_file=cib, TMPDIR=drbd.workdir, OCF_ROOT="/usr/lib/ocf", OCF_RESOURCE_INSTANCE=instance,
               HA_RSCTMP=os.path.join(drbd.workdir, "rsctmp"), OCF_RESKEY_drbd_resource=drbd.resource,
               OCF_RESKEY_drbdconf=drbd.conf, OCF_RESKEY_CRM_meta_on_node="alpha",
               OCF_RESKEY_CRM_meta_timeout="60000", **extra)
    env.update({f"OCF_RESKEY_CRM_meta_{k}": v for k, v in CLONE_META.items()})
    env["OCF_RESKEY_CRM_meta_master_max"] = "1"
    env["OCF_RESKEY_CRM_meta_master_node_max"] = "1"
    return env


def run(bench: Bench) -> None:
    if os.geteuid() != 0:
        print("drbd: skipped (needs root)\n")
        return
    with replicas() as drbd:
        for peer in ("beta", "gamma"):
            drbd.run(peer, "drbdadm", "up", drbd.resource)
        cib = make_cib(os.path.join(drbd.workdir, "cib.xml"), drbd.nodes)
        os.makedirs(os.path.join(drbd.workdir, "rsctmp"), exist_ok=True)
        wrap = ["unshare", "--mount", "--uts", "--propagation", "private", "--",
                os.path.join(BIN, "with-proc-drbd"), "alpha"]
        monitor = {"OCF_RESKEY_CRM_meta_interval": "10000"}
        ours = _env(drbd, cib, "drbd_r0:0", monitor)
        theirs = _env(drbd, cib, "linbit_r0:0", monitor)

        def timed(agent: str, action: str, env: dict[str, str], expect: int):
            return lambda: time_once([*wrap, agent, action], env, expect=(expect,))

        for agent, env in ((OUR_AGENT, ours), (LINBIT, theirs)):
            subprocess.run([*wrap, agent, "start"], env=env, check=True, capture_output=True)
        wrapper = alternate({"w": lambda: time_once([*wrap, "true"], ours)}, bench.rounds)["w"]
        floor = alternate({"s": lambda: time_once(
            [os.path.join(BIN, "drbdsetup"), "status", "--json", drbd.resource], drbd.env("alpha"))},
            bench.rounds)["s"]
        rows = []
        secondary = alternate({"ours": timed(OUR_AGENT, "monitor", ours, 0),
                               "linbit": timed(LINBIT, "monitor", theirs, 0)}, bench.rounds)
        mon_ours, mon_linbit = secondary["ours"] - wrapper, secondary["linbit"] - wrapper
        rows.append(["monitor (Unpromoted)", ms(mon_ours), ms(mon_linbit), ratio(mon_ours, mon_linbit)])
        cycle = {}
        for name, agent, env in (("ours", OUR_AGENT, ours), ("linbit", LINBIT, theirs)):
            def promote_demote(agent=agent, env=env):
                return time_once([*wrap, agent, "promote"], env, expect=(0,)) + time_once(
                    [*wrap, agent, "demote"], env, expect=(0,)) - 2 * wrapper
            cycle[name] = promote_demote
        pair = alternate(cycle, max(3, bench.rounds // 3))
        rows.append(["promote + demote", ms(pair["ours"]), ms(pair["linbit"]),
                     ratio(pair["ours"], pair["linbit"])])
        rows.append(["floor: one `drbdsetup status --json` of the double", ms(floor), "", ""])
        for agent, env in ((OUR_AGENT, ours), (LINBIT, theirs)):
            subprocess.run([*wrap, agent, "stop"], env=env, check=False, capture_output=True)
        bench.table("drbd on the DRBD double (ms, wrapper subtracted)",
                    ["operation", "ocf:openstack:drbd", "ocf:linbit:drbd", "ours / LINBIT"], rows)
