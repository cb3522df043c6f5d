"""The analysts' workspace: a FastAPI app that Airflow's api-server mounts (``fastapi_apps`` of the plugin).

Routes (relative to the plugin's ``url_prefix``, ``/seclake-ml``):

``GET /``                          the page (server-rendered, escaped; inline vanilla JS under a CSP nonce)
``GET /api/session``               the user, whether they may edit, and the page's CSRF token
``GET /api/findings``              findings, filtered and paged (:func:`seclake_ml.workspace.data.list_findings`)
``GET /api/findings/{uid}``        one finding with its explanation (``finding_detail``)
``GET /api/models``                models (``models_overview``)
``GET /api/batches``               scoring/risk batches and their health (``batches_overview``)
``GET /api/allowlist``             allow-list entries in force (``?include_expired=true`` for all)
``POST /api/labels``               label a finding (:func:`seclake_ml.risk.labels.new_label`)
``POST /api/allowlist``            add an allow-list entry (:mod:`seclake_ml.feedback.allowlist`)
``DELETE /api/allowlist/{id}``     remove one

**Authentication** is Airflow's own: every route depends on
:func:`airflow.api_fastapi.core_api.security.get_user`, which takes the JWT from the
``Authorization: Bearer`` header, else from the ``_token`` cookie (``COOKIE_NAME_JWT_TOKEN``) that the
Airflow UI's login sets for the api-server's cookie path, or the user already resolved from that cookie
by Airflow's ``JWTRefreshMiddleware``. The page is served by the same api-server (same origin), so its
``fetch`` calls send the cookie (``credentials: "same-origin"``) and need no token handling of their own.

**Authorization** goes through the configured auth manager: reading needs ``GET`` on every detector
DAG (:data:`DETECTOR_DAGS`), labelling and allow-listing ``PUT`` (edit) on every one
(``auth_manager.is_authorized_dag``; with SimpleAuthManager a Viewer reads, a User/Op/Admin edits).

**Cross-site requests.** The cookie is sent by the browser whatever page starts the request, so every
state-changing request (POST, DELETE) must carry ``X-Seclake-CSRF``: a token the page embeds,
``<issued unix time>.<HMAC-SHA256>`` over the user name and the time, keyed from the api-server's
``[api] secret_key`` (shared by all api-server workers, as Airflow requires), valid for
:data:`CSRF_MAX_AGE_S`. A custom header cannot be sent cross-origin without a CORS preflight, and the
token ties the request to the user the page was rendered for. An ``Origin`` (else ``Referer``) header,
when present, must also name this host (the request's own base URL, or ``[api] base_url`` of the
api-server's configuration: set it to the public URL when the api-server runs behind a proxy that
rewrites the Host header; default ports, :80 for http and :443 for https, compare equal to none).
Failures give 403.

**Bodies** are limited to :data:`MAX_BODY_BYTES`: a larger ``Content-Length`` is refused at once, and
a body sent without one (chunked) is counted as it arrives and refused (413) as soon as it passes the
limit, before any route (or authentication) sees it.

Every response carries ``Cache-Control: no-store``; the page a strict Content-Security-Policy
(nothing but its own nonce'd inline script and style, ``connect-src 'self'``, ``frame-ancestors 'self'``
so the Airflow UI can frame it). Data is never put into HTML by the page's script (``textContent`` only);
the server template is Jinja2 with autoescape.

Airflow's API modules are imported inside the functions (the scheduler imports the plugin module too,
and should not pay for them); the data and store modules likewise, per request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from datetime import date, datetime
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import MutableHeaders

log = logging.getLogger(__name__)

#: The detectors' DAGs: reading the workspace needs GET on all of them, writing PUT.
DETECTOR_DAGS = ("seclake_ipinsights_scoring", "seclake_cloudtrail_risk_training")
CSRF_HEADER = "X-Seclake-CSRF"
CSRF_MAX_AGE_S = 12 * 3600
MAX_BODY_BYTES = 64 * 1024
MAX_PAGE_SIZE = 500
_CSRF_KEY_FALLBACK = secrets.token_bytes(32)  # only when [api] secret_key is unset (single process)
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def page_csp(nonce: str) -> str:
    """The page's Content-Security-Policy: only its own nonce'd script/style, same-origin fetches."""
    return (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'self'"
    )


# --------------------------------------------------------------------------------- errors / json
def _one_line(text: Any, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _jsonable(value: Any) -> Any:
    """``value`` with datetimes as ISO text, non-finite floats as ``None``, dataclasses/objects as dicts."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return _jsonable(asdict(value))
    if hasattr(value, "item"):  # numpy scalars
        try:
            return _jsonable(value.item())
        except Exception:  # noqa: BLE001 - fall through to text
            pass
    return str(value)


