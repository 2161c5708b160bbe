#!/usr/bin/env python
"""Django's command-line utility for Trainyard."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    from django.core.management import execute_from_command_line

    # Importing settings writes nothing; a management command is where the data dir's fixed parts
    # appear (Django's checks of every command expect the upload temp dir to exist).
    from webapp.datadirs import prepare_data_dir

    prepare_data_dir()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
