"""IPv4 addresses as ``uint32``: strict vectorised parsing, formatting and address-space ranges.

NumPy only. The parser accepts dotted-decimal IPv4 exactly as the pairs extraction does: four
decimal octets 0-255 separated by dots, no leading zeros (``010.1.1.1`` is rejected), no
whitespace, no other characters. Callers that read free text (CSV requests) strip whitespace first.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

__all__ = [
    "PRIVATE_NETWORKS",
    "RESERVED_BOUNDS",
    "RESERVED_NETWORKS",
    "format_ipv4",
    "in_networks",
    "network_bounds",
    "parse_ipv4",
    "random_public_ipv4",
]

_MAX_LEN = 15  # "255.255.255.255"

# (network, prefix length, name): special-purpose IPv4 blocks (IANA registry, RFC 6890 and friends).
RESERVED_NETWORKS: tuple[tuple[str, int, str], ...] = (
    ("0.0.0.0", 8, "this network"),
    ("10.0.0.0", 8, "private (RFC 1918)"),
    ("100.64.0.0", 10, "shared address space (CGNAT)"),
    ("127.0.0.0", 8, "loopback"),
    ("169.254.0.0", 16, "link local"),
    ("172.16.0.0", 12, "private (RFC 1918)"),
    ("192.0.0.0", 24, "IETF protocol assignments"),
    ("192.0.2.0", 24, "documentation (TEST-NET-1)"),
    ("192.88.99.0", 24, "6to4 relay anycast"),
    ("192.168.0.0", 16, "private (RFC 1918)"),
    ("198.18.0.0", 15, "benchmarking"),
    ("198.51.100.0", 24, "documentation (TEST-NET-2)"),
    ("203.0.113.0", 24, "documentation (TEST-NET-3)"),
    ("224.0.0.0", 4, "multicast"),
    ("240.0.0.0", 4, "reserved, limited broadcast"),
)

PRIVATE_NETWORKS: tuple[tuple[str, int], ...] = (("10.0.0.0", 8), ("172.16.0.0", 12), ("192.168.0.0", 16))


def _to_u16_array(values: Iterable[object] | np.ndarray) -> np.ndarray:
    """Fixed-width ``<U16`` view of the input; longer strings are cut to 16 characters (and so rejected)."""
    if isinstance(values, np.ndarray):
        arr = values
    else:
        arr = np.empty(0, object) if values is None else np.asarray(list(values), dtype=object)
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind == "U" and arr.dtype.itemsize == 16 * 4:
        return arr
    if arr.dtype.kind == "S":
        arr = arr.astype(object)
    return arr.astype("U16")


def parse_ipv4(values: Iterable[object] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse dotted-decimal IPv4 strings into ``uint32`` values, vectorised.

    :param values: a 1-d array or sequence of strings (anything else, ``None`` included, is invalid).
    :return: ``(addresses, valid)``: ``uint32`` array (0 where invalid) and boolean validity mask.
    """
    text = _to_u16_array(values)
    n = text.shape[0]
    if n == 0:
        return np.zeros(0, np.uint32), np.zeros(0, bool)
    codes = text.view(np.uint32).reshape(n, 16)
    # Characters as small ints, one contiguous row per position; anything outside ASCII maps to 255.
    chars = np.ascontiguousarray(np.minimum(codes[:, :_MAX_LEN], 255).astype(np.uint8).T)
    digit = chars - np.uint8(48)  # wraps for characters below '0'
    is_digit = digit <= 9
    is_dot = chars == 46
    is_end = chars == 0
    digit[~is_digit] = 0
    # Shape checks, all positions at once.
    bad = codes[:, _MAX_LEN] != 0  # 16 characters or more
    bad |= ~(is_digit | is_dot | is_end).all(axis=0)
    bad |= is_dot.sum(axis=0, dtype=np.int8) != 3
    bad |= ~is_digit[0]  # empty, or starts with a dot
    bad |= (is_dot[:-1] & ~is_digit[1:]).any(axis=0) | is_dot[-1]  # empty octet or trailing dot
    bad |= (is_end[:-1] & ~is_end[1:]).any(axis=0)  # NUL inside the string
    starts = np.empty_like(is_digit)
    starts[0] = True
    starts[1:] = is_dot[:-1]
    bad |= (starts[:-1] & (chars[:-1] == 48) & is_digit[1:]).any(axis=0)  # leading zero
    bad |= (is_digit[:-3] & is_digit[1:-2] & is_digit[2:-1] & is_digit[3:]).any(axis=0)  # 4+ digits
    # Values: one pass over positions with multiply-add; a dot moves the octet into the address.
    dots16 = is_dot.astype(np.uint16)
    mult = is_digit.astype(np.uint16)
    mult *= 9
    mult += 1
    mult -= dots16  # 10 after a digit, 0 at a dot (the octet restarts), 1 otherwise
    shift = is_dot.astype(np.uint32)
    shift <<= 3
    digit16 = digit.astype(np.uint16)
    octet = np.zeros(n, np.uint16)
    value = np.zeros(n, np.uint32)
    largest = np.zeros(n, np.uint16)
    for j in range(_MAX_LEN):
        closed = octet * dots16[j]
        value <<= shift[j]
        value |= closed
        np.maximum(largest, closed, out=largest)
        octet *= mult[j]
        octet += digit16[j]
    value <<= np.uint32(8)
    value |= octet
    np.maximum(largest, octet, out=largest)
    bad |= largest > 255
    valid = ~bad
    value[bad] = 0
    return value, valid


def format_ipv4(addresses: np.ndarray) -> np.ndarray:
    """Dotted-decimal strings (object array) for ``uint32`` addresses."""
    a = np.asarray(addresses, dtype=np.uint32)
    octets = [(a >> np.uint32(s)) & np.uint32(255) for s in (24, 16, 8, 0)]
    parts = [o.astype("U3") for o in octets]
    out = np.char.add(np.char.add(np.char.add(parts[0], "."), np.char.add(parts[1], ".")), np.char.add(np.char.add(parts[2], "."), parts[3]))
    return out.astype(object)


def network_bounds(networks: Iterable[tuple[str, int]]) -> np.ndarray:
    """``(n, 2)`` ``uint64`` array of inclusive ``[first, last]`` addresses for ``(network, prefix)`` pairs."""
    rows = []
    for net, plen in networks:
        base, ok = parse_ipv4([net])
        if not ok[0] or not 0 <= plen <= 32:
            raise ValueError(f"network: expected dotted IPv4 and prefix length 0-32, got {net}/{plen}")
        size = 1 << (32 - plen)
        first = int(base[0]) & ~(size - 1) & 0xFFFFFFFF
        rows.append((first, first + size - 1))
    return np.asarray(rows, dtype=np.uint64).reshape(-1, 2)


RESERVED_BOUNDS = network_bounds((n, p) for n, p, _ in RESERVED_NETWORKS)


def in_networks(addresses: np.ndarray, bounds: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask: address falls in any of ``bounds`` (default: the reserved networks)."""
    b = RESERVED_BOUNDS if bounds is None else bounds
    a = np.asarray(addresses, dtype=np.uint64)
    hit = np.zeros(a.shape, bool)
    for first, last in b:
        hit |= (a >= first) & (a <= last)
    return hit


def random_public_ipv4(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` addresses drawn uniformly from the public (non-reserved) IPv4 space."""
    out = np.empty(0, np.uint32)
    while out.size < n:
        draw = rng.integers(0, 2**32, size=max(64, int((n - out.size) * 1.25)), dtype=np.uint64).astype(np.uint32)
        out = np.concatenate([out, draw[~in_networks(draw)]])
    return out[:n]
