"""The workspace in a real ``airflow api-server`` driven by headless Chromium.

A private Airflow home (migrated SQLite metadata DB), SimpleAuthManager with an ``admin`` (Admin) and a
``vera`` (Viewer), the repository's plugins folder, and a tiny findings tree written with the package's
own writers. The browser signs in through Airflow's own login page (which sets the ``_token`` cookie),
opens the workspace, labels a finding and adds an allow-list entry by clicking; an unauthenticated
request and a viewer's write are refused. Screenshots go to ``var/test-artifacts/workspace/``.

The browser is the system ``chromium`` (Debian package ``chromium``; ``SECLAKE_CHROMIUM`` names another
binary), driven through the DevTools protocol by :mod:`tests.workspace.cdp`. Skipped only when no
Chromium is found.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.airflow_env import REPO, airflow_env
from tests.workspace.cdp import Browser, find_chromium
from tests.workspace.seed import HOSTILE_ENTITY, seed_config, seed_findings

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium found (install Debian's `chromium` package, "
                                                "or point SECLAKE_CHROMIUM at a Chrome/Chromium binary)"),
]
ARTIFACTS = REPO / "var" / "test-artifacts" / "workspace"
PASSWORDS = {"admin": "admin-pw-1234", "vera": "viewer-pw-1234"}
NOTE = '<script>document.title="pwned"</script> seen from <b>the lab</b>'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("workspace-e2e")
    home = root / "airflow"
    home.mkdir()
    cfg_fields = seed_config(root)
    from seclake_ml.config import load_config

    cfg = load_config(cfg_fields, environ={})
    records = seed_findings(cfg)
    (home / "passwords.json").write_text(json.dumps(PASSWORDS))
    env = airflow_env(home, Path(cfg_fields["lake_root"]), Path(cfg_fields["work_location"]), {})
    env.update(
        AIRFLOW__CORE__AUTH_MANAGER="airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin,vera:viewer",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__API_AUTH__JWT_SECRET="workspace-e2e-jwt-secret-" + "0123456789abcdef" * 3,
        AIRFLOW__API__SECRET_KEY="workspace-e2e-api-secret",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
    )
    airflow = [sys.executable, "-m", "airflow"]
    migrate = subprocess.run([*airflow, "db", "migrate"], env=env, cwd=root, capture_output=True, text=True,
                             timeout=600)
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    port = _free_port()
    log = (root / "api-server.log").open("w")
    proc = subprocess.Popen([*airflow, "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail("api-server exited:\n" + (root / "api-server.log").read_text()[-4000:])
            try:
                if _status(base + "/api/v2/monitor/health") == 200:
                    break
            except OSError:
                pass
            time.sleep(1)
        else:
            pytest.fail("api-server did not start:\n" + (root / "api-server.log").read_text()[-4000:])
        print(f"\nworkspace e2e: {base}, Airflow home {home}, screenshots in {ARTIFACTS}")
        yield {"base": base, "records": records, "cfg": cfg, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture
def browser(tmp_path: Path):
    b = Browser(CHROMIUM, tmp_path / "profile")
    try:
        yield b
    finally:
        b.close()


def _login(b: Browser, base: str, user: str) -> None:
    """Sign in through Airflow's own login page, which sets the ``_token`` cookie and goes to ``next``."""
    b.goto(f"{base}/auth/login?next={base}/seclake-ml/")
    b.type("input[name=username]", user)
    b.type("input[type=password]", PASSWORDS[user])
    b.wait("!document.querySelector('button[type=submit]').disabled")
    b.click("button[type=submit]")
    b.wait("location.pathname === '/seclake-ml/' && document.readyState === 'complete'", timeout=60)
    b.wait("document.querySelector('#findings-table table')", timeout=60)


def test_unauthenticated_request_is_refused(server, browser: Browser) -> None:
    base = server["base"]
    assert _status(base + "/seclake-ml/api/findings") == 401
    browser.goto(base + "/seclake-ml/")
    text = browser.wait("document.getElementById('refusal') && document.getElementById('refusal').textContent")
    assert text.startswith("401")
    assert browser.js("document.querySelector('a[href*=\"/auth/login\"]') !== null")
    browser.screenshot(ARTIFACTS / "01-unauthenticated.png")


def test_plugin_is_registered_with_a_nav_entry(server) -> None:
    import urllib.parse

    base = server["base"]
    body = urllib.parse.urlencode({"username": "admin", "password": PASSWORDS["admin"]}).encode()
    req = urllib.request.Request(base + "/auth/token", data=body,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req, timeout=10) as r:
        tok = json.load(r)["access_token"]
    with urllib.request.urlopen(urllib.request.Request(base + "/api/v2/plugins",
                                                       headers={"Authorization": f"Bearer {tok}"}), timeout=10) as r:
        plugins = {p["name"]: p for p in json.load(r)["plugins"]}
    ours = plugins["seclake_ml"]
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/seclake-ml"]
    view = ours["external_views"][0]
    assert view["destination"] == "nav" and view["href"] == "/seclake-ml/" and view["url_route"] == "seclake-ml"


