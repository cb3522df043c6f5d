"""IP Insights benchmark on synthetic login behaviour: model vs a non-ML baseline, speed and size.

The world (all synthetic, seeded):

* A table of IPv4 networks laid out over the public address space (reserved blocks skipped) with
  heavy-tailed sizes: most are /24-/22, a few are /12-/10 (the largest play mobile carriers' CGNAT
  pools).
* Organisations of Zipf-distributed size, each with one to several small office networks and a VPN
  egress network; a set of "hub" networks (airports, hotels, coworking) that travellers share.
* ~10,000 users. Each has an organisation and a primary office, a home ISP network with a DHCP pool
  in it (and now and then a neighbouring network of the same ISP), maybe a mobile carrier, a
  probability of being away (Beta(1, 30), as in the SageMaker tutorial's generator) and of being at
  home rather than at work (Beta(3, 5)). Away logins go to another office of the organisation (55%),
  a hub (35%) or a uniformly random network (10%). Event counts per user are Pareto-distributed (as
  in the tutorial), ~3 million events over 10 days in all.

Evaluation, as in the tutorial: time-ordered split at 70%; *normal* = test logins of users seen in
training (100,000 sampled); *abnormal* = training users paired with an address drawn from a random
network of the table (100,000). Reported:

* ROC AUC of the model (anomaly score ``-dot_product``) and of a baseline measured in the same run:
  the distance in address space from the login IP to the nearest IP that user had in training;
  the SageMaker tutorial's best ``validation:discriminator_auc`` (0.9909) as an anchor, next to our
  own validation discriminator AUC (first test day, one uniformly random IPv4 per pair).
* Training throughput in samples/s including negatives at SageMaker's default negative rates (R=1,
  S=1), and per epoch for the benchmark model (R=3, S=1; the tutorial used R=5); anchor: 134-145k
  samples/s on a V100.
* NumPy scorer pairs/s on one core, pre-parsed and including parsing.
* Model size on disk.

Usage: ``python bench/ipinsights.py [--quick] [--threads 2] [--epochs N] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))

from seclake_ml.ipinsights.ipv4 import RESERVED_BOUNDS, format_ipv4  # noqa: E402
from seclake_ml.ipinsights.metrics import roc_auc  # noqa: E402

DAY = 86_400
SAGEMAKER_AUC = 0.9909
SAGEMAKER_SPEED = "134-145k samples/s (ml.p3.2xlarge, one V100)"


# ---------------------------------------------------------------------------------------------- world
def make_networks(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(start, size)`` of ``n`` networks in address order; sizes 2**8..2**22, heavy-tailed."""
    host_bits = np.minimum(8 + rng.geometric(0.5, n) - 1, 18)
    host_bits[rng.choice(n, 6, replace=False)] = rng.integers(19, 23, 6)  # the carriers
    sizes = (1 << host_bits).astype(np.int64)
    free_space = (1 << 32) * 0.75 - sizes.sum()
    gaps = rng.exponential(max(free_space, 0) / n, n).astype(np.int64)
    starts = np.empty(n, np.int64)
    cursor = 1 << 24  # 1.0.0.0
    reserved = RESERVED_BOUNDS.astype(np.int64)
    for i in range(n):
        size = int(sizes[i])
        cursor += int(gaps[i])
        while True:
            cursor = (cursor + size - 1) // size * size
            end = cursor + size - 1
            clash = reserved[(reserved[:, 0] <= end) & (reserved[:, 1] >= cursor)]
            if clash.size == 0:
                break
            cursor = int(clash[:, 1].max()) + 1
        if cursor + size > (224 << 24):
            raise RuntimeError("network layout ran out of address space")
        starts[i] = cursor
        cursor += size
    return starts, sizes


