"""GeoIP enrichment: MaxMind DB files of each layout (written by the test), the iptocc fallback, the
null provider, the settings factory, and explicit values for every kind of bad or special input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from seclake_ml.risk import geoip
from seclake_ml.risk.geoip import (
    IptoccProvider,
    MaxMindProvider,
    NullProvider,
    classify_address,
    open_provider,
)

from .mmdb_writer import write_mmdb

GOOGLE_DNS = "8.8.8.8"
GOOGLE_DNS6 = "2001:4860:4860::8888"

HOSTILE = [
    "\x00",
    "8.8.8.8\x00",
    "8.8.8.8\n",
    " 8.8.8.8",
    "8.8.8.8 ",
    "\u202e8.8.8.8",
    "x" * 10_000,
    "8." * 5000,
    "<script>alert(1)</script>",
    "'; DROP TABLE events; --",
    "08.8.8.8",
    "8.8.8.256",
    "ec2.amazonaws.com",
    "AWS Internal",
    "::ffff:999.1.1.1",
    "2001:4860:4860::8888::1",
    "\ufeff",
]


def _geolite_country(tmp_path: Path) -> Path:
    return write_mmdb(tmp_path / "GeoLite2-Country.mmdb", [
        ("8.8.8.0/24", {"continent": {"code": "NA"}, "country": {"iso_code": "US", "names": {"en": "United States"}},
                        "registered_country": {"iso_code": "US"}}),
        ("81.2.69.0/24", {"country": {"iso_code": "GB"}, "registered_country": {"iso_code": "GB"}}),
        # Anycast / satellite records carry only the registered country.
        ("81.2.70.0/24", {"registered_country": {"iso_code": "se"}}),
        ("2001:4860::/32", {"country": {"iso_code": "US"}, "registered_country": {"iso_code": "US"}}),
        ("2a02:c7f::/32", {"country": {"iso_code": "GB"}}),
        # Hostile data: a code that is not alpha-2.
        ("5.5.5.0/24", {"country": {"iso_code": "<b>"}}),
    ], database_type="GeoLite2-Country")  # fmt: skip


def _geolite_asn(tmp_path: Path) -> Path:
    return write_mmdb(tmp_path / "GeoLite2-ASN.mmdb", [
        ("8.8.8.0/24", {"autonomous_system_number": 15169, "autonomous_system_organization": "GOOGLE"}),
        ("81.2.69.0/24", {"autonomous_system_number": 20712,
                          "autonomous_system_organization": "Andrews & Arnold\x00 <b>Ltd</b>\u202e"}),
        ("2001:4860::/32", {"autonomous_system_number": 15169, "autonomous_system_organization": "GOOGLE"}),
        ("5.5.5.0/24", {"autonomous_system_number": 2**40, "autonomous_system_organization": 7}),
    ], database_type="GeoLite2-ASN")  # fmt: skip


def _ipinfo_lite(tmp_path: Path) -> Path:
    record = {"asn": "AS13335", "as_name": "Cloudflare, Inc.", "as_domain": "cloudflare.com",
              "country_code": "AU", "country": "Australia", "continent_code": "OC", "continent": "Oceania"}
    return write_mmdb(tmp_path / "ipinfo_lite.mmdb", [
        ("1.1.1.0/24", record),
        ("2606:4700::/32", {**record, "country_code": "US", "country": "United States"}),
        ("9.9.9.0/24", {"asn": "ASbogus", "as_name": "x" * 5000, "country_code": "CH"}),
    ], database_type="ipinfo lite.mmdb")  # fmt: skip


@pytest.fixture
def geolite(tmp_path: Path) -> MaxMindProvider:
    with MaxMindProvider(_geolite_country(tmp_path), _geolite_asn(tmp_path)) as provider:
        yield provider


def _rows(result: geoip.GeoResult) -> list[tuple[str, int, str]]:
    return list(zip(result.country.tolist(), result.asn.tolist(), result.as_org.tolist()))


# --- classification ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "none"), ("", "none"), ("-", "none"), (float("nan"), "none"), (np.float64("nan"), "none"),
        ("10.1.2.3", "private"), ("172.31.255.255", "private"), ("192.168.0.1", "private"),
        ("100.64.0.1", "private"), ("127.0.0.1", "private"), ("169.254.169.254", "private"),
        ("::1", "private"), ("fe80::1", "private"), ("fe80::1%eth0", "private"), ("fd12:3456::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("0.0.0.0", "reserved"), ("255.255.255.255", "reserved"), ("224.0.0.1", "reserved"),
        ("240.0.0.1", "reserved"), ("192.0.2.1", "reserved"), ("198.51.100.7", "reserved"),
        ("203.0.113.9", "reserved"), ("198.18.0.1", "reserved"), ("::", "reserved"), ("ff02::1", "reserved"),
        ("2001:db8::1", "reserved"),
        ("8.8.8.8", "public"), ("::ffff:8.8.8.8", "public"), (GOOGLE_DNS6, "public"),
        ("2001:4860:4860:0:0:0:0:8888", "public"),
        (8, "not_ip"), (b"8.8.8.8", "not_ip"), *[(h, "not_ip") for h in HOSTILE],
    ],
)  # fmt: skip
def test_classify_address(value: object, expected: str) -> None:
    cls, address = classify_address(value)
    assert cls == expected
    assert (address != "") == (expected == "public")


def test_public_addresses_are_canonical() -> None:
    assert classify_address("::ffff:8.8.8.8") == ("public", "8.8.8.8")
    assert classify_address("2001:4860:4860:0:0:0:0:8888") == ("public", GOOGLE_DNS6)
    assert classify_address("2001:4860:4860::8888%3") == ("public", GOOGLE_DNS6)


# --- MaxMind files -------------------------------------------------------------------------------


def test_geolite_country_and_asn_ipv4_ipv6(geolite: MaxMindProvider) -> None:
    ips = [GOOGLE_DNS, GOOGLE_DNS6, "81.2.69.160", "2a02:c7f::1", "81.2.70.1", "::ffff:8.8.8.8",
           "2001:4860:4860:0:0:0:0:8888"]
    assert _rows(geolite.lookup(ips)) == [
        ("US", 15169, "GOOGLE"),
        ("US", 15169, "GOOGLE"),
        ("GB", 20712, "Andrews & Arnold <b>Ltd</b>"),  # control/format characters removed; HTML is the display's job
        ("GB", 0, "unknown"),
        ("SE", 0, "unknown"),  # registered country when the record has no country
        ("US", 15169, "GOOGLE"),
        ("US", 15169, "GOOGLE"),
    ]


def test_special_and_missing_values_are_explicit(geolite: MaxMindProvider) -> None:
    ips = [None, "", "-", float("nan"), "10.0.0.1", "100.64.1.1", "fd00::1", "192.0.2.1", "224.0.0.5",
           "ec2.amazonaws.com", "AWS Internal", "1.2.3.4", "2a00:1450::1"]
    assert _rows(geolite.lookup(ips)) == [
        ("none", 0, "none"), ("none", 0, "none"), ("none", 0, "none"), ("none", 0, "none"),
        ("private", 0, "private"), ("private", 0, "private"), ("private", 0, "private"),
        ("reserved", 0, "reserved"), ("reserved", 0, "reserved"),
        ("not_ip", 0, "not_ip"), ("not_ip", 0, "not_ip"),
        ("unknown", 0, "unknown"), ("unknown", 0, "unknown"),
    ]  # fmt: skip


def test_hostile_inputs_never_raise(geolite: MaxMindProvider) -> None:
    ips = [*HOSTILE, 42, b"8.8.8.8", ["8.8.8.8"], {"ip": "8.8.8.8"}, object(), GOOGLE_DNS]
    result = geolite.lookup(ips)
    assert result.country.tolist() == ["not_ip"] * (len(ips) - 1) + ["US"]
    assert result.asn.tolist() == [0] * (len(ips) - 1) + [15169]
    assert result.asn.dtype == np.int64


def test_hostile_database_values_are_cleaned(geolite: MaxMindProvider) -> None:
    # country "<b>" is not alpha-2, ASN 2**40 is out of range, the org is not a string
    assert _rows(geolite.lookup(["5.5.5.5"])) == [("unknown", 0, "unknown")]


def test_ipinfo_lite_single_file(tmp_path: Path) -> None:
    with MaxMindProvider(_ipinfo_lite(tmp_path), None) as provider:
        rows = _rows(provider.lookup(["1.1.1.1", "2606:4700::1111", "9.9.9.9", GOOGLE_DNS]))
    assert rows[:2] == [("AU", 13335, "Cloudflare, Inc."), ("US", 13335, "Cloudflare, Inc.")]
    assert rows[2][:2] == ("CH", 0)  # "ASbogus" is no ASN
    assert rows[3] == ("unknown", 0, "unknown")


def test_ipinfo_country_asn_layout_and_same_path_twice(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "country_asn.mmdb", [
        ("1.1.1.0/24", {"country": "AU", "country_name": "Australia", "asn": "AS13335", "as_name": "Cloudflare"}),
    ])  # fmt: skip
    with MaxMindProvider(path, path) as provider:
        assert len(provider.paths) == 1
        assert _rows(provider.lookup(["1.1.1.1"])) == [("AU", 13335, "Cloudflare")]


def test_asn_file_alone(tmp_path: Path) -> None:
    with MaxMindProvider(None, _geolite_asn(tmp_path)) as provider:
        assert _rows(provider.lookup([GOOGLE_DNS])) == [("unknown", 15169, "GOOGLE")]


def test_ipv4_only_file_answers_ipv6_as_unknown(tmp_path: Path) -> None:
    path = write_mmdb(tmp_path / "v4.mmdb", [("8.8.8.0/24", {"country": {"iso_code": "US"}})], ip_version=4)
    with MaxMindProvider(path) as provider:
        assert provider.lookup([GOOGLE_DNS, GOOGLE_DNS6]).country.tolist() == ["US", "unknown"]


def test_order_duplicates_and_input_types(geolite: MaxMindProvider) -> None:
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    ips = [GOOGLE_DNS, None, "10.0.0.1", GOOGLE_DNS, "-", GOOGLE_DNS6, None] * 3
    expected = _rows(geolite.lookup(ips))
    assert len(expected) == len(ips) and expected[0] == expected[3] == expected[7]
    assert _rows(geolite.lookup(np.array(ips, dtype=object))) == expected
    assert _rows(geolite.lookup(pd.Series(ips))) == expected
    assert _rows(geolite.lookup(pd.Series(ips, dtype="string"))) == expected  # pd.NA
    assert _rows(geolite.lookup(pa.array(ips))) == expected
    assert _rows(geolite.lookup(tuple(ips))) == expected
    empty = geolite.lookup([])
    assert len(empty) == 0 and empty.asn.dtype == np.int64


def test_one_string_is_not_a_sequence(geolite: MaxMindProvider) -> None:
    with pytest.raises(ValueError, match="sequence of addresses"):
        geolite.lookup(GOOGLE_DNS)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "GeoLite2-Country.mmdb"
    with pytest.raises(ValueError, match="nope/GeoLite2-Country.mmdb"):
        MaxMindProvider(str(missing), None)
    with pytest.raises(ValueError, match="needs country_db or asn_db"):
        MaxMindProvider(None, None)


@pytest.mark.parametrize("content", [b"", b"not a database", b"\x00" * 4096, b"<html>" * 100])
def test_corrupt_file_names_the_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "corrupt.mmdb"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="corrupt.mmdb"):
        MaxMindProvider(str(path), None)


def test_corrupt_tree_names_the_path(tmp_path: Path) -> None:
    """Valid metadata over a broken search tree: the error (at open or at lookup) names the file."""
    path = _geolite_country(tmp_path)
    data = bytearray(path.read_bytes())
    data[0:64] = b"\xff" * 64  # records pointing far past the file
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="GeoLite2-Country.mmdb"):
        with MaxMindProvider(path) as provider:
            provider.lookup([GOOGLE_DNS, "81.2.69.1", GOOGLE_DNS6])


def test_truncated_file_names_the_path(tmp_path: Path) -> None:
    path = _geolite_country(tmp_path)
    path.write_bytes(path.read_bytes()[:-20])  # metadata cut
    with pytest.raises(ValueError, match="GeoLite2-Country.mmdb"):
        MaxMindProvider(path)


# --- fallback and null providers -----------------------------------------------------------------


def test_iptocc_fallback_on_well_known_addresses() -> None:
    pytest.importorskip("iptocc")
    provider = IptoccProvider()
    rows = _rows(provider.lookup([GOOGLE_DNS, GOOGLE_DNS6, "::ffff:8.8.8.8", "10.0.0.1", "-", "x" * 10_000]))
    # iptocc has country data only: no ASN.
    assert rows == [("US", 0, "unknown"), ("US", 0, "unknown"), ("US", 0, "unknown"),
                    ("private", 0, "private"), ("none", 0, "none"), ("not_ip", 0, "not_ip")]  # fmt: skip
    assert provider.name == "iptocc"


def test_iptocc_fallback_hostile_inputs() -> None:
    pytest.importorskip("iptocc")
    result = IptoccProvider().lookup(HOSTILE)
    assert set(result.country.tolist()) == {"not_ip"}


def test_null_provider() -> None:
    rows = _rows(NullProvider().lookup([GOOGLE_DNS, "192.168.1.1", None, "bad"]))
    assert rows == [("unknown", 0, "unknown"), ("private", 0, "private"), ("none", 0, "none"), ("not_ip", 0, "not_ip")]


def test_custom_provider_answers_are_cleaned() -> None:
    class Bad(geoip.GeoProvider):
        name = "bad"

        def lookup_public(self, addresses):
            n = len(addresses)
            return ["usa"] * n, ["AS15169"] * n, ["a\tb\x1bc"] * n

    assert _rows(Bad().lookup([GOOGLE_DNS])) == [("unknown", 15169, "a b c")]


# --- settings ------------------------------------------------------------------------------------


def test_open_provider_choices(tmp_path: Path) -> None:
    pytest.importorskip("iptocc")
    country, asn = _geolite_country(tmp_path), _geolite_asn(tmp_path)
    assert isinstance(open_provider(None), IptoccProvider)
    assert isinstance(open_provider({}), IptoccProvider)
    assert isinstance(open_provider({"provider": "auto"}), IptoccProvider)
    assert isinstance(open_provider({"provider": "fallback"}), IptoccProvider)
    assert isinstance(open_provider({"provider": "none"}), NullProvider)
    for settings in ({"country_db": str(country), "asn_db": str(asn)},
                     {"provider": "maxmind", "country_db": country},
                     {"provider": "auto", "asn_db": str(asn), "country_db": None}):  # fmt: skip
        provider = open_provider(settings)
        assert isinstance(provider, MaxMindProvider)
        provider.close()


def test_open_provider_auto_without_iptocc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "iptocc", None)  # import fails
    assert isinstance(open_provider({"provider": "auto"}), NullProvider)
    with pytest.raises(ValueError, match="iptocc"):
        open_provider({"provider": "fallback"})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("maxmind", r"geoip must be a mapping"),
        ({"provider": "geoip2"}, r"geoip.provider must be one of \['auto', 'maxmind', 'fallback', 'none'\]"),
        ({"provider": 1}, r"geoip.provider must be one of"),
        ({"provider": "MAXMIND"}, r"geoip.provider must be one of"),
        ({"city_db": "/x.mmdb"}, r"geoip has unknown keys \['city_db'\]; allowed: \['provider', 'country_db', 'asn_db'\]"),
        ({"provider": "maxmind"}, r"geoip.provider 'maxmind' needs geoip.country_db or geoip.asn_db"),
        ({"provider": "fallback", "asn_db": "/x.mmdb"}, r"geoip.asn_db is set but geoip.provider is 'fallback'"),
        ({"provider": "none", "country_db": "/x.mmdb"}, r"geoip.country_db is set but geoip.provider is 'none'"),
        ({"country_db": ""}, r"geoip.country_db must be a path to a .mmdb file or null"),
        ({"country_db": 5}, r"geoip.country_db must be a path"),
        ({"asn_db": "/x\x00.mmdb"}, r"geoip.asn_db must be a path without control characters"),
        ({"asn_db": "/does/not/exist.mmdb"}, r"GeoIP database '/does/not/exist.mmdb' does not exist"),
    ],
)  # fmt: skip
def test_open_provider_errors(settings: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_provider(settings)  # type: ignore[arg-type]


def test_open_provider_field_name_in_errors() -> None:
    with pytest.raises(ValueError, match=r"risk\.geoip\.provider"):
        open_provider({"provider": "x"}, field="risk.geoip")


def test_many_distinct_addresses_are_looked_up_once(geolite: MaxMindProvider, monkeypatch) -> None:
    seen: list[int] = []
    original = geolite.lookup_public
    monkeypatch.setattr(geolite, "lookup_public", lambda addrs: (seen.append(len(addrs)), original(addrs))[1])
    ips = [f"8.8.{8 + i // 200 % 4}.{i % 200}" for i in range(20_000)]
    result = geolite.lookup(ips)
    assert seen == [800]
    assert math.isclose((result.country == "US").mean(), 0.25)


def test_vectorised_ipv4_path_agrees_with_classify_address(geolite: MaxMindProvider) -> None:
    """Dotted IPv4 is classified in bulk; the one-by-one path (used for IPv4-mapped IPv6) must agree."""
    rng = np.random.default_rng(3)
    edges = [f"{a}.{b}.{c}.{d}" for a, b, c, d in [
        (0, 0, 0, 0), (9, 255, 255, 255), (10, 0, 0, 0), (11, 0, 0, 0), (100, 63, 255, 255), (100, 64, 0, 0),
        (100, 127, 255, 255), (100, 128, 0, 0), (172, 15, 255, 255), (172, 16, 0, 0), (172, 31, 255, 255),
        (172, 32, 0, 0), (192, 0, 0, 9), (192, 88, 99, 1), (192, 167, 255, 255), (198, 17, 255, 255),
        (198, 19, 255, 255), (198, 20, 0, 0), (223, 255, 255, 255), (224, 0, 0, 0), (239, 255, 255, 255),
        (255, 255, 255, 255),
    ]]  # fmt: skip
    randoms = [".".join(str(int(x)) for x in rng.integers(0, 256, 4)) for _ in range(3000)]
    ips = edges + randoms
    bulk = geolite.lookup(ips).country.tolist()
    one_by_one = geolite.lookup([f"::ffff:{ip}" for ip in ips]).country.tolist()
    assert bulk == one_by_one
    classes = [classify_address(ip)[0] for ip in ips]
    assert [c if c != "public" else "x" for c in classes] == [c if c in ("private", "reserved") else "x" for c in bulk]
