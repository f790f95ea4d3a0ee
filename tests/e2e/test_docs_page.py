"""`/docs` renders in a headless Chromium that may not leave the machine: Swagger UI comes from
a package, not a CDN, with an Authorize button for the bearer tokens."""

import os
import re

import pytest
from playwright.sync_api import Route, sync_playwright

from tests.e2e.test_admin_page import CHROMIUM, CHROMIUM_ARGS
from tools.stack import Stack


def _local_only(route: Route) -> None:
    if re.match(r"https?://(127\.0\.0\.1|localhost)[:/]", route.request.url):
        route.continue_()
    else:  # as on a machine with no internet: nothing outside loads
        route.abort()


@pytest.mark.parametrize("process", ["orchestrator", "order"])
def test_docs_render_with_no_network(stack: Stack, process: str):
    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed: `make browser` installs it")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.route("**/*", _local_only)
        page.goto(f"{stack.url(process)}/docs")
        page.wait_for_selector(".swagger-ui .info .title", timeout=15_000)
        title = page.inner_text(".swagger-ui .info .title")
        operations = page.locator(".opblock").count()
        authorize = page.locator("button.authorize").count()
        browser.close()
    assert title.strip()
    assert operations > 3
    if process == "orchestrator":
        assert authorize == 1  # the operator's and the services' bearer tokens
