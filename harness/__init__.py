"""What the tests, the benchmarks, ``make demo`` and the namespace cluster run against.

The DRBD test double, MariaDB on a loop-mounted file system, network-namespace labs, the
API services stack, the cluster fixtures and the small agents the framework tests drive.
Nothing here is installed on a cluster; nothing in ``tests/`` is imported from outside it.
"""
