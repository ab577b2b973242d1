"""The chat page, web/index.html, in real headless Chromium (Debian's `chromium` and `chromium-driver`, driven by
selenium): served by Caddy at `/`, it lists the models, posts a prompt to /api/chat/completions, follows the 302
with `fetch` and shows the stream as it comes, the hand-off (task, time, replica), time to first token, tokens/s
and usage. Stop cancels; a killed replica is resumed on the other one with `Last-Event-ID`; a reply is text, never
markup; with keys, the key field and OpenAI's error bodies.

The page's text is compared with what the official openai SDK reads for the same request (the demo model answers
the same prompt the same way every time).

Each test leaves a screenshot, page-<test>.png, in the session's log directory. With HANDOFF_UPDATE_SCREENSHOT=1 the
finished answer's screenshot is also written to docs/page.png, the README's picture.

The resume test kills an SSE replica, so it runs on a stack of its own (17190-17193), which also serves `echo`, a
tiny upstream that answers with the prompt, so that a reply can carry HTML.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import threading
import uuid
from pathlib import Path

import openai
import pytest
from faults import restart_and_wait
from handoff_e2e import CADDY_PORT, GOLDEN, SSE_PORTS, request, wait_started
from handoff_stack import ROOT, Ports, Stack
from keys_e2e import CADDY as KEYED_CADDY
from keys_e2e import MAX_PROMPT_CHARS
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")  # Debian's chromium and chromium-driver
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")
WAIT = 30  # seconds any state of the page may take to appear
SEED = "Tell me a three sentence bedtime story about a unicorn."
LONG = "Tell me a long story about a lighthouse keeper."  # any other prompt runs to max_tokens
ENDED = ("Done", "Cancelled", "Failed", "Stopped")  # how #status starts once a run is over

PAGE = Ports(caddy=17190, api=17191, sse=(17192, 17193))
ECHO_PORT = 17194


# ----- the browser and the page -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: scripts/install-deps.sh installs chromium and chromium-driver",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # --no-sandbox: the tests run as root. No chromedriver log: it would record the keys typed into the page, and
    # test_keys.py checks that no log file holds one.
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    def __init__(self, driver: webdriver.Chrome):
        self.driver = driver

    def el(self, element_id: str):
        return self.driver.find_element(By.ID, element_id)

    def text(self, element_id: str) -> str:
        return self.el(element_id).get_property("textContent")

    def shown(self, element_id: str) -> bool:
        return self.el(element_id).is_displayed()

    def state(self) -> str:
        return " | ".join(f"#{name}: {self.text(name)!r}" for name in ("status", "error", "notice", "replica"))

    def wait(self, what: str, probe, timeout: float = WAIT) -> None:
        """Until `probe()` is true; the failure names what was awaited and shows the page's state."""
        try:
            WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(lambda _: probe())
        except TimeoutException:
            raise AssertionError(f"not within {timeout} s: {what}; {self.state()}") from None

    def open(self, port: int, ready: bool = True) -> None:
        self.driver.get(f"http://127.0.0.1:{port}/")
        if ready:
            self.wait("the models are listed", lambda: self.text("status").startswith("Ready"))

    def ask(self, prompt: str, model: str = "demo", max_tokens: int | None = None) -> None:
        """Picks the model, types the prompt and sends it with Enter."""
        Select(self.el("model")).select_by_value(model)
        field = self.el("max-tokens")
        field.clear()
        if max_tokens is not None:
            field.send_keys(str(max_tokens))
        prompt_field = self.el("prompt")
        prompt_field.clear()
        prompt_field.send_keys(prompt)
        prompt_field.send_keys(Keys.ENTER)

    def ended(self, timeout: float = WAIT) -> str:
        """Waits for the run to end; returns #status."""
        self.wait("the run ends", lambda: self.text("status").startswith(ENDED), timeout)
        return self.text("status")

    def words(self) -> int:
        return len(self.text("answer").split())


@pytest.fixture
def page(browser, log_dir, request) -> Page:
    browser.get("about:blank")  # nothing of the previous test's page (its sessionStorage is per origin) runs on
    yield Page(browser)
    try:  # the scenario's last state, passed or failed
        browser.save_screenshot(str(log_dir / f"page-{request.node.name}.png"))
    except WebDriverException as error:
        print(f"no screenshot of {request.node.name}: {error}")


def sdk_reply(port: int, prompt: str, max_tokens: int | None = None, model: str = "demo"):
    """(text, usage) of the same completion, streamed by the official SDK through the visible hand-off."""
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/api", api_key="unused", max_retries=0, timeout=60)
    limit = {} if max_tokens is None else {"max_tokens": max_tokens}
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
            **limit,
        )
    )
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks[-1].usage


def shown_usage(usage) -> str:
    return f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion = {usage.total_tokens} tokens"


# ----- on the session's stack --------------------------------------------------------------------------------


