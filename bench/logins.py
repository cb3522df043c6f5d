"""Synthetic login behaviour shaped like the SageMaker IP Insights tutorial's data, for benchmarks.

The world (seeded, NumPy only):

* **ISPs** of Zipf-distributed popularity, each owning one to six /16 blocks of public address
  space; users of the same ISP share its blocks (shared ISPs), and each user's home router takes
  its address from a DHCP pool, a /24 of the ISP. About half the users move to another pool at
  some point of the period (a new lease: usually another /24 of the same /16, sometimes another
  block of the ISP), so later home logins can come from a /24 never seen before.
* **Companies** with one or two office /24s shared by their employees; a share of users work from
  an office part of the time.
* **Mobile carriers**: four large /12 pools (CGNAT), used by about a third of the users.
* **Travel**: each user is away with probability ``Beta(1, 30)`` per login; away logins come from
  a hub network (hotels, airports, coworking; Zipf popularity, shared by travellers) or, one time
  in four, from a random ISP's network.
* Events per user are Pareto-distributed (as in the tutorial) and spread uniformly over the days.

:func:`abnormal_logins` draws the kind of logins an intruder produces: a training user with an
address from another user's home network, or from a random network of the world.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DAY_S = 86_400


@dataclass
class LoginWorld:
    """Generated logins (``user``, ``ip`` as uint32, ``t`` seconds) and the networks behind them."""

    user: np.ndarray
    ip: np.ndarray
    t: np.ndarray
    n_users: int
    isp_blocks: list[np.ndarray]  # /16 block starts per ISP
    home_isp: np.ndarray  # per user
    lease_pools: np.ndarray  # per user, the /24 starts of its DHCP leases (users x leases)
    hubs: np.ndarray  # hub /24 starts


def _public_16_blocks(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct public /16 block starts (first octet 1..223, private/reserved first octets skipped)."""
    bad_first = {10, 100, 127, 169, 172, 192, 198, 203}
    firsts = np.array([o for o in range(1, 224) if o not in bad_first])
    picked: set[int] = set()
    while len(picked) < n:
        a = rng.choice(firsts, 2 * n)
        b = rng.integers(0, 256, 2 * n)
        picked.update(((a << 8) | b).tolist())
    blocks = np.array(sorted(picked), dtype=np.int64)[rng.permutation(len(picked))[:n]]
    return (blocks << 16).astype(np.int64)