def _json(value: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse(_jsonable(value), status_code=status_code)


def _unprocessable(message: Any) -> HTTPException:
    return HTTPException(status_code=422, detail=_one_line(message))


# --------------------------------------------------------------------------------------- auth
async def current_user(request: Request) -> Any:
    """The user authenticated by Airflow's auth manager (Airflow's own ``get_user`` dependency).

    ``get_user`` takes the ``Authorization: Bearer`` JWT, else the ``_token`` cookie (or the user that
    ``JWTRefreshMiddleware`` already resolved from it); 401 without a credential, 403 for a bad one.
    """
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    return await get_user(request, oauth_token=None, bearer_credentials=credentials)


def user_name(user: Any) -> str:
    name = user.get_name() if hasattr(user, "get_name") else getattr(user, "username", None)
    return str(name or user.get_id())


def _team_name(dag_id: str) -> str | None:
    from airflow.configuration import conf

    if not conf.getboolean("core", "multi_team", fallback=False):
        return None
    from airflow.models.dag import DagModel

    return DagModel.get_team_name(dag_id)


def may_access(user: Any, method: str) -> bool:
    """Whether the auth manager grants ``method`` (``GET`` or ``PUT``) on every detector DAG."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    manager = get_auth_manager()
    return all(
        manager.is_authorized_dag(method=method, details=DagDetails(id=dag_id, team_name=_team_name(dag_id)),
                                  user=user)
        for dag_id in DETECTOR_DAGS
    )


def _csrf_key() -> bytes:
    from airflow.configuration import conf

    secret = conf.get("api", "secret_key", fallback="") or ""
    if not secret:
        return _CSRF_KEY_FALLBACK
    return hashlib.sha256(b"seclake-ml-workspace-csrf\0" + secret.encode()).digest()


def csrf_token(name: str, now: float | None = None) -> str:
    """A CSRF token for user ``name``: ``<unix time>.<hmac>``."""
    issued = str(int(time.time() if now is None else now))
    mac = hmac.new(_csrf_key(), f"{name}\n{issued}".encode(), hashlib.sha256).hexdigest()
    return f"{issued}.{mac}"


def csrf_valid(name: str, token: str | None, now: float | None = None) -> bool:
    """Whether ``token`` is a valid, unexpired token for ``name``; any malformed token is invalid."""
    try:
        if not isinstance(token, str) or not token or len(token) > 200 or not token.isascii() or "." not in token:
            return False
        issued, _, _mac = token.partition(".")
        if not issued or len(issued) > 20 or not all("0" <= c <= "9" for c in issued):
            return False
        age = (time.time() if now is None else now) - int(issued)
        if age < -300 or age > CSRF_MAX_AGE_S:
            return False
        return hmac.compare_digest(csrf_token(name, now=int(issued)).encode("ascii"), token.encode("ascii"))
    except (ValueError, TypeError, OverflowError, UnicodeError):
        return False


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url``, lower-case, without the scheme's default port; ``None`` when
    it has no scheme or host (or a malformed port)."""
    try:
        parts = urlsplit(url.strip())
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except (ValueError, AttributeError):
        return None
    if not scheme or not host:
        return None
    host = f"[{host}]" if ":" in host else host
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _allowed_origins(request: Request) -> set[str]:
    from airflow.configuration import conf

    out = {str(request.base_url).rstrip("/").lower()}
    out = {o for o in (_origin_of(u) for u in out) if o}
    base = conf.get("api", "base_url", fallback="") or ""
    if base and (o := _origin_of(base)):
        out.add(o)
    return out


def check_same_origin(request: Request) -> None:
    """403 when ``Origin`` (else ``Referer``) names another site; requests without either pass."""
    origin = request.headers.get("origin")
    if origin is not None:
        if origin == "null" or _origin_of(origin) not in _allowed_origins(request):
            raise HTTPException(403, "cross-site request refused (Origin)")
        return
    referer = request.headers.get("referer")
    if referer and _origin_of(referer) not in _allowed_origins(request):
        raise HTTPException(403, "cross-site request refused (Referer)")


def reader(request: Request, user: Any = Depends(current_user)) -> Any:
    """Dependency: an authenticated user with GET access to the detectors' DAGs."""
    if not may_access(user, "GET"):
        raise HTTPException(403, "Forbidden: reading the workspace needs read access to the detectors' DAGs")
    return user


def editor(request: Request, user: Any = Depends(current_user)) -> Any:
    """Dependency: an authenticated user with PUT access to the detectors' DAGs, on a same-site request
    carrying a valid ``X-Seclake-CSRF`` token."""
    check_same_origin(request)
    if not csrf_valid(user_name(user), request.headers.get(CSRF_HEADER)):
        raise HTTPException(403, f"missing or invalid {CSRF_HEADER} header: reload the workspace page")
    if not may_access(user, "PUT"):
        raise HTTPException(403, "Forbidden: labelling and allow-listing need edit access to the detectors' DAGs")
    return user


# ------------------------------------------------------------------------------------- runtime
class Runtime:
    """Where the data lives: configuration and the backend's AWS clients (``None`` locally), per request."""

    def __init__(self, config_loader: Callable[[], Any] | None = None) -> None:
        self._loader = config_loader

    def config(self) -> Any:
        if self._loader is not None:
            return self._loader()
        from seclake_ml.airflow_support import load_runtime_config

        return load_runtime_config()

    @staticmethod
    def clients(cfg: Any) -> Any:
        from seclake_ml.backends import backend_of

        return backend_of(cfg).scoring_site().clients

    def context(self) -> tuple[Any, Any]:
        try:
            cfg = self.config()
            return cfg, self.clients(cfg)
        except ValueError as exc:
            raise HTTPException(503, f"seclake_ml configuration unusable: {_one_line(exc)}") from None


def _s3(clients: Any) -> Any:
    return getattr(clients, "s3", None) if clients is not None else None


# ---------------------------------------------------------------------------------------- bodies
class LabelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    uid: str
    key: Optional[str] = None  # the finding's file under the findings location (a listing row's ``key``)
    verdict: Optional[str] = None
    risk_score: Any = None
    note: Optional[str] = ""


class AllowBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Optional[str] = None
    entity: Optional[str] = None
    cidr: Optional[str] = None
    reason: str
    expires_at: Optional[str] = None


class RemoveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Optional[str] = None


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
    return _one_line("; ".join(parts) or "invalid request")


def _allow_kind(body: AllowBody) -> str:
    if body.kind:
        return body.kind.strip().lower()
    if body.entity and body.cidr:
        return "pair"
    return "cidr" if body.cidr else "entity"


# ------------------------------------------------------------------------------------------- app
def create_app(config_loader: Callable[[], Any] | None = None) -> FastAPI:
    """The workspace app. ``config_loader``: returns the :class:`~seclake_ml.config.SeclakeConfig`
    (default :func:`seclake_ml.airflow_support.load_runtime_config`, called per request)."""
    app = FastAPI(title="seclake-ml workspace", docs_url=None, redoc_url=None, openapi_url=None)
    runtime = Runtime(config_loader)
    app.state.runtime = runtime

    # pure ASGI (no BaseHTTPMiddleware, which would wrap the body-limit error in an exception group):
    # bodies are counted before anything (authentication included) reads them; every response gets the
    # security headers
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        wants_html = request.method == "GET" and request.url.path.rstrip("/") == request.scope.get(
            "root_path", "").rstrip("/")
        if wants_html and exc.status_code in (401, 403):
            from seclake_ml.workspace.page import render_refusal

            login = _login_url(request) if exc.status_code == 401 else None
            body, nonce = render_refusal(exc.status_code, str(exc.detail), login)
            return HTMLResponse(body, status_code=exc.status_code, headers={"Content-Security-Policy": page_csp(nonce)})
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    # -- the page
    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, user: Any = Depends(reader)) -> HTMLResponse:
        from seclake_ml.workspace.page import render_page

        nonce = secrets.token_urlsafe(18)
        name = user_name(user)
        body = render_page(
            nonce=nonce, base=request.scope.get("root_path", "").rstrip("/"), user=name,
            can_edit=may_access(user, "PUT"), csrf=csrf_token(name), csrf_header=CSRF_HEADER,
        )
        return HTMLResponse(body, headers={"Content-Security-Policy": page_csp(nonce)})

    @app.get("/api/session")
    def session(user: Any = Depends(reader)) -> JSONResponse:
        name = user_name(user)
        return _json({"user": name, "can_edit": may_access(user, "PUT"), "csrf_header": CSRF_HEADER,
                      "csrf_token": csrf_token(name)})

    # -- reading
    @app.get("/api/findings")
    def findings(
        since: Optional[str] = None, until: Optional[str] = None, min_severity_id: Optional[int] = None,
        detector: Optional[str] = None, source: Optional[str] = None, entity: Optional[str] = None,
        entity_match: Optional[str] = None, account: Optional[str] = None, status: Optional[str] = None,
        page_size: int = 50,
        cursor: Optional[str] = None, user: Any = Depends(reader),
    ) -> JSONResponse:
        from seclake_ml.workspace import data

        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise _unprocessable(f"page_size: between 1 and {MAX_PAGE_SIZE}")
        cfg, clients = runtime.context()
        try:
            flt = data.FindingsFilter.from_mapping({
                "since": since, "until": until, "min_severity_id": min_severity_id, "detector": detector,
                "source": source, "entity": entity, "entity_match": entity_match, "account": account,
                "status": status})
            result = data.list_findings(cfg, flt, page_size=page_size, cursor=cursor or None, s3_client=_s3(clients))
        except ValueError as exc:
            raise _unprocessable(exc) from None
        return _json(result)

    @app.get("/api/findings/{uid}")
    def finding(uid: str, key: Optional[str] = None, user: Any = Depends(reader)) -> JSONResponse:
        from seclake_ml.workspace import data

        cfg, clients = runtime.context()
        try:
            detail = data.finding_detail(cfg, uid, s3_client=_s3(clients), key=key or None)
        except KeyError:
            detail = None
        except data.FindingsUnavailable as exc:
            raise HTTPException(503, _one_line(exc)) from None
        except ValueError as exc:
            raise _unprocessable(exc) from None
        if detail is None:
            raise HTTPException(404, "no such finding")
        return _json(detail_view(detail))

    @app.get("/api/models")
    def models(user: Any = Depends(reader)) -> JSONResponse:
        from seclake_ml.workspace import data

        cfg, clients = runtime.context()
        return _json(data.models_overview(cfg, s3_client=_s3(clients), ssm_client=getattr(clients, "ssm", None)))

    @app.get("/api/batches")
    def batches(limit: int = 50, user: Any = Depends(reader)) -> JSONResponse:
        from seclake_ml.workspace import data

        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise _unprocessable(f"limit: between 1 and {MAX_PAGE_SIZE}")
        cfg, clients = runtime.context()
        return _json(data.batches_overview(cfg, limit=limit, s3_client=_s3(clients)))

    @app.get("/api/allowlist")
    def allowlist(include_expired: bool = False, user: Any = Depends(reader)) -> JSONResponse:
        from seclake_ml.feedback.allowlist import AllowList
        from seclake_ml.scoring.service import work_store

        cfg, clients = runtime.context()
        entries = AllowList(work_store(cfg, clients)).entries(include_expired=include_expired)
        return _json({"entries": entries})

    # -- writing
    @app.post("/api/labels", status_code=201)
    def label(body: LabelBody, user: Any = Depends(editor)) -> JSONResponse:
        from seclake_ml.locations import work_root
        from seclake_ml.risk.labels import label_store_for, new_label

        try:
            rec = new_label(body.uid, body.risk_score, verdict=body.verdict, analyst=user_name(user),
                            note=body.note, source="workspace", kind="finding")
        except ValueError as exc:
            raise _unprocessable(exc) from None
        cfg, clients = runtime.context()
        records = [rec]
        # A risk finding is about one CloudTrail event: its label is also the event's label, which is
        # what the risk model trains on (IP Insights findings are used by uid, kind "finding").
        from seclake_ml.workspace.data import FindingsUnavailable, finding_detail

        try:
            found = finding_detail(cfg, rec.target_uid, s3_client=_s3(clients), key=body.key or None)
        except FindingsUnavailable as exc:
            raise HTTPException(503, _one_line(exc)) from None
        except ValueError as exc:
            raise _unprocessable(exc) from None
        fields = (found or {}).get("unmapped") or {}
        if found and found.get("_detector") == "risk" and fields.get("event_uid"):
            try:
                records.append(new_label(
                    fields["event_uid"], body.risk_score, verdict=body.verdict, analyst=user_name(user), note=body.note,
                    source="workspace", kind="event", principal=fields.get("entity"),
                    operation=fields.get("operation"), source_ip=fields.get("ip"),
                    event_time=_event_time(found.get("time"))))
            except ValueError as exc:
                log.warning("finding %s: its event label could not be made (%s)", rec.target_uid, exc)
        result = label_store_for(work_root(cfg), _s3(clients)).add(records)
        log.info("workspace label %s of finding %s by %s (stored %d)", rec.label_id, rec.target_uid,
                 rec.analyst, result.stored)
        return _json({"label": rec.to_dict(), "stored": result.stored, "unchanged": result.unchanged},
                     status_code=201 if result.stored else 200)

    @app.post("/api/allowlist", status_code=201)
    def allow(body: AllowBody, user: Any = Depends(editor)) -> JSONResponse:
        from seclake_ml.feedback.allowlist import AllowList, new_entry
        from seclake_ml.scoring.service import work_store

        try:
            entry = new_entry(_allow_kind(body), entity=body.entity or None, cidr=body.cidr or None,
                              reason=body.reason, expires_at=body.expires_at or None,
                              created_by=user_name(user))
        except ValueError as exc:
            raise _unprocessable(exc) from None
        cfg, clients = runtime.context()
        try:
            added = AllowList(work_store(cfg, clients)).add(entry)
        except ValueError as exc:
            raise _unprocessable(exc) from None
        return _json({"entry": entry, "result": added}, status_code=201)

    @app.delete("/api/allowlist/{entry_id}")
    def unallow(entry_id: str, reason: Optional[str] = None, user: Any = Depends(editor)) -> JSONResponse:
        from seclake_ml.feedback.allowlist import AllowList
        from seclake_ml.scoring.service import work_store

        cfg, clients = runtime.context()
        try:
            removed = AllowList(work_store(cfg, clients)).remove(entry_id, by=user_name(user),
                                                                 reason=reason or "removed in the workspace")
        except ValueError as exc:
            if "no such allow-list entry" in str(exc):
                raise HTTPException(404, _one_line(exc)) from None
            raise _unprocessable(exc) from None
        return _json({"removed": removed.removed, "entry_id": entry_id, "result": removed})

    return app


