"""S3Store / S3Objects when S3 hides missing keys behind 403 (moto server on loopback).

S3 answers a GET or HEAD of a missing key with 404 only when the caller may list the bucket. The
roles in include/iam limit s3:ListBucket with an s3:prefix condition, so a missing ledger entry or a
vanished lake object can come back as 403. moto always says 404; ``HiddenMissing`` wraps a real
client of the moto server and turns those answers into the 403s S3 gives such a role (the AWS
boundary only: every call still goes to the server).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .moto_server import MotoServer
from .test_scoring_aws import client

BUCKET = "seclake-store-bucket"
WORK = f"s3://{BUCKET}/ml"


def _denied(operation: str, code: str = "AccessDenied") -> ClientError:
    status = 403
    return ClientError({"Error": {"Code": code, "Message": "Access Denied"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class HiddenMissing:
    """A boto3 S3 client that answers missing keys with 403, as S3 does without bucket listing rights.

    ``deny_list``: ListObjectsV2 is refused too. ``deny_keys``: these (existing) keys are refused.
    """

    def __init__(self, inner: Any, *, deny_list: bool = False, deny_keys: tuple[str, ...] = ()) -> None:
        self.inner = inner
        self.deny_list = deny_list
        self.deny_keys = set(deny_keys)
        self.lists = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _read(self, call: Any, operation: str, code: str, kw: dict[str, Any]) -> Any:
        """``call(**kw)``, answering a denied key, or a missing one, with 403 ``code``."""
        if kw["Key"] in self.deny_keys:
            raise _denied(operation, code)
        try:
            return call(**kw)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey"):
                raise _denied(operation, code) from None
            raise

    def head_object(self, **kw: Any) -> Any:
        return self._read(self.inner.head_object, "HeadObject", "403", kw)

    def get_object(self, **kw: Any) -> Any:
        return self._read(self.inner.get_object, "GetObject", "AccessDenied", kw)

    def download_fileobj(self, bucket: str, key: str, fh: Any) -> None:
        self.head_object(Bucket=bucket, Key=key)  # the transfer manager starts with a HEAD, as boto3 does
        fh.write(self.inner.get_object(Bucket=bucket, Key=key)["Body"].read())

    def list_objects_v2(self, **kw: Any) -> Any:
        self.lists += 1
        if self.deny_list:
            raise _denied("ListObjectsV2")
        return self.inner.list_objects_v2(**kw)


@pytest.fixture
def s3(aws_env: MotoServer) -> Any:
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="ml/scoring/present.json", Body=b'{"a": 1}\n')
    s3.put_object(Bucket=BUCKET, Key="ml/scoring/present.json.bak", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key="aws/VPC_FLOW/1.0/x.parquet", Body=b"PAR1")
    return s3


def test_store_reads_a_403_for_a_missing_key_as_missing(s3: Any) -> None:
    from seclake_ml.scoring.stores import S3Store

    hidden = HiddenMissing(s3)
    store = S3Store(hidden, WORK)
    assert store.exists("scoring/present.json") is True and hidden.lists == 0  # one HEAD, no listing
    assert store.get_json("scoring/present.json") == {"a": 1}
    assert store.exists("scoring/absent.json") is False
    assert store.get_bytes("scoring/absent.json") is None
    # a key that is only a prefix of a present key is still missing
    assert store.exists("scoring/present") is False and store.get_json("scoring/present") is None
    assert hidden.lists == 4  # each 403 was settled with one listing of that exact key


def test_store_raises_a_403_it_cannot_explain(s3: Any) -> None:
    from seclake_ml.scoring.stores import S3Store

    # the listing is refused as well: the 403 is raised, not taken for "missing"
    store = S3Store(HiddenMissing(s3, deny_list=True), WORK)
    with pytest.raises(ClientError) as err:
        store.exists("scoring/absent.json")
    assert err.value.response["Error"]["Code"] == "403"
    with pytest.raises(ClientError):
        store.get_bytes("scoring/absent.json")
    # the key is there but reading it is denied: raised, never read as an empty ledger
    store = S3Store(HiddenMissing(s3, deny_keys=("ml/scoring/present.json",)), WORK)
    with pytest.raises(ClientError) as err:
        store.get_json("scoring/present.json")
    assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_ledger_on_a_prefix_limited_role(s3: Any) -> None:
    from seclake_ml.scoring.lake_object import parse_lake_key
    from seclake_ml.scoring.ledger import Ledger
    from seclake_ml.scoring.stores import S3Store

    key = "aws/VPC_FLOW/1.0/region=us-east-1/accountId=123456789012/eventDay=20240109/a.gz.parquet"
    obj = parse_lake_key(key, bucket="lake")
    ledger = Ledger(S3Store(HiddenMissing(s3), WORK))
    assert ledger.is_done(obj.uri) is False and ledger.entry(obj.uri) is None
    ledger.mark(obj, status="scored", batch_id="b1", model_version="m1", findings=2)
    assert ledger.is_done(obj.uri) is True and ledger.entry(obj.uri)["findings"] == 2
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=f"ml/{Ledger.entry_key(obj.uri)}")["Body"].read())
    assert stored["status"] == "scored"


def test_lake_object_gone_is_quarantined_only_when_a_listing_shows_it_gone(s3: Any, tmp_path: Any) -> None:
    from seclake_ml.scoring.objects import UnreadableObject
    from seclake_ml.scoring.stores import S3Objects

    objects = S3Objects(HiddenMissing(s3), tmp_dir=str(tmp_path))
    with objects.open(BUCKET, "aws/VPC_FLOW/1.0/x.parquet") as path:
        assert open(path, "rb").read() == b"PAR1"
    with pytest.raises(UnreadableObject, match="does not exist"), objects.open(BUCKET, "aws/VPC_FLOW/1.0/gone.parquet"):
        pass
    # no listing rights on the lake bucket: cannot tell gone from denied -> raised (failed, retried)
    objects = S3Objects(HiddenMissing(s3, deny_list=True), tmp_dir=str(tmp_path))
    with pytest.raises(ClientError), objects.open(BUCKET, "aws/VPC_FLOW/1.0/gone.parquet"):
        pass
    assert list(tmp_path.iterdir()) == []  # temporary downloads are removed on every path
