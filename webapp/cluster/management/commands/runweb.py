"""`manage.py runweb`: the web server alone, for deployments where something else runs Redis,
the database, the migrations and the workers (docker compose, systemd: docs/deploy/).

It runs uvicorn with the command line in webapp/server.py (the one `runstack` and the test stack
use, with the limits from the settings). The process becomes uvicorn through exec and keeps its
pid, so the SIGTERM from `docker stop` or `systemctl stop` reaches uvicorn directly. Like every
`manage.py` command, it first creates the data dir's fixed parts (webapp/datadirs.py). It does
not migrate: run `manage.py migrate` once beforehand, on one machine.
"""

from __future__ import annotations

import os
import sys

from django.core.management.base import BaseCommand

from webapp.server import server_argv


class Command(BaseCommand):
    help = "Run the web server (uvicorn: pages, API, websockets) in this process; no workers, no migrations."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("TRAINYARD_HOST", "127.0.0.1"),
                            help="address to listen on (default: TRAINYARD_HOST, else 127.0.0.1)")
        parser.add_argument("--port", type=int, default=int(os.environ.get("TRAINYARD_PORT", "8000")),
                            help="port to listen on (default: TRAINYARD_PORT, else 8000)")

    def handle(self, *args, **opts):
        argv = server_argv(opts["host"], opts["port"], python=sys.executable)
        self.stdout.write(f"Trainyard web server on http://{opts['host']}:{opts['port']}/")
        self.stdout.flush()
        sys.stderr.flush()
        os.execv(argv[0], argv)
