"""Training the IP Insights network with PyTorch (CPU by default, CUDA when available).

How one step works (``mini_batch_size`` real pairs ``b``):

* Random negatives: ``R`` addresses per real pair with every octet uniform in 0-255, paired with the
  same entity. Shuffled negatives: ``S`` in-batch re-pairings, each a random cyclic shift of the
  batch's IP vectors against its entity vectors (no pair is matched with itself).
* Loss: binary cross-entropy on the dot products, real pairs labelled 1 and negatives 0, averaged
  over the ``b * (1 + R + S)`` samples. Speeds are reported in these samples per second, the way
  SageMaker's log counts them.
* Updates: only the table rows used by the batch are gathered, differentiated and updated, with a
  lazy (row-sparse) Adam whose L2 weight decay applies to those rows; the dense encoder layers use
  ordinary Adam with the same learning rate and weight decay.

Batches are prepared (hashing to prefix rows, negatives, de-duplication of rows) by NumPy in a
helper thread while the previous step runs. Inputs are encoded once (:mod:`.data`); each epoch
shuffles an index permutation, so memory does not grow with the number of epochs.

With a validation set, every epoch logs ``validation:discriminator_auc``: the ROC AUC of the real
validation pairs against one uniformly random IPv4 negative per pair (R=1, S=0), as SageMaker does.

Runs are deterministic on CPU for a given seed, thread count and input order.
"""

from __future__ import annotations

import ctypes
import logging
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from seclake_ml.ipinsights.artifact import IPInsightsArtifact, save_artifact
from seclake_ml.ipinsights.data import EncodedPairs, encode_pairs
from seclake_ml.ipinsights.encoding import DEFAULT_IP_HASH_BUCKETS, DEFAULT_PREFIX_LENGTHS, EncoderSpec
from seclake_ml.ipinsights.hyperparams import IPInsightsHyperparameters
from seclake_ml.ipinsights.metrics import roc_auc
from seclake_ml.ipinsights.model import IPInsightsNet

log = logging.getLogger(__name__)

__all__ = ["EpochStats", "IPInsights", "RowSparseAdam", "discriminator_auc"]

_BETAS = (0.9, 0.999)
_EPS = 1e-8
# glibc mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024


@contextmanager
def _large_buffers_from_heap(enabled: bool = True) -> Iterator[None]:
    """Serve large allocations from the heap and keep freed memory while training (glibc only).

    Each step allocates tens of MB of short-lived tensors. By default glibc maps such blocks fresh
    from the kernel and unmaps them on free, so every step pays page faults on all of it; keeping
    them in the heap removes that cost (about a third of the step time on a small VM). The
    defaults are restored, and freed memory given back, when training ends.
    """
    libc = None
    if enabled and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
            if not (libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 31)):
                libc = None
        except (OSError, AttributeError):
            libc = None
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
            libc.malloc_trim(0)


