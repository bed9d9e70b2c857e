"""A fresh server whose first visitor opens a page's own address: it must be served through the router (its six
pages in the sidebar, not Streamlit's legacy listing of every file in pages/, and the router's wide layout).

Its own module so that `app_url` starts a server no other test has visited yet."""

from __future__ import annotations

import pytest

from tests.support import PAGE_S, PAGES, launch, title

pytestmark = pytest.mark.browser


def test_a_deep_link_on_a_fresh_server_gets_the_router_navigation(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(PAGE_S * 1000)
            page.goto(f"{app_url}/explore")
            title(page, "Explore").wait_for()
            nav = page.locator('[data-testid="stSidebarNav"]')
            nav.get_by_role("link", name="Evaluate").wait_for()
            links = [text.strip() for text in nav.get_by_role("link").all_inner_texts()]
            assert [label for label in PAGES if any(label in link for link in links)] == list(PAGES)
            assert not any(name in " ".join(links) for name in ("common", "streamlit app")), links
            assert page.url.endswith("/explore")
            # The router's layout="wide": the main block is far wider than Streamlit's centred 736 px column
            width = page.locator('[data-testid="stMainBlockContainer"]').bounding_box()["width"]
            assert width > 800, width
        finally:
            browser.close()
