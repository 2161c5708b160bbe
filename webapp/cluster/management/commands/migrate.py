"""`manage.py migrate`, first creating the data dir's fixed parts (webapp/datadirs.py).

Settings may not create them at import; `migrate` is the step every deployment runs before the
web tier starts (runstack does too), so it is where the upload temp dir, STATIC_ROOT and the
generated secret key appear. pytest-django's test database setup calls this command as well.
`execute`, not `handle`: the system checks run in between and already connect to the database.
"""

from __future__ import annotations

from django.core.management.commands.migrate import Command as DjangoMigrate

from webapp.datadirs import prepare_data_dir


class Command(DjangoMigrate):
    def execute(self, *args, **options):
        prepare_data_dir()
        return super().execute(*args, **options)
