"""Reading ahead of scoring: ordered results from several reading threads, bounded, stoppable; and the
engine gives the same outcomes and findings whether it reads ahead or in turn."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from seclake_ml.scoring import engine, service
from seclake_ml.scoring.findings_parquet import read_findings
from seclake_ml.scoring.lake_object import LakeObject
from seclake_ml.scoring.ledger import Ledger
from seclake_ml.scoring.readahead import ReadAhead
from seclake_ml.scoring.scorers import LocalScorer
from seclake_ml.scoring.stores import LocalStore, open_local_object

from .conftest import drop_day, make_config


def _live_readers() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ra-test") or t.name.startswith("seclake-score-read")]


# ------------------------------------------------------------------------------------------ ReadAhead
def test_items_come_in_job_order_whatever_order_the_workers_finish() -> None:
    def read(job: int, worker: int):
        time.sleep((5 - job) * 0.01)  # later jobs finish first
        for k in range(3):
            yield job * 10 + k

    with ReadAhead(range(6), read, workers=3, depth=1, name="ra-test") as ahead:
        assert list(ahead) == [j * 10 + k for j in range(6) for k in range(3)]
    assert _live_readers() == []


@pytest.mark.parametrize("workers,depth", [(1, 1), (2, 2), (4, 3)])
def test_the_readers_stay_a_bounded_number_of_items_ahead(workers: int, depth: int) -> None:
    produced = consumed = 0
    most_ahead = 0
    lock = threading.Lock()

    def read(job: int, worker: int):
        nonlocal produced
        for k in range(job % 3 * 4):  # jobs of 0, 4 and 8 items: short jobs finish while others wait
            with lock:
                produced += 1
            yield (job, k)

    with ReadAhead(range(12), read, workers=workers, depth=depth, name="ra-test") as ahead:
        for item in ahead:
            time.sleep(0.002)  # a slow consumer: the readers fill their queues
            consumed += 1
            with lock:
                most_ahead = max(most_ahead, produced - consumed)
    assert consumed == sum(j % 3 * 4 for j in range(12))
    # the consumer's job and ``workers`` jobs past it: ``depth`` queued and one waiting to be, each
    assert 0 < most_ahead <= (workers + 1) * (depth + 1)


@pytest.mark.parametrize("workers,depth", [(1, 1), (2, 1), (3, 2)])
def test_readers_of_one_item_jobs_stay_within_their_window(workers: int, depth: int) -> None:
    """One-chunk objects (the usual lake object): a reader finishes a job without blocking, so only
    the window of jobs past the consumer's keeps the batch from being read into memory."""
    produced = consumed = most_ahead = 0
    lock = threading.Lock()

    def read(job: int, worker: int):
        nonlocal produced
        with lock:
            produced += 1
        yield job

    with ReadAhead(range(40), read, workers=workers, depth=depth, name="ra-test") as ahead:
        for item in ahead:
            time.sleep(0.003)
            consumed += 1
            with lock:
                most_ahead = max(most_ahead, produced - consumed)
    assert consumed == 40
    assert 0 < most_ahead <= (workers + 1) * (depth + 1)
    assert most_ahead <= workers + 2  # one item per job: the consumer's job and ``workers`` past it


def test_a_reading_error_is_raised_after_the_items_read_before_it() -> None:
    def read(job: int, worker: int):
        yield f"{job}a"
        if job == 2:
            raise OSError(f"disk gone while reading job {job}")
        yield f"{job}b"

    got: list[str] = []
    with ReadAhead(range(5), read, workers=2, name="ra-test") as ahead:
        with pytest.raises(OSError, match="disk gone while reading job 2"):
            for item in ahead:
                got.append(item)
    assert got == ["0a", "0b", "1a", "1b", "2a"]
    assert _live_readers() == []


def test_closing_early_interrupts_a_blocked_reader_and_runs_every_clean_up() -> None:
    released = threading.Event()
    cleaned: list[int] = []

    def read(job: int, worker: int):
        try:
            yield job
            if job == 1:
                released.wait(30)  # a long call that only the interrupt ends
            yield job
        finally:
            cleaned.append(job)

    ahead = ReadAhead(range(4), read, workers=2, depth=1, name="ra-test", interrupt=released.set)
    it = iter(ahead)
    assert next(it) == 0
    time.sleep(0.2)  # job 1's reader is now blocked in its long call
    t0 = time.perf_counter()
    ahead.close()
    assert time.perf_counter() - t0 < 5 and released.is_set()
    assert sorted(cleaned) == sorted(set(cleaned)) and {0, 1} <= set(cleaned)
    assert _live_readers() == []
    assert list(it) == []  # a closed reader gives nothing more


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_workers_and_depth_are_checked(bad: Any) -> None:
    with pytest.raises(ValueError, match="workers"):
        ReadAhead([1], lambda j, w: iter([j]), workers=bad)
    with pytest.raises(ValueError, match="depth"):
        ReadAhead([1], lambda j, w: iter([j]), depth=bad)


