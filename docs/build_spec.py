"""Rebuild docs/SPEC.md from its parts: docs/spec/*.md concatenated in sorted order.

Run after editing any part: `python docs/build_spec.py`. tests/test_docs.py fails when
docs/SPEC.md and the parts differ.
"""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parent
PARTS = DOCS / "spec"
SPEC = DOCS / "SPEC.md"


def spec_text() -> bytes:
    """The concatenation of every part, in file-name order (as `cat docs/spec/*.md`)."""
    return b"".join(part.read_bytes() for part in sorted(PARTS.glob("*.md")))


def main() -> None:
    SPEC.write_bytes(spec_text())
    print(f"wrote {SPEC.relative_to(DOCS.parent)} from {len(list(PARTS.glob('*.md')))} parts")


if __name__ == "__main__":
    main()
