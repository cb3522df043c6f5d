"""GeoIP enrichment of event source addresses: ISO country, autonomous system number and its name.

No Airflow. A provider answers a whole column at once, de-duplicated first (a million events hold a
few tens of thousands of distinct addresses), and never raises for an address: every input gets an
explicit value.

=============  ===================================================================================
``country``    meaning
=============  ===================================================================================
``US``, ...    ISO 3166-1 alpha-2 code of a public address found in the data
``unknown``    a public address the data does not place (or a provider without country data)
``private``    RFC 1918, shared address space (CGNAT, ``100.64.0.0/10``), loopback, link local,
               IPv6 unique local (``fc00::/7``)
``reserved``   any other special-purpose address: unspecified, documentation, benchmarking,
               multicast, ``240.0.0.0/4``, broadcast, IETF assignments, ...
``not_ip``     text that is not an IP address (CloudTrail writes service names such as
               ``ec2.amazonaws.com`` or ``AWS Internal``), oversized or hostile text, non-strings
``none``       null, NaN, empty or ``-``
=============  ===================================================================================

``asn`` is the autonomous system number (``0`` whenever it is not known) and ``as_org`` its holder's
name: ``unknown`` for a public address without ASN data, the ``country`` class for the other classes.
IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``) are looked up as the IPv4 address they carry; an
IPv6 zone (``fe80::1%eth0``) is ignored.

Providers (:func:`open_provider` picks one from a plain settings dict):

* :class:`MaxMindProvider`: MaxMind DB (``.mmdb``) files read with ``maxminddb``: GeoLite2/GeoIP2
  Country or City plus GeoLite2 ASN, DB-IP lite (same layout), or ipinfo's lite/country-ASN file
  (country and ASN in one file). The layout is recognised from each record's keys.
* :class:`IptoccProvider`: the fallback with no file to configure: the ``iptocc`` package, whose
  wheel embeds the five Regional Internet Registries' delegation data (MIT OR Apache-2.0). It knows
  the country a block is *registered* to (not where it is used) and has no ASN data, so ``asn`` is
  ``0`` and ``as_org`` ``unknown`` for every public address.
* :class:`NullProvider`: no data; public addresses are ``unknown``.

Another provider subclasses :class:`GeoProvider` and implements :meth:`GeoProvider.lookup_public`.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from seclake_ml.ipinsights.ipv4 import RESERVED_NETWORKS, in_networks, network_bounds, parse_ipv4

log = logging.getLogger(__name__)

__all__ = [
    "COUNTRY_CLASSES",
    "NONE",
    "NOT_IP",
    "PRIVATE",
    "PROVIDERS",
    "RESERVED",
    "SETTINGS_KEYS",
    "UNKNOWN",
    "GeoProvider",
    "GeoResult",
    "IptoccProvider",
    "MaxMindProvider",
    "NullProvider",
    "classify_address",
    "clean_asn",
    "clean_country",
    "clean_org",
    "open_provider",
]

NONE = "none"
NOT_IP = "not_ip"
PRIVATE = "private"
RESERVED = "reserved"
UNKNOWN = "unknown"
# Every non-country value of ``country``.
COUNTRY_CLASSES = (NONE, NOT_IP, PRIVATE, RESERVED, UNKNOWN)
PUBLIC = "public"  # classify_address's class of an address to look up; never a ``country`` value

PROVIDERS = ("auto", "maxmind", "fallback", "none")
SETTINGS_KEYS = ("provider", "country_db", "asn_db")

# Longest text taken for an address: a full IPv6 address with an embedded IPv4 (45 characters) and a
# zone. Anything longer is ``not_ip`` without being parsed.
MAX_ADDRESS_LEN = 64
MAX_ORG_LEN = 200

# Private: the RFC 1918 networks, shared address space (CGNAT), loopback, link local; IPv6 loopback, link
# local, unique local. IPv4 is classified by these tables (the same on every Python version; the vectorised
# path uses them too), IPv6 by the tables and ``ipaddress``'s special-purpose properties.
_PRIVATE_V4 = (("10.0.0.0", 8), ("172.16.0.0", 12), ("192.168.0.0", 16), ("100.64.0.0", 10), ("127.0.0.0", 8),
               ("169.254.0.0", 16))  # fmt: skip
_RESERVED_V4 = tuple((net, plen) for net, plen, _ in RESERVED_NETWORKS if (net, plen) not in _PRIVATE_V4)
_PRIVATE_V4_BOUNDS = network_bounds(_PRIVATE_V4)
_RESERVED_V4_BOUNDS = network_bounds(_RESERVED_V4)
_PRIVATE_V4_INTS = tuple((int(a), int(b)) for a, b in _PRIVATE_V4_BOUNDS)
_RESERVED_V4_INTS = tuple((int(a), int(b)) for a, b in _RESERVED_V4_BOUNDS)
_PRIVATE_V6 = tuple(ipaddress.IPv6Network(n) for n in ("::1/128", "fe80::/10", "fc00::/7"))


@dataclass(frozen=True)
class GeoResult:
    """Per input address, in input order: ``country`` (str), ``asn`` (int64, 0 = unknown), ``as_org`` (str).

    ``country`` and ``as_org`` are NumPy object arrays of ``str``; all three have the input's length.
    """

    country: np.ndarray
    asn: np.ndarray
    as_org: np.ndarray

    def __post_init__(self) -> None:
        lengths = {len(self.country), len(self.asn), len(self.as_org)}
        if len(lengths) != 1:
            raise ValueError(f"GeoResult columns differ in length: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.country)


def classify_address(value: object) -> tuple[str, str]:
    """``(class, address)`` of one source-address value; ``address`` is canonical for ``public``, else ``""``.

    :param value: anything (a CloudTrail ``sourceIPAddress`` is a string or null).
    :return: class ``public`` (to be looked up), or one of ``none``, ``not_ip``, ``private``,
        ``reserved``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NONE, ""
    if not isinstance(value, str):
        return (NONE, "") if _is_missing(value) else (NOT_IP, "")
    if value == "" or value == "-":
        return NONE, ""
    if len(value) > MAX_ADDRESS_LEN:
        return NOT_IP, ""
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return NOT_IP, ""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        else:
            if addr.scope_id is not None:
                addr = ipaddress.IPv6Address(int(addr))
            if any(addr in net for net in _PRIVATE_V6):
                return PRIVATE, ""
            if (not addr.is_global or addr.is_multicast or addr.is_reserved or addr.is_unspecified
                    or addr.is_private):  # fmt: skip
                return RESERVED, ""
            return PUBLIC, addr.compressed
    value = int(addr)
    if any(first <= value <= last for first, last in _PRIVATE_V4_INTS):
        return PRIVATE, ""
    if any(first <= value <= last for first, last in _RESERVED_V4_INTS):
        return RESERVED, ""
    return PUBLIC, str(addr)


