"""Admission of inbound connections, before any HTTP parsing or cryptography.

Owns who an inbound connection is (the TCP peer, or the client a trusted proxy names in
`X-Forwarded-For`), the caps on open connections per address (at the transport, before
aiohttp parses a byte), the header-read deadline, the byte budget of a connection whose
handshake is not done, the fair share of pending-handshake slots, and rate-limited
logging of accept errors. It must never trust a forwarded header from anyone but a
configured proxy. docs/SPEC.md, "Connection caps and the negative cache".
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from protocol import limits

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_proxies(entries: Iterable[str]) -> tuple[Network, ...]:
    """`[node] trusted_proxies` entries (addresses or CIDRs); ValueError names a bad one."""
    out: list[Network] = []
    for entry in entries:
        try:
            out.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR") from None
    return tuple(out)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: str, proxies: Sequence[Network]) -> bool:
    ip = _ip(address)
    return ip is not None and any(ip in net for net in proxies)


def client_address(remote: str, forwarded: Sequence[str], proxies: Sequence[Network]) -> str:
    """Who the connection is from. From a trusted proxy: the right-most `X-Forwarded-For`
    entry that is not itself a trusted proxy (entries left of it were written by the
    client and prove nothing). From anyone else the header is ignored."""
    if not proxies or not is_trusted(remote, proxies):
        return remote
    entries = [e.strip() for header in forwarded for e in header.split(",") if e.strip()]
    for entry in reversed(entries):
        ip = _ip(entry)
        if ip is None:
            return remote  # a proxy wrote something we cannot read: count it as the proxy
        if not any(ip in net for net in proxies):
            return str(ip)
    return remote


@dataclass(eq=False, slots=True)
class PendingSlot:
    """One inbound handshake in progress: where from, since when, and the deadline that
    ends it (rescheduled to now when a newcomer evicts it)."""

    source: str
    started: float
    deadline: asyncio.Timeout | None = None
    evicted: bool = False

    def evict(self) -> None:
        self.evicted = True
        if self.deadline is not None and not self.deadline.expired():
            self.deadline.reschedule(asyncio.get_running_loop().time())


@dataclass(slots=True)
class PendingSlots:
    """Unauthenticated handshakes: at most `total` in all and `per_source` from one source.

    Slots are fair rather than first-come: a newcomer is never refused for want of a slot.
    If its source already holds its share, that source's oldest slot is ended; if all slots
    are taken, the oldest slot of the source holding the most is. So idle connections
    re-opened in a loop cannot keep anyone else out; they only shorten each other's time."""

    total: int = limits.MAX_PENDING_HANDSHAKES
    per_source: int = limits.MAX_PENDING_PER_ADDRESS
    slots: OrderedDict[PendingSlot, None] = field(default_factory=OrderedDict)  # oldest first
    by_source: Counter[str] = field(default_factory=Counter)

    def admit(self, source: str, now: float) -> tuple[PendingSlot, PendingSlot | None]:
        """A slot for `source`, and the slot it displaced (already evicted), if any."""
        victim: PendingSlot | None = None
        if self.by_source[source] >= self.per_source:
            victim = next(s for s in self.slots if s.source == source)
        elif len(self.slots) >= self.total:
            largest = max(self.by_source.values())
            victim = next(s for s in self.slots if self.by_source[s.source] == largest)
        if victim is not None:
            self.release(victim)
            victim.evict()
        slot = PendingSlot(source, now)
        self.slots[slot] = None
        self.by_source[source] += 1
        return slot, victim

    def release(self, slot: PendingSlot) -> None:
        if slot in self.slots:
            del self.slots[slot]
            self.by_source[slot.source] -= 1
            if self.by_source[slot.source] <= 0:
                del self.by_source[slot.source]

    def __len__(self) -> int:
        return len(self.slots)


