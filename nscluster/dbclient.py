"""Database client of the harness, run only inside one of the cluster's network namespaces.

``dbclient.py EXPECTED_NETNS_INODE MODE HOST PORT OPTION_FILE TIMEOUT_S FIRST_ID``
(on ``/usr/bin/python3 -I``, for Debian's PyMySQL); the account comes from the
0600 option file, never from the command line.

Modes:
  ``write``: retry every 50 ms until one INSERT (id FIRST_ID) commits; print
  ``{"t": <CLOCK_MONOTONIC of the acknowledged commit>}``.
  ``stream``: for TIMEOUT_S seconds insert ids FIRST_ID, FIRST_ID+1, ... one after
  the other (each retried until it commits); print each acknowledged id on its line.
  ``count``: print ``{"ids": [...]}``, every id in the table.
"""

from __future__ import annotations

import json
import os
import sys
import time

RETRY_PAUSE_S = 0.05
# While no server holds the address, a connect waits for a SYN-ACK that never comes: give up soon
# (as the TCP probes do) so that the next attempt finds the address on its new holder at once;
# the statement itself gets longer.
CONNECT_TIMEOUT_S = 0.25
STATEMENT_TIMEOUT_S = 1.0
DATABASE = "nsc"
TABLE = f"{DATABASE}.writes"
INSERT = f"INSERT INTO {TABLE} (id, at) VALUES (%s, %s)"  # noqa: S608 (a constant table name)
SELECT_IDS = f"SELECT id FROM {TABLE} ORDER BY id"  # noqa: S608 (a constant table name)


def connect(host: str, port: int, options: str, timeout_s: float,  # type: ignore[no-untyped-def]
            connect_timeout_s: float | None = None):
    import pymysql

    return pymysql.connect(host=host, port=port, read_default_file=options,
                           connect_timeout=connect_timeout_s or timeout_s, read_timeout=timeout_s,
                           write_timeout=timeout_s, autocommit=False)


def write_once(host: str, port: int, options: str, row_id: int) -> bool:
    import pymysql

    try:
        connection = connect(host, port, options, STATEMENT_TIMEOUT_S, CONNECT_TIMEOUT_S)
        try:
            with connection.cursor() as cursor:
                cursor.execute(INSERT, (row_id, time.time()))
            connection.commit()
        finally:
            connection.close()
    except pymysql.err.IntegrityError:
        return True  # committed by an earlier attempt whose acknowledgement was lost
    except (pymysql.err.MySQLError, OSError):
        return False
    return True


def main(argv: list[str]) -> int:
    inode, mode, host, port, options, timeout_s, first_id = argv
    if os.stat("/proc/self/ns/net").st_ino != int(inode):
        sys.stderr.write("client refused: not inside the cluster's network namespace\n")
        return 3
    if mode == "count":
        connection = connect(host, int(port), options, float(timeout_s))
        with connection.cursor() as cursor:
            cursor.execute(SELECT_IDS)
            print(json.dumps({"ids": [row[0] for row in cursor.fetchall()]}))
        connection.close()
        return 0
    end = time.monotonic() + float(timeout_s)
    if mode == "stream":
        row_id = int(first_id)
        while time.monotonic() < end:
            if write_once(host, int(port), options, row_id):
                print(row_id, flush=True)
                row_id += 1
            else:
                time.sleep(RETRY_PAUSE_S)
        return 0
    while time.monotonic() < end:
        if write_once(host, int(port), options, int(first_id)):
            print(json.dumps({"t": time.monotonic()}), flush=True)
            return 0
        time.sleep(RETRY_PAUSE_S)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
