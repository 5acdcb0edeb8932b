"""The deterministic network simulator: many real conversations, one virtual clock.

Each test names its seed on failure; replay one with CANOPY_SIM_SEED=N (it replaces the
seed list), e.g. `CANOPY_SIM_SEED=1234 pytest tests/test_simulator.py -k converge`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.sim.scenario import Config, Figures, run
from protocol import limits

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [int(os.environ["CANOPY_SIM_SEED"])] if "CANOPY_SIM_SEED" in os.environ else [1, 2, 3, 4]
MAX_BYTES_RATIO = 3.0  # sync bytes in, per honest node per record, over the record's size


def _replay(figures: Figures) -> str:
    return f"replay with CANOPY_SIM_SEED={figures.seed}: {json.dumps(figures.as_dict())}"


@pytest.mark.parametrize("seed", SEEDS)
def test_hundred_nodes_converge_under_churn_partitions_loss_and_hostile_nodes(seed: int) -> None:
    figures = run(Config(nodes=100, seed=seed, records=20))
    why = _replay(figures)
    # Every honest node holds exactly what it may receive: network-scoped records
    # everywhere, peers-scoped ones only at the author's direct peers.
    assert figures.converged, why
    assert figures.components_converged, why
    assert figures.violations == 0, why
    assert figures.bytes_ratio <= MAX_BYTES_RATIO, why
    # Every flooding or replaying node with an honest peer was cut off by one.
    assert figures.hostile_cut_off == figures.hostile_to_cut > 0, why
    assert figures.penalties > 0, why
    assert not [f for f in figures.failures if "honest" in f], why


def test_same_seed_same_run_byte_for_byte() -> None:
    config = Config(nodes=30, seed=SEEDS[0], records=8)
    first, second = run(config), run(config)
    assert first.digest == second.digest, _replay(first)
    assert first.events == second.events
    other = run(Config(nodes=30, seed=SEEDS[0] + 1, records=8))
    assert other.digest != first.digest


def test_a_run_does_not_depend_on_the_process_hash_seed() -> None:
    """Set iteration order changes with PYTHONHASHSEED; a run must not."""
    code = (
        "from node.sim.scenario import Config, run;"
        f"print(run(Config(nodes=20, seed={SEEDS[0]}, records=6)).digest)"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for hash_seed in (1, 2)
    }
    assert len(digests) == 1, digests


def test_crashed_nodes_restart_from_their_sqlite_files(tmp_path: Path) -> None:
    figures = run(Config(nodes=30, seed=SEEDS[0], records=8, offline=0.2, db_dir=str(tmp_path)))
    assert figures.converged, _replay(figures)
    assert len(list(tmp_path.glob("node-*.db"))) == 30


def test_silent_peers_cannot_stall_a_restarted_node() -> None:
    """A peer that announces records and never answers the Want for them would hold those
    ids "in flight" for ever, so no other peer is asked; released after WANT_TIMEOUT_S,
    they are fetched elsewhere. (Seed 4 stalls without the release.)"""
    config = Config(
        nodes=100,
        seed=4,
        records=20,
        hostile=0.2,
        hostile_kinds=("silent",),
        offline=0.3,
        settle=45.0,
    )
    figures = run(config)
    assert figures.converged, _replay(figures)


def test_a_silent_peer_is_hedged_long_before_the_want_timeout() -> None:
    """Ids a silent peer sits on are asked of a second holder after WANT_HEDGE_S, so the
    same network settles in well under WANT_TIMEOUT_S (without the hedge it cannot)."""
    settle = limits.WANT_TIMEOUT_S / 3
    assert settle > 4 * limits.WANT_HEDGE_S
    config = Config(
        nodes=100,
        seed=4,
        records=20,
        hostile=0.2,
        hostile_kinds=("silent",),
        offline=0.3,
        settle=settle,
    )
    figures = run(config)
    assert figures.converged, _replay(figures)
    assert figures.final_converge_s < settle / 2, _replay(figures)