@dataclass
class EpochStats:
    """One epoch's training figures (``samples`` include negatives)."""

    epoch: int
    loss: float
    accuracy: float
    positives: int
    samples: int
    seconds: float
    samples_per_second: float
    validation_discriminator_auc: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RowSparseAdam:
    """Adam for embedding tables that updates only the rows a step used ("lazy" Adam).

    Moments of untouched rows are left as they are; bias correction uses the global step count.
    Weight decay is L2 added to the gradient of the touched rows.

    :param table: the parameter tensor (rows x dim), updated in place.
    """

    def __init__(self, table: torch.Tensor, lr: float, weight_decay: float = 0.0) -> None:
        self.table = table
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        # zero_() touches every page now, instead of page-faulting during the first epoch.
        self.exp_avg = torch.empty_like(table).zero_()
        self.exp_avg_sq = torch.empty_like(table).zero_()
        self.step_count = torch.zeros((), dtype=torch.float32, device=table.device)
        self._fused = hasattr(torch, "_fused_adam_")
        self._numpy_views = (
            (table.numpy(), self.exp_avg.numpy(), self.exp_avg_sq.numpy()) if table.device.type == "cpu" else None
        )

    def step(self, rows: torch.Tensor, values: torch.Tensor, grad: torch.Tensor) -> None:
        """Update ``table[rows]``; ``values`` are those rows as gathered for the step, ``grad`` their gradient."""
        self.step_count += 1
        m = self.exp_avg.index_select(0, rows)
        v = self.exp_avg_sq.index_select(0, rows)
        w = values
        if self._fused:
            try:
                torch._fused_adam_(
                    [w], [grad], [m], [v], [], [self.step_count],
                    amsgrad=False, lr=self.lr, beta1=_BETAS[0], beta2=_BETAS[1],
                    weight_decay=self.weight_decay, eps=_EPS, maximize=False,
                )
            except (RuntimeError, TypeError, NotImplementedError):  # pragma: no cover - depends on the torch build
                self._fused = False
        if not self._fused:
            t = float(self.step_count)
            g = grad.add(w, alpha=self.weight_decay) if self.weight_decay else grad
            m.lerp_(g, 1 - _BETAS[0])
            v.mul_(_BETAS[1]).addcmul_(g, g, value=1 - _BETAS[1])
            denom = v.sqrt().div_(math.sqrt(1 - _BETAS[1] ** t)).add_(_EPS)
            w.addcdiv_(m, denom, value=-self.lr / (1 - _BETAS[0] ** t))
        if self._numpy_views is not None:
            # NumPy's row assignment is about twice as fast as index_copy_ on CPU.
            r = rows.numpy()
            for dst, src in zip(self._numpy_views, (w, m, v)):
                dst[r] = src.numpy()
        else:
            self.table.index_copy_(0, rows, w)
            self.exp_avg.index_copy_(0, rows, m)
            self.exp_avg_sq.index_copy_(0, rows, v)


@dataclass
class _Batch:
    size: int
    entity_rows: torch.Tensor  # unique entity rows
    entity_inv: torch.Tensor  # (b,) positions in entity_rows
    ip_rows: torch.Tensor  # unique IP table rows
    ip_inv: torch.Tensor  # (b * (1 + R), P) positions in ip_rows
    shifts: list[int]


