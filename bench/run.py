"""Run the benchmark: ``python bench/run.py [--quick] ...`` (same flags as ``embedsdk bench``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from embedsdk._bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
