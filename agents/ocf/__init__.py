"""The shared OCF framework every agent of this project is built on.

Kept import-light on purpose: an agent's ``meta-data`` and ``monitor`` run
many times a minute, so only the standard modules a call really needs are
imported here, and heavy ones (lxml, psutil, pymysql, pika, subprocess,
logging) are imported inside the functions that use them.
"""
