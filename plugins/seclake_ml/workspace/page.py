"""The workspace page: one server-rendered HTML document (Jinja2, autoescape on) with inline CSS and
vanilla JavaScript under a CSP nonce; no external assets, so it works standalone and inside the Airflow
UI's iframe (``external_views``).

The only server values in the page are the user name, the base path, the CSRF token and whether the user
may edit: each goes into an attribute through Jinja2's escaping, and the script reads them from
``dataset``. Everything from the data API is put into the document with ``textContent`` (never
``innerHTML``), so a finding's fields or an analyst's note show as text, whatever they hold.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>seclake-ml workspace</title>
<style nonce="{{ nonce }}">
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{display:flex;gap:1em;align-items:center;padding:.5em 1em;background:#1d2433;color:#fff}
header h1{font-size:16px;margin:0}header .who{margin-left:auto;font-size:12px;opacity:.85}
nav.tabs{display:flex;gap:.25em;padding:.5em 1em 0;border-bottom:1px solid #ccd}
nav.tabs button{border:1px solid #ccd;border-bottom:none;background:#e9ecf2;padding:.4em .9em;cursor:pointer;border-radius:4px 4px 0 0}
nav.tabs button[aria-selected=true]{background:#fff;font-weight:600}
main{padding:1em}section[hidden]{display:none}
form.filters{display:flex;flex-wrap:wrap;gap:.5em;align-items:end;margin-bottom:.75em}
label{display:flex;flex-direction:column;font-size:12px;gap:2px}
input,select,textarea{font:inherit;padding:3px 5px;border:1px solid #aab;border-radius:3px}
button{font:inherit;cursor:pointer}
table{border-collapse:collapse;width:100%;background:#fff}th,td{border:1px solid #dde;padding:3px 6px;text-align:left;vertical-align:top;font-size:13px;overflow-wrap:anywhere}
th{background:#eef0f5;white-space:nowrap}tr.row:hover{background:#f0f5ff;cursor:pointer}tr.sel{background:#dde8ff}
.split{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:1em}
.panel{background:#fff;border:1px solid #dde;padding:.75em;border-radius:4px}
.panel h2{font-size:15px;margin:.2em 0 .5em}.panel h3{font-size:13px;margin:.8em 0 .3em}
pre{white-space:pre-wrap;word-break:break-word;background:#f3f4f7;padding:.5em;max-height:22em;overflow:auto;font-size:12px}
.msg{margin:.4em 0;padding:.3em .5em;border-radius:3px;font-size:13px}.ok{background:#e3f6e8}.err{background:#fde7e7}
.muted{color:#667;font-size:12px}.pager{display:flex;gap:.5em;align-items:center;margin:.5em 0}
form.act{display:grid;gap:.4em;max-width:32em}
</style></head>
<body data-base="{{ base }}" data-user="{{ user }}" data-csrf="{{ csrf }}" data-csrf-header="{{ csrf_header }}" data-can-edit="{{ 'true' if can_edit else 'false' }}">
<header><h1>seclake-ml workspace</h1><span class="who">signed in as <b id="who">{{ user }}</b>{% if not can_edit %} (read only){% endif %}</span></header>
<nav class="tabs" role="tablist">
<button type="button" role="tab" data-tab="findings" aria-selected="true" id="tab-findings">Findings</button>
<button type="button" role="tab" data-tab="models" aria-selected="false" id="tab-models">Models</button>
<button type="button" role="tab" data-tab="batches" aria-selected="false" id="tab-batches">Batches / health</button>
<button type="button" role="tab" data-tab="allowlist" aria-selected="false" id="tab-allowlist">Allow-list</button>
</nav>
<main>
<section id="findings">
<form class="filters" id="filters">
<label>Since<input type="datetime-local" name="since"></label>
<label>Until<input type="datetime-local" name="until"></label>
<label>Min severity<select name="min_severity_id"><option value="">any</option><option value="1">Informational</option><option value="2">Low</option><option value="3">Medium</option><option value="4">High</option><option value="5">Critical</option><option value="6">Fatal</option></select></label>
<label>Detector<select name="detector"><option value="">any</option><option value="ipinsights">IP Insights</option><option value="risk">CloudTrail risk</option></select></label>
<label>Source<input name="source" size="10"></label>
<label>Entity<input name="entity" size="14"></label>
<label>Account<input name="account" size="13"></label>
<label>Per page<select name="page_size"><option>25</option><option selected>50</option><option>100</option></select></label>
<button type="submit" id="apply">Apply</button>
</form>
<div class="split">
<div><div class="pager"><button type="button" id="prev" disabled>&larr; Prev</button><button type="button" id="next" disabled>Next &rarr;</button><span class="muted" id="count"></span></div>
<div id="findings-msg"></div><div id="findings-table"></div></div>
<div class="panel" id="detail"><h2>Finding</h2><p class="muted" id="detail-hint">Select a finding.</p>
<div id="detail-body" hidden>
<h3>Summary</h3><div id="detail-summary"></div>
<h3>Explanation / probable cause</h3><div id="detail-explanation"></div>
<h3>Contributions</h3><div id="detail-contrib"></div>
<h3>Label this finding</h3>
<form class="act" id="label-form">
<input type="hidden" name="uid"><input type="hidden" name="key">
<label>Verdict<select name="verdict" required><option value="malicious">malicious</option><option value="benign">benign</option><option value="unsure" selected>unsure</option></select></label>
<label>Risk (0-100)<input type="number" name="risk_score" min="0" max="100" step="1" value="50" required></label>
<label>Note<textarea name="note" rows="3" maxlength="2000"></textarea></label>
<button type="submit" id="label-submit">Save label</button><div id="label-result"></div>
</form>
<h3>Raw fields</h3><pre id="detail-raw"></pre>
</div></div></div>
</section>
<section id="models" hidden><div id="models-msg"></div><div id="models-body"></div></section>
<section id="batches" hidden><div id="batches-msg"></div><div id="batches-body"></div></section>
<section id="allowlist" hidden>
<div class="split"><div><h2>Entries in force</h2><label class="muted"><span><input type="checkbox" id="al-expired"> include expired</span></label><div id="al-msg"></div><div id="al-table"></div></div>
<div class="panel"><h2>Add to the allow-list</h2>
<form class="act" id="allow-form">
<label>Kind<select name="kind"><option value="pair" selected>entity + CIDR</option><option value="entity">entity</option><option value="cidr">CIDR</option></select></label>
<label>Entity<input name="entity"></label>
<label>CIDR<input name="cidr" placeholder="203.0.113.0/24"></label>
<label>Reason<input name="reason" required maxlength="500"></label>
<label>Expires (optional)<input type="datetime-local" name="expires_at"></label>
<button type="submit" id="allow-submit">Add entry</button><div id="allow-result"></div>
</form></div></div>
</section>
</main>
<script nonce="{{ nonce }}">
(function () {
  "use strict";
  var B = document.body.dataset, base = B.base, canEdit = B.canEdit === "true";
  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) { var e = document.createElement(tag); if (text !== undefined && text !== null) e.textContent = String(text); if (cls) e.className = cls; return e; }
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); }
  function show(n, text, ok) { clear(n); if (text) n.appendChild(el("div", text, "msg " + (ok ? "ok" : "err"))); }
  function fmt(v) { if (v === null || v === undefined) return ""; if (typeof v === "object") return JSON.stringify(v); return String(v); }
  function api(method, path, body) {
    var opt = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (method !== "GET") { opt.headers[B.csrfHeader] = B.csrf; }
    if (body !== undefined) { opt.headers["Content-Type"] = "application/json"; opt.body = JSON.stringify(body); }
    return fetch(base + path, opt).then(function (r) {
      return r.text().then(function (t) {
        var data = null; try { data = t ? JSON.parse(t) : null; } catch (e) { data = { detail: t.slice(0, 300) }; }
        if (!r.ok) { var d = data && data.detail; throw new Error(r.status + ": " + (typeof d === "string" ? d : fmt(d))); }
        return data;
      });
    });
  }
  function table(rows, cols, onRow) {
    var t = el("table"), h = el("tr");
    cols.forEach(function (c) { h.appendChild(el("th", c)); });
    var thead = el("thead"); thead.appendChild(h); t.appendChild(thead);
    var tb = el("tbody");
    rows.forEach(function (r) {
      var tr = el("tr", null, onRow ? "row" : "");
      cols.forEach(function (c) { tr.appendChild(el("td", fmt(r[c]))); });
      if (onRow) tr.addEventListener("click", function () { Array.prototype.forEach.call(tb.children, function (x) { x.classList.remove("sel"); }); tr.classList.add("sel"); onRow(r); });
      tb.appendChild(tr);
    });
    t.appendChild(tb); return t;
  }
  function keysOf(rows, prefer, max) {
    var seen = [];
    rows.forEach(function (r) { Object.keys(r || {}).forEach(function (k) { if (seen.indexOf(k) < 0) seen.push(k); }); });
    var cols = prefer.filter(function (k) { return seen.indexOf(k) >= 0; });
    if (!cols.length) cols = seen.slice(0, max || 8);
    return cols;
  }
  function kv(obj) {
    var rows = Object.keys(obj || {}).map(function (k) { return { field: k, value: obj[k] }; });
    return table(rows, ["field", "value"]);
  }
  function generic(node, data) {
    clear(node);
    if (Array.isArray(data)) { node.appendChild(data.length ? table(data, keysOf(data, [], 12)) : el("p", "Nothing yet.", "muted")); return; }
    if (data && typeof data === "object") {
      Object.keys(data).forEach(function (k) {
        var v = data[k]; node.appendChild(el("h3", k));
        if (Array.isArray(v) && v.length && typeof v[0] === "object") node.appendChild(table(v, keysOf(v, [], 12)));
        else if (v && typeof v === "object" && !Array.isArray(v)) node.appendChild(kv(v));
        else node.appendChild(el("p", fmt(v)));
      });
      return;
    }
    node.appendChild(el("p", fmt(data)));
  }
  // tabs
  var loaded = {};
  function select(name) {
    document.querySelectorAll("nav.tabs button").forEach(function (b) { b.setAttribute("aria-selected", b.dataset.tab === name ? "true" : "false"); });
    document.querySelectorAll("main > section").forEach(function (s) { s.hidden = s.id !== name; });
    if (!loaded[name]) { loaded[name] = true; loaders[name](); }
  }
  document.querySelectorAll("nav.tabs button").forEach(function (b) { b.addEventListener("click", function () { select(b.dataset.tab); }); });
  // findings
  var cursors = [null], pageIdx = 0;
  var FCOLS = ["time", "severity", "detector", "source", "entity", "ip", "account", "status", "title"];
  function isoOf(v) { if (!v) return ""; var d = new Date(v); return isNaN(d) ? "" : d.toISOString(); }
  function query() {
    var f = $("filters"), q = new URLSearchParams();
    ["detector", "source", "entity", "account", "min_severity_id", "page_size"].forEach(function (n) { var v = f.elements[n].value.trim(); if (v) q.set(n, v); });
    ["since", "until"].forEach(function (n) { var v = isoOf(f.elements[n].value); if (v) q.set(n, v); });
    if (cursors[pageIdx]) q.set("cursor", cursors[pageIdx]);
    return q.toString();
  }
  function loadFindings() {
    show($("findings-msg"), "Loading…", true);
    api("GET", "/api/findings?" + query()).then(function (d) {
      show($("findings-msg"), "");
      var rows = (d && d.rows) || [], node = $("findings-table"); clear(node);
      node.appendChild(rows.length ? table(rows, keysOf(rows, FCOLS, 8), openFinding) : el("p", "No findings match.", "muted"));
      $("count").textContent = (d && d.total !== undefined && d.total !== null ? d.total + " findings" : "") + " · page " + (pageIdx + 1);
      cursors[pageIdx + 1] = d ? d.next_cursor : null;
      $("next").disabled = !(d && d.next_cursor); $("prev").disabled = pageIdx === 0;
    }).catch(function (e) { show($("findings-msg"), e.message); });
  }
  $("filters").addEventListener("submit", function (ev) { ev.preventDefault(); cursors = [null]; pageIdx = 0; loadFindings(); });
  $("next").addEventListener("click", function () { pageIdx += 1; loadFindings(); });
  $("prev").addEventListener("click", function () { if (pageIdx > 0) { pageIdx -= 1; loadFindings(); } });
  function openFinding(row) {
    var uid = row.uid || row.finding_uid, key = typeof row.key === "string" ? row.key : "";
    $("detail-hint").textContent = "Loading…"; $("detail-body").hidden = true;
    api("GET", "/api/findings/" + encodeURIComponent(uid) + (key ? "?key=" + encodeURIComponent(key) : "")).then(function (d) {
      $("detail-hint").textContent = ""; $("detail-body").hidden = false;
      var summary = {}, skip = ["explanation", "probable_cause", "contributions", "record"];
      Object.keys(d || {}).forEach(function (k) { if (skip.indexOf(k) < 0 && (d[k] === null || typeof d[k] !== "object")) summary[k] = d[k]; });
      clear($("detail-summary")); $("detail-summary").appendChild(kv(summary));
      var ex = $("detail-explanation"); clear(ex);
      ["probable_cause", "explanation"].forEach(function (k) { if (d[k] !== undefined && d[k] !== null) { if (typeof d[k] === "object" && !Array.isArray(d[k])) ex.appendChild(kv(d[k])); else ex.appendChild(el("p", fmt(d[k]))); } });
      if (!ex.firstChild) ex.appendChild(el("p", "No explanation recorded.", "muted"));
      var c = $("detail-contrib"); clear(c); var contrib = d.contributions;
      if (Array.isArray(contrib) && contrib.length) c.appendChild(table(contrib, keysOf(contrib, [], 8)));
      else if (contrib && typeof contrib === "object" && Object.keys(contrib).length) c.appendChild(kv(contrib));
      else c.appendChild(el("p", "None.", "muted"));
      $("detail-raw").textContent = JSON.stringify(d.record || d, null, 2);
      var f = $("label-form"); f.elements.uid.value = d.uid || uid; f.elements.key.value = key; show($("label-result"), "");
      var a = $("allow-form"); if (d.entity) a.elements.entity.value = d.entity;
      if (typeof d.ip === "string" && d.ip && d.ip.indexOf("/") < 0) a.elements.cidr.value = d.ip + (d.ip.indexOf(":") >= 0 ? "/128" : "/32");
    }).catch(function (e) { $("detail-hint").textContent = e.message; });
  }
  $("label-form").addEventListener("submit", function (ev) {
    ev.preventDefault(); var f = ev.target;
    var body = { uid: f.elements.uid.value, verdict: f.elements.verdict.value, risk_score: Number(f.elements.risk_score.value), note: f.elements.note.value };
    if (f.elements.key.value) body.key = f.elements.key.value;
    api("POST", "/api/labels", body).then(function (d) {
      var l = d.label || {};
      show($("label-result"), (d.stored ? "Saved" : "Already in force") + ": " + l.verdict + ", risk " + l.risk_score + " by " + l.analyst + (l.note ? " — note: " + l.note : ""), true);
    }).catch(function (e) { show($("label-result"), e.message); });
  });
  // allow-list
  function loadAllow() {
    var q = $("al-expired").checked ? "?include_expired=true" : "";
    api("GET", "/api/allowlist" + q).then(function (d) {
      var rows = (d && d.entries) || [], node = $("al-table"); clear(node); show($("al-msg"), "");
      if (!rows.length) { node.appendChild(el("p", "No entries.", "muted")); return; }
      var cols = keysOf(rows, ["entry_id", "kind", "entity", "cidr", "reason", "expires_at", "created_by", "created_at"], 8);
      var t = table(rows, cols);
      if (canEdit) {
        t.tHead.rows[0].appendChild(el("th", ""));
        Array.prototype.forEach.call(t.tBodies[0].rows, function (tr, i) {
          var td = el("td"), b = el("button", "Remove"); b.type = "button";
          b.addEventListener("click", function () {
            api("DELETE", "/api/allowlist/" + encodeURIComponent(rows[i].entry_id || rows[i].id)).then(function () { show($("al-msg"), "Removed.", true); loadAllow(); })
              .catch(function (e) { show($("al-msg"), e.message); });
          });
          td.appendChild(b); tr.appendChild(td);
        });
      }
      node.appendChild(t);
    }).catch(function (e) { show($("al-msg"), e.message); });
  }
  $("al-expired").addEventListener("change", loadAllow);
  $("allow-form").addEventListener("submit", function (ev) {
    ev.preventDefault(); var f = ev.target;
    var kind = f.elements.kind.value || "pair";
    var body = { kind: kind, reason: f.elements.reason.value, expires_at: isoOf(f.elements.expires_at.value) || null };
    // only the fields the kind uses: a stale entity or CIDR left in the form is not sent
    if (kind === "entity" || kind === "pair") body.entity = f.elements.entity.value.trim() || null;
    if (kind === "cidr" || kind === "pair") body.cidr = f.elements.cidr.value.trim() || null;
    api("POST", "/api/allowlist", body).then(function (d) {
      var e = d.entry || {};
      show($("allow-result"), "Added " + (e.entry_id || e.id || "") + ": " + [e.entity, e.cidr].filter(Boolean).join(" / ") + " — " + (e.reason || ""), true);
      loadAllow();
    }).catch(function (e) { show($("allow-result"), e.message); });
  });
  if (!canEdit) { ["label-submit", "allow-submit"].forEach(function (id) { $(id).disabled = true; $(id).title = "read-only access"; }); }
  var loaders = {
    findings: loadFindings,
    models: function () { api("GET", "/api/models").then(function (d) { generic($("models-body"), d); }).catch(function (e) { show($("models-msg"), e.message); }); },
    batches: function () { api("GET", "/api/batches").then(function (d) { generic($("batches-body"), d); }).catch(function (e) { show($("batches-msg"), e.message); }); },
    allowlist: loadAllow
  };
  select("findings");
})();
</script>
</body></html>
"""

