"""The console's pages. Each reads the store through the same modules the API and the commands use;
each view of patient-level data (a message list, a message's content) writes an audit row."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import Blueprint, Response, abort, current_app, g, redirect, render_template, request, url_for

from hub.api.calls import audit as _audit
from hub.console import signin
from hub.console.records import message_detail
from hub.errors import HubError
from hub.onboarding.sources import check_stored
from hub.pipeline.replay import reprocess
from hub.security.audit import AuditEntry, list_entries, record
from hub.security.auth import auth_state, client_address, key_for_token
from hub.security.keys import ROLES, create_key, list_keys, revoke_key
from hub.store import messages as message_store
from hub.store.engine import writer
from hub.store.practices import list_practices

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates", static_folder="static")

PAGE_SIZE = 50
STATUSES = ("received", "processed", "error", "duplicate", "resolved")
SEARCH_FIELDS = ("practice", "status", "type", "control_id", "since", "until", "mrn")


def _runtime() -> Any:
    return current_app.extensions["hub"]


@bp.context_processor
def _csrf() -> dict[str, Any]:
    def csrf_token() -> str:
        session = g.get("console_session")
        return session.csrf if session is not None else ""
    return {"csrf_token": csrf_token}


@bp.after_request
def _headers(response: Response) -> Response:
    # the console's own stylesheet only; forms post to this origin; no framing (clickjacking)
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


# ------------------------------------------------------------------------------------------ sign-in
@bp.route("/login", methods=["GET", "POST"])
def sign_in() -> Any:
    target = request.values.get("next", "")
    if not target.startswith("/console/") or target.startswith("//"):
        target = url_for("console.feeds")
    if request.method == "GET":
        return render_template("console/login.html", next=target, problem=None)
    if not signin.same_origin():
        abort(400, "the sign-in form must be sent from this site's own page (its Origin header is missing or foreign)")
    address = client_address() or "unknown"
    if auth_state()["limiter"].take(f"sign-in:{address}") > 0:
        abort(429)
    key = key_for_token(current_app._get_current_object(), request.form.get("key", "").strip())  # type: ignore[attr-defined]
    problem = None
    if key is None:
        problem, status = "That is not a live API key.", 401
    elif key.role != "admin":
        problem, status = "The operations console is for admin keys.", 403
    with writer(_runtime().engine).begin() as conn:
        record(conn, [AuditEntry(key.key_id if key else None, "console.sign_in", None, None, address,
                                 "signed in" if problem is None else f"refused {status}")])
    session = signin.start(key) if key is not None and problem is None else None
    if session is None:
        return render_template("console/login.html", next=target, problem=problem or "That key is not live."), (
            status if problem else 401)
    response = redirect(target)
    signin.set_cookie(response, session)
    return response


@bp.post("/logout")
@signin.admin_page
def sign_out() -> Any:
    g.console_session = None  # no renewed cookie on the way out
    response = redirect(url_for("console.sign_in"))
    signin.clear_cookie(response)
    return response


@bp.get("/")
@signin.admin_page
def home() -> Any:
    return redirect(url_for("console.feeds"))


# ------------------------------------------------------------------------------------------ feeds
@bp.get("/feeds")
@signin.admin_page
def feeds() -> Any:
    from hub.console.feeds import feed_rows

    rows, alerts = feed_rows(_runtime())
    return render_template("console/feeds.html", rows=rows, alerts=alerts, now=dt.datetime.now(dt.UTC))


# ------------------------------------------------------------------------------------------ messages
def _search_args() -> dict[str, str]:
    given = {name: request.values.get(name, "").strip() for name in SEARCH_FIELDS}
    return {name: value for name, value in given.items() if value}


def _parse_search(args: dict[str, str]) -> dict[str, Any]:
    """The store's filters from the form's, or a 400 naming the field."""
    out: dict[str, Any] = {}
    for name in ("since", "until"):
        if name in args:
            try:
                day = dt.date.fromisoformat(args[name])
            except ValueError:
                abort(400, f"{name}: a date as YYYY-MM-DD, not {args[name][:20]!r}")
            stamp = dt.datetime.combine(day, dt.time(), dt.UTC)
            out[name] = stamp + dt.timedelta(days=1) if name == "until" else stamp
    if args.get("status") and args["status"] not in STATUSES:
        abort(400, f"status: one of {', '.join(STATUSES)}")
    for name, key in (("practice", "practice"), ("status", "status"), ("type", "message_type"),
                      ("control_id", "control_id"), ("mrn", "mrn")):
        if args.get(name):
            out[key] = args[name]
    return out


def _describe_search(args: dict[str, str]) -> str:
    # the audit names what was searched by, never a searched MRN (patient data)
    return ",".join(f"{k}={'*' if k == 'mrn' else v}" for k, v in sorted(args.items()))[:255] or "all"


@bp.get("/messages")
@signin.admin_page
def messages() -> Any:
    args = _search_args()
    filters = _parse_search(args)
    page = max(1, request.args.get("page", 1, type=int) or 1)
    runtime = _runtime()
    with runtime.engine.connect() as conn:
        rows = message_store.list_messages(conn, **filters, limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
        practices = [p["slug"] for p in list_practices(conn)]
    more = len(rows) > PAGE_SIZE
    _audit("console.messages", _describe_search(args), args.get("practice"), f"{min(len(rows), PAGE_SIZE)} listed")
    return render_template("console/messages.html", rows=rows[:PAGE_SIZE], args=args, page=page, more=more,
                           practices=practices, statuses=STATUSES, query=urlencode(args))


@bp.get("/messages/<int:message_id>")
@signin.admin_page
def message(message_id: int) -> Any:
    detail = message_detail(_runtime(), message_id)
    if detail is None:
        abort(404, f"no message {message_id}")
    _audit("console.message", str(message_id), detail["message"]["practice"], "content shown")
    return render_template("console/message.html", m=detail["message"], d=detail, done=request.args.get("done"))


@bp.post("/messages/<int:message_id>/reprocess")
@signin.admin_page
def reprocess_one(message_id: int) -> Any:
    result = reprocess(_runtime(), ids=[message_id])
    _audit("messages.reprocess", str(message_id), None, _outcome(result))
    if not result["submitted"]:
        abort(404, f"no message {message_id} with content to replay")
    return redirect(url_for("console.message", message_id=message_id, done=_outcome(result)))


@bp.post("/messages/reprocess")
@signin.admin_page
def reprocess_search() -> Any:
    """Reprocess every message a search finds: first a confirmation with their count, then the replay
    of those very messages (the ids counted, not a second search)."""
    args = _search_args()
    filters = _parse_search(args)
    runtime = _runtime()
    with runtime.engine.connect() as conn:
        ids = message_store.search_ids(conn, **filters)
    if request.form.get("confirm") != str(len(ids)):
        return render_template("console/confirm.html", count=len(ids), args=args,
                               action=url_for("console.reprocess_search"), what="messages found by this search",
                               back=url_for("console.messages") + "?" + urlencode(args))
    result = reprocess(runtime, ids=ids) if ids else {"submitted": 0, "processed": 0, "error": 0, "queued": 0}
    _audit("messages.reprocess", _describe_search(args), args.get("practice"), _outcome(result))
    return redirect(url_for("console.messages") + "?" + urlencode({**args, "done": _outcome(result)}))


def _outcome(result: dict[str, int]) -> str:
    return (f"{result['submitted']} handed to the workers" if result.get("queued")
            else f"{result['submitted']} reprocessed: {result['processed']} processed, {result['error']} in error")


# ------------------------------------------------------------------------------------------ errors
@bp.get("/errors")
@signin.admin_page
def errors() -> Any:
    practice = request.args.get("practice") or None
    with _runtime().engine.connect() as conn:
        groups = message_store.error_groups(conn, practice=practice)
    return render_template("console/errors.html", groups=groups, practice=practice, done=request.args.get("done"))


@bp.post("/errors/reprocess")
@signin.admin_page
def reprocess_errors() -> Any:
    practice, pattern = request.form.get("practice", ""), request.form.get("pattern", "")
    runtime = _runtime()
    with runtime.engine.connect() as conn:
        ids = message_store.error_ids(conn, practice=practice, pattern=pattern)
    if request.form.get("confirm") != str(len(ids)):
        return render_template("console/confirm.html", count=len(ids), args={"practice": practice, "pattern": pattern},
                               action=url_for("console.reprocess_errors"),
                               what=f"messages of {practice} in error for this reason", back=url_for("console.errors"))
    result = reprocess(runtime, ids=ids) if ids else {"submitted": 0, "processed": 0, "error": 0, "queued": 0}
    _audit("messages.reprocess", "errors of one reason", practice, _outcome(result))
    return redirect(url_for("console.errors", done=_outcome(result)))


# ------------------------------------------------------------------------------------------ onboarding
@bp.get("/onboarding")
@signin.admin_page
def onboarding() -> Any:
    with _runtime().engine.connect() as conn:
        practices = [p for p in list_practices(conn) if p["status"] == "onboarding"]
        counts = {p["slug"]: message_store.counts_by_status(conn, p["slug"]) for p in practices}
    return render_template("console/onboarding.html", practices=practices, counts=counts)


@bp.get("/onboarding/<slug>")
@signin.admin_page
def scorecard(slug: str) -> Any:
    runtime = _runtime()
    try:
        card = check_stored(runtime, slug)
    except HubError as exc:
        _audit("scorecard.read", slug, slug, "refused")
        abort(404 if "no practice" in str(exc) else 422, str(exc))
    _audit("scorecard.read", slug, slug, "200")  # it reads every stored message of the practice
    return render_template("console/scorecard.html", card=card, slug=slug)


# ------------------------------------------------------------------------------------------ keys and audit
@bp.get("/keys")
@signin.admin_page
def keys() -> Any:
    return _keys_page(created=None)


def _keys_page(created: str | None) -> Any:
    """The keys, and the form to make one; ``created``: a new key's text, shown this once."""
    with _runtime().engine.connect() as conn:
        rows = list_keys(conn)
        practices = [p["slug"] for p in list_practices(conn)]
    return render_template("console/keys.html", keys=rows, roles=ROLES, practices=practices, created=created,
                           now=dt.datetime.now(dt.UTC))


