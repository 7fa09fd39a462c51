"""The Home page: what GradLab is, a tour with a picture per page, and links that work."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, app_test, screenshot, wait_for_app

PAGES = ROOT / "pages"


def registered_pages() -> set[str]:
    """Page files the entry script hands to st.navigation."""
    return set(re.findall(r'st\.Page\(\s*"([a-z_]+\.py)"', (PAGES / "app.py").read_text()))


def test_home_opens_first_with_a_picture_for_every_stop_of_the_tour() -> None:
    at = app_test()
    assert not at.exception
    assert at.title[0].value == "GradLab"
    headings = [m.value for m in at.markdown if m.value.startswith("##### ")]
    assert headings == [
        "##### Playground",
        "##### Step through backward()",
        "##### Model graph",
        "##### Training",
        "##### Debugger",
    ]
    assert len(at.get("image")) == len(headings)
    links = [e.proto.page for e in at.get("page_link")]
    assert len(links) == len(headings)


def test_the_tour_covers_every_page_and_its_pictures_are_shipped() -> None:
    source = (PAGES / "home.py").read_text()
    toured = set(re.findall(r'"([a-z_]+\.py)",\n', source))
    assert toured == registered_pages() - {"home.py"}
    for image in re.findall(r'"([a-z_]+\.png)"', source):
        picture = PAGES / "images" / image
        assert picture.is_file() and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", image


@pytest.mark.browser
def test_home_links_open_each_page(app_url: str, page: Any) -> None:
    page.goto(app_url)
    wait_for_app(page)
    page.get_by_text("A 30-second tour").wait_for()
    page.locator('[data-testid="stImage"] img').first.wait_for()
    screenshot(page, "home")
    page.get_by_role("link", name="Open the Debugger").click()
    page.wait_for_url(re.compile(r"/debugger"))
    wait_for_app(page)
    assert page.get_by_role("heading", name="Debugger").first.is_visible()


def test_every_picture_is_small_enough_to_ship() -> None:
    for picture in Path(PAGES / "images").glob("*.png"):
        assert picture.stat().st_size < 400_000, picture.name
