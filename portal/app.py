"""cems-portal: the customer's self-service pages and the operator's view (shell: FastAPI
with Jinja2 templates, served by uvicorn).

Pages are plain HTML forms with server-side SVG charts: they need no JavaScript and load no
asset from anywhere but the portal itself. Everything shown comes from the controller over
gRPC, with the signed-in person's own token (portal.backend); this process keeps sessions
in memory only (portal.sessions). Every form carries its session's CSRF token, and the
sign-in form a token of its own (double-submit cookie), so no other site can post to it.
"""

from __future__ import annotations

import logging
import math
import pathlib
import secrets
import time

from cems.v1 import customer_pb2
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from portal import views
from portal.backend import Controller, Refusal
from portal.sessions import Session, Sessions, SignInLimiter

LOG = logging.getLogger("cems.portal")
HERE = pathlib.Path(__file__).resolve().parent
SESSION_COOKIE = "cems_session"
SIGNIN_COOKIE = "cems_signin"
CLASS_PB = {"gold": customer_pb2.SERVICE_CLASS_GOLD, "silver": customer_pb2.SERVICE_CLASS_SILVER,
            "bronze": customer_pb2.SERVICE_CLASS_BRONZE}
CLASS_NAME = {v: k for k, v in CLASS_PB.items()}
PEOPLE = ("domain-manager", "customer", "peer-domain")
SEGMENTS = ("residential", "soho", "business", "peer-domain")
VARIANTS = ("gsb-business", "gsb-economy")
MAX_FORM_BYTES = 64 << 10
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


class Forbidden(Exception):
    pass


