"""The admin page as an operator uses it, in a real headless Chromium (see test_admin_page.py):
finding a saga by its business keys and by a time typed in the browser's own zone, being told
when a filter does not read, and acting on what is found."""

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.e2e.client import ADMIN_AUTH, Api, wait_for
from tests.e2e.test_admin_page import CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_operators import _stuck_payment
from tools.stack import Stack

SEOUL = "Asia/Seoul"


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _logged_in(browser, base: str, timezone_id: str = SEOUL, token="dev-admin-token") -> Page:
    page = browser.new_context(timezone_id=timezone_id).new_page()
    page.goto(f"{base}/admin/ui/login")
    page.fill("#token", token)
    page.click("#login")
    return page


def _listed(page: Page) -> list[str]:
    return [
        href.rsplit("/", 1)[-1]
        for href in page.locator("#sagas td:first-child a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))"
        )
    ]


def test_an_operator_finds_a_saga_by_order_and_by_a_time_in_seoul(api: Api, stack: Stack, browser):
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 1_234)
    saga_id = api.pay(order_id)["saga_id"]
    other = api.pay(api.create_order(user_id, 1_000))["saga_id"]
    page = _logged_in(browser, stack.url("orchestrator"))

    page.fill("#order-filter", str(order_id))
    page.click("#apply")
    assert _listed(page) == [saga_id]

    # Five minutes ago, as a clock in Seoul shows it, finds the saga; in a minute, nothing.
    page.goto(stack.url("orchestrator") + "/admin/ui")
    seoul_now = datetime.now(ZoneInfo(SEOUL)).replace(tzinfo=None, microsecond=0)
    page.fill("#user-filter", str(user_id))
    page.fill("#since-filter", (seoul_now - timedelta(minutes=5)).isoformat())
    page.click("#apply")
    assert set(_listed(page)) == {saga_id, other}
    page.fill("#since-filter", (seoul_now + timedelta(minutes=1)).isoformat())
    page.click("#apply")
    assert _listed(page) == []

    for field, value in (("#order-filter", "12x"), ("#request-filter", "r" * 200)):
        page.goto(stack.url("orchestrator") + "/admin/ui")
        page.fill(field, value)
        page.click("#apply")
        assert page.is_visible("#filter-errors")
        assert _listed(page) == []
    page.goto(stack.url("orchestrator") + "/admin/ui?status=NOPE&since=yesterday")
    errors = page.inner_text("#filter-errors")
    assert "NOPE" in errors and "yesterday" in errors


def test_a_stuck_saga_is_listed_with_what_it_is_stuck_on_its_user_and_amount(
    api: Api, stack: Stack, browser
):
    saga_id = _stuck_payment(api)
    saga = api.saga(saga_id)
    order_id, user_id = saga["order_id"], saga["keys"]["user_id"]
    page = _logged_in(browser, stack.url("orchestrator"))

    page.fill("#order-filter", str(order_id))
    page.click("#apply")
    assert _listed(page) == [saga_id]
    row = page.locator("#sagas tr", has=page.locator(f"a[href='/admin/ui/sagas/{saga_id}']"))
    assert row.locator("td.user").inner_text() == str(user_id)
    assert row.locator("td.amount").inner_text() == "1,000"
    assert row.locator("td.keys").inner_text() == f"order {order_id}"
    # What it is stuck on (the charge-back), not the refusal that sent it back.
    assert row.locator("td.why").inner_text() == (
        "stuck: injected_failure at deduct_balance (compensation)"
    )

    page.click(f"a[href='/admin/ui/sagas/{saga_id}']")
    assert page.inner_text("#subject .key-user_id strong") == str(user_id)
    assert page.inner_text("#amount") == "1,000"


