"""A minimal MaxMind DB (``.mmdb``) writer for tests, after the published MaxMind DB File Format
Specification 2.0: a binary search tree with 32-bit records, the 16-byte data section separator, the
data section, and the metadata map after ``\\xab\\xcd\\xefMaxMind.com``.

Supports maps, arrays, UTF-8 strings, booleans, doubles, bytes and unsigned/signed integers; networks
are inserted less specific first (a more specific network splits the record it lands in). IPv4
networks of an IPv6 tree live under ``::/96``, where readers look them up.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from pathlib import Path
from typing import Any

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"


class _Typed:
    """An integer to encode with one exact MaxMind type (the metadata's fields are typed)."""

    def __init__(self, type_id: int, value: int) -> None:
        self.type_id, self.value = type_id, value


def u16(v: int) -> _Typed:
    return _Typed(5, v)


def u32(v: int) -> _Typed:
    return _Typed(6, v)


def u64(v: int) -> _Typed:
    return _Typed(9, v)


def _control(type_id: int, size: int) -> bytes:
    if type_id <= 7:
        first, ext = type_id << 5, b""
    else:
        first, ext = 0, bytes([type_id - 7])
    if size < 29:
        return bytes([first | size]) + ext
    if size < 29 + 256:
        return bytes([first | 29]) + ext + bytes([size - 29])
    if size < 285 + 65536:
        return bytes([first | 30]) + ext + (size - 285).to_bytes(2, "big")
    return bytes([first | 31]) + ext + (size - 65821).to_bytes(3, "big")


def _uint(type_id: int, value: int) -> bytes:
    payload = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return _control(type_id, len(payload)) + payload


def encode(value: Any) -> bytes:
    """One value in the data section's encoding (no pointers)."""
    if isinstance(value, _Typed):
        return _uint(value.type_id, value.value)
    if isinstance(value, bool):
        return _control(14, int(value))
    if isinstance(value, int):
        if value < 0:
            return _control(8, 4) + struct.pack(">i", value)
        for type_id, limit in ((5, 2**16), (6, 2**32), (9, 2**64), (10, 2**128)):
            if value < limit:
                return _uint(type_id, value)
        raise ValueError(f"integer too large: {value}")
    if isinstance(value, float):
        return _control(3, 8) + struct.pack(">d", value)
    if isinstance(value, str):
        data = value.encode("utf-8")
        return _control(2, len(data)) + data
    if isinstance(value, bytes):
        return _control(4, len(value)) + value
    if isinstance(value, dict):
        return _control(7, len(value)) + b"".join(encode(str(k)) + encode(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return _control(11, len(value)) + b"".join(encode(v) for v in value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def build_mmdb(
    networks: list[tuple[str, dict[str, Any]]], ip_version: int = 6, database_type: str = "Test-DB"
) -> bytes:
    """The bytes of a MaxMind DB holding ``networks`` (``("1.2.3.0/24", record)``, less specific first)."""
    bits = 128 if ip_version == 6 else 32
    nodes: list[list[tuple[str, int] | None]] = [[None, None]]
    data = bytearray()
    offsets: dict[bytes, int] = {}
    for cidr, record in networks:
        net = ipaddress.ip_network(cidr)
        if net.version == 6 and ip_version == 4:
            raise ValueError(f"{cidr} does not fit an IPv4 tree")
        value, prefix = int(net.network_address), net.prefixlen
        if net.version == 4 and ip_version == 6:
            prefix += 96
        if prefix == 0:
            raise ValueError("a /0 network is not supported")
        encoded = encode(record)
        if encoded not in offsets:
            offsets[encoded] = len(data)
            data += encoded
        node = 0
        for depth in range(prefix):
            bit = (value >> (bits - 1 - depth)) & 1
            if depth == prefix - 1:
                nodes[node][bit] = ("d", offsets[encoded])
                break
            current = nodes[node][bit]
            if current is None or current[0] == "d":
                nodes.append([current, current])
                nodes[node][bit] = ("n", len(nodes) - 1)
                node = len(nodes) - 1
            else:
                node = current[1]
    node_count = len(nodes)

    def record_value(rec: tuple[str, int] | None) -> int:
        if rec is None:
            return node_count
        return rec[1] if rec[0] == "n" else node_count + 16 + rec[1]

    tree = b"".join(struct.pack(">II", record_value(left), record_value(right)) for left, right in nodes)
    metadata = {
        "node_count": u32(node_count),
        "record_size": u16(32),
        "ip_version": u16(ip_version),
        "database_type": database_type,
        "languages": ["en"],
        "binary_format_major_version": u16(2),
        "binary_format_minor_version": u16(0),
        "build_epoch": u64(int(time.time())),
        "description": {"en": "seclake_ml test database"},
    }
    return tree + b"\x00" * 16 + bytes(data) + METADATA_MARKER + encode(metadata)


def write_mmdb(path: Path, networks: list[tuple[str, dict[str, Any]]], **kwargs: Any) -> Path:
    """Write :func:`build_mmdb`'s bytes to ``path`` and return it."""
    path.write_bytes(build_mmdb(networks, **kwargs))
    return path