def _ipv4_class(addresses: np.ndarray) -> np.ndarray:
    """``public`` / ``private`` / ``reserved`` per ``uint32`` IPv4 address (object array)."""
    out = np.full(addresses.shape, PUBLIC, dtype=object)
    out[in_networks(addresses, _RESERVED_V4_BOUNDS)] = RESERVED
    out[in_networks(addresses, _PRIVATE_V4_BOUNDS)] = PRIVATE
    return out


def _is_missing(value: object) -> bool:
    """pandas' ``NA`` / ``NaT`` and NumPy's NaN scalars (without importing pandas)."""
    try:
        return bool(value != value)  # NaN-like
    except Exception:  # pd.NA raises on bool()
        return type(value).__name__ in ("NAType", "NaTType")


def _as_list(ips: Iterable[object] | np.ndarray | None) -> list[object]:
    if ips is None:
        return []
    if isinstance(ips, (str, bytes)):
        raise ValueError(f"GeoIP lookup takes a sequence of addresses, not one {type(ips).__name__}")
    if hasattr(ips, "to_pylist"):  # pyarrow arrays
        return ips.to_pylist()
    if isinstance(ips, np.ndarray):
        return ips.reshape(-1).tolist()
    return list(ips)


def _factorize(values: list[object]) -> tuple[np.ndarray, list[object]]:
    """``(codes, uniques)`` with ``uniques[codes[i]]`` standing for ``values[i]``.

    Strings are kept; every null-like value (None, NaN, pandas NA/NaT) is one ``None``, and every other
    non-string value (numbers, bytes, unhashable objects) one :data:`_NOT_STRING`.
    """
    try:
        import pandas as pd

        codes, found = pd.factorize(np.fromiter(values, dtype=object, count=len(values)), use_na_sentinel=True)
    except TypeError:  # an unhashable value: the loop below
        pass
    else:
        uniques = [v if isinstance(v, str) else None if _is_missing(v) else _NOT_STRING for v in found.tolist()]
        codes = codes.astype(np.int64, copy=False)
        if (codes < 0).any():  # null-likes
            codes[codes < 0] = len(uniques)
            uniques.append(None)
        return codes, uniques
    index: dict[object, int] = {}
    uniques = []
    codes = np.empty(len(values), np.int64)
    for i, value in enumerate(values):
        if isinstance(value, str):
            key = value
        elif value is None or _is_missing(value):
            key = value = None
        else:
            key = value = _NOT_STRING
        code = index.get(key)
        if code is None:
            code = index[key] = len(uniques)
            uniques.append(value)
        codes[i] = code
    return codes, uniques


