"""IP Insights benchmark: the default detector against the nearest-known-IP baseline, on two data sets.

Default run (``python bench/ipinsights.py``), side by side for three data sets:

* **tutorial**: logins drawn with the SageMaker IP Insights tutorial generator's process
  (``bench/logins.py``, ``generate_tutorial_logins``: 3,000 users, each with a home and a work
  range of a synthetic routing table, local moves of Normal(0, 10) table positions around them,
  travel with probability Beta(1, 30) to a uniformly random range, Pareto event counts), split in
  time at 70%;
* **logins**: a login world with more structure (``generate_logins``: 3,000 users with home ISPs
  and DHCP leases, offices, mobile carriers, travel to hubs and random networks), split the same way;
* **lake**: the pairs of the sample lake that ``make run`` trains on (the package generator, the
  four default source views, the 14-day window before 2024-01-08 03:00 UTC, split at 70%).

For each: the training DAG's default hyperparameters, the calibration sets of the training DAG
(later pairs of known entities against injected ``random_public``, ``unused_private`` and
``other_entity`` pairs), and on the same held-out half of those sets the ROC AUC of the model
(``-dot_product``), of the baseline (distance from the entity's nearest known IP) and of their
calibrated combination (the deployed score), with the bar: combination >= 0.997 and at most half
the baseline's error. Training samples/s are printed per device (CPU; CUDA when available). On the
two login sets, the combination fitted on the injected sets is also scored on the generator's own
intrusions (another user's home network or neighbourhood, a random network or range), which it
never saw.

``--world`` runs the older, larger benchmark instead (10,000 users, tuned model, scorer speed):

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

Usage: ``python bench/ipinsights.py [--users 3000] [--devices cpu,cuda] [--lake-dir DIR]``;
``python bench/ipinsights.py --world [--quick] [--threads 2] [--epochs N] [--out DIR]``
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

from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins"))
sys.path.insert(0, str(REPO / "bench"))

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
def world_benchmark(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--world", action="store_true", help="this benchmark")
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

# ---------------------------------------------------------------------------------------------- detector comparison
LAKE_START = "2023-12-25"  # as `make run`: 15 days, seed 7, the same scale; interval ends 2024-01-08 03:00 UTC
LAKE_DAYS = 15
LAKE_SEED = 7
LAKE_SCALE = {"flows_per_day": 30_000, "dns_per_day": 4_000, "api_calls_per_day": 6_000}
LAKE_VIEWS = ("vpc_flow:instance_peer", "route53:instance_resolved_ip", "cloudtrail_signin:principal_ip",
              "cloudtrail_api:principal_ip")
BAR_AUC = 0.997


def login_pairs(n_users: int, seed: int, process: str = "isp") -> tuple[Any, Any, Any]:
    """``(train, later, world)`` of a login world, split in time at 70%: ``process`` "isp" (ISPs,
    leases, offices, carriers, hubs) or "tutorial" (the SageMaker tutorial's generator process)."""
    import pandas as pd

    from logins import generate_logins, generate_tutorial_logins

    world = (generate_tutorial_logins if process == "tutorial" else generate_logins)(n_users, seed=seed)
    names = np.array([f"user-{u:05d}" for u in range(n_users)], dtype=object)
    frame = pd.DataFrame({"entity": names[world.user], "ip": format_ipv4(world.ip),
                          "event_time": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(world.t, unit="s")})
    cut = int(0.7 * len(frame))
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True), world


def lake_pairs(lake_dir: Path) -> tuple[Any, Any, set[tuple[str, str]]]:
    """``(train, later, injected)`` pairs of the sample lake of ``make run`` (generated into
    ``lake_dir`` once); ``injected`` holds the ``(entity, ip)`` pairs of the generator's own
    anomalies (its ground truth)."""
    import datetime as dt

    import pandas as pd

    from seclake_ml.config import load_config
    from seclake_ml.extraction import extract_pairs
    from seclake_ml.training_data import combine_and_split

    lake = lake_dir / "lake"
    want = {"start": LAKE_START, "days": LAKE_DAYS, "seed": LAKE_SEED, **LAKE_SCALE}
    stamp = lake / "bench-args.json"
    if not stamp.is_file() or json.loads(stamp.read_text()) != want:
        from seclake_lakegen.generate import generate_lake

        t0 = time.perf_counter()
        generate_lake(lake, start=dt.date.fromisoformat(LAKE_START), days=LAKE_DAYS, seed=LAKE_SEED, overwrite=True,
                      **LAKE_SCALE)
        stamp.write_text(json.dumps(want))
        print(f"sample lake generated in {time.perf_counter() - t0:.0f}s -> {lake}")
    work = lake_dir / "work"
    cfg = load_config({"lake_root": str(lake), "work_location": str(work), "sources": list(LAKE_VIEWS)}, environ={})
    end = dt.datetime(2024, 1, 8, 3, tzinfo=dt.timezone.utc)
    start = end - dt.timedelta(days=14)
    files = []
    for sv in LAKE_VIEWS:
        source, view = sv.split(":")
        out = work / "pairs" / f"{source}-{view}.parquet"
        extract_pairs(cfg, source, view, start, end, str(out))
        files.append(str(out))
    split = combine_and_split(files, work / "split", start=start, end=end, train_fraction=0.7)
    cols = ["entity", "ip", "event_time"]
    truth = pd.read_parquet(lake / "ground_truth" / "anomalies.parquet", columns=["entity", "ip"])
    injected = set(zip(truth["entity"].tolist(), truth["ip"].tolist()))
    return pd.read_parquet(split.train, columns=cols), pd.read_parquet(split.holdout, columns=cols), injected


