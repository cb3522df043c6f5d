"""NumPy scorer: SageMaker request/response formats, invalid and unknown inputs, no torch import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seclake_ml.ipinsights.scorer import RequestError

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def test_importing_and_using_the_scorer_does_not_import_torch(model_dir):
    code = (
        "import sys\n"
        "from seclake_ml.ipinsights.scorer import IPInsightsScorer\n"
        "from seclake_ml.ipinsights import calibration, artifact, data\n"
        f"s = IPInsightsScorer.load({str(model_dir)!r})\n"
        "print(s.handle_request('user-0001,1.2.3.4', 'text/csv', 'application/json')[0].decode())\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(PLUGINS)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('{"predictions": [{"dot_product": ')


def _known_pair(world):
    return world.train_entities[0], world.train_ips[0]


def test_csv_request_json_response(scorer, world):
    e, ip = _known_pair(world)
    body = f"{e},{ip}\n{e}, {ip}\n\n".encode()  # the docs' example has a space after the comma
    payload, ctype = scorer.handle_request(body, "text/csv", "application/json")
    assert ctype == "application/json"
    doc = json.loads(payload)
    assert list(doc) == ["predictions"] and len(doc["predictions"]) == 2
    assert all(list(p) == ["dot_product"] for p in doc["predictions"])
    expected = float(scorer.dot_product([e], [ip])[0])
    assert doc["predictions"][0]["dot_product"] == pytest.approx(expected, rel=1e-6)
    assert doc["predictions"][1]["dot_product"] == doc["predictions"][0]["dot_product"]


def test_json_request_both_instance_shapes(scorer, world):
    e, ip = _known_pair(world)
    body = json.dumps({"instances": [{"data": {"features": {"values": [e, ip]}}}, {"features": [e, ip]}]})
    doc = json.loads(scorer.handle_request(body, "application/json", None)[0])
    a, b = (p["dot_product"] for p in doc["predictions"])
    assert a == b and isinstance(a, float)


def test_jsonlines_request_and_response(scorer, world):
    e, ip = _known_pair(world)
    body = json.dumps({"features": [e, ip]}) + "\n" + json.dumps({"data": {"features": {"values": [e, "10.0.0.1"]}}}) + "\n"
    payload, ctype = scorer.handle_request(body, "application/jsonlines", "application/jsonlines")
    assert ctype == "application/jsonlines"
    lines = payload.decode().splitlines()
    assert len(lines) == 2 and all(list(json.loads(ln)) == ["dot_product"] for ln in lines)


def test_verbose_adds_embeddings_whose_dot_product_is_the_score(scorer, world):
    e, ip = _known_pair(world)
    payload, ctype = scorer.handle_request(f"{e},{ip}", "text/csv", "application/json; verbose=True")
    assert ctype == "application/json; verbose=True"
    p = json.loads(payload)["predictions"][0]
    assert len(p["entity_embedding"]) == len(p["ip_embedding"]) == scorer.vector_dim
    assert np.dot(p["entity_embedding"], p["ip_embedding"]) == pytest.approx(p["dot_product"], rel=1e-4, abs=1e-4)
    assert p["known_entity"] is True and "error" not in p


def test_invalid_ips_give_null_scores_without_failing_the_batch(scorer, world):
    e, ip = _known_pair(world)
    body = f"{e},{ip}\n{e},2001:db8::1\n{e},-\n{e},300.1.1.1\n{e},010.0.0.1\nonly-one-field\n,{ip}\n"
    plain = json.loads(scorer.handle_request(body, "text/csv", "application/json")[0])["predictions"]
    assert [p["dot_product"] is None for p in plain] == [False, True, True, True, True, True, True]
    assert all(list(p) == ["dot_product"] for p in plain)
    verbose = json.loads(scorer.handle_request(body, "text/csv", "application/json;verbose=true")[0])["predictions"]
    assert "error" not in verbose[0]
    assert verbose[1]["error"] == "invalid IPv4 address: '2001:db8::1'" and verbose[1]["ip_embedding"] is None
    assert verbose[1]["entity_embedding"] is not None
    assert verbose[5]["error"].startswith("expected 2 fields") and verbose[6]["error"] == "missing entity"
    arrays = scorer.dot_product([e, e], [ip, "not-an-ip"])
    assert np.isfinite(arrays[0]) and np.isnan(arrays[1])


def test_unknown_entities_are_scored_and_flagged(scorer, world):
    _, ip = _known_pair(world)
    doc = json.loads(scorer.handle_request(f"never-seen-entity,{ip}", "text/csv", "application/jsonlines; verbose=True")[0])
    assert isinstance(doc["dot_product"], float) and doc["known_entity"] is False
    assert scorer.known_entities(["never-seen-entity", world.train_entities[0]]).tolist() == [False, True]


def test_malformed_json_lines_are_row_errors(scorer, world):
    e, ip = _known_pair(world)
    body = json.dumps({"features": [e, ip]}) + "\n{not json\n" + json.dumps({"features": [e]}) + "\n"
    lines = [json.loads(x) for x in scorer.handle_request(body, "application/jsonlines", "application/jsonlines;verbose=True")[0].splitlines()]
    assert lines[0]["dot_product"] is not None
    assert lines[1]["dot_product"] is None and "not valid JSON" in lines[1]["error"]
    assert lines[2]["dot_product"] is None and "expected two features" in lines[2]["error"]


@pytest.mark.parametrize("body, ctype, accept, status", [
    ("a,1.2.3.4", "text/plain", None, 415),
    ("a,1.2.3.4", "text/csv", "text/csv", 406),
    ("{not json", "application/json", None, 400),
    ('{"rows": []}', "application/json", None, 400),
    (b"\xff\xfe", "text/csv", None, 400),
])
def test_whole_request_errors_carry_a_status(scorer, body, ctype, accept, status):
    with pytest.raises(RequestError) as info:
        scorer.handle_request(body, ctype, accept)
    assert info.value.status == status


def test_empty_request_gives_empty_predictions(scorer):
    assert scorer.handle_request("", "text/csv", "application/json")[0] == b'{"predictions": []}'


def test_pre_parsed_path_matches_the_string_path(scorer, world):
    rows, known = scorer.encode_entities(world.test_entities)
    addr, valid = scorer.encode_ips(world.test_ips)
    assert known.all() and valid.all()
    np.testing.assert_array_equal(scorer.dot_product_encoded(rows, addr), scorer.dot_product(world.test_entities, world.test_ips))
    np.testing.assert_array_equal(scorer.decision_function(world.test_entities[:5], world.test_ips[:5]),
                                  -scorer.dot_product(world.test_entities[:5], world.test_ips[:5]))