def test_the_page_is_served_at_the_root_and_only_there(cluster):
    for path, file, kind in (
        ("/", "index.html", "text/html"),
        ("/index.html", "index.html", "text/html"),
        ("/chat.js", "chat.js", "text/javascript"),
        ("/chat.css", "chat.css", "text/css"),
    ):
        reply = request("GET", path)
        assert reply.status == 200, (path, reply.status, reply.body[:200])
        assert reply.headers["Content-Type"].startswith(kind), (path, reply.headers["Content-Type"])
        assert reply.headers["Cache-Control"] == "no-cache", reply.headers
        assert reply.body == (ROOT / "web" / file).read_bytes()
        # Only the page's own files, only this origin: no inline script or style can run, whatever a reply holds.
        policy = dict(part.strip().split(" ", 1) for part in reply.headers["Content-Security-Policy"].split(";"))
        assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'", policy
        assert policy["connect-src"] == "'self'" and policy["style-src"] == "'self'", policy
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Referrer-Policy"] == "no-referrer"
    page = (ROOT / "web" / "index.html").read_text()
    assert "<script>" not in page and "<style>" not in page and " style=" not in page and " on" + "click=" not in page
    for path in ("/web/index.html", "/favicon.ico", "/index.htm"):  # other URLs: still the JSON 404
        reply = request("GET", path)
        assert reply.status == 404 and reply.json()["error"]["code"] == "not_found", (path, reply.status, reply.body)


def test_a_prompt_streams_through_the_handoff_and_matches_the_sdk(cluster, page, log_dir):
    page.open(CADDY_PORT)
    assert "demo" in [o.get_attribute("value") for o in Select(page.el("model")).options]
    assert page.driver.switch_to.active_element.get_attribute("id") == "prompt", "the prompt has no focus on load"
    page.ask(SEED)
    assert page.ended() == "Done (finish_reason: stop).", page.state()

    text, usage = sdk_reply(CADDY_PORT, SEED)
    assert text == GOLDEN
    assert page.text("answer") == text
    assert page.text("finish") == "stop"
    assert page.text("usage") == shown_usage(usage) == "10 prompt + 67 completion = 77 tokens"
    task = page.text("task-id")
    assert (
        str(uuid.UUID(task)) == task
        and cluster.sql(f"SELECT status FROM handoff_tasks WHERE id = '{task}'") == "succeeded"
    ), task
    assert re.fullmatch(r"\d{1,2}:\d\d:\d\d\.\d{3} \(\+\d+ ms\)", page.text("handoff-time")), page.text("handoff-time")
    assert page.text("replica") in {f"127.0.0.1:{port}" for port in SSE_PORTS}, page.text("replica")
    ttft = re.fullmatch(r"(\d+) ms", page.text("ttft"))
    assert ttft and 0 < int(ttft[1]) < 10_000, page.text("ttft")
    assert float(page.text("tps")) > 0, page.text("tps")
    assert not page.shown("error") and not page.shown("notice"), page.state()
    assert page.driver.switch_to.active_element.get_attribute("id") == "prompt", "the focus is not back on the prompt"

    if os.environ.get("HANDOFF_UPDATE_SCREENSHOT") == "1":  # the README's picture, in a smaller window
        size = page.driver.get_window_size()
        page.driver.set_window_size(800, 880)
        try:
            shot = log_dir / "page-finished.png"
            assert page.driver.save_screenshot(str(shot))
            (ROOT / "docs").mkdir(exist_ok=True)
            shutil.copyfile(shot, ROOT / "docs" / "page.png")
        finally:
            page.driver.set_window_size(size["width"], size["height"])


def test_stop_cancels_the_completion_and_the_page_shows_it(cluster, page, task_usage):
    page.open(CADDY_PORT)
    page.ask(LONG, max_tokens=2000)  # 40 s at 20 ms a token
    page.wait("20 words shown while streaming", lambda: page.words() >= 20 and page.text("status") == "Streaming…")
    live = page.text("answer")
    page.el("stop").click()
    assert page.ended() == "Cancelled (finish_reason: cancelled).", page.state()

    assert page.text("finish") == "cancelled"
    answer = page.text("answer")
    assert answer.startswith(live) and page.words() < 2000, "the text changed, or the whole reply came"
    task = page.text("task-id")
    assert cluster.sql(f"SELECT status FROM handoff_tasks WHERE id = '{task}'") == "cancelled"
    recorded = task_usage(task)
    assert page.text("usage") == (
        f"{recorded['prompt_tokens']} prompt + {recorded['completion_tokens']} completion = "
        f"{recorded['total_tokens']} tokens"
    ), (page.text("usage"), recorded)
    assert not page.shown("error"), page.state()
    assert page.el("send").is_enabled() and not page.el("stop").is_enabled()