def fd_budget(cap: int, reserve: int = limits.FD_RESERVE) -> int:
    """`cap`, lowered so that open connections leave `reserve` file descriptors free for
    the store, outbound dials and the local API (RLIMIT_NOFILE's soft limit)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return cap
    return max(16, min(cap, soft - reserve))


class ConnectionGuard:
    """Caps the open TCP connections of one listening socket, per address and in all, at
    `connection_made`: a connection over a cap is aborted before aiohttp sees a byte.

    Every connection must finish its request headers within `header_timeout` seconds of
    connecting (keep-alive requests after the first are bounded by aiohttp's keep-alive
    timeout, which the node sets to the same value). With `preauth`, a connection may send
    at most `limits.PREAUTH_BYTES` after its request headers until the handler calls
    `lift_preauth` (the handshake is done): the peer endpoint has nothing else to read."""

    def __init__(
        self,
        prefix: str,
        *,
        total: int,
        per_address: int,
        header_timeout: float,
        preauth: bool = False,
        exempt: Callable[[str], bool] = lambda address: False,
        count: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.prefix = prefix  # of the rejection counters: "" (peer endpoint) or "api_"
        self.total = total
        self.per_address = per_address
        self.header_timeout = header_timeout
        self.preauth = preauth
        self.exempt = exempt  # trusted proxies: their clients are capped once identified
        self.count = count
        self.open: Counter[str] = Counter()

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: GuardedProtocol(self, inner)


class GuardedProtocol(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol; forwards every call once admitted."""

    def __init__(self, guard: ConnectionGuard, inner: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._make_inner = inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._address = ""
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # last bytes seen while looking for the end of the first headers
        self._headers_done = False
        self._received = 0
        self._budget: int | None = None  # received bytes allowed in all, while set

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        guard = self._guard
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if sum(guard.open.values()) >= guard.total or (
            guard.open[address] >= guard.per_address and not guard.exempt(address)
        ):
            guard.count(f"{guard.prefix}connection_cap")
            transport.abort()  # no HTTP parsing, no buffer, the descriptor freed at once
            return
        guard.open[address] += 1
        self._address = address
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(
            guard.header_timeout, self._header_deadline
        )
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def _header_deadline(self) -> None:
        self._timer = None
        if not self._headers_done and self._transport is not None:
            self._guard.count(f"{self._guard.prefix}header_timeout")
            self._transport.abort()

    def lift_preauth(self) -> None:
        """The handshake is done: from now on aiohttp's own bounds apply."""
        self._budget = None

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        self._received += len(data)
        if not self._headers_done:
            window = self._tail + data
            end = window.find(b"\r\n\r\n")
            self._tail = window[-3:]
            if end >= 0:
                self._headers_done = True
                if self._timer is not None:
                    self._timer.cancel()
                    self._timer = None
                if self._guard.preauth:
                    after = len(window) - (end + 4)  # bytes past the headers in this read
                    self._budget = self._received - after + limits.PREAUTH_BYTES
        if self._budget is not None and self._received > self._budget:
            self._guard.count("preauth_oversize")
            assert self._transport is not None
            self._transport.abort()
            return
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._inner is None:
            return
        guard = self._guard
        guard.open[self._address] -= 1
        if guard.open[self._address] <= 0:
            del guard.open[self._address]
        inner, self._inner = self._inner, None
        inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class AcceptErrorFilter(logging.Filter):
    """On the 'asyncio' logger: lets one "accept() out of system resource" line through
    per `interval` seconds, and says how many it held back. Out of descriptors, asyncio
    logs one such line (with a traceback) per accept attempt: megabytes in seconds."""

    MARK = "accept"

    def __init__(
        self,
        interval: float = limits.ACCEPT_ERROR_LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self.next_at = 0.0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if self.MARK not in message or "out of system resource" not in message:
            return True
        now = self.clock()
        if now < self.next_at:
            self.suppressed += 1
            return False
        self.next_at = now + self.interval
        if self.suppressed:
            record.msg = f"{message} ({self.suppressed} more in the last interval not logged)"
            self.suppressed = 0
        record.exc_info = None  # the traceback is the same every time and names nothing useful
        record.exc_text = None
        return True


def install_accept_error_filter() -> AcceptErrorFilter:
    """Once per process (a second call returns the filter already installed)."""
    logger = logging.getLogger("asyncio")
    for existing in logger.filters:
        if isinstance(existing, AcceptErrorFilter):
            return existing
    accept_filter = AcceptErrorFilter()
    logger.addFilter(accept_filter)
    return accept_filter