def simulate(n_users: int, n_networks: int, seed: int) -> dict[str, np.ndarray]:
    """Login events ``user`` (int), ``ip`` (uint32), ``t`` (seconds in [0, 10 days))."""
    rng = np.random.default_rng(seed)
    starts, sizes = make_networks(rng, n_networks)
    small = np.flatnonzero(sizes <= 1024)
    mid = np.flatnonzero((sizes >= 1024) & (sizes <= 1 << 16))
    carriers = np.argsort(sizes)[-6:]

    n_orgs = max(20, n_users // 25)
    org_weight = 1.0 / np.arange(1, n_orgs + 1) ** 1.1
    org_of_user = rng.choice(n_orgs, n_users, p=org_weight / org_weight.sum())
    n_offices = np.minimum(1 + rng.poisson(1.5, n_orgs), 8)
    office_ptr = np.r_[0, np.cumsum(n_offices)]
    offices = rng.choice(small, office_ptr[-1])
    vpn = rng.choice(small, n_orgs)
    # Primary office: the first (headquarters) for 60%, otherwise any office of the organisation.
    pick = np.where(rng.random(n_users) < 0.6, 0, (rng.random(n_users) * n_offices[org_of_user]).astype(int))
    primary = offices[office_ptr[org_of_user] + pick]
    hubs = rng.choice(mid, 300, replace=False)
    hub_weight = 1.0 / np.arange(1, 301)
    hub_weight /= hub_weight.sum()

    home = rng.integers(0, n_networks, n_users)
    pool_bits = np.minimum(np.log2(sizes[home]).astype(int), 12)
    pool_start = starts[home] + (rng.integers(0, 1 << 30, n_users) % (sizes[home] >> pool_bits)) * (1 << pool_bits)
    carrier = np.where(rng.random(n_users) < 0.5, rng.choice(carriers, n_users), -1)
    p_travel = rng.beta(1, 30, n_users)
    p_home = rng.beta(3, 5, n_users)
    p_mobile = np.where(carrier >= 0, rng.beta(2, 8, n_users), 0.0)
    counts = np.minimum((50 * (rng.pareto(1.0, n_users) + 1)).astype(int), 10_000)

    user = np.repeat(np.arange(n_users), counts)
    m = user.size
    r_kind, r_sub = rng.random(m), rng.random(m)
    travel = r_kind < p_travel[user]
    mobile = ~travel & (r_kind < p_travel[user] + (1 - p_travel[user]) * p_mobile[user])
    rest = ~travel & ~mobile
    at_home = rest & (rng.random(m) < p_home[user])
    at_work = rest & ~at_home

    net = np.empty(m, np.int64)
    org = org_of_user[user]
    # Away: another office of the organisation, a hub, or anywhere.
    t_office = travel & (r_sub < 0.55)
    t_hub = travel & (r_sub >= 0.55) & (r_sub < 0.90)
    t_any = travel & (r_sub >= 0.90)
    net[t_office] = offices[office_ptr[org[t_office]] + (rng.random(t_office.sum()) * n_offices[org[t_office]]).astype(int)]
    net[t_hub] = rng.choice(hubs, t_hub.sum(), p=hub_weight)
    net[t_any] = rng.integers(0, n_networks, t_any.sum())
    net[mobile] = carrier[user[mobile]]
    vpn_use = at_work & (r_sub < 0.15)
    net[at_work] = primary[user[at_work]]
    net[vpn_use] = vpn[org[vpn_use]]
    neighbour = at_home & (r_sub < 0.15)
    pool = at_home & ~neighbour
    step = np.rint(rng.normal(0, 2.0, neighbour.sum())).astype(np.int64)
    step[step == 0] = 1
    net[at_home] = home[user[at_home]]
    net[neighbour] = np.clip(home[user[neighbour]] + step, 0, n_networks - 1)

    ip = starts[net] + (rng.random(m) * sizes[net]).astype(np.int64)
    ip[pool] = pool_start[user[pool]] + (rng.random(pool.sum()) * (1 << pool_bits[user[pool]])).astype(np.int64)
    t = rng.integers(0, 10 * DAY, m)
    kind = np.select([t_office, t_hub, t_any, mobile, vpn_use, at_work, neighbour, pool], range(8), -1).astype(np.int8)
    return {"user": user, "ip": ip.astype(np.uint32), "t": t, "kind": kind, "starts": starts, "sizes": sizes}


EVENT_KINDS = ("away: other office", "away: hub", "away: anywhere", "mobile", "work: VPN", "work: office", "home: neighbour net", "home: pool")


def draw_from_random_networks(rng: np.random.Generator, starts: np.ndarray, sizes: np.ndarray, n: int) -> np.ndarray:
    net = rng.integers(0, starts.size, n)
    return (starts[net] + (rng.random(n) * sizes[net]).astype(np.int64)).astype(np.uint32)


# ---------------------------------------------------------------------------------------------- baseline
def nearest_known_distance(train_user: np.ndarray, train_ip: np.ndarray, user: np.ndarray, ip: np.ndarray) -> np.ndarray:
    """Distance in address space from each ``(user, ip)`` to that user's nearest training IP."""
    key = (train_user.astype(np.uint64) << np.uint64(32)) | train_ip.astype(np.uint64)
    key = np.unique(key)
    q = (user.astype(np.uint64) << np.uint64(32)) | ip.astype(np.uint64)
    pos = np.searchsorted(key, q)
    best = np.full(q.size, np.inf)
    for cand in (pos - 1, pos):
        ok = (cand >= 0) & (cand < key.size)
        c = key[np.clip(cand, 0, key.size - 1)]
        same = ok & ((c >> np.uint64(32)) == user.astype(np.uint64))
        dist = np.abs((c & np.uint64(0xFFFFFFFF)).astype(np.int64) - ip.astype(np.int64)).astype(float)
        best = np.where(same, np.minimum(best, dist), best)
    return best


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run (1,000 users) for a smoke check")
    ap.add_argument("--users", type=int, help="number of users (default 10000, quick 1000)")
    ap.add_argument("--networks", type=int, help="number of networks (default 100000, quick 20000)")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default 6, quick 3)")
    ap.add_argument("--random-negatives", type=int, default=3, help="R of the benchmark model (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", help="keep the trained model in this folder")
    ap.add_argument("-v", "--verbose", action="store_true", help="log training progress")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s")

    import torch  # noqa: F401  (imported before timing anything)

    from seclake_ml.ipinsights.scorer import IPInsightsScorer
    from seclake_ml.ipinsights.trainer import IPInsights

    n_users = args.users or (1000 if args.quick else 10_000)
    n_networks = args.networks or (20_000 if args.quick else 100_000)
    epochs = args.epochs or (3 if args.quick else 6)
    rng = np.random.default_rng(args.seed + 1)

    t0 = time.perf_counter()
    world = simulate(n_users, n_networks, args.seed)
    user, ip, t, kind = world["user"], world["ip"], world["t"], world["kind"]
    order = np.argsort(t, kind="stable")
    user, ip, t, kind = user[order], ip[order], t[order], kind[order]
    split = int(0.7 * t.size)
    tr_u, tr_ip = user[:split], ip[:split]
    te_u, te_ip, te_t, te_k = user[split:], ip[split:], t[split:], kind[split:]
    seen = np.zeros(n_users, bool)
    seen[tr_u] = True
    keep = seen[te_u]
    te_u, te_ip, te_t, te_k = te_u[keep], te_ip[keep], te_t[keep], te_k[keep]
    n_eval = min(100_000, te_u.size)
    pick = rng.choice(te_u.size, n_eval, replace=False)
    normal_u, normal_ip, normal_k = te_u[pick], te_ip[pick], te_k[pick]
    train_users = np.flatnonzero(seen)
    abn_u = rng.choice(train_users, n_eval)
    abn_ip = draw_from_random_networks(rng, world["starts"], world["sizes"], n_eval)
    # Validation as in the tutorial's tuning run: the first day after the split.
    first_day = te_t < te_t.min() + DAY
    val_idx = np.flatnonzero(first_day)
    val_idx = rng.choice(val_idx, min(100_000, val_idx.size), replace=False)

    names = np.array([f"user_{i:05d}" for i in range(n_users)], dtype=object)
    train_ent, train_ips = names[tr_u], format_ipv4(tr_ip)
    val = (names[te_u[val_idx]], format_ipv4(te_ip[val_idx]))
    gen_s = time.perf_counter() - t0
    print(f"data          {t.size:,} events, {n_users:,} users, {n_networks:,} networks, generated in {gen_s:.1f}s")
    print(f"split         train {split:,} (70%, time-ordered), test {te_u.size:,} of users seen in training")
    print(f"evaluation    {n_eval:,} normal + {n_eval:,} abnormal (training user, IP from a random network)")

    # Baseline.
    labels = np.r_[np.zeros(n_eval, bool), np.ones(n_eval, bool)]
    t0 = time.perf_counter()
    dist = nearest_known_distance(tr_u, tr_ip, np.r_[normal_u, abn_u], np.r_[normal_ip, abn_ip])
    base_auc = roc_auc(labels, np.log1p(dist))
    base_s = time.perf_counter() - t0

    # Model.
    # Training speed at SageMaker's default negative rates (R=1, S=1): two epochs on up to 600k
    # pairs, the second one reported (the first also pays for touching the tables' memory).
    speed_hp = dict(num_entity_vectors=2 * n_users, vector_dim=128, epochs=2, learning_rate=0.01, mini_batch_size=5000)
    n_speed = min(600_000, split)
    speed_est = IPInsights(speed_hp, seed=args.seed, num_threads=args.threads).fit((train_ent[:n_speed], train_ips[:n_speed]))
    default_speed = speed_est.history_[-1].samples_per_second
    del speed_est

    # The benchmark model: the tutorial's settings (num_entity_vectors = 2 x users, vector_dim 128,
    # learning rate 0.01), larger mini-batches for CPU, R=3 random negatives, S=1 (default).
    hp = dict(num_entity_vectors=2 * n_users, vector_dim=128, epochs=epochs, learning_rate=0.01, mini_batch_size=5000,
              random_negative_sampling_rate=args.random_negatives)
    est = IPInsights(hp, seed=args.seed, num_threads=args.threads)
    t0 = time.perf_counter()
    est.fit((train_ent, train_ips), validation=val)
    fit_s = time.perf_counter() - t0
    speeds = [h.samples_per_second for h in est.history_]
    val_auc = est.history_[-1].validation_discriminator_auc

    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="ipinsights-bench-"))
    est.save(out_dir, metrics={"bench": "login-behaviour"})
    size = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())
    scorer = IPInsightsScorer.load(out_dir)

    ent_eval = names[np.r_[normal_u, abn_u]]
    ip_eval = format_ipv4(np.r_[normal_ip, abn_ip])
    anomaly = scorer.decision_function(ent_eval, ip_eval)
    model_auc = roc_auc(labels, anomaly)
    # At threshold 0 (flag when dot_product < 0), as in the tutorial.
    flagged = anomaly > 0
    recall0 = flagged[n_eval:].mean()
    fpr0 = flagged[:n_eval].mean()

    # Scorer throughput on one core: the process is pinned to one CPU while it is measured.
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if affinity:
        os.sched_setaffinity(0, {min(affinity)})
    m = 1_000_000
    big_e = ent_eval[rng.integers(0, ent_eval.size, m)]
    big_ip = ip_eval[rng.integers(0, ip_eval.size, m)]
    rows, _ = scorer.encode_entities(big_e)
    addr, _ = scorer.encode_ips(big_ip)
    best_pre = best_raw = np.inf
    for _ in range(3):
        s = time.perf_counter()
        scorer.dot_product_encoded(rows, addr)
        best_pre = min(best_pre, time.perf_counter() - s)
    scorer._cache.clear()
    for _ in range(2):
        s = time.perf_counter()
        scorer.score(big_e, big_ip)
        best_raw = min(best_raw, time.perf_counter() - s)
    csv_body = "\n".join(f"{e},{i}" for e, i in zip(big_e[:100_000].tolist(), big_ip[:100_000].tolist()))
    s = time.perf_counter()
    scorer.handle_request(csv_body, "text/csv", "application/json")
    req_s = time.perf_counter() - s
    if affinity:
        os.sched_setaffinity(0, affinity)

    print()
    print(f"{'ROC AUC (normal vs random-network IP)':44s} model {model_auc:.4f}   baseline {base_auc:.4f} (nearest known IP of the user)")
    print(f"{'validation:discriminator_auc':44s} model {val_auc:.4f}   anchor SageMaker {SAGEMAKER_AUC} (tutorial, its own data)")
    print(f"{'at threshold 0 (dot_product < 0 flagged)':44s} recall {recall0:.4f}, false-positive rate {fpr0:.4f}")
    print(f"{'training':44s} {epochs} epochs, {est.history_[0].samples:,} samples/epoch incl. negatives, {fit_s:.0f}s in fit()")
    print(f"{'training loss, accuracy (last epoch)':44s} {est.history_[-1].loss:.4f}, {est.history_[-1].accuracy:.4f}")
    print(f"{'training samples/s incl. negatives':44s} {default_speed:,.0f} at R=1 S=1 (SageMaker defaults), vector_dim 128, "
          f"{args.threads} threads, {os.cpu_count()} CPUs; anchor {SAGEMAKER_SPEED}")
    print(f"{'  benchmark model, per epoch':44s} {', '.join(f'{v:,.0f}' for v in speeds)} at R={args.random_negatives} S=1")
    print(f"{'scorer pairs/s, one core, pre-parsed':44s} {m / best_pre:,.0f}")
    print(f"{'scorer pairs/s, one core, incl. parsing':44s} {m / best_raw:,.0f} (entity hashing + IPv4 parsing)")
    print(f"{'scorer text/csv request, 100k pairs':44s} {100_000 / req_s:,.0f} pairs/s (parse, score, JSON response)")
    print(f"{'model size on disk':44s} {size / 2**20:.1f} MiB ({out_dir})")
    print(f"{'baseline time':44s} {base_s:.1f}s")
    print("AUC by kind of normal login (each against all abnormal):")
    base_score = np.log1p(dist)
    for k, name in enumerate(EVENT_KINDS):
        sel = np.flatnonzero(normal_k == k)
        if sel.size == 0:
            continue
        lab = np.r_[np.zeros(sel.size, bool), np.ones(n_eval, bool)]
        print(f"  {name:22s} {sel.size / n_eval:6.1%}  model {roc_auc(lab, np.r_[anomaly[sel], anomaly[n_eval:]]):.4f}"
              f"  baseline {roc_auc(lab, np.r_[base_score[sel], base_score[n_eval:]]):.4f}")
    print(json.dumps({
        "model_auc": round(model_auc, 5), "baseline_auc": round(base_auc, 5), "validation_discriminator_auc": round(val_auc, 5),
        "samples_per_second_default_rates": round(default_speed), "samples_per_second_benchmark_model": [round(v) for v in speeds], "scorer_pairs_per_second_preparsed": round(m / best_pre),
        "scorer_pairs_per_second_with_parsing": round(m / best_raw), "model_bytes": size,
    }))
    if not args.out:
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