_REFUSAL = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>seclake-ml workspace</title>
<style nonce="{{ nonce }}">body{font:14px system-ui,sans-serif;margin:2em;color:#1d2433}</style></head>
<body><h1>seclake-ml workspace</h1><p id="refusal">{{ status }}: {{ detail }}</p>
{% if login %}<p><a href="{{ login }}" target="_top">Sign in to Airflow</a></p>{% endif %}</body></html>
"""


@lru_cache(maxsize=None)
def _env() -> Any:
    from jinja2 import Environment

    return Environment(autoescape=True, keep_trailing_newline=True)


@lru_cache(maxsize=None)
def _template(name: str) -> Any:
    return _env().from_string({"page": _PAGE, "refusal": _REFUSAL}[name])


def render_page(*, nonce: str, base: str, user: str, can_edit: bool, csrf: str, csrf_header: str) -> str:
    """The workspace page for ``user`` (every value escaped by Jinja2's autoescape)."""
    return _template("page").render(nonce=nonce, base=base, user=user, can_edit=can_edit, csrf=csrf,
                                    csrf_header=csrf_header)


def render_refusal(status: int, detail: str, login: str | None) -> tuple[str, str]:
    """A small page for 401/403 on the page route, with a sign-in link for 401: ``(html, nonce)``."""
    import secrets

    nonce = secrets.token_urlsafe(18)
    return _template("refusal").render(nonce=nonce, status=status, detail=detail, login=login), nonce