# ------------------------------------------------------------------------------------------ the engine
def _batch(site: dict) -> tuple[Any, list[LakeObject]]:
    """The site's objects of a new day plus damaged ones, as one batch."""
    cfg = make_config(site)
    ledger = Ledger(service.work_store(cfg))
    assert service.find_new_local_batch(cfg, ledger) is None  # adopts the history
    drop_day(site, date(2024, 3, 8))
    vdir = next((Path(site["lake"]) / "aws" / "VPC_FLOW" / "1.0").glob("region=*/accountId=*/eventDay=20240308"))
    good = sorted(vdir.glob("*.parquet"))[0]
    (vdir / "corrupt.parquet").write_bytes(b"PAR1 not parquet" * 8)
    pq.write_table(pq.read_table(good).slice(0, 0), vdir / "zero-rows.parquet")
    manifest = service.find_new_local_batch(cfg, ledger)
    return cfg, [LakeObject.from_dict(d) for d in manifest["objects"]]


def _score(site: dict, cfg: Any, objects: list[LakeObject], out: Path, **kwargs: Any) -> engine.BatchResult:
    model = service.active_model(cfg)
    return engine.score_objects(
        objects, source_views=cfg.source_views(), open_object=lambda o: open_local_object(site["lake"], o.key),
        scorer=kwargs.pop("scorer", None) or LocalScorer(model.model_dir), model=model,
        sink=LocalStore(out), chunk_rows=kwargs.pop("chunk_rows", 250_000), **kwargs)


def _outcomes(result: engine.BatchResult) -> list[tuple]:
    return [(o.key, o.status, o.reason, o.rows, o.pairs, o.distinct_pairs, o.unknown_entity, o.findings,
             sorted(o.dropped.items()), sorted(o.severity.items())) for o in result.objects]


def _findings(root: Path) -> list[str]:
    """The findings under ``root``, without the times of the scoring run itself."""
    import json

    def timeless(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: timeless(v) for k, v in value.items() if k not in ("created_time", "processed_time", "time")}
        return [timeless(v) for v in value] if isinstance(value, list) else value

    return sorted(json.dumps(timeless(r), sort_keys=True, default=str) for r in read_findings(root))


def test_reading_ahead_gives_the_outcomes_and_findings_of_reading_in_turn(site: dict, tmp_path: Path) -> None:
    cfg, objects = _batch(site)
    in_turn = _score(site, cfg, objects, tmp_path / "in-turn", read_ahead=0)
    for workers in (1, 3):
        ahead = _score(site, cfg, objects, tmp_path / f"ahead-{workers}", read_ahead=workers, chunk_rows=40)
        once = _score(site, cfg, objects, tmp_path / f"in-turn-{workers}", read_ahead=0, chunk_rows=40)
        assert _outcomes(ahead) == _outcomes(once)
        assert _findings(tmp_path / f"ahead-{workers}") == _findings(tmp_path / f"in-turn-{workers}")
    assert _outcomes(ahead) == _outcomes(in_turn)  # and chunking changes nothing either
    for o in in_turn.objects:  # every row of a scored object is counted once, whatever its views
        if o.status == "scored":
            assert o.rows == pq.ParquetFile(Path(site["lake"]) / o.key).metadata.num_rows, o.key
    statuses = {o.key.rsplit("/", 1)[-1]: o.status for o in in_turn.objects}
    assert statuses.pop("corrupt.parquet") == "quarantined" and statuses.pop("zero-rows.parquet") == "quarantined"
    assert set(statuses.values()) == {"scored"} and sum(o.findings for o in in_turn.objects) > 0
    assert _live_readers() == []


class _FailsOnce:
    """A scorer whose ``fail_on``-th call fails, as an endpoint can; ``when`` runs at the failure."""

    def __init__(self, inner: LocalScorer, fail_on: int, when: Any = None) -> None:
        self.inner, self.fail_on, self.when, self.calls = inner, fail_on, when, 0

    def score(self, entities: list[str], ips: list[str]) -> Any:
        self.calls += 1
        if self.calls == self.fail_on:
            if self.when:
                self.when()
            raise ConnectionError("endpoint unreachable")
        return self.inner.score(entities, ips)