def test_a_pivot_s_settle_call_is_labelled_with_its_verdict(api: Api, stack: Stack, browser):
    user_id = api.create_user(10_000)
    order_id = api.create_order(user_id, 7_000)
    api.fault("order", "complete_payment", "lose_response", times=None)
    saga = api.pay(order_id)
    api.clear_faults()
    assert saga["status"] == "COMPLETED"
    page = _logged_in(browser, stack.url("orchestrator"))

    page.goto(f"{stack.url('orchestrator')}/admin/ui/sagas/{saga['saga_id']}")

    settles = page.locator("#timeline tr", has=page.locator("span.settle"))
    assert settles.count() >= 1
    assert settles.last.locator("td.step").inner_text() == "complete_order_payment"
    assert settles.last.locator("span.settle").inner_text() == "settle: APPLIED"
    keys = page.locator("#timeline td.key").all_inner_texts()
    assert keys and saga["saga_id"] not in " ".join(keys)
    assert "complete_order_payment:action" in keys
    started = page.locator("#timeline td.started").all_inner_texts()
    assert started and all(len(t) == len("00:00:00.000") for t in started)


def test_the_outbox_page_shows_undelivered_events_behind_the_same_login(
    api: Api, stack: Stack, browser
):
    base = stack.url("orchestrator")
    stranger = browser.new_page()
    stranger.goto(f"{base}/admin/ui/outbox")
    assert stranger.url.endswith("/admin/ui/login")

    api.platform_control(down=True)
    try:
        saga_id = api.pay(api.create_order(api.create_user(10_000), 1_000))["saga_id"]
        wait_for(
            lambda: any(r["attempts"] > 0 for r in api.outbox_rows({saga_id})),
            what="a failed delivery",
        )
        page = _logged_in(browser, base)
        page.click("#outbox-link")
        row = page.locator("#outbox tr", has=page.locator(f"a[href='/admin/ui/sagas/{saga_id}']"))
        assert row.get_attribute("class") == "failed"
        assert row.locator("td.last-error").inner_text().startswith("failed")
        assert row.locator("td.age").inner_text().endswith(" s")
        # "deliver now": due at once, not at its backoff (pressed while the event is surely
        # still waiting: the platform is down).
        row.locator("button.redeliver").click()
        assert page.url.endswith("/admin/ui/outbox")
    finally:
        api.platform_control(down=False)
    wait_for(lambda: api.outbox_rows({saga_id})[0]["status"] == "DELIVERED", what="delivery")
    page.goto(f"{base}/admin/ui/sagas/{saga_id}")  # the saga shows who stepped in
    action = page.locator("#saga-actions tr").nth(1).locator("td").all_inner_texts()
    assert action[1:3] == ["admin", "redeliver"] and action[4] == "accepted"
    event_id = api.outbox_rows({saga_id})[0]["event_id"]
    again = httpx.post(
        f"{base}/admin/ui/outbox/{event_id}/redeliver",
        cookies={"admin_token": "dev-admin-token"},
        data={"saga_id": saga_id},
    )
    assert again.status_code == 409 and "not waiting in the outbox" in again.text


def test_a_refusal_on_the_page_is_a_page_with_its_message_and_a_way_back(api: Api, stack: Stack):
    base = stack.url("orchestrator")
    admin, viewer = {"admin_token": "dev-admin-token"}, {"admin_token": "dev-viewer-token"}
    done = api.pay(api.create_order(api.create_user(10_000), 1_000))["saga_id"]
    saga_page = f"{base}/admin/ui/sagas/{done}"

    for answer, status, code in (
        (httpx.get(f"{base}/admin/ui/sagas/not-a-saga", cookies=admin), 404, None),
        (httpx.get(f"{base}/admin/ui/sagas/{uuid.uuid4()}", cookies=admin), 404, None),
        (httpx.post(f"{saga_page}/retry", cookies=admin), 409, "saga_not_retryable"),
        (httpx.post(f"{saga_page}/cancel", cookies=admin, data={"reason": "x"}), 409, None),
        (httpx.post(f"{saga_page}/retry", cookies=viewer), 403, "forbidden"),
    ):
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"].startswith("text/html")
        assert 'id="error-message"' in answer.text and 'id="back"' in answer.text
        if code:
            assert f'<code id="error-code">{code}</code>' in answer.text
    bad_cursor = httpx.get(f"{base}/admin/ui", params={"cursor": "nope"}, cookies=admin)
    assert bad_cursor.status_code == 422 and 'id="filter-errors"' in bad_cursor.text
    # The API keeps answering JSON.
    api_answer = api.http.post(
        api.url("orchestrator", f"/admin/sagas/{done}/retry"), headers=ADMIN_AUTH
    )
    assert api_answer.json()["error"]["code"] == "saga_not_retryable"


