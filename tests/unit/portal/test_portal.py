"""The portal against a real gRPC controller server, through FastAPI's test client: sign-in
and its refusals, cookies, CSRF on every form, each customer only its own page, SLS changes
and refusals in the controller's words, the operator's view, and no token ever on a page."""

import re
import time

import pytest
from fastapi.testclient import TestClient

from controller.config import parse_config
from controller.csm.model import ClassBounds, Customer, Role, ServiceClass, Sla
from controller.csm.rules import initial_sls
from controller.csm.store import CsmStore
from controller.monitor.kpis import KpiStore
from controller.runtime import build_experience
from controller.state import PublishedState
from controller.store import Store
from portal.app import SESSION_COOKIE, create_app
from portal.backend import Controller

from tests.unit.controller.fakes import build_topology, mac
from tests.unit.controller.served import Served

M = 1_000_000


@pytest.fixture
def portal():
    topology = build_topology({1: 4, 2: 4}, [(1, 4, 2, 4)])
    topology.learn_host(mac(1), 2, 1, "10.0.0.1")
    topology.learn_host(mac(2), 2, 2, "10.0.0.2")
    state = PublishedState(1.0, "os_ken")
    state.topology = topology.snapshot()
    state.connected = frozenset({1, 2})
    store = Store(":memory:")
    csm = CsmStore(store)
    for customer_id, host, port in (("alice", mac(1), 1), ("bob", mac(2), 2)):
        sla = Sla(customer_id, "gsb-business", {ServiceClass.GOLD: ClassBounds(2 * M, 8 * M),
                                                ServiceClass.SILVER: ClassBounds(M, 10 * M)},
                  min_change_interval_s=60.0)
        csm.create_customer(Customer(customer_id, customer_id.title(), "soho", False, 2, port,
                                     (host,)), sla, initial_sls(sla, 0.0), lambda c: None)
    kpis = KpiStore()
    served = Served(state, csm=csm, kpis=kpis, experience=build_experience(parse_config({}),
                                                                           kpis),
                    capacities={(2, 3): 100 * M, (1, 4): 10 * M})
    controller = Controller(served.address)
    client = TestClient(create_app(controller), base_url="http://127.0.0.1")
    tokens = {"alice": served.token(Role.CUSTOMER, "alice"), "manager": served.manager,
              "probe": served.token(Role.PROBE, "edge-1")}
    yield client, tokens
    controller.close()
    served.close()
    store.close()


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page)[1]


def sign_in(client, token):
    form = client.get("/signin")
    return client.post("/signin", data={"token": token, "csrf": csrf_of(form.text)},
                       follow_redirects=False)


def test_sign_in_refuses_unknown_and_probe_tokens_and_a_forged_form(portal):
    client, tokens = portal
    refused = sign_in(client, "not-a-token")
    assert refused.status_code == 401 and "does not know this token" in refused.text
    probe = sign_in(client, tokens["probe"])
    assert probe.status_code == 403 and "probe cannot sign in" in probe.text
    client.cookies.clear()
    forged = client.post("/signin", data={"token": tokens["alice"], "csrf": "guess"})
    assert forged.status_code == 403 and "stale or was not sent from this portal" in forged.text
    assert SESSION_COOKIE not in client.cookies


def test_a_customer_signs_in_sees_its_own_page_and_no_one_elses(portal):
    client, tokens = portal
    signed = sign_in(client, tokens["alice"])
    assert signed.status_code == 303
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert tokens["alice"] not in cookie
    page = client.get("/")
    assert page.url.path == "/customer/alice" and page.status_code == 200
    assert "Service of alice" in page.text and "8 Mbit/s" in page.text   # gold's bound
    assert ">unlimited<" in page.text and ">2.00<" in page.text            # terms of the SLA
    assert "Content-Security-Policy" in page.headers
    assert tokens["alice"] not in page.text
    assert client.get("/customer/bob").status_code == 403
    assert client.get("/operator").status_code == 403
    made = client.post("/operator/customers", data={"customer_id": "mallory",
                                                    "csrf": csrf_of(page.text)})
    assert made.status_code == 403 and "only the domain manager" in made.text


def test_sls_changes_and_refusals_in_the_controllers_words(portal):
    client, tokens = portal
    sign_in(client, tokens["alice"])
    page = client.get("/customer/alice").text
    token = csrf_of(page)
    without = client.post("/customer/alice/sls", data={"service_class": "gold",
                                                       "rate_mbps": "4"})
    assert without.status_code == 403 and "CSRF token is missing or wrong" in without.text
    out = client.post("/customer/alice/sls", data={"service_class": "gold", "rate_mbps": "20",
                                                   "csrf": token})
    assert "is outside your gold bounds 2 Mbit/s to 8 Mbit/s" in out.text
    done = client.post("/customer/alice/sls", data={"service_class": "gold", "rate_mbps": "4",
                                                    "csrf": token})
    assert "your SLS is now gold at 4 Mbit/s" in done.text
    assert re.search(r'id="sls-class">gold<.*id="sls-rate">4 Mbit/s<', done.text, re.S)
    soon = client.post("/customer/alice/sls", data={"service_class": "silver",
                                                    "rate_mbps": "3", "csrf": token})
    assert "your SLA allows one change every 60 s" in soon.text
    assert re.search(r"next change allowed at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", soon.text)
    other = client.post("/customer/bob/sls", data={"service_class": "gold", "rate_mbps": "4",
                                                   "csrf": token})
    assert other.status_code == 403


