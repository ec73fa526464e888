"""The playground page and the API docs work offline, in a real headless Chromium (selenium + chromedriver), and the
service holds a bounded load (200 requests at concurrency 8) with 0 errors."""

from __future__ import annotations

import re
import shutil
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .test_serve import ALONE, CONVERSATION, create_app, error_of, serving

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"


@pytest.fixture(scope="module")
def client(pool):
    with serving(create_app(pool, queue_size=64, timeout_s=600)) as c:
        yield c


def test_page_and_docs_reference_only_this_server(client):
    for path in ("/", "/docs"):
        page = client.get(path)
        assert page.status_code == 200
        urls = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(r"url: '([^']+)'", page.text)
        assert urls and all(u.startswith("/") for u in urls), urls  # no CDN: the machine may be offline
        for url in urls:
            if url.startswith("/static/"):
                assert client.get(url).status_code == 200, url


def test_include_prompt_option_returns_the_exact_prompt(client):
    body = client.post("/v1/rewrite", json={"messages": CONVERSATION, "options": {"include_prompt": True}}).json()
    assert "<current_query>Why is it faster?</current_query>" in body["prompt"]
    assert "prompt" not in client.post("/v1/rewrite", json={"messages": CONVERSATION}).json()
    bad = client.post("/v1/rewrite", json={"messages": CONVERSATION, "options": {"include_prompt": "yes"}})
    assert error_of(bad, 422)["type"] == "InvalidRequestError"


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver):
        pytest.skip("needs Debian's chromium and chromium-driver (make test installs them where apt-get works)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(arg)
    from selenium.webdriver.chrome.service import Service

    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


def test_the_playground_round_trips_a_rewrite_in_a_real_browser(client, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(str(client.base_url) + "/")
    wait = WebDriverWait(browser, 120)
    wait.until(lambda b: "loading" not in b.find_element(By.ID, "model").text)
    assert "smollm2" in browser.find_element(By.ID, "model").text.lower()  # filled from /v1/models
    browser.find_element(By.ID, "show-prompt").click()
    browser.find_element(By.ID, "rewrite").click()
    wait.until(ec.visibility_of_element_located((By.ID, "result")))
    decision = browser.find_element(By.ID, "decision").text
    assert decision in {"rewritten", "unchanged"} or decision.startswith("rejected")
    assert browser.find_element(By.ID, "query").text == "Why is it faster?"
    assert browser.find_element(By.ID, "rewritten").text and "ms" in browser.find_element(By.ID, "timings").text
    assert "<current_query>" in browser.find_element(By.ID, "prompt").text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "playground.png"))
    # a bad conversation: an error message on the page, and the page keeps working
    browser.find_element(By.ID, "clear").click()
    browser.find_element(By.ID, "add-assistant").click()
    browser.find_element(By.ID, "rewrite").click()
    wait.until(ec.visibility_of_element_located((By.ID, "error")))
    assert "InvalidConversationError" in browser.find_element(By.ID, "error").text


def test_the_api_docs_render_offline_in_a_real_browser(client, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(str(client.base_url) + "/docs")
    WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/v1/rewrite", "/v1/rewrite/batch"} <= {p.replace("\u200b", "") for p in paths}


def test_bounded_load_200_requests_at_concurrency_8_has_no_errors(client):
    """Both rewrite routes, loopback only, stops by itself. Figures: `python scripts/load_serve.py` (docs/benchmarks-serve.md)."""
    bodies = [{"messages": CONVERSATION} if i % 4 < 2 else ALONE for i in range(200)]

    def call(i_body):
        i, body = i_body  # every other request through the OpenAI-compatible route
        route, body = ("/v1/rewrite", body) if i % 2 else ("/v1/chat/completions", {"model": "qr-edge", **body})
        started = time.perf_counter()
        response = client.post(route, json=body)
        return response.status_code, (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(8) as executor:
        results = list(executor.map(call, enumerate(bodies)))
    codes = [code for code, _ in results]
    assert codes.count(200) == 200, {c: codes.count(c) for c in set(codes)}
    assert statistics.median(ms for _, ms in results) > 0