def test_keys_and_openai_error_bodies(keyed, page):
    page.open(KEYED_CADDY, ready=False)
    page.wait("the keyless model list is refused", lambda: "invalid_api_key" in page.text("error"))
    assert "HTTP 401" in page.text("error") and page.shown("error")

    key = keyed.key("page")
    page.el("key").send_keys(key.secret, Keys.TAB)  # `change` lists the models again, with the key
    page.wait("the models are listed with the key", lambda: page.text("status").startswith("Ready"))
    assert not page.shown("error"), page.state()
    assert page.driver.execute_script("return sessionStorage.getItem('handoff-api-key')") == key.secret

    # Over the keyed API's prompt limit: its 400, an OpenAI error body, is shown as it is.
    page.driver.execute_script("arguments[0].value = arguments[1]", page.el("prompt"), "x" * (MAX_PROMPT_CHARS + 1))
    page.el("prompt").send_keys(Keys.CONTROL, Keys.ENTER)
    assert page.ended() == "Failed.", page.state()
    error = page.text("error")
    assert "HTTP 400" in error and str(MAX_PROMPT_CHARS) in error and page.text("task-id") == "–", error

    page.ask(SEED)
    assert page.ended() == "Done (finish_reason: stop).", page.state()
    assert page.text("answer") == GOLDEN and not page.shown("error")
    page.driver.refresh()  # the key is kept for the tab
    page.wait("the models are listed after a reload", lambda: page.text("status").startswith("Ready"))
    assert page.el("key").get_property("value") == key.secret


# ----- on a stack of its own: a replica is killed -------------------------------------------------------------


class Echo(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible upstream that streams the last message back, cut into 4-character chunks (so markup is
    split across chunks, as a model's tokens would split it)."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        base = {"id": "chatcmpl-echo", "object": "chat.completion.chunk", "created": 0, "model": body["model"]}
        pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
        chunks = [
            {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        ]
        chunks += [{**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
        chunks += [
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {
                **base,
                "choices": [],
                "usage": {"prompt_tokens": 1, "completion_tokens": len(pieces), "total_tokens": 1 + len(pieces)},
            },
        ]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def page_stack(cluster, tmp_path_factory) -> Stack:
    """A database of its own, keyless: API, worker (demo at 20 ms a token, and `echo`), two SSE replicas, Caddy."""
    logs = tmp_path_factory.mktemp("page-stack-logs")
    echo = http.server.ThreadingHTTPServer(("127.0.0.1", ECHO_PORT), Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    catalogue = logs / "models.json"
    catalogue.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "demo", "backend": "demo"},
                    {
                        "name": "echo",
                        "backend": "openai",
                        "upstreams": [{"base_url": f"http://127.0.0.1:{ECHO_PORT}/v1", "model": "echo"}],
                    },
                ]
            }
        )
    )
    stack = Stack(cluster.admin_url, PAGE, logs, cluster.bin_dir, prefix="handoff_page")
    stack.create_database()
    try:
        stack.start_services(
            settings={"HANDOFF_MODELS_FILE": str(catalogue)}, worker_settings={"HANDOFF_DEMO_TOKEN_DELAY_MS": "20"}
        )
        wait_started(stack)
        yield stack
    finally:
        stack.stop()
        stack.drop_database()
        echo.shutdown()
        echo.server_close()


def test_a_reply_with_html_is_shown_as_text(page_stack, page):
    markup = (
        '<img id="pwned" src="/none" onerror="document.title=\'pwned\'"><b>bold</b> & <script>window.pwned=1</script>'
    )
    page.open(PAGE.caddy)
    page.ask(markup, model="echo")
    assert page.ended() == "Done (finish_reason: stop).", page.state()
    assert page.text("answer") == markup
    assert page.driver.find_elements(By.CSS_SELECTOR, "#answer *") == [], "the reply became elements"
    assert page.driver.title == "Handoff chat" and page.driver.execute_script("return window.pwned") is None


def test_a_killed_replica_is_resumed_on_the_other_without_a_gap(page_stack, page):
    prompt, tokens = "Tell me a story about a replica that fell over.", 300  # 6 s at 20 ms a token
    page.open(PAGE.caddy)
    page.ask(prompt, max_tokens=tokens)
    page.wait("20 words shown while streaming", lambda: page.words() >= 20 and page.text("status") == "Streaming…")
    first = page.text("replica")
    victim = f"sse-{first.rpartition(':')[2]}"
    assert victim in page_stack.processes, f"#replica names no replica of the stack: {first!r}"
    page_stack.signal(victim, signal.SIGKILL).wait(timeout=5)
    try:
        assert page.ended(timeout=60) == "Done (finish_reason: length).", page.state()
        resumed = re.search(r"resumed after event (\d+)", page.text("notice"))
        assert resumed and page.shown("notice"), page.state()
        assert 20 <= int(resumed[1]) < tokens, page.text("notice")
        [other] = [f"127.0.0.1:{port}" for port in PAGE.sse if f"127.0.0.1:{port}" != first]
        assert page.text("replica") == other, page.state()

        text, usage = sdk_reply(PAGE.caddy, prompt, tokens)
        assert usage.completion_tokens == tokens
        assert page.text("answer") == text, "the resumed text differs from the SDK's: a gap or a repeat"
        assert page.text("usage") == shown_usage(usage)
        assert not page.shown("error"), page.state()
    finally:
        restart_and_wait(page_stack, victim)