@bp.post("/keys")
@signin.admin_page
def create() -> Any:
    role, practice = request.form.get("role", ""), request.form.get("practice") or None
    label = (request.form.get("label") or "").strip()[:255] or None
    days = request.form.get("expires_in_days", "").strip()
    if days and not (days.isdigit() and 0 < int(days) <= 3650):
        abort(400, "expires in days: a whole number from 1 to 3650")
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=int(days)) if days else None
    runtime = _runtime()
    try:
        with writer(runtime.engine).begin() as conn:
            secret = create_key(conn, role, practice if role == "feed" else None, label=label, expires_at=expires)
            record(conn, [AuditEntry(g.api_key.key_id, "keys.create", secret.split("_")[1], practice,
                                     client_address(), role)])
    except HubError as exc:
        abort(400, str(exc))
    return _keys_page(created=secret)


@bp.post("/keys/<key_id>/revoke")
@signin.admin_page
def revoke(key_id: str) -> Any:
    try:
        with writer(_runtime().engine).begin() as conn:
            revoke_key(conn, key_id)
            record(conn, [AuditEntry(g.api_key.key_id, "keys.revoke", key_id, None, client_address(), "revoked")])
    except HubError as exc:
        abort(404, str(exc))
    return redirect(url_for("console.keys"))


