"""Know-who benchmark data: deterministic, realistic-looking sealed contact records.

`contacts(n, seed, authors)` seals n network-scoped contact records spread over `authors`
organisations, several countries, subdivisions and languages (on 2 cores).
"""

from __future__ import annotations

import multiprocessing
import os
import random as stdrandom
import time
from concurrent.futures import ProcessPoolExecutor

import nacl.utils

from bench.data import derive, progress
from node.clock import now_ms
from protocol import limits
from protocol.contact import KINDS, Contact
from protocol.envelope import seal_record
from protocol.identity import Identity
from protocol.record import Kind, Scope

REGIONS = ("KE", "KE-28", "KE-30", "KE-47", "TZ", "TZ-02", "UG", "UG-102", "CD", "CD-KN",
           "SO", "ET", "RW", "NG", "ZA", "SD", "SN", "ML", "MZ", "BI")  # fmt: skip
LANGS = ("en", "sw", "fr", "ar", "pt", "so", "am", "rw", "ln", "ha")
SPECIALTIES = ("land-rights", "detention", "asylum", "gbv", "labour", "press-freedom",
               "lgbti", "disability", "children", "evictions")  # fmt: skip
GIVEN = ("Amina", "Baraka", "Chausiku", "Daudi", "Esther", "Faraji", "Grace", "Hassan",
         "Imani", "Juma", "Khadija", "Lulu", "Mwajuma", "Neema", "Omari", "Pendo")  # fmt: skip
FAMILY = ("Wanjiru", "Otieno", "Mwangi", "Njeri", "Kamau", "Achieng", "Mutua", "Ndege",
          "Hassan", "Mbeki", "Diallo", "Traore", "Okafor", "Mensah", "Abebe", "Uwase")  # fmt: skip


def author(seed: int, index: int) -> Identity:
    return Identity(derive(seed, f"org-{index}"))


def _chunk(job: tuple[int, int, int, int, int, bytes]) -> list[bytes]:
    seed, start, count, authors, base_ms, net_key = job
    rng = stdrandom.Random(seed * 7919 + start)
    ids = [author(seed, i) for i in range(authors)]
    kinds = list(KINDS)
    out = []
    for i in range(start, start + count):
        created = base_ms + i
        contact = Contact.build(
            uid=rng.randbytes(16),
            share="network",
            kind=rng.choice(kinds),
            name=f"{rng.choice(GIVEN)} {rng.choice(FAMILY)} {i}",
            region=rng.choice(REGIONS),
            langs=rng.sample(LANGS, rng.randint(1, 3)),
            channels=[f"phone:+2547{rng.randrange(10**8):08d}"],
            specialties=rng.sample(SPECIALTIES, rng.randint(0, 2)),
            review=created + rng.randint(-30, 300) * 24 * 3600 * 1000,
        )
        record = seal_record(
            ids[i % authors],
            Kind.CONTACT,
            contact.to_content(),
            created=created,
            expires=created + limits.DEFAULT_CONTACT_LIFETIME_MS,
            scope=Scope.NETWORK,
            recipients=(),
            network_key=net_key,
            random=nacl.utils.random,
        )
        out.append(record.to_bytes())
    return out


def contacts(n: int, seed: int, authors: int, net_key: bytes) -> list[bytes]:
    base = now_ms() - 60 * 24 * 3600 * 1000
    step = 2500
    jobs = [(seed, s, min(step, n - s), authors, base, net_key) for s in range(0, n, step)]
    started = time.monotonic()
    progress(f"sealing {n:,} contact records on 2 cores…")
    # An executor, not multiprocessing.Pool: leaving a Pool's `with` terminates its workers,
    # and a worker killed while it holds the task queue's lock leaves the other one (and the
    # join) waiting forever. The executor's shutdown lets each worker finish and exit.
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(min(2, os.cpu_count() or 1), mp_context=ctx) as pool:
        out = [r for chunk in pool.map(_chunk, jobs) for r in chunk]
    progress(f"sealed in {time.monotonic() - started:.1f} s")
    return out


def pctl(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank, rounding down), as both query benchmarks
    report it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