_SECURITY_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache", "X-Content-Type-Options": "nosniff",
                     "Referrer-Policy": "same-origin"}


class _BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, "request body too large")


class BodyLimit:
    """Pure ASGI middleware: refuses (413) a request whose body passes ``limit`` bytes, and gives every
    response the security headers (``Cache-Control: no-store`` ..., and :data:`API_CSP` unless the response
    has its own Content-Security-Policy).

    A ``Content-Length`` over the limit (or not a number) is refused before the app runs; otherwise the
    bytes are counted as the app receives them, whatever the headers say (a chunked body has none), and
    the first read past the limit raises :class:`_BodyTooLarge`, which the app answers as a 413 (or, when
    raised outside the app's handlers, this middleware does, if no response has started).
    """

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, scope: Any, receive: Any, send: Any) -> None:
        response = JSONResponse({"detail": "request body too large"}, status_code=413,
                                headers={**_SECURITY_HEADERS, "Content-Security-Policy": API_CSP, "Connection": "close"})
        await response(scope, receive, send)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or ():
            if name.lower() == b"content-length":
                text = value.decode("latin-1").strip()
                if not text.isascii() or not text.isdigit() or len(text) > 18 or int(text) > self.limit:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0
        over = False
        started = False

        async def counted() -> Any:
            nonlocal seen, over
            if over:
                raise _BodyTooLarge()
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body") or b"")
                if seen > self.limit:
                    over = True
                    raise _BodyTooLarge()
            return message

        async def tracked(message: Any) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
                message = dict(message, headers=list(message.get("headers") or ()))
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS.items():
                    headers[name] = value
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = API_CSP
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _BodyTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)


