"""The workspace app behind Airflow's real auth wiring: SimpleAuthManager JWTs (made by the auth manager
itself, ``generate_jwt``) checked by Airflow's ``get_user`` and ``is_authorized_dag``.

The app is mounted under ``/seclake-ml`` in a bare FastAPI parent, as the api-server mounts it. The only
stand-in is ``RevokedToken.is_revoked`` (a metadata-DB lookup); ``test_browser.py`` runs the whole
api-server with its database.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("airflow.api_fastapi.auth.managers.simple.simple_auth_manager")

from fastapi import FastAPI  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from tests.workspace.seed import HOSTILE_ENTITY, seed_config, seed_findings  # noqa: E402

SIMPLE = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
ORIGIN = "http://testserver"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", SIMPLE)
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "workspace-test-jwt-secret-" + "0123456789abcdef" * 3)
    monkeypatch.setenv("AIRFLOW__API__SECRET_KEY", "workspace-test-api-secret")
    monkeypatch.setenv("AIRFLOW__CORE__MULTI_TEAM", "False")
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
    from airflow.models.revoked_token import RevokedToken

    monkeypatch.setattr(api_app._AuthManagerState, "instance", SimpleAuthManager())
    monkeypatch.setattr(RevokedToken, "is_revoked", classmethod(lambda cls, jti, session=None: False))

    from seclake_ml.config import load_config
    from seclake_ml.workspace.app import create_app

    cfg = load_config(seed_config(tmp_path), environ={})
    records = seed_findings(cfg)
    root = FastAPI()
    root.mount("/seclake-ml", create_app(config_loader=lambda: cfg))
    client = TestClient(root, base_url=ORIGIN)
    return client, cfg, records


def token(username: str, role: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))


def bearer(username: str, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(username, role)}"}


def session(client: TestClient, headers: dict[str, str]) -> dict:
    r = client.get("/seclake-ml/api/session", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def editor_headers(client: TestClient, username: str = "ed", role: str = "user") -> dict[str, str]:
    h = bearer(username, role)
    s = session(client, h)
    return {**h, s["csrf_header"]: s["csrf_token"], "Origin": ORIGIN}


def uid_of(rec: dict) -> str:
    return rec["finding_info"]["uid"]


# ------------------------------------------------------------------------------- authentication
@pytest.mark.parametrize("method,path", [
    ("GET", "/seclake-ml/"), ("GET", "/seclake-ml/api/findings"), ("GET", "/seclake-ml/api/models"),
    ("GET", "/seclake-ml/api/allowlist"), ("POST", "/seclake-ml/api/labels"),
    ("DELETE", "/seclake-ml/api/allowlist/abc"),
])
def test_unauthenticated_requests_are_refused(env, method: str, path: str) -> None:
    client, *_ = env
    r = client.request(method, path, json={} if method == "POST" else None)
    assert r.status_code == 401
    assert r.headers["cache-control"] == "no-store"


def test_unauthenticated_page_offers_the_airflow_login(env) -> None:
    client, *_ = env
    r = client.get("/seclake-ml/")
    assert r.status_code == 401 and r.headers["content-type"].startswith("text/html")
    assert "/auth/login" in r.text and "script-src 'nonce-" in r.headers["content-security-policy"]


def test_bad_token_is_refused(env) -> None:
    client, *_ = env
    assert client.get("/seclake-ml/api/findings", headers={"Authorization": "Bearer not.a.jwt"}).status_code == 403
    client.cookies.set("_token", "garbage")
    assert client.get("/seclake-ml/api/findings").status_code == 403


def test_the_airflow_ui_cookie_authenticates(env) -> None:
    client, *_ = env
    client.cookies.set("_token", token("vera", "viewer"))
    r = client.get("/seclake-ml/api/session")
    assert r.status_code == 200 and r.json()["user"] == "vera" and r.json()["can_edit"] is False


# ------------------------------------------------------------------------------------ the page
def test_page_is_escaped_nonce_protected_and_not_cached(env) -> None:
    client, *_ = env
    r = client.get("/seclake-ml/", headers=bearer('<img src=x onerror="alert(1)">', "admin"))
    assert r.status_code == 200
    assert "<img src=x" not in r.text and "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in r.text
    csp = r.headers["content-security-policy"]
    nonce = csp.split("'nonce-", 1)[1].split("'", 1)[0]
    assert f'<script nonce="{nonce}">' in r.text and "frame-ancestors 'self'" in csp
    assert "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff"
    assert "innerHTML" not in r.text and "http://" not in r.text and "https://" not in r.text  # no CDN
    assert 'data-base="/seclake-ml"' in r.text


# ---------------------------------------------------------------------------------------- reading
def test_viewer_reads_findings_and_detail(env) -> None:
    client, _, records = env
    h = bearer("vera", "viewer")
    r = client.get("/seclake-ml/api/findings", headers=h, params={"page_size": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == 3 and len(body["rows"]) == 2 and body["next_cursor"]
    nxt = client.get("/seclake-ml/api/findings", headers=h, params={"page_size": 2, "cursor": body["next_cursor"]})
    assert len(nxt.json()["rows"]) == 1
    hostile = next(r for r in records if r["evidences"][0]["data"]["entity"] == HOSTILE_ENTITY)
    d = client.get(f"/seclake-ml/api/findings/{uid_of(hostile)}", headers=h)
    assert d.status_code == 200 and d.headers["content-type"] == "application/json"
    detail = d.json()
    assert detail["entity"] == HOSTILE_ENTITY and detail["explanation"] and detail["record"]["finding_info"]
    assert client.get("/seclake-ml/api/findings/nope", headers=h).status_code == 404


def test_bad_filter_is_422_with_one_line(env) -> None:
    client, *_ = env
    r = client.get("/seclake-ml/api/findings", headers=bearer("vera", "viewer"), params={"detector": "zzz"})
    assert r.status_code == 422 and r.json()["detail"].startswith("detector:") and "\n" not in r.json()["detail"]
    r = client.get("/seclake-ml/api/findings", headers=bearer("vera", "viewer"), params={"min_severity_id": "x"})
    assert r.status_code == 422 and "min_severity_id" in r.json()["detail"]


def test_models_and_batches_answer(env) -> None:
    client, *_ = env
    h = bearer("vera", "viewer")
    assert client.get("/seclake-ml/api/models", headers=h).status_code == 200
    assert client.get("/seclake-ml/api/batches", headers=h).status_code == 200


# ---------------------------------------------------------------------------------------- writing
def test_viewer_is_refused_a_label_even_with_a_valid_csrf_token(env) -> None:
    client, _, records = env
    h = bearer("vera", "viewer")
    s = session(client, h)
    r = client.post("/seclake-ml/api/labels", headers={**h, s["csrf_header"]: s["csrf_token"], "Origin": ORIGIN},
                    json={"uid": uid_of(records[0]), "verdict": "benign", "risk_score": 5})
    assert r.status_code == 403 and "edit access" in r.json()["detail"]


def test_csrf_header_missing_or_forged_or_cross_site_is_refused(env) -> None:
    client, _, records = env
    body = {"uid": uid_of(records[0]), "verdict": "benign", "risk_score": 5}
    h = editor_headers(client)
    no_csrf = {k: v for k, v in h.items() if k != "X-Seclake-CSRF"}
    assert client.post("/seclake-ml/api/labels", headers=no_csrf, json=body).status_code == 403
    other = editor_headers(client, "mallory")  # a token minted for another user
    forged = {**h, "X-Seclake-CSRF": other["X-Seclake-CSRF"]}
    assert client.post("/seclake-ml/api/labels", headers=forged, json=body).status_code == 403
    cross = {**h, "Origin": "https://evil.example"}
    r = client.post("/seclake-ml/api/labels", headers=cross, json=body)
    assert r.status_code == 403 and "cross-site" in r.json()["detail"]
    ref = {k: v for k, v in h.items() if k != "Origin"} | {"Referer": "https://evil.example/x"}
    assert client.post("/seclake-ml/api/labels", headers=ref, json=body).status_code == 403
    assert client.delete("/seclake-ml/api/allowlist/" + "0" * 32, headers=no_csrf).status_code == 403


def test_editor_labels_a_finding_idempotently_and_html_stays_text(env) -> None:
    from seclake_ml.locations import work_root
    from seclake_ml.risk.labels import label_store_for

    client, cfg, records = env
    h = editor_headers(client, "ed", "user")
    note = '<script>alert("x")</script> & <b>bold</b>'
    body = {"uid": uid_of(records[0]), "verdict": "malicious", "risk_score": 88, "note": note}
    r = client.post("/seclake-ml/api/labels", headers=h, json=body)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/json"
    label = r.json()["label"]
    assert label["note"] == note and label["analyst"] == "ed" and label["source"] == "workspace"
    assert label["target_kind"] == "finding" and label["risk_score"] == 88
    again = client.post("/seclake-ml/api/labels", headers=h, json=body)
    assert again.status_code == 200 and again.json() | {"label": None} == {"label": None, "stored": 0, "unchanged": 1}
    stored = label_store_for(work_root(cfg)).records()
    assert len(stored) == 1 and stored[0].note == note and stored[0].analyst == "ed"


@pytest.mark.parametrize("body,field", [
    ({"uid": "u1", "verdict": "malicious", "risk_score": 101}, "score"),
    ({"uid": "u1", "verdict": "evil", "risk_score": 50}, "verdict"),
    ({"uid": "u1", "verdict": "benign", "risk_score": 5, "note": "x" * 2001}, "note"),
    ({"uid": "u1", "verdict": "benign", "risk_score": 5, "note": "bidi \u202e"}, "note"),
    ({"verdict": "benign", "risk_score": 5}, "uid"),
    ({"uid": "u1", "verdict": "benign", "risk_score": 5, "extra": 1}, "extra"),
    ({"uid": "has space", "verdict": "benign", "risk_score": 5}, "uid"),
])
def test_malformed_label_is_422_with_a_one_line_message(env, body: dict, field: str) -> None:
    client, *_ = env
    r = client.post("/seclake-ml/api/labels", headers=editor_headers(client), json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and field in detail.lower()


def test_malformed_json_is_422(env) -> None:
    client, *_ = env
    h = editor_headers(client) | {"Content-Type": "application/json"}
    r = client.post("/seclake-ml/api/labels", headers=h, content=b"{not json")
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)


def test_oversized_body_is_refused(env) -> None:
    client, *_ = env
    h = editor_headers(client) | {"Content-Type": "application/json"}
    r = client.post("/seclake-ml/api/labels", headers=h, content=json.dumps({"note": "x" * 70000}).encode())
    assert r.status_code == 413


def _chunks(total: int, size: int = 8192):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b" " * n


@pytest.mark.parametrize("auth", [False, True])
def test_chunked_oversized_body_is_refused_before_authentication(env, auth: bool) -> None:
    """A body without Content-Length (chunked) is counted as it arrives: 413, not read whole, not authenticated."""
    client, *_ = env
    h = (editor_headers(client) if auth else {}) | {"Content-Type": "application/json"}
    r = client.post("/seclake-ml/api/labels", headers=h, content=_chunks(200_000))
    assert r.status_code == 413, r.text
    assert r.json() == {"detail": "request body too large"} and r.headers["cache-control"] == "no-store"
    # a small chunked body still goes through (the limit counts bytes, not headers)
    ok = client.post("/seclake-ml/api/labels", headers=editor_headers(client) | {"Content-Type": "application/json"},
                     content=(c for c in [b'{"uid": "u1", "verdict": "benign", ', b'"risk_score": 5}']))
    assert ok.status_code in (200, 201), ok.text


def test_non_ascii_or_malformed_csrf_token_is_403_not_500(env) -> None:
    client, *_ = env
    h = editor_headers(client)
    good = h["X-Seclake-CSRF"]
    body = {"uid": "u1", "verdict": "benign", "risk_score": 5}
    for bad in ("\u00b9." + good.split(".", 1)[1], "1\u00b2." + "a" * 64, "9" * 400 + ".x", "1." + "\u00e9" * 64):
        r = client.post("/seclake-ml/api/labels", headers={**h, "X-Seclake-CSRF": bad.encode("latin-1")}, json=body)
        assert r.status_code == 403, (bad, r.status_code, r.text)


def test_csrf_valid_refuses_malformed_tokens() -> None:
    from seclake_ml.workspace.app import csrf_token, csrf_valid

    tok = csrf_token("ed", now=1_000_000)
    mac = tok.split(".", 1)[1]
    for bad in ("\u00b9." + mac, "\u0661\u0662." + mac, "1000000." + mac[:-1] + "\u00e9", "." + mac, "1e6." + mac,
                "1000000.", 12345, b"1.2"):
        assert csrf_valid("ed", bad, now=1_000_000) is False, bad


def test_origin_with_the_default_port_is_the_same_origin(env) -> None:
    client, *_ = env
    h = editor_headers(client)
    body = {"uid": "u1", "verdict": "benign", "risk_score": 5}
    r = client.post("/seclake-ml/api/labels", headers={**h, "Origin": "http://TestServer:80"}, json=body)
    assert r.status_code in (200, 201), r.text
    for other in ("http://testserver:8080", "https://testserver", "http://testserver:80@evil.example"):
        assert client.post("/seclake-ml/api/labels", headers={**h, "Origin": other}, json=body).status_code == 403


def test_origin_of_normalises_default_ports() -> None:
    from seclake_ml.workspace.app import _origin_of

    assert _origin_of("https://Example.COM:443/x") == _origin_of("https://example.com") == "https://example.com"
    assert _origin_of("http://example.com:80") == "http://example.com"
    assert _origin_of("https://example.com:8443") == "https://example.com:8443"
    assert _origin_of("http://[::1]:80/") == "http://[::1]"
    assert _origin_of("http://example.com:99999") is None and _origin_of("null") is None


def test_detail_and_label_by_key_read_only_that_file(env, monkeypatch: pytest.MonkeyPatch) -> None:
    from seclake_ml.workspace import data

    client, cfg, records = env
    h = bearer("vera", "viewer")
    rows = client.get("/seclake-ml/api/findings", headers=h).json()["rows"]
    row = rows[0]

    def no_scan(*args, **kwargs):
        raise AssertionError("the whole tree was listed")

    monkeypatch.setattr(data, "_list_files", no_scan)
    d = client.get(f"/seclake-ml/api/findings/{row['uid']}", headers=h, params={"key": row["key"]})
    assert d.status_code == 200, d.text
    assert d.json()["uid"] == row["uid"] and d.json()["record"]["_key"] == row["key"]
    for bad in ("../etc/passwd", "ext/x/../y.parquet", row["key"].replace(".parquet", ".txt"), "/" + row["key"]):
        r = client.get(f"/seclake-ml/api/findings/{row['uid']}", headers=h, params={"key": bad})
        assert r.status_code == 422 and r.json()["detail"].startswith("key"), (bad, r.text)
    missing = row["key"].rsplit("/", 1)[0] + "/nothing-here.parquet"
    assert client.get(f"/seclake-ml/api/findings/{row['uid']}", headers=h, params={"key": missing}).status_code == 404
    r = client.post("/seclake-ml/api/labels", headers=editor_headers(client),
                    json={"uid": row["uid"], "key": row["key"], "verdict": "benign", "risk_score": 5})
    assert r.status_code == 201, r.text
    r = client.post("/seclake-ml/api/labels", headers=editor_headers(client),
                    json={"uid": row["uid"], "key": "../x.parquet", "verdict": "benign", "risk_score": 5})
    assert r.status_code == 422 and "key" in r.json()["detail"]


def test_page_sends_the_row_key_and_only_the_allow_kind_fields(env) -> None:
    client, *_ = env
    html = client.get("/seclake-ml/", headers=bearer("vera", "viewer")).text
    assert '<option value="pair" selected>' in html and '<input type="hidden" name="key">' in html
    assert '"?key=" + encodeURIComponent(key)' in html and "body.key = f.elements.key.value" in html
    assert 'if (kind === "entity" || kind === "pair") body.entity' in html
    assert 'if (kind === "cidr" || kind === "pair") body.cidr' in html
    assert '"/128" : "/32"' in html and "innerHTML" not in html.split("<script", 1)[1]


def test_editor_allow_lists_and_removes(env) -> None:
    client, *_ = env
    h = editor_headers(client, "olga", "op")
    r = client.post("/seclake-ml/api/allowlist", headers=h,
                    json={"entity": HOSTILE_ENTITY, "cidr": "192.0.2.0/24", "reason": "<b>lab</b> scanner",
                          "expires_at": "2999-01-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    entry = r.json()["entry"]
    assert entry["kind"] == "pair" and entry["entity"] == HOSTILE_ENTITY and entry["created_by"] == "olga"
    assert entry["reason"] == "<b>lab</b> scanner"
    listed = client.get("/seclake-ml/api/allowlist", headers=bearer("vera", "viewer")).json()["entries"]
    assert [e["entry_id"] for e in listed] == [entry["entry_id"]]
    viewer = bearer("vera", "viewer")
    vs = session(client, viewer)
    refused = client.delete(f"/seclake-ml/api/allowlist/{entry['entry_id']}",
                            headers={**viewer, "X-Seclake-CSRF": vs["csrf_token"], "Origin": ORIGIN})
    assert refused.status_code == 403
    gone = client.delete(f"/seclake-ml/api/allowlist/{entry['entry_id']}", headers=h)
    assert gone.status_code == 200 and gone.json()["removed"] is True
    assert client.get("/seclake-ml/api/allowlist", headers=viewer).json()["entries"] == []
    assert client.delete("/seclake-ml/api/allowlist/" + "0" * 32, headers=h).status_code == 404


def test_malformed_allow_list_entry_is_422(env) -> None:
    client, *_ = env
    h = editor_headers(client)
    r = client.post("/seclake-ml/api/allowlist", headers=h, json={"cidr": "not-a-net", "reason": "x"})
    assert r.status_code == 422 and r.json()["detail"].startswith("cidr")
    r = client.post("/seclake-ml/api/allowlist", headers=h, json={"entity": "e1"})
    assert r.status_code == 422 and "reason" in r.json()["detail"]


def test_csrf_tokens_expire() -> None:
    from seclake_ml.workspace.app import CSRF_MAX_AGE_S, csrf_token, csrf_valid

    tok = csrf_token("ed", now=1_000_000)
    assert csrf_valid("ed", tok, now=1_000_000 + 10)
    assert not csrf_valid("ed", tok, now=1_000_000 + CSRF_MAX_AGE_S + 1)
    assert not csrf_valid("eve", tok, now=1_000_000 + 10)
    assert not csrf_valid("ed", None) and not csrf_valid("ed", "x.y")


def test_labelling_a_risk_finding_labels_its_event_for_the_risk_model(env) -> None:
    """The risk model trains on event labels: a risk finding's label is stored for its event too."""
    from datetime import datetime, timezone

    import pandas as pd

    from seclake_ml.locations import work_root
    from seclake_ml.risk.findings import build_record
    from seclake_ml.risk.labels import label_store_for
    from seclake_ml.scoring.findings_parquet import findings_parquet_parts

    client, cfg, _ = env
    when = datetime(2024, 3, 5, 9, 30, tzinfo=timezone.utc)
    row = pd.Series({"uid": "evt-123", "time": pd.Timestamp(when), "principal": "arn:aws:iam::123456789012:user/eve",
                     "source_ip": "198.51.100.7", "operation": "iam:CreateAccessKey", "account": "123456789012",
                     "region": "us-east-1", "risk_score": 81.0, "probable_cause": "new operation for principal",
                     "contributions": "[]", "result": "ok", "unsupervised_score": 70.0, "supervised_score": 81.0,
                     "is_outlier": False, "sensitive_category": "credentials", "user_agent": "aws-cli/2"})
    record = build_record(row, model_version="risk-v1", scope="aws/CLOUD_TRAIL_MGMT/1.0/x.parquet", min_risk=30,
                          created=when, product_version="t")
    for key, data in findings_parquet_parts([record], file_stem="risk-obj"):
        path = Path(cfg.lake_root) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    r = client.post("/seclake-ml/api/labels", headers=editor_headers(client),
                    json={"uid": uid_of(record), "verdict": "malicious", "risk_score": 95, "note": "confirmed"})
    assert r.status_code == 201, r.text
    latest = label_store_for(work_root(cfg)).latest()
    assert latest[uid_of(record)].target_kind == "finding"
    event = latest["evt-123"]
    assert (event.target_kind, event.verdict, event.risk_score) == ("event", "malicious", 95)
    assert (event.principal, event.operation, event.source_ip) == (
        "arn:aws:iam::123456789012:user/eve", "iam:CreateAccessKey", "198.51.100.7")
    assert event.event_time.startswith("2024-03-05T09:30")
