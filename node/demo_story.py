"""What every `canopy demo --STORY` shares: a temporary root, real `canopy run` nodes in it
(initialised and started), one failure line (with each node's log tail) when a step times
out or a command fails, every node stopped and the root removed (unless --keep) at the end,
and the closing scan of every data directory for text that must never be on disk.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from node.demo import NodeProcess, scan_for

Story = Callable[[Path, dict[str, NodeProcess]], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Demo:
    """One `canopy demo --STORY`: its title, its nodes (label -> organisation name) and the
    story they play out; each demo module's `DEMO`."""

    title: str
    names: Mapping[str, str]
    story: Story


async def run_story(demo: Demo, *, keep: bool = False) -> int:
    """Start a node per (label, name), run `story(root, nodes)`, always clean up; the
    story's exit code, or 1 when one of its waits timed out or a command failed."""
    root = Path(tempfile.mkdtemp(prefix=f"canopy-{demo.title.replace(' ', '-')}-"))
    nodes = {label: NodeProcess(root, label, name) for label, name in demo.names.items()}
    try:
        print(f"== Canopy {demo.title} demo in {root}")
        for node in nodes.values():
            await node.init()
            await node.start()
        return await demo.story(root, nodes)
    except (TimeoutError, RuntimeError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        for node in nodes.values():
            if node.log_path.exists():
                tail = node.log_path.read_text(errors="replace").splitlines()[-10:]
                print(f"--- {node.label} log tail ---\n" + "\n".join(tail), file=sys.stderr)
        return 1
    finally:
        for node in nodes.values():
            await node.stop()
        if keep:
            print(f"(kept {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)


def scan_all(nodes: Mapping[str, NodeProcess], needles: list[bytes], what: str) -> bool:
    """Scan every node's data directory for `needles`, print the one closing line, and
    return whether none was found."""
    scanned, hits = 0, []
    for node in nodes.values():
        n, found = scan_for(node.data, needles)
        scanned += n
        hits += found
    print(
        f"== scanned {scanned} files in {len(nodes)} data directories for {what}: "
        f"{'found in ' + ', '.join(hits) if hits else 'none found'}"
    )
    return not hits