def test_admin_labels_and_allow_lists_by_clicking(server, browser: Browser) -> None:
    base, records = server["base"], server["records"]
    b = browser
    _login(b, base, "admin")
    assert b.js("document.getElementById('who').textContent") == "admin"
    rows = b.js("document.querySelectorAll('#findings-table tbody tr').length")
    assert rows == 3
    # the hostile entity is shown as text, not markup
    assert b.js(f"Array.from(document.querySelectorAll('#findings-table td')).some(td => td.textContent === {json.dumps(HOSTILE_ENTITY)})")
    assert b.js("document.querySelectorAll('#findings-table img').length") == 0
    b.screenshot(ARTIFACTS / "02-findings.png")

    # open the hostile finding, label it with an HTML note
    idx = b.js(f"Array.from(document.querySelectorAll('#findings-table tbody tr')).findIndex(tr => "
               f"Array.from(tr.cells).some(td => td.textContent === {json.dumps(HOSTILE_ENTITY)}))")
    b.click(f"#findings-table tbody tr:nth-child({idx + 1})")
    b.wait("!document.getElementById('detail-body').hidden")
    uid = b.js("document.querySelector('#label-form input[name=uid]').value")
    assert uid in {r["finding_info"]["uid"] for r in records}
    b.js("document.querySelector('#label-form select[name=verdict]').value = 'malicious'")
    b.type("#label-form input[name=risk_score]", "91")
    b.type("#label-form textarea[name=note]", NOTE)
    b.click("#label-submit")
    result = b.wait("document.querySelector('#label-result .ok') && document.querySelector('#label-result .ok').textContent")
    assert "Saved: malicious, risk 91 by admin" in result and NOTE in result
    assert b.js("document.title") == "seclake-ml workspace"  # the note's script did not run
    assert b.js("document.querySelectorAll('#label-result script, #label-result b').length") == 0
    b.screenshot(ARTIFACTS / "03-labelled.png")

    from seclake_ml.locations import work_root
    from seclake_ml.risk.labels import label_store_for

    stored = label_store_for(work_root(server["cfg"])).records()
    assert [(r.target_uid, r.verdict, r.risk_score, r.analyst, r.note, r.source) for r in stored] == [
        (uid, "malicious", 91, "admin", NOTE, "workspace")]

    # allow-list the finding's entity from a network
    b.click("#tab-allowlist")
    b.wait("!document.getElementById('allowlist').hidden")
    assert b.js("document.querySelector('#allow-form input[name=entity]').value") == HOSTILE_ENTITY
    b.js("document.querySelector('#allow-form select[name=kind]').value = 'pair'")
    b.type("#allow-form input[name=cidr]", "192.0.2.0/24")
    b.type("#allow-form input[name=reason]", "<i>lab</i> scanner")
    b.click("#allow-submit")
    added = b.wait("document.querySelector('#allow-result .ok') && document.querySelector('#allow-result .ok').textContent")
    assert HOSTILE_ENTITY in added and "192.0.2.0/24" in added and "<i>lab</i> scanner" in added
    b.wait("document.querySelectorAll('#al-table tbody tr').length === 1")
    b.screenshot(ARTIFACTS / "04-allow-listed.png")

    from seclake_ml.feedback.allowlist import AllowList
    from seclake_ml.scoring.service import work_store

    entries = AllowList(work_store(server["cfg"])).entries()
    assert [(e.kind, e.entity, e.cidr, e.created_by) for e in entries] == [
        ("pair", HOSTILE_ENTITY, "192.0.2.0/24", "admin")]
    # the entry clicked into existence is what scoring suppresses with: the finding's pair matches it
    matched = AllowList(work_store(server["cfg"])).matcher().match([HOSTILE_ENTITY, HOSTILE_ENTITY], ["192.0.2.1", "10.0.0.1"])
    assert [m.entry_id if m else None for m in matched] == [entries[0].entry_id, None]

    for tab, shot in (("models", "05-models.png"), ("batches", "06-batches.png")):
        b.click(f"#tab-{tab}")
        b.wait(f"!document.getElementById('{tab}').hidden")
        time.sleep(0.5)
        b.screenshot(ARTIFACTS / shot)

    # the same page framed by the Airflow UI (external view, /plugin/<url_route>)
    b.goto(base + "/plugin/seclake-ml")
    b.wait("document.querySelector('iframe')", timeout=60)
    framed = b.wait("(function(){var d = document.querySelector('iframe').contentDocument;"
                    "return d && d.getElementById('who') && d.querySelectorAll('#findings-table tbody tr').length === 3"
                    " && d.getElementById('who').textContent;})()", timeout=60)
    assert framed == "admin"
    b.screenshot(ARTIFACTS / "07-in-airflow-ui.png")


def test_viewer_reads_but_is_refused_an_action(server, browser: Browser) -> None:
    base, records = server["base"], server["records"]
    b = browser
    _login(b, base, "vera")
    assert b.js("document.getElementById('label-submit').disabled") is True
    # the viewer's own page, its own CSRF token and cookie: the server still refuses the write
    status = b.js(
        "fetch(document.body.dataset.base + '/api/labels', {method: 'POST', credentials: 'same-origin', headers: "
        "{'Content-Type': 'application/json', [document.body.dataset.csrfHeader]: document.body.dataset.csrf}, "
        f"body: JSON.stringify({{uid: {json.dumps(records[0]['finding_info']['uid'])}, verdict: 'benign', "
        "risk_score: 3})}).then(r => r.status)"
    )
    assert status == 403
    allow = b.js(
        "fetch(document.body.dataset.base + '/api/allowlist', {method: 'POST', credentials: 'same-origin', headers: "
        "{'Content-Type': 'application/json', [document.body.dataset.csrfHeader]: document.body.dataset.csrf}, "
        "body: JSON.stringify({entity: 'i-0abc', reason: 'x'})}).then(r => r.status)"
    )
    assert allow == 403
    # and without the CSRF header, even the cookie alone does not do
    no_csrf = b.js(
        "fetch(document.body.dataset.base + '/api/labels', {method: 'POST', credentials: 'same-origin', headers: "
        "{'Content-Type': 'application/json'}, body: '{}'}).then(r => r.status)"
    )
    assert no_csrf == 403
    b.screenshot(ARTIFACTS / "08-viewer.png")