def test_the_list_pages_older_newer_and_back_to_the_first(api: Api, stack: Stack, browser):
    user_id = api.create_user(100_000)
    sagas = [api.pay(api.create_order(user_id, 100))["saga_id"] for _ in range(3)][::-1]
    page = _logged_in(browser, stack.url("orchestrator"))
    page.goto(f"{stack.url('orchestrator')}/admin/ui?user_id={user_id}&limit=2")
    assert _listed(page) == sagas[:2]
    assert page.locator("#newer").count() == 0 and page.locator("#first").count() == 0
    page.click("#next")
    assert _listed(page) == sagas[2:]
    assert page.locator("#next").count() == 0
    page.click("#newer")
    assert _listed(page) == sagas[:2]
    page.click("#next")
    page.click("#first")
    assert _listed(page) == sagas[:2]
    assert page.locator("#first").count() == 0


def test_an_operator_finds_a_stuck_saga_by_order_cancels_it_and_sees_it_audited(
    api: Api, stack: Stack, browser
):
    saga_id = _stuck_payment(api)  # stuck before its pivot (a charge-back failing)
    order_id = api.saga(saga_id)["order_id"]
    api.clear_faults()
    page = _logged_in(browser, stack.url("orchestrator"))

    page.fill("#order-filter", str(order_id))
    page.click("#apply")
    page.click(f"a[href='/admin/ui/sagas/{saga_id}']")
    page.fill("#cancel-reason", "customer asked on the phone")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    wait_for(lambda: api.saga(saga_id)["status"] == "COMPENSATED", what="the cancelled saga")

    page.click("#audit-link")
    row = page.locator("#audit tr", has=page.locator(f"a[href='/admin/ui/sagas/{saga_id}']"))
    assert row.locator("td").all_inner_texts()[1:] == [
        "admin",
        "cancel",
        saga_id,
        "customer asked on the phone",
        "accepted",
    ]


def test_an_operator_previews_then_retries_the_stuck_sagas_in_bulk(api: Api, stack: Stack, browser):
    stuck = sorted(_stuck_payment(api) for _ in range(2))
    api.clear_faults()
    page = _logged_in(browser, stack.url("orchestrator"))

    page.select_option("#bulk-type", "payment")
    page.fill("#bulk-step", "deduct_balance")
    page.click("#bulk-preview-button")
    listed = page.locator("#bulk-sagas td:first-child a").all_inner_texts()
    assert set(stuck) <= set(listed)  # the dry run: which, and how many
    assert f"{len(listed)}" in page.inner_text("#bulk-preview")
    assert [api.saga(s)["status"] for s in stuck] == ["NEEDS_ATTENTION"] * 2  # nothing moved
    page.fill("#bulk-reason", "charge-backs work again")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#bulk-retry")

    for saga_id in stuck:
        wait_for(lambda s=saga_id: api.saga(s)["status"] == "COMPENSATED", what="retried")
    assert page.url.endswith("/admin/ui/audit")
    for saga_id in stuck:
        row = page.locator("#audit tr", has=page.locator(f"a[href='/admin/ui/sagas/{saga_id}']"))
        assert row.locator("td").all_inner_texts()[2:] == [
            "bulk_retry",
            saga_id,
            "charge-backs work again",
            "accepted",
        ]
    viewer = _logged_in(browser, stack.url("orchestrator"), token="dev-viewer-token")
    assert viewer.locator("#bulk-select").count() == 0  # a viewer is not offered it
