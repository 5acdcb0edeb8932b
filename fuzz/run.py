"""`make fuzz`: run every harness in fuzz/ for its share of FUZZ_SECONDS (default 60),
each in its own process, growing its kept corpus under fuzz/corpus/<name>/.

Prints one line per harness: executions, seconds, crashes (a crash leaves a
fuzz/crash-* file and a non-zero exit).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESSES = ("boxstream", "messages", "record")


def main() -> int:
    total = float(os.environ.get("FUZZ_SECONDS", "60"))
    share = max(1, int(total / len(HARNESSES)))
    failed = 0
    for name in HARNESSES:
        corpus = ROOT / "fuzz" / "corpus" / name
        corpus.mkdir(parents=True, exist_ok=True)
        module = importlib.import_module(f"fuzz.fuzz_{name}")
        for i, seed in enumerate(module.seeds()):
            (corpus / f"seed-{i}").write_bytes(seed)
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                f"fuzz.fuzz_{name}",
                str(corpus),
                f"-max_total_time={share}",
                "-max_len=70000",
                "-rss_limit_mb=2048",
                f"-artifact_prefix={ROOT / 'fuzz'}/crash-{name}-",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        runs = re.findall(r"#(\d+)\s", proc.stderr)
        executions = int(runs[-1]) if runs else 0
        crashes = 0 if proc.returncode == 0 else 1
        failed += crashes
        print(f"fuzz {name}: executions={executions} seconds={share} crashes={crashes}")
        if crashes:
            print(proc.stderr[-3000:], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
