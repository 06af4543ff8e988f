"""`python -m artemis_local` starts the whole local system (same as `artemis-admin run`)."""

import sys

from artemis_local.admin import main

sys.exit(main(["run", *sys.argv[1:]]))