def test_the_operator_sees_the_network_and_manages_customers(portal):
    client, tokens = portal
    sign_in(client, tokens["manager"])
    page = client.get("/")
    assert page.url.path == "/operator" and "<svg" in page.text
    assert page.text.count('class="switch') == 2 and "alice" in page.text
    token = csrf_of(page.text)
    created = client.post("/operator/customers", data={
        "customer_id": "carol", "name": "Carol", "segment": "business", "access": "2:3",
        "hosts": "00:00:00:00:00:07", "variant": "gsb-economy", "bronze_min_mbps": "1",
        "bronze_max_mbps": "5", "availability": "0.999", "min_change_interval_s": "60",
        "csrf": token})
    assert "customer carol created; its SLS is bronze at 1 Mbit/s" in created.text, \
        re.findall(r"class=\"flash[^<]*", created.text)
    bad = client.post("/operator/sla", data={
        "customer_id": "carol", "variant": "gsb-economy", "bronze_min_mbps": "5",
        "bronze_max_mbps": "1", "csrf": token})
    assert "SLA not changed" in bad.text
    changed = client.post("/operator/sla", data={
        "customer_id": "carol", "variant": "gsb-economy", "bronze_min_mbps": "2",
        "bronze_max_mbps": "6", "csrf": token})
    assert "SLA of carol changed; its SLS is bronze at 2 Mbit/s" in changed.text
    assert client.get("/customer/alice").status_code == 200   # the operator sees everyone


def test_sign_out_ends_the_session(portal):
    client, tokens = portal
    sign_in(client, tokens["alice"])
    token = csrf_of(client.get("/customer/alice").text)
    assert client.post("/signout", data={"csrf": "wrong"}).status_code == 403
    client.post("/signout", data={"csrf": token})
    assert client.get("/customer/alice", follow_redirects=False).headers["location"] == "/signin"


def test_sessions_expire_when_idle():
    from portal.sessions import Sessions   # pylint: disable=import-outside-toplevel
    now = [0.0]
    sessions = Sessions(idle_s=10, max_age_s=100, max_sessions=2, clock=lambda: now[0])
    first = sessions.create("t1", "customer", "a")
    assert "t1" not in repr(first) and first.csrf not in repr(first)
    now[0] = 5.0
    assert sessions.get(first.session_id) is first
    now[0] = 16.0
    assert sessions.get(first.session_id) is None
    second, third, fourth = (sessions.create(f"t{i}", "customer", "a") for i in (2, 3, 4))
    assert sessions.get(second.session_id) is None and len(sessions) == 2
    now[0] = 200.0
    assert sessions.get(fourth.session_id) is None and time.time() > 0


def test_over_tls_the_session_cookie_is_secure_and_no_log_line_holds_a_token(portal, caplog):
    client, tokens = portal
    secure = TestClient(create_app(client.app.state.controller, secure_cookies=True),
                        base_url="https://127.0.0.1")
    caplog.set_level("DEBUG")
    signed = sign_in(secure, tokens["alice"])
    assert signed.status_code == 303 and "Secure" in signed.headers["set-cookie"]
    sign_in(secure, "cems_00000000_not-a-real-token")
    assert caplog.records and not any(
        t in r.getMessage() for r in caplog.records for t in (tokens["alice"], "not-a-real"))


def test_guessing_tokens_is_slowed_down_per_address(portal):
    client, tokens = portal
    for _ in range(10):
        assert sign_in(client, "cems_00000000_guess").status_code == 401
    slowed = sign_in(client, tokens["alice"])   # even the right token waits now
    assert slowed.status_code == 429 and "too many failed sign-ins" in slowed.text


def test_names_in_addresses_are_escaped_on_pages(portal):
    client, tokens = portal
    sign_in(client, tokens["alice"])
    page = client.get("/customer/<script>alert(1)<%2Fscript>")
    assert page.status_code in (403, 404) and "<script>alert(1)" not in page.text


def test_the_sign_in_limit_lifts_after_its_window():
    from portal.sessions import SignInLimiter   # pylint: disable=import-outside-toplevel
    now = [0.0]
    limiter = SignInLimiter(max_failures=3, window_s=60, max_clients=2, clock=lambda: now[0])
    for second in (0, 10, 20):
        now[0] = second
        limiter.failed("a")
    assert limiter.wait_s("a") == 40 and limiter.wait_s("b") == 0
    now[0] = 60.5
    assert limiter.wait_s("a") == 0          # the first failure left the window
    limiter.failed("b")
    limiter.failed("c")                      # at most two addresses are remembered
    assert limiter.wait_s("a") == 0


def test_a_controller_that_does_not_answer_is_said_so_not_a_crash():
    from portal.sessions import Sessions   # pylint: disable=import-outside-toplevel
    from lab.emulation import free_port    # pylint: disable=import-outside-toplevel
    controller = Controller(f"127.0.0.1:{free_port()}", timeout_s=0.5)   # nobody there
    sessions = Sessions()
    client = TestClient(create_app(controller, sessions=sessions), base_url="http://127.0.0.1")
    try:
        refused = sign_in(client, "cems_00000000_whatever")
        assert refused.status_code == 503 and "does not answer" in refused.text
        session = sessions.create("cems_00000000_x", "customer", "alice")
        page = client.get("/customer/alice",
                          headers={"cookie": f"{SESSION_COOKIE}={session.session_id}"})
        assert page.status_code == 502 and "does not answer" in page.text
        operator = sessions.create("cems_00000000_y", "domain-manager", "")
        view = client.get("/operator",
                          headers={"cookie": f"{SESSION_COOKIE}={operator.session_id}"})
        assert view.status_code == 200 and "network: the controller at" in view.text
    finally:
        controller.close()