_NOT_STRING = object()  # stands for every non-string, non-null input value (classified ``not_ip``)


def clean_country(value: object) -> str | None:
    """A data source's country as an upper-case ISO alpha-2 code, or None when it is not one."""
    if isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha():
        return value.upper()
    return None


def clean_asn(value: object) -> int | None:
    """A data source's ASN (``15169``, ``"15169"``, ``"AS15169"``) as a positive 32-bit int, or None."""
    if isinstance(value, str):
        text = value[2:] if value[:2].upper() == "AS" else value
        if not (0 < len(text) <= 10 and text.isascii() and text.isdigit()):
            return None
        value = int(text)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 < int(value) < 2**32:
        return int(value)
    return None


def clean_org(value: object) -> str | None:
    """A data source's AS holder name without control or format characters, at most :data:`MAX_ORG_LEN`."""
    if not isinstance(value, str):
        return None
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in value[: MAX_ORG_LEN * 2])
    text = " ".join(text.split())[:MAX_ORG_LEN]
    return text or None


class GeoProvider(ABC):
    """Country and ASN of source addresses. Subclasses set :attr:`name` and implement :meth:`lookup_public`."""

    #: Short name written with the features (``maxmind``, ``iptocc``, ``none``).
    name: str = ""

    @abstractmethod
    def lookup_public(self, addresses: list[str]) -> tuple[list[str | None], list[int | None], list[str | None]]:
        """Look up distinct, canonical, public addresses (IPv4 dotted or compressed IPv6).

        :return: ``(countries, asns, orgs)`` of the same length; ``None`` where the data has no value
            (the values are cleaned by the caller: a bad country code or ASN counts as ``None``).
        """

    def lookup(self, ips: Sequence[str | None] | np.ndarray | Any) -> GeoResult:
        """Country, ASN and AS holder of each value of ``ips``, in order; never raises for a value.

        :param ips: a sequence (list, NumPy array, pandas Series, pyarrow array) of strings or nulls.
        """
        values = _as_list(ips)
        codes, uniques = _factorize(values)
        n = len(uniques)
        country = np.empty(n, object)
        asn = np.zeros(n, np.int64)
        org = np.empty(n, object)
        public_at: list[int] = []
        public: list[str] = []
        # Dotted IPv4, the bulk of CloudTrail's addresses, parsed and classified vectorised; the rest
        # (IPv6, service names, nulls, bad text) one by one.
        # NumPy's fixed-width strings drop trailing NULs, so text holding one takes the slow path.
        strings = [i for i, v in enumerate(uniques) if isinstance(v, str) and len(v) <= 15 and "\x00" not in v]
        v4, is_v4 = parse_ipv4(np.array([uniques[i] for i in strings], dtype=object))
        v4_class = _ipv4_class(v4)
        fast = set(strings)
        slow = [i for i in range(n) if i not in fast]
        for k, i in enumerate(strings):
            if not is_v4[k]:
                slow.append(i)
            elif v4_class[k] == PUBLIC:
                public_at.append(i)
                public.append(uniques[i])  # parse_ipv4 accepts canonical dotted decimal only
            else:
                country[i] = org[i] = v4_class[k]
        for i in slow:
            cls, address = classify_address(uniques[i])
            if cls == PUBLIC:
                public_at.append(i)
                public.append(address)
            else:
                country[i] = org[i] = cls
        if public:
            # Distinct inputs can share an address (``::ffff:8.8.8.8`` and ``8.8.8.8``).
            distinct = list(dict.fromkeys(public))
            found_c, found_a, found_o = self.lookup_public(distinct)
            if not (len(found_c) == len(found_a) == len(found_o) == len(distinct)):
                raise RuntimeError(f"GeoIP provider {self.name!r} answered {len(found_c)} values for {len(distinct)}")
            by_address = {
                a: (clean_country(c) or UNKNOWN, clean_asn(s) or 0, clean_org(o) or UNKNOWN)
                for a, c, s, o in zip(distinct, found_c, found_a, found_o)
            }
            for i, address in zip(public_at, public):
                country[i], asn[i], org[i] = by_address[address]
        return GeoResult(country=country[codes], asn=asn[codes], as_org=org[codes])

    def close(self) -> None:
        """Release open files (no-op unless the provider holds any)."""

    def __enter__(self) -> GeoProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class NullProvider(GeoProvider):
    """No GeoIP data: every public address is ``unknown`` (the other classes are still told apart)."""

    name = "none"

    def lookup_public(self, addresses: list[str]) -> tuple[list[str | None], list[int | None], list[str | None]]:
        none = [None] * len(addresses)
        return none, list(none), list(none)