def generate_logins(n_users: int = 3000, *, days: int = 10, seed: int = 0, n_isps: int = 300,
                    events_scale: float = 25.0, max_events: int = 2000) -> LoginWorld:
    """Logins of ``n_users`` users over ``days`` days (see the module docstring).

    :param n_users: number of users.
    :param days: length of the period.
    :param seed: random seed.
    :param n_isps: number of ISPs.
    :param events_scale: Pareto scale of events per user.
    :param max_events: cap of events per user.
    """
    rng = np.random.default_rng(seed)
    blocks_per_isp = 1 + rng.poisson(1.0, n_isps).clip(0, 5)
    n_carriers, n_hubs = 4, 250
    all_blocks = _public_16_blocks(rng, int(blocks_per_isp.sum()) + n_carriers * 16 + n_hubs)
    cut = np.cumsum(blocks_per_isp)
    isp_blocks = np.split(all_blocks[: cut[-1]], cut[:-1])
    carrier_base = all_blocks[cut[-1]: cut[-1] + n_carriers * 16: 16]  # 16 /16s each: a /12-sized pool
    hub_blocks = all_blocks[cut[-1] + n_carriers * 16:]
    hubs = hub_blocks + (rng.integers(0, 256, n_hubs) << 8)

    isp_weight = 1.0 / np.arange(1, n_isps + 1) ** 1.2
    home_isp = rng.choice(n_isps, n_users, p=isp_weight / isp_weight.sum())
    n_leases = 2
    lease_pools = np.empty((n_users, n_leases), np.int64)
    for u in range(n_users):
        blocks = isp_blocks[home_isp[u]]
        first = int(blocks[rng.integers(0, blocks.size)])
        second_block = first if rng.random() < 0.7 else int(blocks[rng.integers(0, blocks.size)])
        lease_pools[u] = [first + (int(rng.integers(0, 256)) << 8), second_block + (int(rng.integers(0, 256)) << 8)]
    lease_change = rng.integers(0, 2 * days * DAY_S, n_users)  # half of them fall inside the period

    n_companies = max(10, n_users // 15)
    comp_weight = 1.0 / np.arange(1, n_companies + 1) ** 0.9
    company = rng.choice(n_companies, n_users, p=comp_weight / comp_weight.sum())
    office_isp = rng.integers(0, n_isps, (n_companies, 2))
    offices = np.array([[isp_blocks[i][rng.integers(0, isp_blocks[i].size)] + (int(rng.integers(0, 256)) << 8)
                         for i in row] for row in office_isp], dtype=np.int64)
    carrier = np.where(rng.random(n_users) < 0.35, rng.integers(0, n_carriers, n_users), -1)

    p_away = rng.beta(1, 30, n_users)
    p_work = np.where(rng.random(n_users) < 0.6, rng.beta(4, 4, n_users), 0.0)
    p_mobile = np.where(carrier >= 0, rng.beta(2, 6, n_users), 0.0)
    counts = np.minimum((events_scale * (rng.pareto(1.0, n_users) + 1)).astype(np.int64), max_events)

    user = np.repeat(np.arange(n_users), counts)
    m = user.size
    t = rng.integers(0, days * DAY_S, m)
    r = rng.random(m)
    away = r < p_away[user]
    r2 = (r - p_away[user]) / (1 - p_away[user])
    mobile = ~away & (r2 < p_mobile[user])
    work = ~away & ~mobile & (rng.random(m) < p_work[user])
    home = ~away & ~mobile & ~work

    ip = np.empty(m, np.int64)
    # Home: the lease in force at the time (a user's pool may change once), random host.
    lease = (t >= lease_change[user]).astype(np.int64)
    ip[home] = lease_pools[user[home], lease[home]] + rng.integers(1, 255, home.sum())
    office_pick = rng.integers(0, 2, m)
    ip[work] = offices[company[user[work]], np.where(rng.random(work.sum()) < 0.8, 0, office_pick[work])] \
        + rng.integers(1, 255, work.sum())
    c = carrier[user[mobile]]
    ip[mobile] = carrier_base[c] + rng.integers(0, 1 << 20, mobile.sum())
    hub_weight = 1.0 / np.arange(1, n_hubs + 1)
    to_hub = away & (rng.random(m) < 0.75)
    ip[to_hub] = hubs[rng.choice(n_hubs, to_hub.sum(), p=hub_weight / hub_weight.sum())] + rng.integers(1, 255, to_hub.sum())
    anywhere = away & ~to_hub
    ip[anywhere] = random_network_ips(rng, isp_blocks, int(anywhere.sum()))
    order = np.argsort(t, kind="stable")
    return LoginWorld(user=user[order], ip=ip[order].astype(np.uint32), t=t[order], n_users=n_users,
                      isp_blocks=isp_blocks, home_isp=home_isp, lease_pools=lease_pools, hubs=hubs)


def random_network_ips(rng: np.random.Generator, isp_blocks: list[np.ndarray], n: int) -> np.ndarray:
    """``n`` addresses in random /24s of random ISPs."""
    isp = rng.integers(0, len(isp_blocks), n)
    sizes = np.array([b.size for b in isp_blocks])
    starts = np.array([isp_blocks[i][j] for i, j in zip(isp, (rng.random(n) * sizes[isp]).astype(int))], dtype=np.int64)
    return starts + (rng.integers(0, 256, n) << 8) + rng.integers(1, 255, n)


def abnormal_logins(world: LoginWorld, users: np.ndarray, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user, ip, kind)``: half from another user's home network, half from a random network.

    :param users: the users to draw from (e.g. users seen in training).
    """
    rng = np.random.default_rng(seed)
    u = rng.choice(users, n)
    other = rng.integers(0, world.n_users, n)
    other = np.where(other == u, (other + 1) % world.n_users, other)
    from_other = rng.random(n) < 0.5
    lease = rng.integers(0, world.lease_pools.shape[1], n)
    ip = np.where(from_other, world.lease_pools[other, lease] + rng.integers(1, 255, n),
                  random_network_ips(rng, world.isp_blocks, n))
    kind = np.where(from_other, "other_user_network", "random_network")
    return u, ip.astype(np.uint32), kind


# ------------------------------------------------------------------------------------ tutorial process
@dataclass
class RangeWorld:
    """Logins drawn with the SageMaker tutorial's process over a synthetic table of address ranges."""

    user: np.ndarray
    ip: np.ndarray
    t: np.ndarray
    n_users: int
    range_start: np.ndarray  # per range, first address (ascending)
    range_size: np.ndarray  # per range, number of addresses
    home: np.ndarray  # per user, range index
    work: np.ndarray  # per user, range index


def _address_ranges(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` disjoint public ranges in address order: sizes 2**8 .. 2**20 (median /23), laid
    out contiguously with unrouted gaps, like a routing table's announced prefixes."""
    from seclake_ml.ipinsights.ipv4 import RESERVED_BOUNDS

    host_bits = np.minimum(8 + rng.geometric(0.35, n) - 1, 20)
    sizes = (1 << host_bits).astype(np.int64)
    span = (224 << 24) - (1 << 24)
    gaps = rng.exponential(1.0, n)
    gaps *= max(span * 0.8 - sizes.sum(), 0) / gaps.sum()
    starts = (1 << 24) + np.cumsum(gaps.astype(np.int64) + sizes) - sizes
    reserved = RESERVED_BOUNDS.astype(np.int64)
    clash = np.zeros(n, bool)
    for first, last in reserved:
        clash |= (starts <= last) & (starts + sizes - 1 >= first)
    keep = ~clash & (starts + sizes <= (224 << 24))
    return starts[keep], sizes[keep]


def generate_tutorial_logins(n_users: int = 3000, *, days: int = 10, seed: int = 0, n_ranges: int = 200_000,
                             work_window: int = 50_000, locality_sigma: float = 10.0,
                             events_scale: float = 50.0, max_events: int = 10_000) -> RangeWorld:
    """Logins following the SageMaker IP Insights tutorial's generator, over synthetic ranges.

    Each user has a home range (uniform over the table) and a work range within ``work_window``
    table positions of it; per login the user travels with probability ``Beta(1, 30)`` (a uniformly
    random range of the table), otherwise is at home with probability ``Beta(3, 5)`` or at work, and
    connects from a range ``Normal(0, locality_sigma)`` table positions around that place. The
    address is uniform inside the range. Events per user: ``events_scale * (Pareto(1) + 1)``, capped.
    """
    rng = np.random.default_rng([seed, 7])
    starts, sizes = _address_ranges(rng, n_ranges)
    n = starts.size
    home = rng.integers(0, n, n_users)
    offset = rng.integers(-work_window, work_window, n_users)
    offset = np.where(offset == 0, 1, offset)
    work = (home + offset) % n
    p_travel = rng.beta(1, 30, n_users)
    p_home = rng.beta(3, 5, n_users)
    counts = np.minimum((events_scale * (rng.pareto(1.0, n_users) + 1)).astype(np.int64), max_events)
    user = np.repeat(np.arange(n_users), counts)
    m = user.size
    travel = rng.random(m) < p_travel[user]
    at_home = rng.random(m) < p_home[user]
    base = np.where(at_home, home[user], work[user])
    local = (base + np.rint(rng.normal(0.0, locality_sigma, m)).astype(np.int64)) % n
    rng_idx = np.where(travel, rng.integers(0, n, m), local)
    ip = starts[rng_idx] + (rng.random(m) * sizes[rng_idx]).astype(np.int64)
    t = rng.integers(0, days * DAY_S, m)
    order = np.argsort(t, kind="stable")
    return RangeWorld(user=user[order], ip=ip[order].astype(np.uint32), t=t[order], n_users=n_users,
                      range_start=starts, range_size=sizes, home=home, work=work)


def range_abnormal_logins(world: RangeWorld, users: np.ndarray, n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user, ip, kind)``: half from another user's home neighbourhood, half from a random range."""
    rng = np.random.default_rng(seed)
    u = rng.choice(users, n)
    other = rng.integers(0, world.n_users, n)
    other = np.where(other == u, (other + 1) % world.n_users, other)
    from_other = rng.random(n) < 0.5
    k = world.range_start.size
    near = (world.home[other] + np.rint(rng.normal(0.0, 10.0, n)).astype(np.int64)) % k
    idx = np.where(from_other, near, rng.integers(0, k, n))
    ip = world.range_start[idx] + (rng.random(n) * world.range_size[idx]).astype(np.int64)
    kind = np.where(from_other, "other_user_network", "random_network")
    return u, ip.astype(np.uint32), kind
