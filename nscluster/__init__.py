"""A real Pacemaker/Corosync cluster on one machine, in namespaces (test and demo harness).

``Cluster`` builds N nodes (network namespaces joined by a bridge that lives in
its own namespace, each node with private mount/uts/ipc/pid namespaces and a
PID-1 supervisor running corosync and pacemakerd), fences them for real
through a broker, and tears everything down again.
"""
