"""Headless Chromium for the tests that look at pages: the fixtures (registered in
conftest.py), the screenshots they save under tests/artifacts/, and the viewer's frame."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Frame, Page, sync_playwright

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[tuple[Page, list[str]]]:
    """A fresh page and the errors it reports (uncaught exceptions, console errors)."""
    context = browser.new_context(viewport={"width": 1000, "height": 560})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    tab.on("console", lambda msg: errors.append(f"console: {msg.text}")
           if msg.type == "error" else None)
    yield tab, errors
    context.close()


def screenshot(tab: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def plot_frame(tab: Page, index: int = 0) -> Frame:
    """The sandboxed frame a viewer draws its document in (viewer.js); BokehJS lives there."""
    handle = tab.locator("iframe.plotline-frame").nth(index).element_handle(timeout=30_000)
    frame = handle.content_frame()
    assert frame is not None
    frame.wait_for_function("window.Bokeh && Bokeh.documents.length > 0", timeout=30_000)
    return frame


def drag_slider_to_the_left_end(tab: Page) -> None:
    """With the mouse, as a person would: the frame's first slider handle dragged left."""
    handle = tab.frame_locator("iframe.plotline-frame").locator(".noUi-handle").first
    box = handle.bounding_box()
    assert box is not None
    tab.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tab.mouse.down()
    tab.mouse.move(box["x"] - 400, box["y"] + box["height"] / 2, steps=10)
    tab.mouse.up()


def cds_column(tab: Page, cds: str, name: str) -> list:
    """Column `name` of the frame's ColumnDataSource `cds`, as numbers."""
    return plot_frame(tab).evaluate(
        f"Array.from(Bokeh.documents[0].get_model_by_id({cds!r}).data[{name!r}], Number)")


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """`check()`'s first truthy value, asked every 50 ms for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)