class IptoccProvider(GeoProvider):
    """Registered country from the ``iptocc`` package's embedded RIR delegation data; no ASN data.

    :raises ValueError: when ``iptocc`` is not installed.
    """

    name = "iptocc"

    def __init__(self) -> None:
        try:
            import iptocc
        except ImportError as exc:
            raise ValueError(
                f"the GeoIP fallback needs the iptocc package (pip install iptocc), which is not importable: {exc}"
            ) from exc
        self._country_code = iptocc.country_code

    def lookup_public(self, addresses: list[str]) -> tuple[list[str | None], list[int | None], list[str | None]]:
        countries = list(self._country_code(addresses)) if addresses else []
        none = [None] * len(addresses)
        return countries, none, list(none)


class MaxMindProvider(GeoProvider):
    """Country and ASN from MaxMind DB (``.mmdb``) files.

    Recognised record layouts (by their keys, per record, so one file may be any of them):

    * GeoLite2/GeoIP2 Country or City, DB-IP lite: ``country.iso_code`` (else ``registered_country.iso_code``);
    * GeoLite2 ASN, iptoasn/DB-IP ASN files: ``autonomous_system_number``, ``autonomous_system_organization``;
    * ipinfo lite / country-ASN: ``country_code`` (or a two-letter ``country``), ``asn`` (``"AS13335"``),
      ``as_name``.

    :param country_db: path of the country (or combined country + ASN) file, or None.
    :param asn_db: path of the ASN file, or None (the same path as ``country_db`` is opened once).
    :raises ValueError: when neither path is given, or a file is missing or not a readable MaxMind DB
        (the message names the path).
    """

    name = "maxmind"

    def __init__(self, country_db: str | os.PathLike[str] | None, asn_db: str | os.PathLike[str] | None = None) -> None:
        if country_db is None and asn_db is None:
            raise ValueError("MaxMindProvider needs country_db or asn_db (a .mmdb path)")
        self._readers: list[tuple[str, Any, int]] = []  # (path, reader, ip_version), country file first
        paths = [os.fspath(p) for p in (country_db, asn_db) if p is not None]
        try:
            for path in dict.fromkeys(paths):
                self._readers.append(_open_mmdb(path))
        except Exception:
            self.close()
            raise
        self.paths = tuple(path for path, _, _ in self._readers)
        self.database_types = tuple(reader.metadata().database_type for _, reader, _ in self._readers)

    def lookup_public(self, addresses: list[str]) -> tuple[list[str | None], list[int | None], list[str | None]]:
        n = len(addresses)
        countries: list[str | None] = [None] * n
        asns: list[int | None] = [None] * n
        orgs: list[str | None] = [None] * n
        for path, reader, ip_version in self._readers:
            get = reader.get
            try:
                for i, address in enumerate(addresses):
                    if ip_version == 4 and ":" in address:
                        continue  # an IPv4-only file has no IPv6 data
                    record = get(address)
                    if not isinstance(record, dict):
                        continue
                    if countries[i] is None:
                        countries[i] = _record_country(record)
                    if asns[i] is None:
                        asn, org = _record_asn(record)
                        if asn is not None:
                            asns[i], orgs[i] = asn, org
            except Exception as exc:  # a file corrupt past its metadata
                raise ValueError(f"GeoIP database {path!r} is corrupt: lookup failed with {type(exc).__name__}: {exc}") from exc
        return countries, asns, orgs

    def close(self) -> None:
        for _, reader, _ in self._readers:
            try:
                reader.close()
            except Exception:  # already closed
                pass
        self._readers = []

    def __repr__(self) -> str:
        return f"MaxMindProvider(paths={getattr(self, 'paths', ())!r}, types={getattr(self, 'database_types', ())!r})"