@bp.get("/audit")
@signin.admin_page
def audit() -> Any:
    filters = {name: request.args.get(name) or None for name in ("key_id", "action", "practice")}
    page = max(1, request.args.get("page", 1, type=int) or 1)
    with _runtime().engine.connect() as conn:
        rows = list_entries(conn, key_id=filters["key_id"], action=filters["action"], practice=filters["practice"],
                            limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE)
        actions = sorted(conn.execute(sa.text("SELECT DISTINCT action FROM audit_log")).scalars())
    return render_template("console/audit.html", rows=rows[:PAGE_SIZE], more=len(rows) > PAGE_SIZE, page=page,
                           filters=filters, actions=actions,
                           query=urlencode({k: v for k, v in filters.items() if v}))


@bp.app_template_filter("when")
def _when(value: Any) -> str:
    """A time as the console shows it: UTC, to the second."""
    if not value:
        return "—"
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.UTC) if value.tzinfo else value
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


@bp.app_template_filter("ago")
def _ago(value: Any) -> str:
    if not value:
        return "never"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    seconds = int((dt.datetime.now(dt.UTC) - value).total_seconds())
    return duration(seconds) + " ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(seconds)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{max(seconds, 0)} s"


@bp.errorhandler(400)
@bp.errorhandler(403)
@bp.errorhandler(404)
@bp.errorhandler(422)
@bp.errorhandler(429)
def _problem(exc: Any) -> Any:
    return render_template("console/problem.html", status=exc.code, title=exc.name,
                           detail=exc.description if isinstance(exc.description, str) else None), exc.code
