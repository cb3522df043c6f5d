"""Pairs of entities the model never saw, judged against the known networks of their peer group.

IP Insights has no vector for an entity it was not trained on, so its score for such a pair means
nothing. Yet a principal created during an attack (``sts:GetFederationToken``, a new access key) or
an instance started by auto scaling is exactly such an entity. Per source, the configuration
(``extra.scoring.unknown_entities``) chooses what happens to these pairs:

``peers`` (default)
    The entity's *peer group* is derived from its name alone, so that the entities of the training
    profile can be grouped the same way (the profile keeps ``entity, ip, events`` and nothing else):

    * CloudTrail principal ARNs: account and principal type. IAM users of the account; sessions of
      the same role name in the account (``assumed-role/<role>/<session>`` and ``role/<role>``);
      federated users of the account; the account's root; other ARN types by their resource type.
    * Principal ids without an ARN (``AIDA…``, ``AROA…``): their four-letter id type.
    * EC2 instance ids: every instance the model knows. Neither the pairs nor the profile carry the
      subnet or VPC of an instance, and the profile keeps no account or region per entity, so the
      group cannot be narrower (the finding names the group it used).
    * Anything else (an address standing in for a missing instance id, ...): the other entities of
      the same shape.

    The rule is plain: the pair is flagged when its IP's /24 was never seen with any peer. Its
    anomaly score is placed past the model's calibrated threshold by a margin that grows with how
    far the IP is from every peer address, in units of the severity scale the findings use::

        score = threshold + severity_scale * (32 - b) / 16

    where ``b`` (0..23) is the number of leading bits the IP shares with the nearest peer address.
    A neighbouring /24 of the same /16 (b = 16..23) gives a Medium or High finding, anything
    farther High, a wholly different /8 or more Critical. A group with no history at all is flagged
    (``score = threshold + severity_scale * 0.75``, Medium) only for the CloudTrail sign-in and API
    sources, where a new principal is itself the signal; for other sources it is counted only.
    An IP inside the group's known networks is not flagged.

``ignore``
    The behaviour before this policy existed: locally the pairs are counted and never flagged; on
    the aws backend the endpoint's score stands as it is (the endpoint cannot tell known entities
    from unknown ones).

Knowing which entities are unknown: the local scorer says so; on the aws backend the training
profile does (an entity of the profile is known). Without a readable profile no peer group is known:
the pairs are counted locally and keep the endpoint's score on aws, with a warning in the log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["POLICIES", "DEFAULT_POLICY", "PeerGroups", "UnknownPolicy", "peer_group"]

POLICIES = ("peers", "ignore")
DEFAULT_POLICY = "peers"
#: Sources where a first-seen principal of a group with no history is flagged, not only counted.
NO_HISTORY_FLAG_SOURCES = frozenset({"cloudtrail_signin", "cloudtrail_api"})
NETWORK_BITS = 24
NO_HISTORY_UNITS = 0.75
REASON_PEERS = "first_seen_outside_peer_networks"
REASON_NO_HISTORY = "first_seen_in_group_without_history"
_SHOWN_NETWORKS = 3

_ARN_RE = re.compile(r"arn:aws[a-z-]*:(iam|sts)::(\d{12}):(.+)", re.DOTALL)
_OTHER_ARN_RE = re.compile(r"arn:aws[a-z-]*:([a-z0-9-]+):[^:]*:(\d{12})?:([^/:]*).*", re.DOTALL)
_INSTANCE_RE = re.compile(r"i-[0-9a-f]{8,17}")
_PRINCIPAL_ID_RE = re.compile(r"(A[A-Z0-9]{3})[A-Z0-9]{12,124}(:.*)?", re.DOTALL)
_IPV4_RE = re.compile(r"\d{1,3}(\.\d{1,3}){3}")


def _short(text: str, limit: int = 120) -> str:
    from seclake_ml.scoring.findings import one_line

    return one_line(text, limit)


def peer_group(entity: str) -> tuple[tuple[str, ...], str, str]:
    """``(group key, group in words, noun)`` of ``entity`` (see the module docstring).

    The noun names what the entity is in explanations: ``principal``, ``instance`` or ``entity``.

    :param entity: the entity as scored (log data: any string).
    """
    if not isinstance(entity, str):
        return ("other",), "other entities", "entity"
    m = _ARN_RE.fullmatch(entity)
    if m:
        acct, resource = m.group(2), m.group(3)
        kind, _, rest = resource.partition("/")
        if resource == "root":
            return ("root", acct), f"the root user of account {acct}", "principal"
        if kind == "user":
            return ("iam_user", acct), f"IAM users of account {acct}", "principal"
        if kind in ("assumed-role", "role") and rest:
            role = rest.split("/")[0] if kind == "assumed-role" else rest.rsplit("/", 1)[-1]
            return ("role", acct, role), f"sessions of role {_short(role, 64)} in account {acct}", "principal"
        if kind == "federated-user":
            return ("federated_user", acct), f"federated users of account {acct}", "principal"
        return ("arn", acct, kind), f"{_short(kind, 40)} principals of account {acct}", "principal"
    m = _OTHER_ARN_RE.fullmatch(entity)
    if m:
        service, acct, kind = m.group(1), m.group(2) or "", m.group(3)
        where = f" of account {acct}" if acct else ""
        return ("arn", service, acct, kind), f"{_short(service, 40)} {_short(kind, 40)} principals{where}", "principal"
    if _INSTANCE_RE.fullmatch(entity):
        return ("instance",), "instances known to the model", "instance"
    m = _PRINCIPAL_ID_RE.fullmatch(entity)
    if m:
        return ("principal_id", m.group(1)), f"principals with {m.group(1)} ids", "principal"
    if _IPV4_RE.fullmatch(entity):
        return ("address",), "entities named by an address", "entity"
    return ("other",), "other entities", "entity"


def _ip_text(value: int) -> str:
    return ".".join(str((int(value) >> s) & 255) for s in (24, 16, 8, 0))


@dataclass(frozen=True)
class _Group:
    """The known addresses of a peer group: unique sorted addresses, and /24 networks with events."""

    entities: int
    addresses: np.ndarray  # uint32, sorted unique
    networks: np.ndarray  # uint32 (address >> 8), sorted unique
    network_events: np.ndarray  # int64, aligned with networks


class PeerGroups:
    """Known entities grouped by :func:`peer_group`, with their known addresses, from a training profile.

    :param history: a :class:`~seclake_ml.ipinsights.history.HistoryIndex` of the profile.
    """

    def __init__(self, history: Any) -> None:
        names = list(history.names)
        self.known = frozenset(names)
        codes, addresses, events = history.distinct_pairs()
        key_of = [peer_group(n)[0] for n in names]
        index: dict[tuple[str, ...], int] = {}
        group_code = np.fromiter((index.setdefault(k, len(index)) for k in key_of), dtype=np.int64, count=len(names))
        members = np.bincount(group_code, minlength=len(index)) if names else np.zeros(0, np.int64)
        pair_group = group_code[codes] if codes.size else np.zeros(0, np.int64)
        order = np.argsort(pair_group, kind="stable")  # one pass: each group's pairs are a slice
        bounds = np.searchsorted(pair_group[order], np.arange(len(index) + 1))
        self._groups: dict[tuple[str, ...], _Group] = {}
        for key, g in index.items():
            sel = order[bounds[g]:bounds[g + 1]]
            addr = addresses[sel]
            nets, inv = np.unique(addr >> np.uint32(32 - NETWORK_BITS), return_inverse=True)
            self._groups[key] = _Group(
                entities=int(members[g]), addresses=np.unique(addr),
                networks=nets.astype(np.uint32),
                network_events=np.bincount(inv.ravel(), weights=events[sel], minlength=nets.size).astype(np.int64),
            )

    def group(self, key: tuple[str, ...]) -> _Group | None:
        """The known addresses of group ``key``, ``None`` when no known entity belongs to it."""
        return self._groups.get(key)


@dataclass
class Verdict:
    """What the policy made of one pair of an unknown entity."""

    flagged: bool
    score: float
    explanation: dict[str, Any] | None
    no_history: bool


class UnknownPolicy:
    """Per-source handling of pairs whose entity the model never saw (see the module docstring).

    :param policies: source name -> ``peers`` | ``ignore`` (absent sources: :data:`DEFAULT_POLICY`).
    :param history_loader: ``() -> HistoryIndex`` of the model's profile (``None`` or returning
        ``None``: no profile, so no peer group is known; locally the pairs are then counted only).
    :param threshold: the model's calibrated threshold.
    :param severity_scale: the score distance per severity band.
    """

    def __init__(self, policies: Mapping[str, str] | None, history_loader: Callable[[], Any] | None,
                 threshold: float, severity_scale: float = 1.0) -> None:
        policies = dict(policies or {})
        bad = {k: v for k, v in policies.items() if v not in POLICIES}
        if bad:
            raise ValueError(f"unknown entity policy {bad!r}; allowed values: {', '.join(POLICIES)}")
        self.policies = policies
        self._loader = history_loader
        self._groups: PeerGroups | None = None
        self._unavailable = False
        self._listed: dict[tuple[str, ...], tuple[list[dict[str, Any]], str]] = {}
        self.threshold = float(threshold)
        scale = float(severity_scale) if severity_scale else 1.0
        self.scale = scale if np.isfinite(scale) and scale > 0 else 1.0

    def policy(self, source: str) -> str:
        return self.policies.get(source, DEFAULT_POLICY)

    def groups(self) -> PeerGroups | None:
        """The profile's peer groups, loaded on first use (``None`` when the model has no profile).

        A profile that is missing or cannot be read is logged once and the batch goes on without
        peer groups (the pairs are counted; scoring never stops for want of a profile).
        """
        if self._groups is None and not self._unavailable:
            try:
                history = self._loader() if self._loader is not None else None
            except Exception as exc:  # noqa: BLE001 - the profile is an aid: scoring goes on without it
                history, why = None, f"{type(exc).__name__}: {str(exc)[:200]}"
            else:
                why = "the model names none"
            if history is None:
                self._unavailable = True
                log.warning("no entity profile (%s): pairs of unknown entities are counted, not judged against "
                            "their peers", why)
            else:
                self._groups = PeerGroups(history)
        return self._groups

    def unknown(self, source: str, known_entity: np.ndarray | None, entities: Sequence[str]) -> np.ndarray | None:
        """Which pairs have an unknown entity; ``None`` when that cannot be told (aws without a
        profile) or need not be (aws under ``ignore``: the endpoint's score stands)."""
        if known_entity is not None:
            return ~np.asarray(known_entity, dtype=bool)
        if self.policy(source) != "peers":
            return None
        groups = self.groups()
        if groups is None:
            return None
        known = groups.known
        return np.fromiter((e not in known for e in entities), dtype=bool, count=len(entities))

    def _shown(self, key: tuple[str, ...], group: _Group) -> tuple[list[dict[str, Any]], str]:
        """The group's busiest networks, as listed in explanations (computed once per group)."""
        if key not in self._listed:
            rank = np.lexsort((group.networks, -group.network_events))[:_SHOWN_NETWORKS]
            networks = [{"cidr": f"{_ip_text(int(group.networks[r]) << (32 - NETWORK_BITS))}/{NETWORK_BITS}",
                         "events": int(group.network_events[r])} for r in rank]
            listed = ", ".join(f"{n['cidr']} ({n['events']} events)" for n in networks)
            more = group.networks.size - len(networks)
            if more > 0:
                listed += f" and {more} more /{NETWORK_BITS} network{'s' if more > 1 else ''}"
            self._listed[key] = (networks, listed)
        networks, listed = self._listed[key]
        return [dict(n) for n in networks], listed

    def judge(self, source: str, entity: str, ip: str) -> Verdict:
        """The verdict on one pair of an unknown entity under the ``peers`` policy."""
        from seclake_ml.scoring.profile import ipv4_int

        groups = self.groups()
        key, label, noun = peer_group(entity)
        ent_s, ip_s = _short(entity), _short(ip, 64)
        asked = ipv4_int(ip)
        group = groups.group(key) if groups is not None else None
        base = {"entity_known": False, "known_ips": 0, "known_events": 0, "ip_valid": asked is not None,
                "peer_group": label, "peer_entities": 0, "peer_networks": 0}
        if groups is None or asked is None:
            return Verdict(False, float("nan"), None, False)
        if group is None or group.addresses.size == 0:
            if source not in NO_HISTORY_FLAG_SOURCES:
                return Verdict(False, float("nan"), None, True)
            text = (f"first seen {noun} {ent_s} in a group with no history ({label}): no known {noun} of the "
                    f"group to compare {ip_s} with")
            expl = dict(base, reason=REASON_NO_HISTORY, known_networks=[], nearest_known_ip=None,
                        common_prefix_bits=None, text=text)
            return Verdict(True, self.threshold + self.scale * NO_HISTORY_UNITS, expl, True)
        net = np.uint32(asked >> (32 - NETWORK_BITS))
        pos = int(np.searchsorted(group.networks, net))
        if pos < group.networks.size and group.networks[pos] == net:
            return Verdict(False, float("nan"), None, False)
        # nearest peer address: one of the two neighbours in numeric order (the most shared leading bits)
        j = int(np.searchsorted(group.addresses, np.uint32(asked)))
        cands = [int(group.addresses[k]) for k in (j - 1, j) if 0 <= k < group.addresses.size]
        bits = [32 - (c ^ asked).bit_length() for c in cands]
        best = max(range(len(cands)), key=lambda k: (bits[k], -cands[k]))
        b = min(bits[best], NETWORK_BITS - 1)
        networks, listed = self._shown(key, group)
        nearest = _ip_text(cands[best])
        text = (f"first seen {noun} {ent_s}; its peers ({label}, {group.entities} known) were seen with {listed}; "
                f"{ip_s} is outside them (nearest peer IP {nearest} shares {bits[best]} leading bits)")
        expl = dict(base, reason=REASON_PEERS, peer_entities=group.entities, peer_networks=int(group.networks.size),
                    known_networks=networks, nearest_known_ip=nearest, common_prefix_bits=bits[best], text=text)
        return Verdict(True, self.threshold + self.scale * (32 - b) / 16, expl, False)