def default_hyperparameters() -> dict[str, Any]:
    """The training DAG's default hyperparameters (the operator module's constant)."""
    os.environ.setdefault("AIRFLOW_HOME", str(Path(tempfile.gettempdir()) / "seclake-bench-airflow"))
    from seclake_ml.operators.training import SEED_HYPERPARAMETERS

    return dict(SEED_HYPERPARAMETERS)


def intrusion_pairs(train: Any, later: Any, world: Any, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(entities, ips, kind)``: 50,000 known-normal later logins (``kind`` "normal") and 50,000 of the
    generator's own intrusions (another user's home network or neighbourhood, a random network or range)."""
    from logins import RangeWorld, abnormal_logins, range_abnormal_logins

    from seclake_ml.ipinsights.calibration import known_normal_pairs

    normal = known_normal_pairs(train, later, 50_000, seed=seed + 7)
    users = np.array(sorted(int(e.split("-")[1]) for e in train["entity"].unique()))
    draw = range_abnormal_logins if isinstance(world, RangeWorld) else abnormal_logins
    u, ip, kind = draw(world, users, 50_000, seed=seed + 5)
    ents = np.r_[normal["entity"].to_numpy(object), np.array([f"user-{i:05d}" for i in u], dtype=object)]
    return ents, np.r_[normal["ip"].to_numpy(object), format_ipv4(ip)], np.r_[np.full(len(normal), "normal"), kind]


def evaluate(name: str, train: Any, later: Any, devices: list[str], seed: int,
             intrusions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
             best_epoch: bool = False) -> list[dict[str, Any]]:
    """Train on each device, calibrate on the combined score; one result row per device.

    :param intrusions: optional extra ``(entities, ips, kind)`` pairs scored with the fitted combiner
        (AUC per abnormal kind against ``kind == "normal"``).
    """
    from seclake_ml.ipinsights.combiner import ScoreCombiner
    from seclake_ml.ipinsights.calibration import build_calibration_sets, calibrate_combined
    from seclake_ml.ipinsights.history import HistoryIndex
    from seclake_ml.ipinsights.scorer import IPInsightsScorer
    from seclake_ml.ipinsights.trainer import IPInsights

    normal, abnormal = build_calibration_sets(train, later, n_normal=100_000, seed=seed)
    history = HistoryIndex.from_pairs(train["entity"].to_numpy(object), train["ip"].to_numpy(object))
    hp = default_hyperparameters()
    rows = []
    for device in devices:
        t0 = time.perf_counter()
        # the later pairs give validation:discriminator_auc per epoch; with --best-epoch they also choose
        # the epoch kept (the training DAG keeps the last one)
        est = IPInsights(hp, seed=seed, device=device, best_epoch=best_epoch).fit(
            (train["entity"].to_numpy(object), train["ip"].to_numpy(object)),
            validation=(later["entity"].to_numpy(object), later["ip"].to_numpy(object)))
        fit_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory(prefix="ipinsights-bench-") as tmp:
            est.save(tmp)
            scorer = IPInsightsScorer.load(tmp)
        res = calibrate_combined(scorer, normal, abnormal, history, target_fpr=0.01, seed=seed)
        comp = {k: v["roc_auc"] for k, v in res.components.items()}
        row = {"data": name, "device": device, "train_pairs": len(train), "entities": int(train["entity"].nunique()),
               "model_auc": comp["model"], "baseline_auc": comp["nearest_known_ip"], "combined_auc": comp["combined"],
               "by_kind": {k: {c: round(v["roc_auc_by_kind"].get(k, float("nan")), 5) for c, v in res.components.items()}
                           for k in res.auc_by_kind},
               "samples_per_second": est.history_[-1].samples_per_second, "fit_seconds": fit_s, "epochs": len(est.history_),
               "epoch_kept": None if est.best_epoch_ is None else est.best_epoch_ + 1,
               "combiner": res.combiner, "recall_at_fpr_0.01": res.threshold.recall, "threshold": res.threshold.value}
        if intrusions is not None:
            ents, ips, kind = intrusions
            dots = scorer.score(ents, ips).dot_product.astype(np.float64)
            feats = history.features(ents, ips)
            combined = ScoreCombiner.from_dict(res.combiner).decision_function(dots, feats)
            normal_sel = kind == "normal"
            row["intrusions"] = {}
            for k in sorted(set(kind.tolist()) - {"normal"}):
                sel = normal_sel | (kind == k)
                y = kind[sel] == k
                row["intrusions"][str(k)] = (roc_auc(y, -dots[sel]), roc_auc(y, feats["distance_bits"][sel]),
                                             roc_auc(y, combined[sel]))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--world" in argv:
        return world_benchmark(argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=3000, help="users of the login world (default 3000)")
    ap.add_argument("--devices", help="comma-separated training devices (default: cpu, and cuda when available)")
    ap.add_argument("--lake-dir", default=str(REPO / "var" / "bench-ipinsights"), help="where the sample lake is generated")
    ap.add_argument("--only", choices=("tutorial", "logins", "lake"), help="one data set only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--best-epoch", action="store_true", help="keep the epoch with the best validation:discriminator_auc "
                    "on the later pairs instead of the last")
    ap.add_argument("-v", "--verbose", action="store_true", help="log training progress")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    import torch

    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"devices: {', '.join(devices)} (CUDA available: {torch.cuda.is_available()}); "
          f"hyperparameters: the training DAG's defaults {default_hyperparameters()}")
    rows: list[dict[str, Any]] = []
    for name, process in (("tutorial", "tutorial"), ("logins", "isp")):
        if args.only not in (None, name):
            continue
        t0 = time.perf_counter()
        train, later, world = login_pairs(args.users, args.seed, process)
        print(f"{name}: {len(train) + len(later):,} logins of {args.users:,} users in {time.perf_counter() - t0:.1f}s")
        rows.extend(evaluate(name, train, later, devices, args.seed, intrusions=intrusion_pairs(train, later, world, args.seed),
                             best_epoch=args.best_epoch))
    if args.only in (None, "lake"):
        t0 = time.perf_counter()
        train, later, injected = lake_pairs(Path(args.lake_dir))
        # The lake's later days hold the generator's injected anomalies; as "known normal" pairs they
        # would be mislabelled (the training DAG cannot tell them apart; the bench can, from the ground truth).
        bad = np.fromiter(((e, i) in injected for e, i in zip(later["entity"].tolist(), later["ip"].tolist())),
                          dtype=bool, count=len(later))
        later = later[~bad].reset_index(drop=True)
        print(f"lake: {len(train):,} training and {len(later):,} later pairs in {time.perf_counter() - t0:.1f}s "
              f"({int(bad.sum())} later rows of the generator's injected anomalies left out of the known-normal pairs)")
        rows.extend(evaluate("lake", train, later, devices, args.seed, best_epoch=args.best_epoch))

    print()
    print(f"{'data':8s} {'device':6s} {'pairs':>9s} {'entities':>8s} {'model':>7s} {'baseline':>8s} {'combined':>8s} "
          f"{'err. ratio':>10s} {'bar':>4s} {'samples/s':>10s} {'fit s':>6s} {'epoch':>7s}")
    for r in rows:
        ratio = (1 - r["combined_auc"]) / max(1 - r["baseline_auc"], 1e-12)
        ok = r["combined_auc"] >= BAR_AUC and ratio <= 0.5
        r["error_ratio"], r["bar_met"] = ratio, ok
        print(f"{r['data']:8s} {r['device']:6s} {r['train_pairs']:9,d} {r['entities']:8,d} {r['model_auc']:7.4f} "
              f"{r['baseline_auc']:8.4f} {r['combined_auc']:8.4f} {ratio:10.2f} {'yes' if ok else 'NO':>4s} "
              f"{r['samples_per_second']:10,.0f} {r['fit_seconds']:6.0f} {str(r['epoch_kept'] or r['epochs']) + '/' + str(r['epochs']):>7s}")
    print("(ROC AUC on the held-out half of the calibration sets; err. ratio = (1 - combined) / (1 - baseline); "
          f"bar: combined >= {BAR_AUC} and ratio <= 0.5)")
    for r in rows:
        print(f"{r['data']}/{r['device']} AUC by injected kind (model / baseline / combined): "
              + "; ".join(f"{k} {v['model']:.4f} / {v['nearest_known_ip']:.4f} / {v['combined']:.4f}"
                          for k, v in r["by_kind"].items()))
        if "intrusions" in r:
            print(f"{r['data']}/{r['device']} generator's own intrusions vs known-normal later logins "
                  "(model / baseline / combined): "
                  + "; ".join(f"{k} {v[0]:.4f} / {v[1]:.4f} / {v[2]:.4f}" for k, v in r["intrusions"].items()))
    print(json.dumps([{k: v for k, v in r.items() if k != "combiner"} for r in rows], default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
