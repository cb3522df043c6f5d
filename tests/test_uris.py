"""The one reading of S3 URIs and local locations (:mod:`seclake_ml.uris`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from seclake_ml.uris import is_bucket_name, is_s3, join_location, s3_prefix, split_s3_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/key.json", ("bucket", "key.json")),
        ("s3://my.bucket-1/a/b/c.parquet", ("my.bucket-1", "a/b/c.parquet")),
        ("s3://bucket/prefix/", ("bucket", "prefix/")),
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://abc/eventDay=20240101/x=1.parquet", ("abc", "eventDay=20240101/x=1.parquet")),
        ("s3://" + "a" * 63 + "/k", ("a" * 63, "k")),
    ],
)
def test_split_good_uris(uri: str, expected: tuple[str, str]) -> None:
    assert split_s3_uri(uri) == expected
    assert is_s3(uri)


@pytest.mark.parametrize(
    "uri",
    [
        None, 42, b"s3://bucket/key", "", "/tmp/file", "bucket/key", "S3://bucket/key", "s3:/bucket/key",
        "https://bucket.s3.amazonaws.com/key", "s3://", "s3:///key", "s3://ab/key", "s3://" + "a" * 64 + "/k",
        "s3://Bucket/key", "s3://bucket_name/key", "s3://-bucket/key", "s3://bucket-/key", "s3://my..bucket/k",
        "s3://bucket//key", "s3://bucket/a//b", "s3://bucket/../other", "s3://bucket/a/../b", "s3://bucket/a/..",
        "s3://bucket//",
    ],
)
def test_split_bad_uris_name_the_argument_and_the_value(uri: object) -> None:
    with pytest.raises(ValueError) as err:
        split_s3_uri(uri, "output_uri")
    assert str(err.value).startswith("output_uri: got ") and repr(uri)[:50] in str(err.value)


def test_default_name_and_required_key() -> None:
    with pytest.raises(ValueError, match=r"^uri: got 'x'"):
        split_s3_uri("x")
    for uri in ("s3://bucket", "s3://bucket/"):
        with pytest.raises(ValueError, match="input_uri: .*non-empty key"):
            split_s3_uri(uri, "input_uri", require_key=True)
    assert split_s3_uri("s3://bucket/k", require_key=True) == ("bucket", "k")


def test_long_values_are_shortened_in_errors() -> None:
    with pytest.raises(ValueError) as err:
        split_s3_uri("s3://" + "B" * 10_000)
    assert len(str(err.value)) < 500


def test_s3_prefix_adds_the_trailing_slash() -> None:
    assert s3_prefix("s3://bucket/pairs") == ("bucket", "pairs/")
    assert s3_prefix("s3://bucket/pairs/") == ("bucket", "pairs/")
    assert s3_prefix("s3://bucket/a/b", "pairs_uris") == ("bucket", "a/b/")
    assert s3_prefix("s3://bucket", allow_root=True) == ("bucket", "")
    assert s3_prefix("s3://bucket/", allow_root=True) == ("bucket", "")
    with pytest.raises(ValueError, match="output_uri: .*non-empty key"):
        s3_prefix("s3://bucket/", "output_uri")
    with pytest.raises(ValueError, match="output_uri"):
        s3_prefix("s3://bucket/a//", "output_uri")


def test_is_s3_and_bucket_names() -> None:
    assert not is_s3("/tmp/x") and not is_s3(None) and not is_s3(Path("/tmp")) and not is_s3("s3:/x")
    assert is_bucket_name("abc") and is_bucket_name("a.b-c") and is_bucket_name("1" * 63)
    for bad in ("ab", "a" * 64, "ABC", "a_b", ".ab", "ab.", "a..b", None, ""):
        assert not is_bucket_name(bad)


def test_join_s3_locations() -> None:
    assert join_location("s3://bucket/work", "pairs", "x.json") == "s3://bucket/work/pairs/x.json"
    assert join_location("s3://bucket/work/", "pairs") == "s3://bucket/work/pairs"
    assert join_location("s3://bucket", "a/b", "c") == "s3://bucket/a/b/c"
    assert join_location("s3://bucket/work") == "s3://bucket/work"


def test_join_local_locations(tmp_path: Path) -> None:
    assert join_location(str(tmp_path), "pairs", "x.parquet") == str(tmp_path / "pairs" / "x.parquet")
    assert join_location(str(tmp_path) + "/", "a/b") == str(tmp_path / "a" / "b")
    assert join_location("relative", "x") == str(Path("relative") / "x")


@pytest.mark.parametrize("part", ["", "..", "a/../b", "/etc", "a//b", "a/", None, 3])
def test_join_refuses_parts_that_leave_the_base(tmp_path: Path, part: object) -> None:
    for base in ("s3://bucket/work", str(tmp_path)):
        with pytest.raises(ValueError, match=r"^part: got "):
            join_location(base, "ok", part)  # type: ignore[arg-type]


@pytest.mark.parametrize("base", ["", None])
def test_join_refuses_an_empty_base(base: object) -> None:
    with pytest.raises(ValueError, match=r"^base: got "):
        join_location(base, "x")  # type: ignore[arg-type]
