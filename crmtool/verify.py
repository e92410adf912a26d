"""verify: crm_verify on a whole-CIB copy of the rendered configuration.

crm_verify needs a whole ``<cib>``; with fencing on and an empty status it
warns about startup fencing, which is not a property of the configuration,
so the copy it reads says the cluster has quorum and skips startup fencing.
"""

from __future__ import annotations

import os
import tempfile

from crmtool import pacemaker

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lxml import etree


def verification_copy(configuration: etree._Element) -> etree._Element:
    cib = pacemaker.full_cib(configuration)
    cib.set("have-quorum", "1")
    props = cib.find("configuration/crm_config/cluster_property_set")
    if props is not None:
        from crmtool.elements import el

        set_id = props.get("id")
        pair = {"id": f"{set_id}-startup-fencing", "name": "startup-fencing", "value": "false"}
        props.append(el("nvpair", pair))
    return cib


def verify(configuration: etree._Element) -> list[str]:
    """crm_verify's complaints (empty when clean)."""
    with tempfile.TemporaryDirectory(prefix="crmtool-verify-") as tmp:
        path = os.path.join(tmp, "cib.xml")
        pacemaker.write(path, verification_copy(configuration))
        done = pacemaker.run(["crm_verify", "-V", "-x", path], ok=tuple(range(256)))
    text = (done.stdout + done.stderr).decode(errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if done.returncode != 0 and not lines:
        lines = [f"crm_verify exited {done.returncode}"]
    return lines
