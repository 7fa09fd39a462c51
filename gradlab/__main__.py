"""``python -m gradlab`` is the ``gradlab`` command."""

import sys

from gradlab.app.cli import main

sys.exit(main())
