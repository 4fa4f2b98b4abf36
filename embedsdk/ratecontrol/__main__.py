"""``python -m embedsdk.ratecontrol PAGE...``: rewrite the pages' rate-control blocks."""

from __future__ import annotations

import sys
from pathlib import Path

from ._docs import update


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m embedsdk.ratecontrol PAGE.md ...", file=sys.stderr)
        return 2
    for name in argv:
        path = Path(name)
        text = path.read_text(encoding="utf-8")
        new = update(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
