"""Django's SQLite backend, creating the database file's directory on first connect.

Settings may not create the data dir at import (webapp/datadirs.py), but SQLite cannot create its
file in a directory that does not exist, and Django connects already in the system checks that
run before any command (`check`, `migrate`, `shell`). So the one code path that writes the file
makes its directory, lazily, like the other writers into the data dir do.
"""

from __future__ import annotations

from pathlib import Path

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params):
        name = str(conn_params.get("database", ""))
        # In-memory databases and URI filenames ("file:...") have no directory to make.
        if name and not self.creation.is_in_memory_db(name) and not name.startswith("file:"):
            Path(name).parent.mkdir(parents=True, exist_ok=True)
        return super().get_new_connection(conn_params)
