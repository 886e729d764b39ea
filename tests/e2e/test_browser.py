"""The dashboards in a real browser: Playwright driving Debian's Chromium against runmarket.

A customer signs in, makes an API key, submits a job with it over the API and watches
it reach completed on the dashboard without reloading; a miner sees the node and the
earning from that job; staff publish a pricing version and the next quote uses it.
A second customer and a second miner have data too, and it never shows. Screenshots
of each main page (desktop and phone width) go to test-artifacts/screenshots/.
"""
import json
import re
import os
import shutil
from pathlib import Path

import pytest
import requests

from tests.support.agent import PROJECT_ROOT
from tests.support.market import start_market

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("ARTIFACTS_DIR", PROJECT_ROOT / "test-artifacts")) / "screenshots"
PHONE = {"width": 390, "height": 844}

if not os.path.exists(CHROMIUM) and os.environ.get("CI") != "true":
    pytest.skip("Chromium is not installed (apt install chromium; CI installs it)", allow_module_level=True)

if os.environ.get("CI") == "true":
    from playwright import sync_api  # CI must not pass by skipping the browser tests
else:
    sync_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    running = start_market(tmp_path_factory.mktemp("browser-market"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def others(market, tmp_path_factory):
    """A second customer with a job and a second miner with a node: neither may show to the demo pair."""
    bob_key = market.manage("createapikey", "--customer", "bob")
    market.manage("shell", "-c", "from billing.services import funds_deposit; from marketplace.models import Customer; "
                  "funds_deposit(customer=Customer.objects.get(name='bob'), amount=10**21, reason='test')")
    bob_job = market.submit({"model": "echo", "input": "bob's"}, key=bob_key)
    agent = market.add_agent(tmp_path_factory.mktemp("second-miner"), "max-node")
    node_id = json.loads((agent.state_dir / "enrollment.json").read_text())["node_id"]
    return {"bob_job": bob_job, "max_node": node_id}


def shoot(page, name: str, phone_check: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    desktop = page.viewport_size
    page.set_viewport_size(PHONE)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    page.screenshot(path=str(SCREENSHOTS / f"{name}-phone.png"), full_page=True)
    page.set_viewport_size(desktop)
    assert overflow <= 0 or not phone_check, f"{name} scrolls sideways at phone width ({overflow}px)"


CONTRAST = """() => {
  const rgb = c => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
                                       .reduce((s, v, i) => s + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = e => { for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
                             if (c.length === 3 || c[3] > 0) return c.slice(0, 3); } return [255, 255, 255]; };
  const low = [];
  for (const e of document.querySelectorAll('h1, h2, p, a, td, th, dt, dd, label, button, li, .hint')) {
    if (!e.offsetParent || !e.textContent.trim()) continue;
    const [a, b] = [lum(rgb(getComputedStyle(e).color)), lum(background(e))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push(e.tagName + ' "' + e.textContent.trim().slice(0, 30) + '" ' + ratio.toFixed(2));
  }
  return low;
}"""


def assert_accessible_basics(page) -> None:
    """One h1, a language, a label for every control a person fills in, and text at 4.5:1 contrast."""
    assert page.locator("h1").count() == 1
    assert page.get_attribute("html", "lang") == "en"
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
        .filter(e => e.type !== 'hidden' && !e.labels.length && !e.getAttribute('aria-label'))
        .map(e => e.name || e.id)""")
    assert unlabelled == []
    assert page.evaluate(CONTRAST) == []


def sign_in(browser, market, who: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{market.url}/accounts/login/")
    assert_accessible_basics(page)
    credentials = market.credentials[who]
    page.fill("#id_username", credentials["username"])
    page.fill("#id_password", credentials["password"])
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def test_a_customer_watches_an_api_job_complete_live_then_the_miner_sees_the_earning(browser, market, others):
    page = sign_in(browser, market, "customer")
    assert page.url.endswith("/dashboard/")
    assert others["bob_job"] not in page.content(), "another customer's job never shows"
    assert_accessible_basics(page)
    sync_api.expect(page.locator("#getting-started")).to_contain_text("Send a job")
    shoot(page, "customer-dashboard")

    page.click("text=API keys")
    page.fill("#id_name", "from the browser test")
    page.click("text=Create key")
    key = page.input_value("[data-testid=new-key]")
    assert key.startswith("mk_")
    assert_accessible_basics(page)
    shoot(page, "customer-api-keys")

    page.click("nav >> text=Dashboard")
    page.wait_for_selector("#live-state:has-text('live')")
    page.evaluate("window.__not_reloaded = true")
    balance_before = page.get_attribute("[data-testid=balance]", "title")
    response = requests.post(f"{market.url}/v1/jobs", json={"model": "sleep", "input": {"seconds": 1}},
                             headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert response.status_code == 201, response.text
    job_id = response.json()["job_id"]
    status = page.locator(f"#job-{job_id} .status")
    status.wait_for(timeout=15000)  # the row appears without a reload
    sync_api.expect(status).to_have_text("completed", timeout=30000)
    assert page.evaluate("window.__not_reloaded") is True, "the page was not reloaded"
    page.wait_for_function(f"document.querySelector('[data-testid=balance]').title !== {balance_before!r}")
    assert int(page.get_attribute("[data-testid=balance]", "title").split()[0]) < int(balance_before.split()[0]), \
        "the balance went down by the job's charge, without a reload"
    shoot(page, "customer-dashboard-with-job")

    page.click(f"#job-{job_id} a")
    sync_api.expect(page.locator("#job-status")).to_have_text("completed")
    receipt = page.locator("section[aria-labelledby=receipt-heading]").inner_text()
    assert "yes, with the node" in receipt, receipt
    assert_accessible_basics(page)
    shoot(page, "customer-job")

    # the catalogue and the playground: a model's example is filled in and quoted, no JSON typed
    page.click("nav >> text=Models")
    assert_accessible_basics(page)
    shoot(page, "customer-models")
    page.click("#model-tokens a.button")
    sync_api.expect(page.locator("#quote")).to_contain_text("Quote: about")
    assert "answer in a stream of words" in page.input_value("#id_input")
    page.select_option("#id_priority", "urgent")
    sync_api.expect(page.locator("#quote")).to_contain_text("Quote: about")
    assert_accessible_basics(page)
    shoot(page, "customer-playground")
    page.click("#playground button[type=submit]")
    page.wait_for_url("**/dashboard/jobs/job_*/")
    sync_api.expect(page.locator("#job-status")).to_have_text("completed", timeout=30000)
    sync_api.expect(page.locator("#output")).to_have_text("GPUs on this marketplace answer in a stream of words")

    page.click("nav >> text=New job")
    assert_accessible_basics(page)
    shoot(page, "customer-new-job")
    page.select_option("#id_model", "tokens")
    page.fill("#id_input", json.dumps({"text": "one two three four five six", "delay": 0.4}))
    page.click("#playground button[type=submit]")
    page.wait_for_url("**/dashboard/jobs/job_*/")
    page.evaluate("window.__not_reloaded = true")
    sync_api.expect(page.locator("#output")).to_contain_text("one two", timeout=15000)
    assert page.locator("#job-status").inner_text() != "completed", "the output streamed in before the end"
    sync_api.expect(page.locator("#job-status")).to_have_text("completed", timeout=30000)
    # the job's end reaches the whole page without a reload: result, charge, receipt, times
    sync_api.expect(page.locator("#job-result")).to_contain_text('"tokens": 6')
    sync_api.expect(page.locator("#output")).to_have_text("one two three four five six")  # streamed text stays text
    sync_api.expect(page.locator("[data-testid=charged]")).to_contain_text("settled")
    sync_api.expect(page.locator("section[aria-labelledby=receipt-heading]")).to_contain_text("yes, with the node")
    sync_api.expect(page.locator("[data-testid=duration]")).to_contain_text(" s")
    assert page.evaluate("window.__not_reloaded") is True, "the page was not reloaded"
    assert_accessible_basics(page)
    shoot(page, "customer-job-streamed")

    first_job = page.url
    page.click("text=Run again")
    page.wait_for_url(lambda url: url != first_job and "/dashboard/jobs/job_" in url)
    sync_api.expect(page.locator("#job-status")).to_have_text("completed", timeout=30000)
    sync_api.expect(page.locator("#job-input")).to_contain_text("one two three")

    page.click("nav >> text=New job")
    page.select_option("#id_model", "sleep")
    page.fill("#id_input", json.dumps({"seconds": 60}))
    page.click("#playground button[type=submit]")
    page.wait_for_url("**/dashboard/jobs/job_*/")
    sync_api.expect(page.locator("#job-status")).to_have_text("running", timeout=15000)
    page.once("dialog", lambda dialog: dialog.accept())  # "Cancel this job?"
    page.click("text=Cancel job")
    sync_api.expect(page.locator("#job-status")).to_have_text("cancelled", timeout=15000)
    sync_api.expect(page.locator("text=Cancel job")).to_have_count(0)

    miner_page = sign_in(browser, market, "miner")
    assert miner_page.url.endswith("/miner/")
    rows = miner_page.locator("#nodes .node")
    sync_api.expect(rows).to_have_count(1)
    sync_api.expect(rows.first.locator(".state")).to_have_text("online")
    assert others["max_node"] not in miner_page.content(), "another miner's node never shows"
    earned = miner_page.locator("[data-testid=earnings]").get_attribute("title")
    assert int(earned.split()[0]) > 0, "the job's payout reached the miner"
    miner_page.click("text=Make an enrolment token")
    command = miner_page.input_value("[data-testid=runnode]")
    assert f"--marketplace {market.url}" in command and "--enroll-token enroll_" in command
    assert_accessible_basics(miner_page)
    shoot(miner_page, "miner-dashboard")


def test_staff_publish_a_pricing_version_and_the_next_quote_uses_it(browser, market):
    page = sign_in(browser, market, "admin")
    page.goto(f"{market.url}/admin/billing/pricingpolicy/add/")
    page.fill("#id_model_base_prices_wei", json.dumps({"echo": "777000000000000000"}))
    page.fill("#id_note", "echo costs more")
    page.click("input[name=_save]")
    page.wait_for_load_state()
    shoot(page, "staff-pricing", phone_check=False)  # the Django admin's own layout
    quote = requests.post(f"{market.url}/v1/jobs", json={"model": "echo", "input": "x"}, headers=market.headers(),
                          timeout=10).json()
    assert int(quote["estimated_cost_wei"]) >= 777 * 10**15
    versions = requests.get(f"{market.url}/v1/jobs/{quote['job_id']}", headers=market.headers(), timeout=10).json()
    assert versions["policy_version"] == quote["policy_version"] >= 2
    page.goto(f"{market.url}/admin/billing/account/treasury/")
    shoot(page, "staff-treasury", phone_check=False)


# every list staff work from: its columns fit a 1280 px screen (no sideways scrolling)
STAFF_LISTS = ["jobs/job", "marketplace/customer", "marketplace/apikey", "marketplace/miner", "marketplace/person",
               "nodes/node", "nodes/enrollmenttoken", "billing/pricingpolicy", "billing/account",
               "billing/ledgeradjustment", "billing/ledgertransaction", "billing/withdrawal"]


def test_staff_cancel_and_refund_a_job_from_its_page_and_the_ledger_shows_it(browser, market):
    running = market.submit({"model": "sleep", "input": {"seconds": 60}})
    market.wait(running, statuses=("running",), timeout=30)
    charged = market.submit({"model": "sleep", "input": {"seconds": 1}})  # charged for its second
    assert market.wait(charged)["status"] == "completed"
    page = sign_in(browser, market, "admin")

    page.goto(f"{market.url}/admin/jobs/job/?q={running}")
    page.click(f"text={running}")
    shoot(page, "staff-job", phone_check=False)  # the Django admin's own layout
    page.once("dialog", lambda dialog: dialog.accept())  # "Cancel this job? ..."
    page.click("button:has-text('Cancel job')")
    sync_api.expect(page.locator(".messagelist")).to_contain_text(f"Cancelled {running}.")
    sync_api.expect(page.locator("button:has-text('Cancel job')")).to_have_count(0)
    assert market.job(running)["status"] == "cancelled"

    page.goto(f"{market.url}/admin/jobs/job/?q={charged}")
    page.click(f"text={charged}")
    page.once("dialog", lambda dialog: dialog.accept())  # "Refund this job's charge ...?"
    page.click("button:has-text('Refund charge')")
    sync_api.expect(page.locator(".messagelist")).to_contain_text("Refunded")
    sync_api.expect(page.locator("button:has-text('Refund charge')")).to_have_count(0)
    page.goto(f"{market.url}/admin/billing/ledgertransaction/?q={charged}")
    sync_api.expect(page.locator("#result_list")).to_contain_text(re.compile("refund", re.I))
    page.goto(f"{market.url}/admin/billing/ledgeradjustment/?kind__exact=refund")
    sync_api.expect(page.locator("#result_list")).to_contain_text(f"refund of job {charged}")

    page.goto(f"{market.url}/admin/marketplace/customer/?q=demo")
    page.locator("#result_list tbody a").first.click()
    sync_api.expect(page.locator("body")).to_contain_text("balance")
    shoot(page, "staff-customer", phone_check=False)
    page.goto(f"{market.url}/admin/")
    shoot(page, "staff-index", phone_check=False)

    wide = []
    for name in STAFF_LISTS:
        page.goto(f"{market.url}/admin/{name}/")
        overflow = page.evaluate("""() => { const r = document.querySelector('.results');
            return r ? r.scrollWidth - r.clientWidth : document.documentElement.scrollWidth - window.innerWidth; }""")
        if overflow > 0:
            wide.append(f"{name} ({overflow}px)")
        shoot(page, f"staff-list-{name.replace('/', '-')}", phone_check=False)
    assert wide == [], f"lists that scroll sideways at 1280 px: {wide}"


def test_a_miner_sets_a_price_and_a_job_earns_at_it_and_a_broken_model_shows(browser, market, others):
    price = 10**15  # wei per GPU-second: a one-second job earns about this, well above any minimum charge
    # the other miner's node asks more, so the demo node is the cheapest that fits
    market.manage("shell", "-c", f"from nodes.models import Node; Node.objects.filter(public_id="
                  f"'{others['max_node']}').update(price_per_second_wei={price * 3})")
    page = sign_in(browser, market, "miner")
    node = page.locator("#nodes .node").first
    node.locator("input[name=price_per_second_wei]").fill(str(price))
    node.locator("form.price button").click()
    page.wait_for_url("**/miner/")
    sync_api.expect(node.locator("[data-testid=charges] span").first).to_have_attribute("title", f"{price} wei")
    earned = int(page.get_attribute("[data-testid=earnings]", "title").split()[0])

    job = market.wait(market.submit({"model": "sleep", "input": {"seconds": 1}}))
    assert job["status"] == "completed" and job["node_id"] != others["max_node"]
    charged, payout = int(job["billing"]["charged_price_wei"]), int(job["billing"]["payout_price_wei"])
    assert price <= charged < 2 * price, "charged for about a second at the miner's price"
    page.reload()
    assert int(page.get_attribute("[data-testid=earnings]", "title").split()[0]) == earned + payout

    # a model the node says it cannot run shows as not working (each hello says so anew)
    node_id = job["node_id"]
    market.manage("shell", "-c", f"from nodes.models import Node; Node.objects.filter(public_id='{node_id}')"
                  ".update(unavailable_models={'tokens': 'its weights are missing'})")
    try:
        page.reload()
        sync_api.expect(node.locator("[data-testid=models]")).to_contain_text("tokens (not working: its weights are missing)")
        assert_accessible_basics(page)
        shoot(page, "miner-priced-and-broken")
    finally:  # the nodes as they were, for the tests after this one
        market.manage("shell", "-c", f"from nodes.models import Node; Node.objects.filter(public_id='{node_id}')"
                      ".update(unavailable_models={}); Node.objects.update(price_per_second_wei=0)")


def test_a_brand_new_customer_runs_a_first_job_from_the_playground_without_typing_json(browser, market):
    market.manage("shell", "-c", "from django.contrib.auth import get_user_model; "
                  "from billing.services import funds_deposit; from marketplace.models import Customer; "
                  "user = get_user_model().objects.create_user('newcomer', password='first-visit-pw'); "
                  "customer = Customer.objects.create(name='newcomer', user=user); "
                  "funds_deposit(customer=customer, amount=5 * 10**18, reason='their first deposit')")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{market.url}/accounts/login/")
    page.fill("#id_username", "newcomer")
    page.fill("#id_password", "first-visit-pw")
    page.click("button[type=submit]")
    page.wait_for_url("**/dashboard/")
    panel = page.locator("#getting-started")
    sync_api.expect(panel).to_contain_text("you have 5 ETH to spend")
    sync_api.expect(panel).to_contain_text("Create an API key")
    page.click("text=run your first job from the form")
    sync_api.expect(page.locator("#quote")).to_contain_text("Quote: about")  # the first model, its example in place
    assert page.input_value("#id_input").strip(), "an example input is filled in"
    page.click("#playground button[type=submit]")
    page.wait_for_url("**/dashboard/jobs/job_*/")
    sync_api.expect(page.locator("#job-status")).to_have_text("completed", timeout=30000)
    page.click("nav >> text=Dashboard")
    sync_api.expect(page.locator("#getting-started")).to_have_count(0)  # done with: a first job completed
    context.close()
