"""Django's SQLite backend, creating the database file (0600) and its directory (0700) on first
connect.

Settings may not create the data dir at import (webapp/datadirs.py), but SQLite cannot create its
file in a directory that does not exist, and Django connects already in the system checks that
run before any command (`check`, `migrate`, `shell`). So the one code path that writes the file
makes its directory, lazily, like the other writers into the data dir do. The file holds password
hashes, sessions and everything users own, so it is the account's alone: created 0600 before
SQLite opens it (SQLite gives its -wal and -shm files the same mode), and an older file that
others could read is closed to them.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.db.backends.sqlite3 import base

from webapp.datadirs import make_private_dir


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        name = str(conn_params.get("database", ""))
        # In-memory databases and URI filenames ("file:...") have no directory to make.
        if name and not self.creation.is_in_memory_db(name) and not name.startswith("file:"):
            make_private_dir(Path(name).parent)
            # Never open the file of a live database here: closing any descriptor of it drops
            # every POSIX lock this process holds on it (other threads' connections), and SQLite
            # then corrupts it under concurrent writers. Create it only when it does not exist.
            if not os.path.exists(name):
                try:
                    os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))
                except FileExistsError:
                    pass  # another process created it meanwhile
            elif os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)  # a chmod takes no descriptor: locks are untouched
        return super().get_new_connection(conn_params)
