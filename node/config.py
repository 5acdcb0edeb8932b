"""Node configuration: TOML file, then CANOPY_* environment overrides, then CLI flags.

Owns validation with errors that name the file, line and key ("config.toml:4: node.listen
must be HOST:PORT"). Unknown keys are errors. config.example.toml documents every option.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from node.admission import parse_proxies
from protocol.errors import ConfigError
from protocol.invite import normalise_address


@dataclass(frozen=True, slots=True)
class Config:
    listen: str = "127.0.0.1:7420"  # node.listen: the peer endpoint (WebSocket)
    advertise: tuple[str, ...] = ()  # node.advertise: addresses put in invites
    name: str = ""  # node.name: overrides the name given at init
    trusted_proxies: tuple[str, ...] = ()  # node.trusted_proxies: whose X-Forwarded-For counts
    api_listen: str = "127.0.0.1:0"  # api.listen: local API; loopback only unless changed
    api_host: str = ""  # api.host: one more Host the local API answers to (e.g. behind a proxy)
    metrics_public: bool = False  # api.metrics_public: serve /metrics without the token
    handshake_timeout: float = 10.0  # network.handshake_timeout (seconds)
    idle_timeout: float = 300.0  # network.idle_timeout (seconds without any frame)
    heartbeat: float = 30.0  # network.heartbeat: WebSocket ping interval (seconds)
    reconnect_min: float = 0.5  # network.reconnect_min: first retry delay (seconds)
    reconnect_max: float = 60.0  # network.reconnect_max: retry delay cap (seconds)
    poll_interval: float = 1.0  # sync.poll_interval: how often CLI changes are picked up
    resync_interval: float = 60.0  # sync.resync_interval: re-run reconciliation this often
    min_score: int = 0  # sync.min_score: below this a peer is cut off and backed off
    max_source_records: int = 200_000  # sync.max_source_records: stored from one peer, at most
    socks5: str = ""  # network.socks5: dial peers through this SOCKS5 proxy (Tor), if set
    log_format: str = "text"  # log.format: "text" or "json" (one JSON object per line)
    log_level: str = "info"  # log.level: debug, info, warning or error
    ui_enabled: bool = True  # ui.enabled: serve the web app under /ui/ on the local API
    ui_lang: str = "en"  # ui.lang: the web app's language when the browser asks for none we have
    ui_remote: bool = False  # ui.remote: also serve named staff through a reverse proxy
    ui_public_url: str = ""  # ui.public_url: the origin the proxy serves, https://host[:port]
    source: Path | None = field(default=None, compare=False)

    def advertised(self) -> tuple[str, ...]:
        """Where peers can reach us: configured, else derived from the listen address."""
        if self.advertise:
            return self.advertise
        host, port = split_host_port(self.listen)
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return (f"ws://{host}:{port}/canopy",)


# (section, key) -> (Config field, type)
_SCHEMA: dict[tuple[str, str], tuple[str, type]] = {
    ("node", "listen"): ("listen", str),
    ("node", "advertise"): ("advertise", list),
    ("node", "name"): ("name", str),
    ("node", "trusted_proxies"): ("trusted_proxies", list),
    ("api", "listen"): ("api_listen", str),
    ("api", "host"): ("api_host", str),
    ("api", "metrics_public"): ("metrics_public", bool),
    ("network", "handshake_timeout"): ("handshake_timeout", float),
    ("network", "idle_timeout"): ("idle_timeout", float),
    ("network", "heartbeat"): ("heartbeat", float),
    ("network", "reconnect_min"): ("reconnect_min", float),
    ("network", "reconnect_max"): ("reconnect_max", float),
    ("sync", "poll_interval"): ("poll_interval", float),
    ("sync", "resync_interval"): ("resync_interval", float),
    ("sync", "min_score"): ("min_score", int),
    ("sync", "max_source_records"): ("max_source_records", int),
    ("network", "socks5"): ("socks5", str),
    ("log", "format"): ("log_format", str),
    ("log", "level"): ("log_level", str),
    ("ui", "enabled"): ("ui_enabled", bool),
    ("ui", "lang"): ("ui_lang", str),
    ("ui", "remote"): ("ui_remote", bool),
    ("ui", "public_url"): ("ui_public_url", str),
}
UI_LANGS = ("en", "fr", "ar")  # the web app's catalogues (node/web/locale/)
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
_ENV_PREFIX = "CANOPY_"


def split_host_port(text: str) -> tuple[str, int]:
    """Parse HOST:PORT (IPv6 as [::1]:PORT); ValueError with a plain message otherwise."""
    match = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d{1,5})|([^:\s\[\]]*):(\d{1,5})", text.strip())
    if not match:
        raise ValueError("must be HOST:PORT")
    host = match.group(1) or match.group(3) or ""
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ValueError("port must be 0..65535")
    return host, port


def parse_socks5(url: str) -> tuple[str, int]:
    """socks5://HOST:PORT (or socks5h://): the proxy's host and port; ValueError otherwise.

    Names are always resolved by the proxy (so .onion works and no DNS query leaks)."""
    match = re.fullmatch(r"socks5h?://(\[[0-9a-fA-F:.]+\]|[^:/\s\[\]@]+):(\d{1,5})/?", url.strip())
    if not match:
        raise ValueError("must be socks5://HOST:PORT, e.g. socks5://127.0.0.1:9050")
    port = int(match.group(2))
    if not 0 < port <= 65535:
        raise ValueError("port must be 1..65535")
    return match.group(1).strip("[]"), port


def _line_of(text: str, section: str, key: str) -> int:
    """Best-effort line number of `key` in `[section]` (tomllib does not report positions)."""
    current = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([A-Za-z0-9_.-]+)\s*\]", stripped)
        if header:
            current = header.group(1)
            if current == section and not key:
                return number
            continue
        if current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return 0


def _coerce(value: object, kind: type, where: str, dotted: str) -> object:
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {dotted} must be a finite number")
        if value < 0:
            raise ConfigError(f"{where}: {dotted} must not be negative")
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    if kind is bool and isinstance(value, bool):
        return value
    if kind is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    names = {
        float: "a number",
        int: "an integer",
        str: "a string",
        list: "a list of strings",
        bool: "true or false",
    }
    raise ConfigError(f"{where}: {dotted} must be {names[kind]}")


def _validate(config: Config, origin: Callable[[str], str]) -> Config:
    """Cross-field and format checks; `origin(field)` says where that field was set."""
    for name, dotted, value in (
        ("listen", "node.listen", config.listen),
        ("api_listen", "api.listen", config.api_listen),
    ):
        try:
            split_host_port(value)
        except ValueError as exc:
            raise ConfigError(f"{origin(name)}: {dotted} {exc}") from None
    if config.api_host and not re.fullmatch(
        r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?", config.api_host
    ):
        raise ConfigError(f"{origin('api_host')}: api.host must be HOST or HOST:PORT")
    for address in config.advertise:
        if not re.fullmatch(r"wss?://\S+", address) or address.rstrip("/") in ("ws:", "wss:"):
            raise ConfigError(
                f"{origin('advertise')}: node.advertise entries must be ws:// or wss:// URLs"
            )
    # `wss://host` means the peer endpoint there: what invites carry must be dialable.
    advertise = tuple(dict.fromkeys(normalise_address(a) for a in config.advertise))
    if advertise != config.advertise:
        config = replace(config, advertise=advertise)
    try:
        parse_proxies(config.trusted_proxies)
    except ValueError as exc:
        raise ConfigError(
            f'{origin("trusted_proxies")}: node.trusted_proxies: {exc}, e.g. "127.0.0.1"'
        ) from None
    if config.reconnect_min <= 0 or config.reconnect_max < config.reconnect_min:
        raise ConfigError(
            f"{origin('reconnect_min')}: network.reconnect_min must be > 0 and <= reconnect_max"
        )
    if config.socks5:
        try:
            parse_socks5(config.socks5)
        except ValueError as exc:
            raise ConfigError(f"{origin('socks5')}: network.socks5 {exc}") from None
    if config.log_format not in LOG_FORMATS:
        raise ConfigError(f'{origin("log_format")}: log.format must be "text" or "json"')
    if config.log_level not in LOG_LEVELS:
        raise ConfigError(
            f"{origin('log_level')}: log.level must be one of {', '.join(LOG_LEVELS)}"
        )
    if config.ui_remote and not _public_origin(config.ui_public_url):
        raise ConfigError(
            f"{origin('ui_public_url')}: ui.remote needs ui.public_url, an origin like"
            " https://canopy.example.org (no path)"
        )
    if config.ui_lang not in UI_LANGS:
        raise ConfigError(f"{origin('ui_lang')}: ui.lang must be one of {', '.join(UI_LANGS)}")
    if config.max_source_records < 1:
        raise ConfigError(f"{origin('max_source_records')}: sync.max_source_records must be > 0")
    for name in ("poll_interval", "resync_interval"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"{origin(name)}: sync.{name} must be > 0")
    return config


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read `path` (if given), apply CANOPY_SECTION_KEY environment overrides, validate."""
    values: dict[str, object] = {}
    origins: dict[str, str] = {}  # field -> "file:line" or the environment variable
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        for section, table in data.items():
            if not isinstance(table, dict):
                line = _line_of(text, "", section)
                raise ConfigError(f"{path}:{line}: {section} must be a [section]")
            if not any(s == section for s, _ in _SCHEMA):
                line = _line_of(text, section, "")
                raise ConfigError(f"{path}:{line}: unknown section [{section}]")
            for key, value in table.items():
                line = _line_of(text, section, key)
                here = f"{path}:{line}"
                if (section, key) not in _SCHEMA:
                    raise ConfigError(f"{here}: unknown key {section}.{key}")
                name, kind = _SCHEMA[(section, key)]
                values[name] = _coerce(value, kind, here, f"{section}.{key}")
                origins[name] = here
    env = os.environ if environ is None else environ
    for (section, key), (name, kind) in _SCHEMA.items():
        var = f"{_ENV_PREFIX}{section.upper()}_{key.upper()}"
        if var in env:
            raw = env[var]
            parsed: object = raw
            try:
                if kind is float:
                    parsed = float(raw)
                elif kind is int:
                    parsed = int(raw)
                elif kind is list:
                    parsed = [part for part in raw.split(",") if part]
                elif kind is bool:
                    parsed = {"true": True, "1": True, "false": False, "0": False}[raw.lower()]
            except (ValueError, KeyError):
                raise ConfigError(f"environment: {var} must be {kind.__name__}") from None
            values[name] = _coerce(parsed, kind, "environment", var)
            origins[name] = f"environment: {var}"
    known = {f.name for f in fields(Config)}
    assert set(values) <= known
    default_origin = str(path) if path is not None else "defaults"
    config = replace(Config(source=path), **values)  # type: ignore[arg-type]
    return _validate(config, lambda name: origins.get(name, default_origin))


def _public_origin(url: str) -> bool:
    """Whether `url` is a bare http(s) origin: scheme, host, optional port, no path."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return (
        parts.scheme in ("https", "http")
        and bool(parts.hostname)
        and parts.path in ("", "/")
        and not (parts.query or parts.fragment or parts.username)
    )
