"""A DRBD 9 test double: ``drbdadm``/``drbdsetup`` over shared, file-backed state.

Put ``harness/drbd_double/bin`` first on ``PATH``.  Environment:

* ``DRBD_DOUBLE_STATE``: shared state directory (default ``/var/lib/drbd-double``),
  visible from every node of the test cluster.
* ``DRBD_DOUBLE_NODE``: this node's name (default ``uname -n``).
* ``DRBD_DOUBLE_CONF``: drbd.conf when ``-c`` is not given (default ``/etc/drbd.conf``).

See ``model.py`` for the semantics, ``fixture.py`` for the Python API and
docs/drbd.md for what is and is not modelled.
"""
