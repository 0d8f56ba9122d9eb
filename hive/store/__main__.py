"""`python -m hive.store revision -m MESSAGE`: draft the next schema migration (see hive/store/migrate.py)."""

import sys

from hive.store.migrate import main

main(sys.argv[1:])
