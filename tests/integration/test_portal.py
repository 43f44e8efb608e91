"""The portal in a real browser (Debian's headless Chromium through Selenium), against a real
controller on an emulated network: a customer signs in, changes its SLS and the switch's
meter follows (ovs-ofctl), an out-of-bounds change is refused in the controller's words, the
experience chart is drawn, another customer's page is refused (403), a form without its
CSRF token is refused; the operator sees the network picture and a root-cause finding.
Screenshots of the main pages are saved in artifacts/portal/ (kept after the test)."""

import contextlib
import os
import pathlib
import subprocess
import time


from lab.emulation import REPO, wait_for
from lab.servers import start_portal, stop
from mininet_topos import DumbbellTopo

from tests.integration.conftest import running_network
from tests.integration.feeds import VoiceFeed, create_customers

ARTIFACTS = pathlib.Path(REPO) / "artifacts" / "portal"


def ofctl(*args: str) -> str:
    return subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args], check=True,
                          capture_output=True, text=True, timeout=10).stdout


@contextlib.contextmanager
def portal_process(controller_address: str):
    proc, address = start_portal(controller_address, str(ARTIFACTS / "portal.log"))
    try:
        yield address
    finally:
        stop(proc)


@contextlib.contextmanager
def browser():
    from selenium import webdriver  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.chrome.service import Service  # pylint: disable=import-outside-toplevel
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1200,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def sign_in(driver, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    driver.get(f"{base}/signin")
    driver.find_element(By.ID, "token").send_keys(token)
    submit(driver, "signin")
    shown(driver, "#signed-in-as, #signin-problem, #error-message, #network")


def submit(driver, button_id: str) -> None:
    """Click a form's submit button and wait until the browser has left the page it was on:
    the click returns before the next page has loaded, and the old page may hold what the
    test looks for next (a customer's page lists its report's unmet targets as errors)."""
    from selenium.common.exceptions import WebDriverException  # pylint: disable=import-outside-toplevel
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.ID, button_id).click()

    def left() -> bool:
        try:
            old.tag_name  # pylint: disable=pointless-statement
        except WebDriverException:   # stale, or "does not belong to the document" mid-load
            return True
        return False
    wait_for(left, 15, f"the page after {button_id}")


def shown(driver, css: str):
    """The first element `css` selects, once the page shows it (a click that submits a form
    returns before the next page has loaded)."""
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    return wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, css), 15,
                    f"{css} on the page")[0]


def page_shot(driver, name: str) -> None:
    """A screenshot of the whole page (its full height)."""
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1200, min(4000, max(900, height + 40)))
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_customer_and_operator_in_a_real_browser(controller):
    from selenium.webdriver.common.by import By  # pylint: disable=import-outside-toplevel
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with running_network(DumbbellTopo(n=2, bottleneck_mbps=20), controller, 64) as net:
        assert net.pingAll(timeout=1) == 0.0
        l1, l2, r1, s1 = net.get("l1", "l2", "r1", "s1")
        manager = controller.token
        tokens = create_customers(controller, s1, {"alice": l1, "bob": l2})
        wait_for(lambda: ofctl("dump-meters", "s1").count("rate=2000") == 2, 15,
                 "both customers' 2 Mbit/s meters")
        feed = VoiceFeed(controller.grpc_address, controller.probe_token("core-probe"),
                         r1.IP(), l1.IP())
        with feed, portal_process(controller.grpc_address) as base, browser() as driver:
            # -- the customer ------------------------------------------------------------
            sign_in(driver, base, tokens["alice"])
            assert driver.current_url == f"{base}/customer/alice"
            assert driver.find_element(By.ID, "signed-in-as").text == "alice"
            assert tokens["alice"] not in driver.page_source
            cookie = driver.get_cookie("cems_session")
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

            rate = driver.find_element(By.ID, "sls-rate-input")
            rate.clear()
            rate.send_keys("6")
            driver.find_element(By.CSS_SELECTOR, "#sls-class-input option[value=gold]").click()
            submit(driver, "sls-submit")
            assert "your SLS is now gold at 6 Mbit/s" in shown(driver, ".flash.ok").text
            assert driver.find_element(By.ID, "sls-rate").text == "6 Mbit/s"
            wait_for(lambda: "rate=6000" in ofctl("dump-meters", "s1"), 15,
                     "alice's meter at 6 Mbit/s on s1")

            time.sleep(1.1)   # the SLA allows one change a second
            rate = driver.find_element(By.ID, "sls-rate-input")
            rate.clear()
            rate.send_keys("50")
            submit(driver, "sls-submit")
            refusal = shown(driver, ".flash.error[role=status]").text
            assert "is outside your gold bounds 2 Mbit/s to 8 Mbit/s" in refusal, refusal
            assert "rate=6000" in ofctl("dump-meters", "s1")

            # experience: degraded voice with a chart of the last hour and its target
            def degraded():
                driver.get(f"{base}/customer/alice")
                rows = driver.find_elements(By.CSS_SELECTOR, "#experience tr.status-degraded")
                return rows and driver.find_elements(By.CSS_SELECTOR,
                                                     "#experience svg.chart circle")
            wait_for(degraded, 60, "alice's degraded voice and its chart in the portal")
            chart = driver.find_element(By.CSS_SELECTOR, "#experience svg.chart")
            assert chart.find_elements(By.CSS_SELECTOR, "line.target")
            assert chart.find_elements(By.CSS_SELECTOR, "circle.point.below")
            page_shot(driver, "customer")

            # another customer's page, and a form whose CSRF token was taken out
            driver.get(f"{base}/customer/bob")
            assert "is not yours to see" in shown(driver, "#error-message").text
            assert "Not yours" in driver.title
            driver.get(f"{base}/customer/alice")
            driver.execute_script(
                "document.querySelector('#sls-form input[name=csrf]').remove()")
            submit(driver, "sls-submit")
            assert "CSRF token is missing or wrong" in shown(driver, "#error-message").text
            driver.get(f"{base}/customer/alice")
            submit(driver, "signout")
            shown(driver, "#token")
            assert driver.current_url == f"{base}/signin"

            # -- the operator ------------------------------------------------------------
            sign_in(driver, base, manager)
            assert driver.current_url == f"{base}/operator"
            network = driver.find_element(By.CSS_SELECTOR, "#network svg.network")
            assert len(network.find_elements(By.CSS_SELECTOR, "g.switch")) == 2
            assert len(network.find_elements(By.CSS_SELECTOR, "line.link")) == 2
            assert "alice" in network.get_attribute("innerHTML")

            def finding():
                driver.get(f"{base}/operator")
                return driver.find_elements(By.CSS_SELECTOR, "#findings li.finding")
            found = wait_for(finding, 60, "a root-cause finding on the operator's page")
            assert "alice" in found[0].text
            assert "alice" in driver.find_element(By.ID, "worst").text
            page_shot(driver, "operator")
            driver.get(f"{base}/signin")
            page_shot(driver, "signin")
        assert feed.sent > 5