def test_an_object_failing_while_scored_is_left_for_a_retry_and_not_read_further(
        site: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, objects = _batch(site)
    objects = [o for o in objects if not o.key.endswith(("corrupt.parquet", "zero-rows.parquet"))]
    chunks: dict[str, int] = {}
    real = engine.iter_view_chunks

    def counting(con, pf, obj, *args, **kwargs):
        for chunk in real(con, pf, obj, *args, **kwargs):
            chunks[obj.key] = chunks.get(obj.key, 0) + 1
            yield chunk

    monkeypatch.setattr(engine, "iter_view_chunks", counting)
    whole = _score(site, cfg, objects, tmp_path / "g", read_ahead=0, chunk_rows=10)
    full = max(whole.objects, key=lambda o: o.distinct_pairs)  # the object of most chunks goes first
    first = full.key
    objects.sort(key=lambda o: o.key != first)
    all_chunks = chunks.pop(first)
    chunks.clear()
    at_failure: list[int] = []
    scorer = _FailsOnce(LocalScorer(service.active_model(cfg).model_dir), fail_on=1,
                        when=lambda: (time.sleep(0.3), at_failure.append(chunks[first])))
    res = _score(site, cfg, objects, tmp_path / "f", scorer=scorer, read_ahead=2, chunk_rows=10)
    failed = res.objects[0]
    assert failed.status == "failed" and failed.reason == "ConnectionError: endpoint unreachable"
    assert [o.status for o in res.objects[1:]] == ["scored"] * (len(objects) - 1)
    assert full.status == "scored" and all_chunks > at_failure[0] + engine.READ_DEPTH + 2
    # reading that object stopped at the failure: what was already read ahead of it, and one more
    assert chunks[first] <= at_failure[0] + 1
    assert _live_readers() == []


def test_a_batch_stopped_mid_way_stops_its_readers_and_closes_every_object(site: dict, tmp_path: Path) -> None:
    cfg, objects = _batch(site)
    opened: list[str] = []
    closed: list[str] = []

    @contextmanager
    def tracked(obj: LakeObject):
        opened.append(obj.key)
        try:
            with open_local_object(site["lake"], obj.key) as path:
                yield path
        finally:
            closed.append(obj.key)

    class Stop:
        def publish(self, records: list[dict]) -> int:
            raise KeyboardInterrupt  # the worker is being shut down

    model = service.active_model(cfg)
    with pytest.raises(KeyboardInterrupt):
        engine.score_objects(objects, source_views=cfg.source_views(), open_object=tracked,
                             scorer=LocalScorer(model.model_dir), model=model, sink=LocalStore(tmp_path / "s"),
                             publisher=Stop(), min_severity_to_publish=1, read_ahead=3)
    assert opened and sorted(opened) == sorted(closed) and len(opened) < len(objects)
    assert _live_readers() == []


def test_a_repeated_object_is_scored_again_after_its_first_copy_failed(site: dict, tmp_path: Path) -> None:
    cfg, objects = _batch(site)
    obj = next(o for o in objects if o.key.endswith(".gz.parquet"))
    done: list[tuple[str, str, int]] = []
    for read_ahead in (0, 2):
        done.clear()
        scorer = _FailsOnce(LocalScorer(service.active_model(cfg).model_dir), fail_on=1)
        res = _score(site, cfg, [obj, obj], tmp_path / f"r{read_ahead}", scorer=scorer, read_ahead=read_ahead,
                     on_object_done=lambda o, out: done.append((o.key, out.status, out.pairs)))
        first, second = res.objects
        assert first.status == "failed" and second.status == "scored"
        assert second.pairs > 0 and second.rows == pq.ParquetFile(Path(site["lake"]) / obj.key).metadata.num_rows
        assert done == [(obj.key, "scored", second.pairs)]


def test_an_object_no_enabled_view_reads_is_quarantined_quietly(site: dict, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    cfg, objects = _batch(site)
    vpc = [o for o in objects if "/VPC_FLOW/" in o.key and o.key.endswith(".gz.parquet")][:2]
    views = [(s, v) for s, v in cfg.source_views() if s != "vpc_flow"]
    model = service.active_model(cfg)
    with caplog.at_level("ERROR", logger="seclake_ml.scoring.engine"):
        res = engine.score_objects(vpc, source_views=views, open_object=lambda o: open_local_object(site["lake"], o.key),
                                   scorer=LocalScorer(model.model_dir), model=model, sink=LocalStore(tmp_path / "q"))
    assert [(o.status, o.reason) for o in res.objects] == [("quarantined", "no enabled source view reads VPC_FLOW")] * 2
    assert not [r for r in caplog.records if r.name == "seclake_ml.scoring.engine" and r.levelname == "ERROR"]


def test_stopping_a_batch_does_not_start_reading_an_object_still_downloading(site: dict, tmp_path: Path) -> None:
    cfg, objects = _batch(site)
    scanned: list[float] = []
    downloads: list[float] = []
    stopped: list[float] = []
    real = engine.open_parquet

    @contextmanager
    def slow(obj: LakeObject):
        downloads.append(time.perf_counter())
        time.sleep(0.6)  # a download
        with open_local_object(site["lake"], obj.key) as path:
            yield path

    def opening(path: str):
        scanned.append(time.perf_counter())
        return real(path)

    class Stop:
        def publish(self, records: list[dict]) -> int:
            stopped.append(time.perf_counter())
            raise KeyboardInterrupt

    model = service.active_model(cfg)
    mp = pytest.MonkeyPatch()
    mp.setattr(engine, "open_parquet", opening)
    try:
        good = [o for o in objects if not o.key.endswith(("corrupt.parquet", "zero-rows.parquet"))]
        with pytest.raises(KeyboardInterrupt):
            engine.score_objects(good, source_views=cfg.source_views(), open_object=slow,
                                 scorer=LocalScorer(model.model_dir), model=model, sink=LocalStore(tmp_path / "s"),
                                 publisher=Stop(), read_ahead=2)
        returned = time.perf_counter()
    finally:
        mp.undo()
    # a download under way when the batch stopped finished, but its object was never opened
    assert any(d < stopped[0] < d + 0.6 for d in downloads)
    assert scanned and all(t < stopped[0] for t in scanned)
    assert returned - stopped[0] < 0.6 + 0.5 and _live_readers() == []


@pytest.mark.parametrize("read_ahead", [0, 2])
def test_the_deadline_stops_downloads_too(site: dict, tmp_path: Path, read_ahead: int) -> None:
    cfg, objects = _batch(site)
    good = [o for o in objects if not o.key.endswith(("corrupt.parquet", "zero-rows.parquet"))]
    model = service.active_model(cfg)
    downloads: list[float] = []
    passed: list[float] = []  # when the deadline passed

    @contextmanager
    def download(obj: LakeObject):
        downloads.append(time.perf_counter())
        time.sleep(0.05)
        with open_local_object(site["lake"], obj.key) as path:
            yield path

    def done(obj: LakeObject, out: Any) -> None:
        passed.append(time.perf_counter())  # the first object scored uses up the time

    def score(keep_going: Any) -> engine.BatchResult:
        downloads.clear()
        passed.clear()
        return engine.score_objects(good, source_views=cfg.source_views(), open_object=download,
                                    scorer=LocalScorer(model.model_dir), model=model, sink=LocalStore(tmp_path / "d"),
                                    on_object_done=done, read_ahead=read_ahead, keep_going=keep_going)

    assert score(lambda: False).objects == [] and downloads == []
    res = score(lambda: not passed)
    assert [o.status for o in res.objects] == ["scored"]
    # downloads under way when the time ran out finish; none starts after it
    assert passed and all(t < passed[0] for t in downloads) and len(downloads) <= 1 + read_ahead
    assert _live_readers() == []


def test_quarantined_objects_are_reported_as_they_happen(site: dict, tmp_path: Path) -> None:
    cfg, objects = _batch(site)
    model = service.active_model(cfg)
    events: list[tuple[str, str]] = []
    res = engine.score_objects(
        objects, source_views=cfg.source_views(), open_object=lambda o: open_local_object(site["lake"], o.key),
        scorer=LocalScorer(model.model_dir), model=model, sink=LocalStore(tmp_path / "q"), read_ahead=2,
        on_object_done=lambda o, out: events.append(("done", o.key)),
        on_quarantined=lambda o, out: events.append(("quarantined", o.key)))
    assert events == [("done" if o.status == "scored" else o.status, o.key) for o in res.objects]
    assert sorted(k.rsplit("/", 1)[-1] for kind, k in events if kind == "quarantined") == ["corrupt.parquet",
                                                                                          "zero-rows.parquet"]