def _unique_inverse(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    uniq, inv = np.unique(values.ravel(), return_inverse=True)
    return uniq, inv.reshape(values.shape)


def discriminator_auc(net: IPInsightsNet, spec: EncoderSpec, entity_rows: np.ndarray, ips: np.ndarray,
                      negative_ips: np.ndarray, device: torch.device, chunk: int = 1 << 16) -> float:
    """ROC AUC of real pairs against the same entities paired with ``negative_ips``."""
    pos = _score_rows(net, spec, entity_rows, ips, device, chunk)
    neg = _score_rows(net, spec, entity_rows, negative_ips, device, chunk)
    labels = np.r_[np.ones(pos.size, bool), np.zeros(neg.size, bool)]
    return roc_auc(labels, np.r_[pos, neg])


def _score_rows(net: IPInsightsNet, spec: EncoderSpec, entity_rows: np.ndarray, ips: np.ndarray,
                device: torch.device, chunk: int = 1 << 16) -> np.ndarray:
    out = np.empty(ips.shape[0], np.float32)
    with torch.no_grad():
        for s in range(0, ips.shape[0], chunk):
            e = torch.from_numpy(entity_rows[s:s + chunk]).to(device)
            r = torch.from_numpy(spec.prefix_rows(ips[s:s + chunk])).to(device)
            out[s:s + chunk] = net(e, r).float().cpu().numpy()
    return out


def choose_device(requested: str | None = None, *, cuda_available: bool | None = None) -> torch.device:
    """The training device: CUDA when available unless told otherwise, never required.

    ``None`` or ``"auto"`` picks ``cuda`` when a CUDA device is usable, else ``cpu``; ``"cpu"`` is
    always honoured; ``"cuda"``/``"cuda:<n>"`` without a usable CUDA device raises
    :class:`ValueError` naming the request (instead of failing later inside torch).

    :param requested: ``None``, ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:<n>"``.
    :param cuda_available: override of ``torch.cuda.is_available()`` (for tests).
    """
    available = torch.cuda.is_available() if cuda_available is None else bool(cuda_available)
    text = "auto" if requested is None else str(requested).strip().lower()
    if text == "auto":
        return torch.device("cuda" if available else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not available:
            raise ValueError(f"device {requested!r}: CUDA is not available on this machine; use 'cpu' or leave it unset")
        return torch.device(text)
    raise ValueError(f"device {requested!r}: expected None, 'auto', 'cpu', 'cuda' or 'cuda:<n>'")


# Validation pairs scored per epoch for validation:discriminator_auc (a seeded sample of larger sets).
VALIDATION_ROWS = 200_000


class IPInsights:
    """IP Insights estimator: learns entity and IPv4 embeddings whose dot product scores a pair.

    scikit-learn style: the constructor only stores settings, :meth:`fit` learns the attributes
    ending in ``_`` and returns ``self``. Scores follow SageMaker: :meth:`dot_product`, higher means
    more normal. :meth:`decision_function` is its negation (higher = more anomalous, PyOD style);
    thresholds live in :mod:`.calibration`, not here.

    :param hyperparameters: an :class:`IPInsightsHyperparameters`, a mapping of SageMaker names to
        values (strings fine), or ``None`` for the defaults; ``overrides`` are applied on top.
    :param ip_prefix_lengths: IPv4 prefix lengths of the IP encoder.
    :param ip_hash_buckets: rows per hashed prefix table.
    :param seed: seed for initialisation, shuffling, negatives and the hash functions.
    :param device: ``"cpu"``, ``"cuda"`` or ``None`` (CUDA when available).
    :param num_threads: torch CPU threads during :meth:`fit` (``None``: leave torch's setting).
    :param prefetch: prepare the next batches in a helper thread while a step runs.
    :param malloc_tuning: on Linux/glibc, keep large freed blocks in the heap during :meth:`fit`
        (avoids page faults on every step; restored afterwards).
    :param best_epoch: with validation pairs, keep the weights of the epoch with the best
        ``validation:discriminator_auc`` (``epochs`` is then the most to run) instead of the last
        (off by default, as in SageMaker: that AUC, against random IPs, chose a better epoch for
        some data sets and a worse one for others in ``bench/ipinsights.py``).
    :param patience: with ``best_epoch``, stop after this many epochs without a better validation AUC.
    """

    def __init__(self, hyperparameters: IPInsightsHyperparameters | dict[str, Any] | None = None, *,
                 ip_prefix_lengths: Sequence[int] = DEFAULT_PREFIX_LENGTHS, ip_hash_buckets: int = DEFAULT_IP_HASH_BUCKETS,
                 seed: int = 0, device: str | None = None, num_threads: int | None = None, prefetch: bool = True,
                 malloc_tuning: bool = True, best_epoch: bool = False, patience: int = 2, **overrides: Any) -> None:
        self.hyperparameters = hyperparameters
        self.ip_prefix_lengths = tuple(ip_prefix_lengths)
        self.ip_hash_buckets = ip_hash_buckets
        self.seed = seed
        self.device = device
        self.num_threads = num_threads
        self.prefetch = prefetch
        self.malloc_tuning = malloc_tuning
        self.best_epoch = best_epoch
        self.patience = patience
        self.overrides = overrides

    # ------------------------------------------------------------------ settings
    def _resolved_hyperparameters(self) -> IPInsightsHyperparameters:
        hp = self.hyperparameters
        if isinstance(hp, IPInsightsHyperparameters):
            return hp.replace(**self.overrides) if self.overrides else hp
        return IPInsightsHyperparameters.from_dict(hp or {}, **self.overrides)

    def _resolved_device(self) -> torch.device:
        return choose_device(self.device)

    # ------------------------------------------------------------------ fit
    def fit(self, train: Any, validation: Any = None) -> "IPInsights":
        """Train on pairs; see :func:`.data.encode_pairs` for the accepted inputs.

        :param train: training pairs (path, DataFrame, ``(entities, ips)`` or :class:`EncodedPairs`).
        :param validation: optional validation pairs, for ``validation:discriminator_auc`` per epoch.
        """
        hp = self._resolved_hyperparameters()
        spec = EncoderSpec(hp.num_entity_vectors, hp.vector_dim, self.ip_prefix_lengths, self.ip_hash_buckets, hash_seed=int(self.seed))
        device = self._resolved_device()
        previous_threads = torch.get_num_threads()
        if self.num_threads:
            torch.set_num_threads(int(self.num_threads))
        try:
            t0 = time.perf_counter()
            train_pairs = encode_pairs(train, spec.hash_seed)
            val_pairs = encode_pairs(validation, spec.hash_seed) if validation is not None else None
            if len(train_pairs) == 0:
                raise ValueError("training pairs: no valid (entity, IPv4) pair to train on")
            known = train_pairs.unique_entity_hashes()
            log.info(
                "encoded %d training pairs (%d entities)%s in %.1fs",
                len(train_pairs), known.size,
                f" and {len(val_pairs)} validation pairs" if val_pairs is not None else "", time.perf_counter() - t0,
            )
            with _large_buffers_from_heap(self.malloc_tuning and device.type == "cpu"):
                self._fit_encoded(hp, spec, device, train_pairs, val_pairs, known)
        finally:
            if self.num_threads:
                torch.set_num_threads(previous_threads)
        return self

    def _fit_encoded(self, hp: IPInsightsHyperparameters, spec: EncoderSpec, device: torch.device,
                     train: EncodedPairs, val: EncodedPairs | None, known: np.ndarray) -> None:
        seed = int(self.seed)
        torch.manual_seed(seed)
        net = IPInsightsNet(spec, hp.num_ip_encoder_layers, seed=seed).to(device)
        entity_opt = RowSparseAdam(net.entity.data, hp.learning_rate, hp.weight_decay)
        ip_opt = RowSparseAdam(net.ip_table.data, hp.learning_rate, hp.weight_decay)
        dense = list(net.layers.parameters())
        dense_opt = torch.optim.Adam(dense, lr=hp.learning_rate, betas=_BETAS, eps=_EPS, weight_decay=hp.weight_decay) if dense else None

        entity_rows = spec.entity_rows(train.entity_hash)
        ips = train.ip
        n = ips.shape[0]
        perm_rng = np.random.default_rng([seed, 1])
        neg_rng = np.random.default_rng([seed, 2])
        val_data = None
        if val is not None and len(val):
            vrng = np.random.default_rng([seed, 3])
            pick = np.sort(vrng.choice(len(val), VALIDATION_ROWS, replace=False)) if len(val) > VALIDATION_ROWS else slice(None)
            v_ent, v_ip = spec.entity_rows(val.entity_hash[pick]), val.ip[pick]
            val_data = (v_ent, v_ip, vrng.integers(0, 1 << 32, v_ip.shape[0], dtype=np.uint64).astype(np.uint32))

        R, S = hp.random_negative_sampling_rate, hp.shuffled_negative_sampling_rate
        B = hp.mini_batch_size
        P = spec.num_prefixes
        pin = device.type == "cuda"

        def prepare(idx: np.ndarray) -> _Batch:
            b = idx.shape[0]
            ent = entity_rows[idx]
            addr = ips[idx]
            if R:
                addr = np.concatenate([addr, neg_rng.integers(0, 1 << 32, b * R, dtype=np.uint64).astype(np.uint32)])
            shifts = [int(k) for k in neg_rng.integers(1, b, S)] if b > 1 else []
            eu, ei = _unique_inverse(ent)
            iu, ii = _unique_inverse(spec.prefix_rows(addr))
            tensors = [torch.from_numpy(a) for a in (eu, ei, iu, ii)]
            if pin:
                tensors = [t.pin_memory().to(device, non_blocking=True) for t in tensors]
            return _Batch(b, tensors[0], tensors[1], tensors[2], tensors[3], shifts)

        def batches(order: np.ndarray) -> Iterator[_Batch]:
            starts = list(range(0, n, B))
            if not self.prefetch:
                for s in starts:
                    yield prepare(order[s:s + B])
                return
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipinsights-batches") as pool:
                pending = [pool.submit(prepare, order[s:s + B]) for s in starts[:2]]
                for k in range(len(starts)):
                    batch = pending.pop(0).result()
                    if k + 2 < len(starts):
                        pending.append(pool.submit(prepare, order[starts[k + 2]:starts[k + 2] + B]))
                    yield batch

        history: list[EpochStats] = []
        select = bool(getattr(self, "best_epoch", False)) and val_data is not None
        best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (validation AUC, epoch, weights on CPU)
        patience = max(int(getattr(self, "patience", 2)), 1)
        interval = hp.batch_metrics_publish_interval
        log.info(
            "training on %s: %d pairs, %d epochs, mini_batch_size %d, R=%d S=%d, vector_dim %d, %d entity rows, "
            "%d IP rows (prefixes %s), %d encoder layers, %d threads",
            device, n, hp.epochs, B, R, S, hp.vector_dim, spec.num_entity_vectors, spec.ip_table_rows,
            "/".join(str(p) for p in spec.prefix_lengths), hp.num_ip_encoder_layers, torch.get_num_threads(),
        )
        for epoch in range(hp.epochs):
            net.train()
            order = perm_rng.permutation(n)
            t0 = time.perf_counter()
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            samples = 0
            t_mark, samples_mark = t0, 0
            for k, batch in enumerate(batches(order)):
                bl, bc, bs = self._step(net, batch, R, P, entity_opt, ip_opt, dense_opt)
                loss_sum += bl
                correct += bc
                samples += bs
                if (k + 1) % interval == 0:
                    now = time.perf_counter()
                    log.info("epoch %d batch %d: %.0f samples/s", epoch, k + 1, (samples - samples_mark) / max(now - t_mark, 1e-9))
                    t_mark, samples_mark = now, samples
            seconds = time.perf_counter() - t0
            stats = EpochStats(
                epoch=epoch, loss=float(loss_sum) / max(samples, 1), accuracy=float(correct) / max(samples, 1),
                positives=n, samples=samples, seconds=seconds, samples_per_second=samples / max(seconds, 1e-9),
            )
            if val_data is not None:
                net.eval()
                stats.validation_discriminator_auc = discriminator_auc(net, spec, *val_data, device=device)
            history.append(stats)
            log.info(
                "epoch %d/%d: loss %.5f, accuracy %.4f, %d samples (incl. negatives) in %.1fs = %.0f samples/s%s",
                epoch + 1, hp.epochs, stats.loss, stats.accuracy, samples, seconds, stats.samples_per_second,
                "" if stats.validation_discriminator_auc is None else f", validation:discriminator_auc {stats.validation_discriminator_auc:.5f}",
            )
            if select:
                auc = float(stats.validation_discriminator_auc)
                if not np.isfinite(auc):  # a degenerate validation set chooses nothing
                    continue
                if best is None or auc > best[0]:
                    best = (auc, epoch, {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()})
                elif epoch - best[1] >= patience:
                    log.info("validation:discriminator_auc has not improved for %d epochs: stopping after epoch %d",
                             patience, epoch + 1)
                    break
        self.best_epoch_ = None
        if best is not None:
            net.load_state_dict(best[2])
            self.best_epoch_ = best[1]
            if best[1] != history[-1].epoch:
                log.info("keeping the weights of epoch %d (validation:discriminator_auc %.5f), the best of %d run",
                         best[1] + 1, best[0], len(history))
        net.eval()
        self.hyperparameters_ = hp
        self.spec_ = spec
        self.model_ = net
        self.history_ = history
        self.known_entity_hashes_ = known
        self.train_summary_ = train.summary()
        self.validation_summary_ = val.summary() if val is not None else None
        self.device_ = str(device)

    @staticmethod
    def _step(net: IPInsightsNet, batch: _Batch, R: int, P: int, entity_opt: RowSparseAdam, ip_opt: RowSparseAdam,
              dense_opt: torch.optim.Optimizer | None) -> tuple[torch.Tensor, torch.Tensor, int]:
        b = batch.size
        ent_values = net.entity.detach().index_select(0, batch.entity_rows).requires_grad_()
        ip_values = net.ip_table.detach().index_select(0, batch.ip_rows).requires_grad_()
        e = F.embedding(batch.entity_inv, ent_values)
        h = net.ip_layers(F.embedding_bag(batch.ip_inv, ip_values, mode="sum"))
        h_pos = h[:b]
        parts = [(e * h_pos).sum(dim=1)]
        if R:
            parts.append((e.unsqueeze(0) * h[b:].view(R, b, -1)).sum(dim=2).reshape(-1))
        for k in batch.shifts:
            parts.append((e * torch.roll(h_pos, k, dims=0)).sum(dim=1))
        logits = torch.cat(parts)
        labels = torch.zeros_like(logits)
        labels[:b] = 1.0
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        if dense_opt is not None:
            dense_opt.zero_grad(set_to_none=True)
        loss.backward()
        entity_opt.step(batch.entity_rows, ent_values.detach(), ent_values.grad)
        ip_opt.step(batch.ip_rows, ip_values.detach(), ip_values.grad)
        if dense_opt is not None:
            dense_opt.step()
        with torch.no_grad():
            count = logits.shape[0]
            correct = ((logits > 0) == (labels > 0.5)).sum()
        return loss.detach().double() * count, correct, count

    # ------------------------------------------------------------------ results
    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError("IPInsights: call fit() first")

    def to_artifact(self, training_interval: dict[str, str] | None = None, metrics: dict[str, Any] | None = None) -> IPInsightsArtifact:
        """The trained model as NumPy arrays plus metadata (what :func:`.artifact.save_artifact` writes)."""
        self._check_fitted()
        arrays = self.model_.numpy_arrays()
        arrays["known_entity_hashes"] = np.asarray(self.known_entity_hashes_, dtype=np.uint64)
        kept = getattr(self, "best_epoch_", None)
        last = self.history_[kept] if kept is not None else (self.history_[-1] if self.history_ else None)
        train_metrics: dict[str, Any] = {
            "history": [h.to_dict() for h in self.history_],
            "epochs_run": len(self.history_),
            "epoch_kept": (last.epoch + 1) if last is not None else None,
        }
        if last is not None:
            train_metrics.update({
                "train:binary_classification_cross_entropy": last.loss,
                "train:binary_classification_accuracy": last.accuracy,
                "train:samples_per_second": last.samples_per_second,
            })
            if last.validation_discriminator_auc is not None:
                train_metrics["validation:discriminator_auc"] = last.validation_discriminator_auc
        train_metrics.update(metrics or {})
        return IPInsightsArtifact(
            hyperparameters=self.hyperparameters_,
            spec=self.spec_,
            arrays=arrays,
            metadata={
                "row_counts": {
                    "train": self.train_summary_,
                    "validation": self.validation_summary_,
                    "known_entities": int(self.known_entity_hashes_.size),
                },
                "training_interval": training_interval,
                "metrics": train_metrics,
                "seed": int(self.seed),
                "device": self.device_,
            },
        )

    def save(self, out_dir: str | Path, training_interval: dict[str, str] | None = None, metrics: dict[str, Any] | None = None) -> Path:
        """Write ``model.npz`` and ``model.json`` to ``out_dir``; returns the folder."""
        return save_artifact(self.to_artifact(training_interval, metrics), out_dir)

    def scorer(self):  # -> IPInsightsScorer (imported lazily to keep the scorer free of torch)
        """A NumPy :class:`~seclake_ml.ipinsights.scorer.IPInsightsScorer` over the trained arrays."""
        from seclake_ml.ipinsights.scorer import IPInsightsScorer

        return IPInsightsScorer(self.to_artifact())

    def dot_product(self, entities: Sequence[object], ips: Sequence[object]) -> np.ndarray:
        """``dot_product`` per pair (NaN for an invalid IP); higher = more normal."""
        return self.scorer().dot_product(entities, ips)

    def decision_function(self, entities: Sequence[object], ips: Sequence[object]) -> np.ndarray:
        """Anomaly score ``-dot_product`` per pair: higher = more anomalous."""
        return -self.dot_product(entities, ips)