def create_app(controller: Controller, secure_cookies: bool = False,
               sessions: Sessions | None = None, limiter: SignInLimiter | None = None
               ) -> FastAPI:
    """The portal for `controller`; `secure_cookies` when it is served over TLS."""
    app = FastAPI(title="cems portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(mbps=views.mbps, when=views.when, score=views.score,
                                 class_name=lambda c: CLASS_NAME.get(c, "unknown"))
    sessions = Sessions() if sessions is None else sessions
    limiter = SignInLimiter() if limiter is None else limiter
    app.state.sessions = sessions
    app.state.controller = controller

    @app.middleware("http")
    async def headers(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_FORM_BYTES:
            return PlainTextResponse("request too large", status_code=413)
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def page(request: Request, name: str, session: Session | None, http_status: int = 200,
             **context) -> HTMLResponse:
        flash = []
        if session is not None:
            flash, session.flash = session.flash, []
        return templates.TemplateResponse(request, name, dict(
            session=session, flash=flash, controller=controller.address, **context),
            status_code=http_status)

    def error(request, session, status: int, title: str, message: str) -> HTMLResponse:
        return page(request, "error.html", session, http_status=status, title=title,
                    message=message)

    def current(request: Request) -> Session | None:
        return sessions.get(request.cookies.get(SESSION_COOKIE))

    def to_signin() -> RedirectResponse:
        return RedirectResponse("/signin", status_code=303)

    async def form_of(request: Request, session: Session) -> dict:
        """The posted form, after its CSRF token was checked (Forbidden otherwise)."""
        form = await request.form()
        if not session.check_csrf(form.get("csrf")):
            raise Forbidden("this form's CSRF token is missing or wrong; reload the page and "
                            "send it again")
        return {k: v for k, v in form.items() if isinstance(v, str)}

    def may_see(session: Session, customer_id: str) -> bool:
        return session.role == "domain-manager" or session.subject == customer_id

    # -- signing in and out -----------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request):
        session = current(request)
        if session is None:
            return to_signin()
        if session.role == "domain-manager":
            return RedirectResponse("/operator", status_code=303)
        return RedirectResponse(f"/customer/{session.subject}", status_code=303)

    @app.get("/signin", response_class=HTMLResponse)
    def signin_form(request: Request):
        nonce = secrets.token_urlsafe(24)
        response = page(request, "signin.html", None, nonce=nonce, problem="")
        response.set_cookie(SIGNIN_COOKIE, nonce, max_age=600, httponly=True,
                            samesite="strict", secure=secure_cookies, path="/signin")
        return response

    @app.post("/signin", response_class=HTMLResponse)
    async def signin(request: Request):
        form = await request.form()
        nonce, offered = request.cookies.get(SIGNIN_COOKIE), form.get("csrf")
        if not nonce or not isinstance(offered, str) or \
                not secrets.compare_digest(nonce, offered):
            return error(request, None, 403, "Sign-in refused",
                         "this sign-in form is stale or was not sent from this portal; "
                         "open the sign-in page again")
        token = form.get("token")
        token = token.strip() if isinstance(token, str) else ""

        def again(problem: str, status: int):
            fresh = secrets.token_urlsafe(24)
            response = page(request, "signin.html", None, nonce=fresh, problem=problem,
                            http_status=status)
            response.set_cookie(SIGNIN_COOKIE, fresh, max_age=600, httponly=True,
                                samesite="strict", secure=secure_cookies, path="/signin")
            return response
        if not token:
            return again("enter the token you were given", 400)
        client = request.client.host if request.client else ""
        wait = limiter.wait_s(client)
        if wait > 0:
            return again(f"too many failed sign-ins from your address; try again in "
                         f"{math.ceil(wait)} s", 429)
        try:
            role, subject = controller.whoami(token)
        except Refusal as refusal:
            LOG.info("sign-in refused: %s", refusal.code)   # never the token
            if refusal.code == "UNAUTHENTICATED":
                limiter.failed(client)
                return again("the controller does not know this token (mistyped, expired "
                             "or revoked)", 401)
            return again(refusal.message, 503 if refusal.code == "UNAVAILABLE" else 403)
        if role not in PEOPLE:
            return again(f"a {role or 'token of no role'} cannot sign in to the portal; "
                         "use a customer, peer-domain or domain-manager token", 403)
        session = sessions.create(token, role, subject)
        LOG.info("signed in: %s %s", role, subject or "")
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, session.session_id, httponly=True,
                            samesite="strict", secure=secure_cookies, path="/")
        response.delete_cookie(SIGNIN_COOKIE, path="/signin")
        return response

    @app.post("/signout")
    async def signout(request: Request):
        session = current(request)
        if session is not None:
            try:
                await form_of(request, session)
            except Forbidden as err:
                return error(request, session, 403, "Not signed out", str(err))
            sessions.end(session.session_id)
        response = to_signin()
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- a customer's page ------------------------------------------------------------------
    @app.get("/customer/{customer_id}", response_class=HTMLResponse)
    def customer_page(request: Request, customer_id: str, start: str = "", end: str = ""):
        session = current(request)
        if session is None:
            return to_signin()
        if not may_see(session, customer_id):
            return error(request, session, 403, "Not yours",
                         f"you are signed in as {session.role} {session.subject}; the page of "
                         f"customer {customer_id} is not yours to see")
        now = time.time()
        problems = []
        try:
            period = (views.parse_day(start) if start else 0.0,
                      views.parse_day(end, end=True) if end else 0.0)
        except ValueError as err:
            problems.append(str(err))
            period = (0.0, 0.0)
        try:
            sla = controller.sla_of(session.token, customer_id)
            sls = controller.sls_of(session.token, customer_id)
        except Refusal as refusal:
            status = {"PERMISSION_DENIED": 403, "NOT_FOUND": 404}.get(refusal.code, 502)
            return error(request, session, status, "Cannot show this customer", refusal.message)
        experience, report, decisions = None, None, []
        for what, fetch in (("experience", lambda: controller.experience(session.token,
                                                                         customer_id)),
                            ("report", lambda: controller.report_of(session.token, customer_id,
                                                                    *period)),
                            ("decisions", lambda: controller.decisions(session.token,
                                                                       customer_id, 10))):
            try:
                value = fetch()
            except Refusal as refusal:
                problems.append(f"{what}: {refusal.message}")
                continue
            if what == "experience":
                experience = value
            elif what == "report":
                report = value
            else:
                decisions = value
        charts = []
        for service in experience.services if experience else ():
            points = [views.Point(p.start_unix_s, p.mean, p.worst) for p in service.history]
            scale = service.latest.scale or "MOS"
            charts.append(views.quality_chart(points, service.target, now, scale=scale,
                                              title=f"{service.service} over the last hour"))
        return page(request, "customer.html", session, customer_id=customer_id, sla=sla,
                    sls=sls, experience=experience, charts=charts, report=report,
                    decisions=decisions, problems=problems, classes=list(CLASS_PB),
                    may_change=session.role in ("customer", "peer-domain"),
                    start=start, end=end, window=_window)

    async def posted_form(request: Request, not_done: str, refusal):
        """((session, form), None) for a form whose CSRF token is right, posted by someone
        `refusal(session)` lets through (it returns None, or the (title, text) of a 403);
        else (None, the response that refuses it)."""
        session = current(request)
        if session is None:
            return None, to_signin()
        try:
            form = await form_of(request, session)
        except Forbidden as err:
            return None, error(request, session, 403, not_done, str(err))
        refused = refusal(session)
        if refused is not None:
            return None, error(request, session, 403, *refused)
        return (session, form), None

    async def customer_form(request: Request, customer_id: str, not_done: str):
        return await posted_form(request, not_done, lambda session: None if may_see(
            session, customer_id) else ("Not yours", f"customer {customer_id} is not yours "
                                                     "to change"))

    @app.post("/customer/{customer_id}/sls")
    async def change_sls(request: Request, customer_id: str):
        got, refused = await customer_form(request, customer_id, "Not changed")
        if refused is not None:
            return refused
        session, form = got
        back = RedirectResponse(f"/customer/{customer_id}", status_code=303)
        service_class = CLASS_PB.get(form.get("service_class", ""))
        if service_class is None:
            session.flash.append(("error", "choose gold, silver or bronze"))
            return back
        try:
            rate = views.parse_rate_mbps(form.get("rate_mbps", ""))
        except ValueError as err:
            session.flash.append(("error", str(err)))
            return back
        try:
            reply = controller.change_sls(session.token, customer_id, service_class, rate)
        except Refusal as refusal:
            text = f"not changed: {refusal.message}"
            if refusal.retry_after_unix_s:
                text += f" (next change allowed at {views.when(refusal.retry_after_unix_s)})"
            session.flash.append(("error", text))
            return back
        session.flash.append(("ok", f"your SLS is now {CLASS_NAME[reply.sls.service_class]} at "
                                    f"{views.mbps(reply.sls.rate_bps)}; the next change is "
                                    f"allowed at {views.when(reply.next_change_allowed_unix_s)}"))
        return back

    @app.post("/customer/{customer_id}/zoom")
    async def something_is_wrong(request: Request, customer_id: str):
        got, refused = await customer_form(request, customer_id, "Not sent")
        if refused is not None:
            return refused
        session, form = got
        what = form.get("what", "").strip()[:200]
        reason = "the customer says something is wrong (portal)" + (f": {what}" if what else "")
        try:
            zoom = controller.zoom(session.token, customer_id, reason)
            session.flash.append(("ok", "thank you: cems is looking closer at your traffic"
                                  + (f" ({zoom.mirror})" if zoom.mirror else "")
                                  + (f", and runs a delay test ({zoom.stamp_test_id})"
                                     if zoom.stamp_test_id else "")))
        except Refusal as refusal:
            session.flash.append(("error", f"not sent: {refusal.message}"))
        return RedirectResponse(f"/customer/{customer_id}", status_code=303)

    # -- the operator's view ----------------------------------------------------------------
    @app.get("/operator", response_class=HTMLResponse)
    def operator_page(request: Request):
        session = current(request)
        if session is None:
            return to_signin()
        if session.role != "domain-manager":
            return error(request, session, 403, "Operators only",
                         "the operator's view is for the domain manager")
        token = session.token
        problems = []

        def fetch(what, call, default):
            try:
                return call()
            except Refusal as refusal:
                problems.append(f"{what}: {refusal.message}")
                return default
        status, topology, ports = fetch("network", lambda: controller.network(token),
                                        (None, None, []))
        customers = fetch("customers", lambda: controller.customers(token), [])
        picture = _network_picture(topology, ports, customers) if topology else ""
        return page(request, "operator.html", session, status=status, picture=picture,
                    worst=fetch("experience", lambda: controller.worst(token), []),
                    findings=fetch("findings", lambda: controller.findings(token), []),
                    decisions=fetch("decisions", lambda: controller.decisions(token), []),
                    policy=fetch("policy", lambda: controller.policy_status(token), None),
                    mirror=fetch("mirror rules", lambda: controller.mirror_rules(token), None),
                    tests=fetch("STAMP tests", lambda: controller.stamp_tests(token), []),
                    customers=customers, problems=problems, classes=list(CLASS_PB),
                    segments=SEGMENTS, variants=VARIANTS)

    def sla_from(form: dict, customer_id: str) -> customer_pb2.Sla:
        bounds = []
        for name, number in CLASS_PB.items():
            low, high = form.get(f"{name}_min_mbps", "").strip(), \
                form.get(f"{name}_max_mbps", "").strip()
            if not low and not high:
                continue
            if not low or not high:
                raise ValueError(f"give both bounds of {name}, or neither to leave it out")
            bounds.append(customer_pb2.ClassBounds(
                service_class=number, min_bps=views.parse_rate_mbps(low),
                max_bps=views.parse_rate_mbps(high)))
        if not bounds:
            raise ValueError("give the bounds of at least one class")
        try:
            availability = float(form.get("availability", "0.999"))
            interval = float(form.get("min_change_interval_s", "60"))
        except ValueError:
            raise ValueError("availability and the change interval are numbers (for example "
                             "0.999 and 60)") from None
        if form.get("variant") not in VARIANTS:
            raise ValueError(f"the variant is one of {', '.join(VARIANTS)}")
        return customer_pb2.Sla(customer_id=customer_id, variant=form["variant"], bounds=bounds,
                                availability_target=availability,
                                min_change_interval_s=interval)

    async def operator_form(request: Request):
        return await posted_form(request, "Not done", lambda session: None if session.role
                                 == "domain-manager" else ("Operators only", "only the domain "
                                                           "manager manages customers"))

    @app.post("/operator/customers")
    async def create_customer(request: Request):
        got, refused = await operator_form(request)
        if refused is not None:
            return refused
        session, form = got
        back = RedirectResponse("/operator#customers", status_code=303)
        customer_id = form.get("customer_id", "").strip()
        try:
            dpid_text, _, port_text = form.get("access", "").partition(":")
            access = (int(dpid_text, 0), int(port_text))
        except ValueError:
            session.flash.append(("error", "the access point is DPID:PORT, for example 5:3"))
            return back
        try:
            sla = sla_from(form, customer_id)
        except ValueError as err:
            session.flash.append(("error", str(err)))
            return back
        hosts = [h.strip() for h in form.get("hosts", "").replace(",", " ").split() if h.strip()]
        customer = customer_pb2.Customer(
            customer_id=customer_id, name=form.get("name", "").strip(),
            segment=form.get("segment", "residential"), vip=form.get("vip") == "on",
            access_dpid=access[0], access_port=access[1], hosts=hosts)
        try:
            reply = controller.create_customer(session.token, customer, sla)
        except Refusal as refusal:
            session.flash.append(("error", f"customer not created: {refusal.message}"))
            return back
        session.flash.append(("ok", f"customer {reply.customer.customer_id} created; its SLS is "
                                    f"{CLASS_NAME[reply.sls.service_class]} at "
                                    f"{views.mbps(reply.sls.rate_bps)}. Give it a token with "
                                    f"cemsctl token create customer --customer "
                                    f"{reply.customer.customer_id}"))
        return back

    @app.post("/operator/sla")
    async def update_sla(request: Request):
        got, refused = await operator_form(request)
        if refused is not None:
            return refused
        session, form = got
        customer_id = form.get("customer_id", "").strip()
        back = RedirectResponse("/operator#customers", status_code=303)
        try:
            sla = sla_from(form, customer_id)
            reply = controller.update_sla(session.token, sla)
        except ValueError as err:
            session.flash.append(("error", str(err)))
            return back
        except Refusal as refusal:
            session.flash.append(("error", f"SLA not changed: {refusal.message}"))
            return back
        session.flash.append(("ok", f"SLA of {customer_id} changed; its SLS is "
                                    f"{CLASS_NAME[reply.sls.service_class]} at "
                                    f"{views.mbps(reply.sls.rate_bps)}"))
        return back

    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz():
        return "ok"

    @app.exception_handler(404)
    async def not_found(request: Request, exc):
        return error(request, current(request), 404, "Not found",
                     "there is no such page in the portal")

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception):
        LOG.exception("portal: %s %s failed", request.method, request.url.path)
        return Response("the portal failed on this request; its log says why",
                        status_code=500, media_type="text/plain")

    return app


def _window(service, seconds: float):
    """The WindowFigures of `seconds` of a ServiceExperience, or None."""
    return next((w for w in service.windows if w.window_s == seconds), None)


def _network_picture(topology, ports, customers) -> str:
    rates = {(p.dpid, p.port_no): (p.tx_bytes_per_second * 8 if p.rate_known else math.nan)
             for p in ports}
    capacity = {(p.dpid, p.port_no): p.capacity_bps for s in topology.switches for p in s.ports}
    loads = [views.LinkLoad(l.src_dpid, l.dst_dpid, l.src_port,
                            rates.get((l.src_dpid, l.src_port), math.nan),
                            capacity.get((l.src_dpid, l.src_port), 0))
             for l in topology.links]
    owner = {mac.lower(): c.customer_id for c in customers for mac in c.hosts}
    hosts = [views.HostMark(h.dpid, h.port_no, ", ".join(h.ipv4) or h.mac,
                            owner.get(h.mac.lower(), "")) for h in topology.hosts]
    return views.network_svg(sorted(s.dpid for s in topology.switches), loads, hosts,
                             {s.dpid for s in topology.switches if s.connected})
