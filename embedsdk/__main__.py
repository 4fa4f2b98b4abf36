"""``python -m embedsdk`` is the ``embedsdk`` command."""

import sys

from .cli import main

sys.exit(main())