def _event_time(ms: Any) -> str | None:
    """ISO text of an OCSF ``time`` (epoch milliseconds), or ``None``."""
    from datetime import datetime, timezone

    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).isoformat()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def detail_view(rec: dict[str, Any]) -> dict[str, Any]:
    """A finding record (as :func:`seclake_ml.workspace.data.finding_detail` gives it) with the panel's
    fields lifted out: summary values, the explanation or probable cause, the contributions; ``record``
    is the whole record (the raw fields)."""
    evidences = rec.get("evidences") or [{}]
    ev = evidences[0].get("data") if isinstance(evidences[0], dict) else None
    if isinstance(ev, str):
        try:
            ev = json.loads(ev)
        except ValueError:
            ev = {"data": ev}
    ev = ev if isinstance(ev, dict) else {}
    info = rec.get("finding_info") or {}
    unmapped = rec.get("unmapped") if isinstance(rec.get("unmapped"), dict) else {}
    account = ((rec.get("cloud") or {}).get("account") or {}).get("uid")
    return {
        "uid": info.get("uid") or (rec.get("metadata") or {}).get("uid"),
        "title": info.get("title"), "message": rec.get("message"), "severity": rec.get("severity"),
        "severity_id": rec.get("severity_id"), "status": rec.get("status"), "time": rec.get("time_dt"),
        "detector": rec.get("_detector"),
        "entity": ev.get("entity") or ev.get("principal") or unmapped.get("entity"),
        "ip": ev.get("ip") or ev.get("source_ip"), "account": account,
        "probable_cause": ev.get("probable_cause") or None,
        "explanation": ev.get("explanation") or info.get("desc"),
        "contributions": ev.get("contributions"),
        "record": rec,
    }


def _login_url(request: Request) -> str | None:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=str(request.url))
    except Exception:  # noqa: BLE001 - the refusal page works without a link
        return None


__all__ = ["create_app", "DETECTOR_DAGS", "CSRF_HEADER", "csrf_token", "csrf_valid", "page_csp"]