def _open_mmdb(path: str) -> tuple[str, Any, int]:
    """``(path, reader, ip_version)``; ValueError naming ``path`` when it is missing or not a MaxMind DB."""
    import maxminddb

    if not os.path.isfile(path):
        raise ValueError(f"GeoIP database {path!r} does not exist or is not a file")
    try:
        reader = maxminddb.open_database(path)
        metadata = reader.metadata()
        ip_version = int(metadata.ip_version)
    except Exception as exc:
        raise ValueError(f"GeoIP database {path!r} is not a readable MaxMind DB file: {type(exc).__name__}: {exc}") from exc
    if ip_version not in (4, 6):
        reader.close()
        raise ValueError(f"GeoIP database {path!r} has ip_version {ip_version}, expected 4 or 6")
    return path, reader, ip_version


def _record_country(record: dict[str, Any]) -> str | None:
    for key in ("country", "registered_country", "represented_country"):
        value = record.get(key)
        if isinstance(value, dict):
            code = clean_country(value.get("iso_code"))
            if code:
                return code
        elif key == "country" and isinstance(value, str):  # ipinfo country_asn: "country": "US"
            code = clean_country(value)
            if code:
                return code
    return clean_country(record.get("country_code"))  # ipinfo lite


def _record_asn(record: dict[str, Any]) -> tuple[int | None, str | None]:
    if "autonomous_system_number" in record:
        return clean_asn(record.get("autonomous_system_number")), record.get("autonomous_system_organization")
    if "asn" in record:  # ipinfo: "asn": "AS13335", "as_name": "Cloudflare, Inc."
        return clean_asn(record.get("asn")), record.get("as_name")
    return None, None


def open_provider(settings: dict[str, Any] | None = None, field: str = "geoip") -> GeoProvider:
    """The provider that ``settings`` configures.

    :param settings: ``{"provider": "auto"|"maxmind"|"fallback"|"none", "country_db": path, "asn_db": path}``,
        every key optional (None = ``{"provider": "auto"}``). ``auto``: :class:`MaxMindProvider` when a
        path is configured, else the fallback (:class:`IptoccProvider`) when ``iptocc`` is installed,
        else :class:`NullProvider`. The paths are read by ``auto`` and ``maxmind`` only.
    :param field: the settings' name in error messages (``geoip.provider must be ...``).
    :raises ValueError: on an unknown key, a bad value (the message names the field and the allowed
        values), or a configured file that cannot be read.
    """
    if settings is None:
        settings = {}
    if not isinstance(settings, dict):
        raise ValueError(f"{field} must be a mapping with keys {list(SETTINGS_KEYS)}, got {type(settings).__name__}")
    unknown = sorted(str(k)[:80] for k in settings if k not in SETTINGS_KEYS)
    if unknown:
        raise ValueError(f"{field} has unknown keys {unknown}; allowed: {list(SETTINGS_KEYS)}")
    provider = settings.get("provider", "auto")
    if provider is None:
        provider = "auto"
    if not isinstance(provider, str) or provider not in PROVIDERS:
        shown = provider[:80] if isinstance(provider, str) else type(provider).__name__
        raise ValueError(f"{field}.provider must be one of {list(PROVIDERS)}, got {shown!r}")
    paths = {key: _path_setting(settings.get(key), f"{field}.{key}") for key in ("country_db", "asn_db")}
    configured = [key for key, value in paths.items() if value is not None]
    if provider in ("fallback", "none") and configured:
        raise ValueError(
            f"{field}.{configured[0]} is set but {field}.provider is {provider!r}: the database paths are read "
            "only by 'maxmind' and 'auto'"
        )
    if provider == "maxmind" and not configured:
        raise ValueError(f"{field}.provider 'maxmind' needs {field}.country_db or {field}.asn_db (a .mmdb path)")
    if provider == "maxmind" or (provider == "auto" and configured):
        return MaxMindProvider(paths["country_db"], paths["asn_db"])
    if provider == "none":
        return NullProvider()
    try:
        return IptoccProvider()
    except ValueError:
        if provider == "fallback":
            raise
        log.warning("GeoIP: no database configured and the iptocc fallback is not installed; countries are 'unknown'")
        return NullProvider()


def _path_setting(value: object, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        shown = type(value).__name__ if not isinstance(value, str) else "an empty string"
        raise ValueError(f"{field} must be a path to a .mmdb file or null, got {shown}")
    if len(value) > 4096 or any(unicodedata.category(ch)[0] == "C" for ch in value):
        raise ValueError(f"{field} must be a path without control characters, at most 4096 characters")
    return value
