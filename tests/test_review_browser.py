"""The review workspace in a real browser: headless Debian Chromium driven by Selenium through chromium-driver,
against a real `medscope review` process. A click on an evidence window moves the player there; a dragged edge
is the corrected window in the database; the page's export loads with the suite's reader; a question asked in
the page runs the agent and its episode joins the case."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from review_server import Server, start_server, write_library

from medscope.agent.protocol import render_windows
from medscope.suite.records import read_jsonl
from medscope.video.synthclin import SynthClinVideo

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="needs Debian's chromium and chromium-driver (apt-get install chromium "
                                       "chromium-driver; `make test` installs them where apt is usable)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, synth_video: SynthClinVideo) -> Iterator[Server]:
    library = write_library(tmp_path_factory.mktemp("library"), synth_video)
    running = start_server([library["trace"], library["ts_trace"]], tmp_path_factory.mktemp("db") / "r.sqlite",
                           "--backend", "oracle")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
                 "--window-size=1300,1400", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(DRIVER)))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {condition}")


def _episode(server: Server, answer_like: str = "[%") -> tuple[int, int]:
    with sqlite3.connect(server.database) as conn:
        row = conn.execute("SELECT id, case_id FROM episodes WHERE verdict = 'right' AND answer LIKE ? ORDER BY id",
                           (answer_like,)).fetchone()
    return int(row[0]), int(row[1])


def _open_case(browser: Any, server: Server, case: int, episode: int) -> None:
    browser.get(f"{server.url.rstrip('/')}/cases/{case}?episode={episode}")
    wait_for(lambda: browser.execute_script("return document.getElementById('player').readyState >= 1"))


def test_clicking_an_evidence_window_seeks_the_player_there(browser: Any, server: Server) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    episode, case = _episode(server)
    _open_case(browser, server, case, episode)
    window = browser.find_elements(By.CSS_SELECTOR, ".tl rect.evidence[data-start]")[0]
    start = float(window.get_attribute("data-start"))
    assert start > 1.0  # a seek that does nothing would read 0
    ActionChains(browser).move_to_element(window).click().perform()
    wait_for(lambda: browser.execute_script("const p = document.getElementById('player'); "
                                            "return !p.seeking && p.readyState >= 1 && p.currentTime > 0"))
    assert abs(browser.execute_script("return document.getElementById('player').currentTime") - start) < 0.1

    # the loop replays the window: past its end, the player goes back to its start
    browser.find_element(By.ID, "loop").click()
    end = float(window.get_attribute("data-end"))
    browser.execute_script(f"const p = document.getElementById('player'); p.currentTime = {end + 0.05}; "
                           "p.dispatchEvent(new Event('timeupdate'));")
    wait_for(lambda: abs(browser.execute_script("return document.getElementById('player').currentTime") - start)
             < 0.1)


def test_dragging_an_edge_is_the_corrected_window_in_the_database(browser: Any, server: Server) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    episode, case = _episode(server)
    _open_case(browser, server, case, episode)
    before = json.loads(browser.find_element(By.ID, "windows").get_attribute("value"))
    assert len(before) == 1  # the editor starts from the model's evidence window
    editor = browser.find_element(By.ID, "editor")
    width = editor.size["width"]
    duration = float(editor.get_attribute("data-duration"))
    edge = browser.find_element(By.CSS_SELECTOR, "#editor .win .edge.end")
    ActionChains(browser).click_and_hold(edge).move_by_offset(40, 0).move_by_offset(20, 0).release().perform()
    after = json.loads(browser.find_element(By.ID, "windows").get_attribute("value"))
    moved = 60 / width * duration
    assert after[0][0] == pytest.approx(before[0][0], abs=0.01)
    assert after[0][1] == pytest.approx(before[0][1] + moved, abs=2 * duration / width)  # within 2 px

    browser.find_element(By.ID, "reviewer").send_keys("Dr Browser")
    browser.find_element(By.ID, "comment").send_keys("the smoke lasts longer")
    browser.find_element(By.ID, "accept").click()
    try:
        wait_for(lambda: "saved=1" in browser.current_url)
    except AssertionError:
        raise AssertionError(browser.current_url + browser.page_source[:3000]) from None
    with sqlite3.connect(server.database) as conn:
        reviewer, decision, windows, comment = conn.execute(
            "SELECT reviewer, decision, windows, comment FROM reviews WHERE episode_id = ?", (episode,)).fetchone()
    assert (reviewer, decision, comment) == ("Dr Browser", "accept", "the smoke lasts longer")
    assert json.loads(windows) == [[round(after[0][0], 2), round(after[0][1], 2)]]
    assert browser.find_element(By.ID, "saved").is_displayed()

    # the page's Export writes suite samples that the suite's own reader loads
    browser.get(f"{server.url.rstrip('/')}/export")
    browser.find_element(By.ID, "export-button").click()
    wait_for(lambda: browser.find_elements(By.ID, "export-summary"))
    samples = list(read_jsonl(server.database.parent / "review-export" / "samples.jsonl"))
    mine = [s for s in samples if s.meta["episode_id"] == episode]
    assert len(mine) == 1
    sample = mine[0]
    assert sample.task == "grounding" and sample.evidence == json.loads(windows)
    assert sample.answer == render_windows([tuple(w) for w in sample.evidence])
    assert Path(sample.video).is_file() and sample.meta["reviewer"] == "Dr Browser"


def test_a_question_asked_in_the_page_runs_and_joins_the_case(browser: Any, server: Server,
                                                              synth_video: SynthClinVideo) -> None:
    from selenium.webdriver.common.by import By

    episode, case = _episode(server)
    _open_case(browser, server, case, episode)
    phase = synth_video.annotation["phases"][2]["label"]
    question = f"When does the {phase.replace('_', ' ')} phase take place?"
    browser.find_element(By.ID, "ask-question").send_keys(question)
    browser.find_element(By.CSS_SELECTOR, "#ask-form button").click()
    link = wait_for(lambda: browser.find_elements(By.ID, "job-episode"), timeout=60)[0]
    events = browser.find_element(By.ID, "job-events").text
    assert "turn 1" in events and "done" in events
    link.click()
    wait_for(lambda: browser.find_element(By.ID, "question").text == question)
    assert "RIGHT" in browser.find_element(By.CSS_SELECTOR, ".answer .verdict").text.upper()


def test_a_case_the_browser_cannot_play_seeks_in_a_transcoded_clip(browser: Any, server: Server) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    with sqlite3.connect(server.database) as conn:
        episode, case = conn.execute("SELECT e.id, c.id FROM episodes e JOIN cases c ON c.id = e.case_id "
                                     "WHERE c.name = 'case.ts'").fetchone()
    browser.get(f"{server.url.rstrip('/')}/cases/{case}?episode={episode}")
    window = browser.find_elements(By.CSS_SELECTOR, ".tl rect.evidence[data-start]")[0]
    start = float(window.get_attribute("data-start"))
    ActionChains(browser).move_to_element(window).click().perform()
    wait_for(lambda: browser.execute_script("const p = document.getElementById('player'); "
                                            "return p.currentSrc.includes('clip.mp4') && p.readyState >= 1 "
                                            "&& !p.seeking && p.currentTime > 0"), timeout=60)
    clip_start = max(0.0, start - 5)  # the page asks for the window with 5 s before it
    at = browser.execute_script("return document.getElementById('player').currentTime") + clip_start
    assert abs(at - start) < 0.15, (at, start)
