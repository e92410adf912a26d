"""Database client of the harness, run only inside one of the cluster's network namespaces.

``dbclient.py EXPECTED_NETNS_INODE MODE HOST PORT OPTION_FILE TABLE TIMEOUT_S FIRST_ID``
(on ``/usr/bin/python3 -I``, for Debian's PyMySQL); the account comes from the
0600 option file, never from the command line.

Modes:
  ``write``: retry every 50 ms until one INSERT (id FIRST_ID) commits; print
  ``{"t": <CLOCK_MONOTONIC of the acknowledged commit>}``.
  ``count``: print ``{"ids": [...]}``, every id in the table.
"""

from __future__ import annotations

import json
import os
import sys
import time

RETRY_PAUSE_S = 0.05


def connect(host: str, port: int, options: str, timeout_s: float):  # type: ignore[no-untyped-def]
    import pymysql

    return pymysql.connect(host=host, port=port, read_default_file=options, connect_timeout=timeout_s,
                           read_timeout=timeout_s, write_timeout=timeout_s, autocommit=False)


def write_once(host: str, port: int, options: str, table: str, row_id: int) -> bool:
    import pymysql

    try:
        connection = connect(host, port, options, 1.0)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"INSERT INTO {table} (id, at) VALUES (%s, %s)", (row_id, time.time()))
            connection.commit()
        finally:
            connection.close()
    except pymysql.err.IntegrityError:
        return True  # committed by an earlier attempt whose acknowledgement was lost
    except (pymysql.err.MySQLError, OSError):
        return False
    return True


def main(argv: list[str]) -> int:
    inode, mode, host, port, options, table, timeout_s, first_id = argv
    if os.stat("/proc/self/ns/net").st_ino != int(inode):
        sys.stderr.write("client refused: not inside the cluster's network namespace\n")
        return 3
    if mode == "count":
        connection = connect(host, int(port), options, float(timeout_s))
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {table} ORDER BY id")
            print(json.dumps({"ids": [row[0] for row in cursor.fetchall()]}))
        connection.close()
        return 0
    end = time.monotonic() + float(timeout_s)
    while time.monotonic() < end:
        if write_once(host, int(port), options, table, int(first_id)):
            print(json.dumps({"t": time.monotonic()}), flush=True)
            return 0
        time.sleep(RETRY_PAUSE_S)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
