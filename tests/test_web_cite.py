"""The citation panel of the chat page for a page whose date is inferred: it shows the GB/T 7714
reference and why the date was inferred, and 复制引用 copies the reference (real Chromium).

Run: ``pytest -m browser tests/test_web_cite.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser_support import ask, needs_chromium  # noqa: E402

pytestmark = [pytest.mark.browser, needs_chromium]

try:
    from playwright.sync_api import expect
except ImportError:  # pragma: no cover - the test extra is not installed
    pytest.skip("the playwright package is not installed", allow_module_level=True)


def test_inferred_date_panel_shows_and_copies_the_gbt7714_reference(desktop, server_url):
    page = desktop
    page.goto(server_url)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server_url)
    message = ask(page, "市政府2021年第15次常务会议原则通过了哪部条例草案？")  # 004: no masthead
    with page.expect_response(lambda r: "/api/citations/" in r.url) as citation_response:
        message.get_by_test_id("citation-marker").first.click()
    citation = citation_response.value.json()["citation"]
    assert citation["date_source"] == "inferred"
    assert citation["gbt7714"] == "罗文鹏. 市政府召开常务会议[N]. [2021-08-18]."
    panel = page.get_by_test_id("citation-panel")
    expect(panel.get_by_test_id("panel-date")).to_have_text("2021年8月18日（推断）")
    expect(panel.get_by_test_id("date-evidence")).to_contain_text("2021年第15次常务会议")
    expect(panel.get_by_test_id("gbt-reference")).to_have_text(citation["gbt7714"])
    panel.get_by_test_id("copy-citation").click()
    expect(panel.get_by_test_id("copy-citation")).to_contain_text("已复制")
    assert page.evaluate("navigator.clipboard.readText()") == citation["gbt7714"]
    assert not page.probe.errors
