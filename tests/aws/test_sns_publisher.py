"""SnsPublisher against SNS on the moto server: PublishBatch limits, partial failures, give-up."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .moto_server import MotoServer
from .test_scoring_aws import client


def _record(i: int, message_len: int = 50) -> dict[str, Any]:
    return {"finding_info": {"uid": f"uid-{i:03d}", "title": "unusual pair"}, "severity": "High", "severity_id": 4,
            "time": 1_700_000_000_000 + i, "message": "m" * message_len, "unmapped": {"entity": "i-1", "ip": "1.2.3.4"}}


@pytest.fixture
def topic(aws_env: MotoServer) -> tuple[str, str]:
    sns, sqs = client("sns"), client("sqs")
    arn = sns.create_topic(Name="findings")["TopicArn"]
    url = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn, Attributes={"RawMessageDelivery": "true"})
    return arn, url


def _received(url: str) -> list[dict[str, Any]]:
    sqs, out = client("sqs"), []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return out
        out += [json.loads(m["Body"]) for m in got]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(got)])


def test_alerts_go_out_ten_per_request(topic: tuple[str, str]) -> None:
    from seclake_ml.scoring.stores import SnsPublisher

    arn, url = topic
    pub = SnsPublisher(client("sns"), arn)
    assert pub.publish([_record(i) for i in range(25)]) == 25
    assert pub.requests == 3
    assert sorted(a["uid"] for a in _received(url)) == [f"uid-{i:03d}" for i in range(25)]
    assert pub.publish([]) == 0 and pub.requests == 3


def test_requests_stay_under_the_payload_limit(topic: tuple[str, str]) -> None:
    from seclake_ml.scoring.stores import SnsPublisher

    arn, url = topic
    sizes: list[int] = []
    sns = client("sns")

    class Measured:
        def publish_batch(self, **kw: Any) -> Any:
            sizes.append(sum(len(e["Message"].encode()) + len(e["Subject"]) for e in kw["PublishBatchRequestEntries"]))
            return sns.publish_batch(**kw)

    pub = SnsPublisher(Measured(), arn)
    assert pub.publish([_record(i, message_len=60_000) for i in range(9)]) == 9  # ~60 KB each
    assert all(s <= SnsPublisher.MAX_REQUEST_BYTES for s in sizes) and len(sizes) == 3
    # a message too long for SNS is cut (the finding itself is in the findings file)
    assert pub.publish([_record(99, message_len=400_000)]) == 1
    got = _received(url)
    assert len(got) == 10 and len(next(a for a in got if a["uid"] == "uid-099")["message"]) == 1000


def test_refused_entries_are_sent_again_and_a_lasting_refusal_raises(topic: tuple[str, str]) -> None:
    from seclake_ml.scoring.stores import SnsPublisher

    arn, url = topic
    sns = client("sns")

    class Flaky:
        """Refuses the given entry ids for the first ``rounds`` requests that carry them."""

        def __init__(self, refuse: set[str], rounds: int) -> None:
            self.refuse, self.rounds, self.calls = refuse, rounds, 0

        def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[dict]) -> Any:  # noqa: N803
            self.calls += 1
            bad = [e for e in PublishBatchRequestEntries if e["Id"] in self.refuse and self.rounds > 0]
            good = [e for e in PublishBatchRequestEntries if e not in bad]
            if bad:
                self.rounds -= 1
            resp = sns.publish_batch(TopicArn=TopicArn, PublishBatchRequestEntries=good) if good else {}
            return {"Successful": resp.get("Successful", []), "Failed": [
                {"Id": e["Id"], "Code": "InternalError", "Message": "try again", "SenderFault": False} for e in bad]}

    flaky = Flaky({"f3", "f7"}, rounds=2)
    assert SnsPublisher(flaky, arn, base_delay=0.0).publish([_record(i) for i in range(10)]) == 10
    assert flaky.calls == 3
    assert sorted(a["uid"] for a in _received(url)) == [f"uid-{i:03d}" for i in range(10)]  # each once

    never = Flaky({"f1"}, rounds=10**6)
    with pytest.raises(RuntimeError, match=r"SNS refused 1 of 2 alerts after 3 rounds: InternalError: try again"):
        SnsPublisher(never, arn, attempts=3, base_delay=0.0).publish([_record(0), _record(1)])
    assert never.calls == 3
