"""The admin page in a real headless Chromium (Debian's, driven by Playwright): log in, filter
to COMPENSATED, open a saga and read its timeline, retry a saga that needs attention and see it
finish. UPDATE_SCREENSHOTS=1 also writes the timeline's picture to docs/img/."""

import os
import shutil
import time

import httpx
import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.client import Api, wait_for
from tools.stack import ROOT, Stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Chromium as root, headless, with none of its background calls to the outside world.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page():
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed: `make browser` installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1280, "height": 720})
        browser.close()


def test_an_operator_logs_in_filters_reads_a_timeline_and_retries(
    api: Api, stack: Stack, page, tmp_path
):
    user_id = api.create_user(100_000)
    api.fault("payment", "approve_payment", "refuse")
    compensated = api.pay(api.create_order(user_id, 1_000))["saga_id"]
    api.fault("payment", "approve_payment", "refuse")
    api.fault("user", "charge_back", "error", times=None)
    stuck = api.start_payment(api.create_order(user_id, 2_000)).json()["saga_id"]
    wait_for(lambda: api.saga(stuck)["status"] == "NEEDS_ATTENTION", 30, "a saga to get stuck")
    base = stack.url("orchestrator")

    page.goto(f"{base}/admin/ui")
    assert page.url.endswith("/admin/ui/login")
    page.fill("#token", "not-the-token")
    page.click("#login")
    assert page.is_visible("#login-error")
    page.fill("#token", "dev-admin-token")
    page.click("#login")

    page.select_option("#status-filter", "COMPENSATED")
    page.click("#apply")
    statuses = page.locator("#sagas td:nth-child(3)").all_inner_texts()
    assert statuses and set(statuses) == {"COMPENSATED"}
    page.click(f"a[href='/admin/ui/sagas/{compensated}']")
    rows = list(
        zip(
            page.locator("#timeline td.step").all_inner_texts(),
            page.locator("#timeline td.phase").all_inner_texts(),
            strict=True,
        )
    )
    assert rows == [
        ("start_order_payment", "action"),
        ("deduct_balance", "action"),
        ("approve_payment", "action"),
        ("deduct_balance", "compensation"),
        ("start_order_payment", "compensation"),
    ]
    shot = tmp_path / "saga-timeline.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        shutil.copy(shot, ROOT / "docs" / "img" / "saga-timeline.png")

    page.goto(f"{base}/admin/ui/sagas/{stuck}")
    assert page.inner_text("#saga-status") == "NEEDS_ATTENTION"
    api.clear_faults()
    page.click("#retry")
    deadline = time.monotonic() + 30
    while page.inner_text("#saga-status") != "COMPENSATED":
        assert time.monotonic() < deadline, "the retried saga did not finish"
        page.reload()
    assert api.balance(user_id) == 100_000


def test_the_admin_page_sends_strangers_to_the_login(stack: Stack):
    base = stack.url("orchestrator")
    nobody = "/admin/ui/sagas/00000000-0000-0000-0000-000000000000"
    with httpx.Client(cookies={"admin_token": "wrong"}, follow_redirects=False) as stranger:
        for answer in (
            stranger.get(f"{base}/admin/ui"),
            stranger.get(f"{base}{nobody}"),
            stranger.post(f"{base}{nobody}/retry"),
        ):
            assert (answer.status_code, answer.headers["location"]) == (303, "/admin/ui/login")
