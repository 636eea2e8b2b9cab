"""``python -m tailor`` is the ``tailor`` command."""

import sys

from tailor.cli import main

sys.exit(main())
