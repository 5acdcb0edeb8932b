"""`python -m bench [NAME ...] [--json] [--quick] [--list] [--nodes N] [--seed S]
[--lessons N]`: run benchmarks, print figures. --nodes and --seed set the size and seed of
`simulate`; --lessons the size of `library` (its images: one per 20/3 lessons).

With --json exactly one JSON document goes to stdout (one benchmark: its result; several:
{"results": [...]}); progress always goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import signal
import sys
import time
import traceback

from bench.benchmarks import BENCHMARKS, QUICK
from bench.harness import kill_all_sync


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks")
    parser.add_argument("--nodes", type=int, metavar="N", help="simulate: number of nodes")
    parser.add_argument("--seed", type=int, metavar="S", help="simulate: the run's seed")
    parser.add_argument("--lessons", type=int, metavar="N", help="library: lessons to publish")
    args = parser.parse_args(argv)
    if args.list:
        for name, (_, about) in BENCHMARKS.items():
            print(f"{name:18} {about}")
        return 0
    if args.lessons is not None and args.lessons < 7:
        print("--lessons must be at least 7 (one in each language)", file=sys.stderr)
        return 2
    if args.nodes is not None and args.nodes < 10:
        print("--nodes must be at least 10", file=sys.stderr)
        return 2
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark: {', '.join(unknown)} (see --list)", file=sys.stderr)
        return 2
    atexit.register(kill_all_sync)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = []
    failed = False
    for name in names:
        func, _ = BENCHMARKS[name]
        kwargs = dict(QUICK[name]) if args.quick else {}
        if name == "library" and args.lessons is not None:
            kwargs["lessons"] = args.lessons
            kwargs["images"] = max(1, args.lessons * 3 // 20)
        if name == "simulate":
            if args.nodes is not None:
                kwargs["nodes"] = args.nodes
            if args.seed is not None:
                kwargs["seed"] = args.seed
        print(f"[bench] running {name}…", file=sys.stderr, flush=True)
        start = time.monotonic()
        try:
            result = asyncio.run(func(**kwargs)).to_json()
            result.update(result["details"].pop("top", {}))  # e.g. simulate's converged, seed
        except KeyboardInterrupt:
            kill_all_sync()
            print("[bench] interrupted", file=sys.stderr)
            return 130
        except Exception as exc:
            failed = True
            traceback.print_exc(file=sys.stderr)
            result = {"benchmark": name, "error": f"{type(exc).__name__}: {exc}"}
        result["wall_seconds"] = round(time.monotonic() - start, 1)
        results.append(result)
        if not args.json:
            print(render(result), flush=True)
            print(flush=True)
    if args.json:
        doc = results[0] if len(results) == 1 else {"results": results}
        print(json.dumps(doc, indent=2))
    return 1 if failed else 0


def render(result: dict[str, object]) -> str:
    from bench.harness import Result

    if "error" in result:
        return f"== {result['benchmark']}\n  FAILED: {result['error']}"
    res = Result(str(result["benchmark"]))
    for f in result["figures"]:  # type: ignore[attr-defined]
        res.figures.append(f)
    res.notes = list(result["notes"])  # type: ignore[call-overload]
    return res.render() + f"\n  (benchmark wall time {result['wall_seconds']} s)"


if __name__ == "__main__":
    sys.exit(main())
