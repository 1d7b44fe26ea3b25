"""Live reload proven in a real browser: headless Chromium on the
example app (examples/hello) served by the built air_std.pyz with the proxy on.

How the tests see what the browser does:
- the example page posts a beacon to the app on every load (and after each
  WebSocket echo); with HELLO_BEACON_LOG set the app appends each one to a
  file as a JSON line with the page's URL and `document.body.innerText`, so
  reloads are counted by the app itself, whatever the driver does;
- for the rest (the overlay, the live-reload client's state, globals an
  injected `onerror` would set) the tests read the page over the DevTools
  protocol (tests/browser.py: a stdlib WebSocket client, no driver library).

Each test copies examples/hello into tmp_path and runs it on free ports with
this interpreter; Chromium's profile is under tmp_path and its whole process
group is killed at teardown. Without Chromium the tests skip, saying why,
unless AIR_REQUIRE_BROWSER=1 (CI), where a missing Chromium fails them.

Scenarios: an edit reloads the page exactly once; a broken build
shows its output as text over the page and the fix reloads it; eight tabs
(more than the browser's six connections per host) all reload; Ctrl-C with
the browser connected; a page's WebSocket through the proxy; an app that
dies at start shows its status and traceback as text at once, on open pages
and on pages opened after, and its next good start reloads them. The last test
holds a reloaded page's live-reload script (DevTools Fetch interception) to
put a second restart in the window where the page has no event stream yet.
"""

import json
import os
import shutil
import signal
import sys
import time

import pytest

from browser import BrowserError, Chromium, find_chromium
from conftest import EXAMPLES, free_port, http_get, pid_alive, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

GREETING = "Hello from air_std"
LOAD_TIMEOUT = 20.0  # first start of air_std, a build and the app
RELOAD_TIMEOUT = 15.0  # one edit -> build -> restart -> reload -> beacon
QUIET_S = 1.5  # after the expected reloads: long enough for a duplicate reload to show


@pytest.fixture
def chromium_binary():
    path = find_chromium()
    if path:
        return path
    why = "no Chromium found (install Debian's package: apt-get install chromium)"
    if os.environ.get("AIR_REQUIRE_BROWSER") == "1":
        pytest.fail("AIR_REQUIRE_BROWSER=1 but %s" % why)
    pytest.skip(why)


@pytest.fixture
def browser(tmp_path, chromium_binary):
    chromium = Chromium(tmp_path / "chromium-profile", binary=chromium_binary)
    try:
        yield chromium
    finally:
        chromium.close()


class Hello:
    """The example app in tmp_path, run by air_std.pyz with the proxy on."""

    def __init__(self, tmp_path, run_air, pyz_path, extra_args=(), prepare=None):
        self.dir = tmp_path / "hello"
        shutil.copytree(str(EXAMPLES / "hello"), str(self.dir),
                        ignore=shutil.ignore_patterns("tmp", "__pycache__"))
        if prepare is not None:
            prepare(self)
        self.app_port = free_port()
        self.proxy_port = free_port()
        while self.proxy_port == self.app_port:
            self.proxy_port = free_port()
        self.beacon_log = tmp_path / "beacons.jsonl"
        self.url = "http://127.0.0.1:%d/" % self.proxy_port
        args = [
            "--proxy.proxy_port", str(self.proxy_port), "--proxy.app_port", str(self.app_port),
            "--build.entrypoint", "%s,main.py" % sys.executable,
            "--build.cmd", "%s -m py_compile main.py" % sys.executable,
            "--build.poll_interval", "100", "--build.delay", "50",
        ] + list(extra_args)
        env = {"PORT": str(self.app_port), "HELLO_BEACON_LOG": str(self.beacon_log), "NO_COLOR": "1"}
        self.air = run_air(args, self.dir, env=env, pyz=pyz_path)
        wait_until(lambda: self._page_has(GREETING), timeout=LOAD_TIMEOUT,
                   what="the example page through the proxy", output=self.air.output)

    def _page_has(self, text):
        got = http_get(self.proxy_port, timeout=1.0)
        return got is not None and text in got[1]

    # --- beacons ---
    def beacons(self, kind="load", page=None):
        """Beacons so far, oldest first: dicts with t, pid and the page's data."""
        try:
            lines = self.beacon_log.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        found = []
        for line in lines:
            entry = json.loads(line)
            data = entry["data"]
            if not isinstance(data, dict):
                data = {"kind": "raw", "text": data}
            if kind is not None and data.get("kind") != kind:
                continue
            if page is not None and data.get("page") != self.page_url(page):
                continue
            entry.update(data)
            found.append(entry)
        return found

    def page_url(self, page):
        return self.url if page is None else "%s?tab=%s" % (self.url, page)

    def wait_loads(self, count, page=None, timeout=RELOAD_TIMEOUT, browser=None):
        def enough():
            got = self.beacons("load", page)
            return got if len(got) >= count else None
        return wait_until(enough, timeout=timeout, interval=0.05,
                          what="%d load beacon(s) from %s" % (count, self.page_url(page)),
                          output=lambda: self.debug(browser))

    def assert_quiet(self, count, page=None, seconds=QUIET_S):
        """No more than `count` loads, now and `seconds` later (a second reload would show)."""
        deadline = time.monotonic() + seconds
        while True:
            got = self.beacons("load", page)
            assert len(got) == count, "expected exactly %d load(s) of %s, got %d:\n%s" % (
                count, self.page_url(page), len(got), self.debug())
            if time.monotonic() >= deadline:
                return got
            time.sleep(0.1)

    def debug(self, browser=None):
        try:
            beacons = self.beacon_log.read_text(encoding="utf-8")
        except FileNotFoundError:
            beacons = "(none)"
        text = "--- beacons ---\n%s\n%s" % (beacons, self.air.output())
        if browser is not None:
            text += "\n--- chromium ---\n" + browser.log()
        return text

    def stop(self):
        """Ctrl-C air_std; exit 0 and no traceback are required (the app goes with it)."""
        self.air.signal(signal.SIGINT)
        code = self.air.wait(10)
        err = self.air.stderr()
        assert code == 0, self.debug()
        assert "Traceback" not in err and "Exception in thread" not in err, err

    # --- edits ---
    def edit(self, name, old, new):
        path = self.dir / name
        src = path.read_text(encoding="utf-8")
        assert old in src, "%r not in %s" % (old, name)
        path.write_text(src.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def start_hello(chromium_binary, tmp_path, run_air, pyz_path):  # no Chromium: skip before starting anything
    """Start the example under air_std (extra CLI arguments allowed); stopped at teardown."""
    started = []

    def start(extra_args=(), prepare=None):
        app = Hello(tmp_path, run_air, pyz_path, extra_args, prepare)
        started.append(app)
        return app

    yield start
    for app in started:
        if app.air.proc.poll() is None:
            # SIGINT, not run_air's SIGKILL: air_std stops the app, which runs in its own session
            app.air.signal(signal.SIGINT)
            app.air.wait(10)


@pytest.fixture
def hello(start_hello):
    return start_hello()


def open_page(browser, hello, page=None):
    """A new tab on the example page, once its live-reload client is connected."""
    tab = browser.new_tab(hello.page_url(page))
    wait_client_state(tab, ("open",), hello, browser)
    return tab


def client_state(tab):
    try:
        return tab.evaluate("window.__airStd ? window.__airStd.state + ' ' + window.__airStd.mode : ''",
                            timeout=2.0)
    except BrowserError:
        return ""  # between two documents (a reload in progress)


def wait_client_state(tab, states, hello, browser, timeout=RELOAD_TIMEOUT):
    return wait_until(lambda: client_state(tab).split(" ")[0] in states, timeout=timeout,
                      interval=0.05, what="the live-reload client in state %s" % (states,),
                      output=lambda: "client: %r\n%s" % (client_state(tab), hello.debug(browser)))


def test_page_reloads_once_per_edit(hello, browser):
    tab = open_page(browser, hello)
    first = hello.wait_loads(1, browser=browser)[0]
    assert GREETING in first["text"]
    # the proxy injected the client once, before </body>, and it runs
    scripts = 'document.querySelectorAll(\'script[src="/__air_internal/livereload.js"]\').length'
    assert tab.evaluate(scripts) == 1
    assert tab.evaluate("document.body.lastElementChild.src || ''").endswith("/__air_internal/livereload.js")

    hello.edit("main.py", GREETING, "Edited by the browser test")
    second = hello.wait_loads(2, browser=browser)[1]
    assert "Edited by the browser test" in second["text"]
    assert second["pid"] != first["pid"]  # a new app process served it
    hello.assert_quiet(2)

    wait_client_state(tab, ("open",), hello, browser)
    hello.edit("templates/index.html", "this page reloads by itself", "the template changed too")
    third = hello.wait_loads(3, browser=browser)[2]
    assert "the template changed too" in third["text"]
    hello.assert_quiet(3)
    assert tab.evaluate("document.getElementById('greeting').textContent") == "Edited by the browser test"
    hello.stop()


BROKEN_LINE = ('BROKEN = 1 <img src=x onerror="window.airPwned=1;'
               "navigator.sendBeacon('/beacon','pwned')\"><script>window.airPwned=2</script>\n")


def overlay_text(tab):
    try:
        return tab.evaluate("(function(){var o=document.getElementById('air-std-overlay');"
                            "return o ? o.innerText : ''})()", timeout=2.0)
    except BrowserError:
        return ""


def test_build_error_overlay_is_text_only_and_fix_reloads(hello, browser):
    tab = open_page(browser, hello, page="a")
    hello.wait_loads(1, page="a", browser=browser)

    src = (hello.dir / "main.py").read_text()
    (hello.dir / "main.py").write_text(src.replace("import base64\n", BROKEN_LINE + "import base64\n", 1))
    text = wait_until(lambda: "SyntaxError" in overlay_text(tab) and overlay_text(tab),
                      timeout=RELOAD_TIMEOUT, what="the build-failed overlay",
                      output=lambda: hello.debug(browser))
    assert "Build failed" in text
    assert "py_compile main.py" in text  # the command
    # the build output is shown as text: the markup is visible, not parsed
    assert '<img src=x onerror="window.airPwned=1;' in text
    assert "<script>window.airPwned=2</script>" in text
    assert "Build failed" in tab.evaluate("document.body.innerText")
    markup = "document.querySelectorAll('#air-std-overlay img, #air-std-overlay script').length"
    assert tab.evaluate(markup) == 0

    # a page opened after the failure: the example's stop_on_error = true stopped the
    # app, so the proxy answers its 502 page at once, whose live-reload client shows it
    late = open_page(browser, hello, page="late")
    wait_until(lambda: "SyntaxError" in overlay_text(late), timeout=RELOAD_TIMEOUT,
               what="the overlay on a page opened after the failure", output=lambda: hello.debug(browser))
    assert "the last build failed" in late.evaluate("document.body.innerText")

    # give an injected onerror every chance to run (the image would fail to load at once)
    time.sleep(1.0)
    for page in (tab, late):
        assert page.evaluate("typeof window.airPwned") == "undefined"
    assert hello.beacons(kind="raw") == [], "build output ran as HTML in the page"
    assert len(hello.beacons("load", "a")) == 1  # a failed build does not reload

    # fix the build: the page reloads, without the overlay, and shows the new app
    (hello.dir / "main.py").write_text(src.replace(GREETING, "Fixed by the browser test"))  # one write
    reloaded = hello.wait_loads(2, page="a", browser=browser)[1]
    assert "Fixed by the browser test" in reloaded["text"]
    assert "Build failed" not in reloaded["text"]
    hello.wait_loads(1, page="late", browser=browser)  # the 502 page sent no beacon
    wait_client_state(tab, ("open",), hello, browser)
    hello.assert_quiet(2, page="a")
    assert overlay_text(tab) == "" and overlay_text(late) == ""  # not shown again on reconnect
    hello.stop()


TABS = 8  # more than the 6 connections a browser opens to one host over HTTP/1.1


def test_eight_tabs_all_reload(hello, browser):
    tabs = [open_page(browser, hello, page=str(i)) for i in range(TABS)]
    for i in range(TABS):
        hello.wait_loads(1, page=str(i), browser=browser)
    # one EventSource shared by all tabs, through the SharedWorker
    assert {client_state(t).partition(" ")[2] for t in tabs} == {"shared-worker"}

    hello.edit("main.py", GREETING, "Eight tabs reloaded")
    for i in range(TABS):
        got = hello.wait_loads(2, page=str(i), browser=browser)
        assert "Eight tabs reloaded" in got[1]["text"]
    for i in range(TABS):
        hello.assert_quiet(2, page=str(i), seconds=QUIET_S / TABS)
    # and they are all connected again, ready for the next change
    for tab in tabs:
        wait_client_state(tab, ("open",), hello, browser)
    hello.stop()


def test_ctrl_c_with_the_browser_connected(hello, browser):
    tabs = [open_page(browser, hello, page=str(i)) for i in range(2)]
    hello.wait_loads(1, page="0", browser=browser)
    app_pid = hello.beacons()[-1]["pid"]

    started = time.monotonic()
    hello.air.signal(signal.SIGINT)
    code = hello.air.wait(10)
    elapsed = time.monotonic() - started
    err = hello.air.stderr()
    assert code == 0, hello.debug(browser)
    assert "Traceback" not in err and "Exception in thread" not in err, err
    assert "did not stop" not in err, err  # every proxy thread ended, none waited on Chromium
    assert http_get(hello.app_port, timeout=0.5) is None
    assert http_get(hello.proxy_port, timeout=0.5) is None
    assert not pid_alive(app_pid)
    # the browser saw its event stream end (its client is retrying, not "open")
    for tab in tabs:
        wait_client_state(tab, ("retrying", "connecting"), hello, browser, timeout=5.0)
    print("SIGINT to exit with Chromium connected: %.2fs" % elapsed)


def test_websocket_page_works_through_the_proxy(hello, browser):
    tab = open_page(browser, hello, page="ws")

    def echoes():
        return [b for b in hello.beacons("ws", "ws") if b["echo"] == b["sent"]]

    first = wait_until(echoes, timeout=RELOAD_TIMEOUT, what="the page's WebSocket echo",
                       output=lambda: hello.debug(browser))[0]
    assert tab.evaluate("document.getElementById('ws').textContent").startswith("WebSocket echo: ")

    # a big message both ways (64-bit frame length), from the page, through the proxy
    big = tab.evaluate("""new Promise(function (resolve, reject) {
        var ws = new WebSocket("ws://" + location.host + "/ws");
        var msg = "x".repeat(70000) + "end";
        ws.onopen = function () { ws.send(msg); };
        ws.onmessage = function (e) {
            resolve(e.data === msg ? "same" : "different:" + e.data.length);
            ws.close();
        };
        ws.onerror = function () { reject(new Error("websocket error")); };
        setTimeout(function () { reject(new Error("no echo within 5 s")); }, 5000);
    })""", await_promise=True, timeout=10.0)
    assert big == "same"

    # after a restart (a new app process), the reloaded page's WebSocket works again
    hello.edit("main.py", GREETING, "WebSocket after a restart")
    hello.wait_loads(2, page="ws", browser=browser)
    second = wait_until(lambda: len(echoes()) >= 2 and echoes(), timeout=RELOAD_TIMEOUT,
                        what="the WebSocket echo after the reload", output=lambda: hello.debug(browser))[1]
    assert second["pid"] != first["pid"]
    hello.stop()


def test_restart_while_the_reloaded_page_loads_still_reaches_it(start_hello, browser):
    """Two saves in a row: the second restart is done while the page, reloaded
    for the first, is still loading (its live-reload client not connected yet).
    The page must end up showing the newest app, not the first save's."""
    hello = start_hello(["-d"])
    tab = open_page(browser, hello, page="s")
    hello.wait_loads(1, page="s", browser=browser)
    # hold the reloaded page's live-reload script: the document is the first save's,
    # and nothing of this page listens to the event stream until the script runs
    tab.call("Fetch.enable", {"patterns": [{"urlPattern": "*/__air_internal/livereload.js*"}]})
    src = (hello.dir / "main.py").read_text()
    (hello.dir / "main.py").write_text(src.replace(GREETING, "First save"))
    paused = browser.wait_event("Fetch.requestPaused", session=tab.session_id, timeout=RELOAD_TIMEOUT)

    (hello.dir / "main.py").write_text(src.replace(GREETING, "Second save"))
    wait_until(lambda: (http_get(hello.app_port, timeout=1.0) or (0, ""))[1].count("Second save"),
               timeout=RELOAD_TIMEOUT, what="the second app", output=lambda: hello.debug(browser))
    # the proxy has published the second reload (air_std runs with -d here): nobody of this page got it
    hello.air.wait_for("reload sent to", count=3, timeout=RELOAD_TIMEOUT)

    tab.call("Fetch.continueRequest", {"requestId": paused["params"]["requestId"]})
    tab.call("Fetch.disable")
    first = hello.wait_loads(2, page="s", browser=browser)[1]
    assert "First save" in first["text"]
    newest = wait_until(lambda: [b for b in hello.beacons("load", "s") if "Second save" in b["text"]],
                        timeout=RELOAD_TIMEOUT, what="the page to show the second save",
                        output=lambda: "page: %r\n%s" % (
                            tab.evaluate("document.getElementById('greeting').textContent"),
                            hello.debug(browser)))
    assert newest
    hello.stop()


POST_ROUTE = """        if self.path.startswith("/form"):  # a form's answer: the page, and a note of the POST
            if BEACON_LOG:
                with beacon_lock, open(BEACON_LOG, "a", encoding="utf-8") as f:
                    f.write(json.dumps({"t": time.time(), "pid": os.getpid(),
                                        "data": {"kind": "post", "page": self.path}}) + "\\n")
            return self.do_GET()
        if self.path != "/beacon":"""


def add_post_route(hello):
    hello.edit("main.py", '        if self.path != "/beacon":', POST_ROUTE)


def test_a_page_rendered_by_a_post_reloads_with_a_get(start_hello, browser):
    """After a form's POST, a reload loads the same address with GET: it never
    sends the form again (nor stops on the browser's "resubmit?" question)."""
    hello = start_hello(prepare=add_post_route)
    tab = open_page(browser, hello, page="form")
    tab.evaluate("""(function () {
        var form = document.createElement("form");
        form.method = "post";
        form.action = "/form?tab=post";
        var field = document.createElement("input");
        field.name = "q";
        field.value = "1";
        form.appendChild(field);
        document.body.appendChild(form);
        form.submit();
    })()""")
    url = hello.url + "form?tab=post"

    def loads():
        return [b for b in hello.beacons("load") if b["page"] == url]

    first = wait_until(loads, timeout=RELOAD_TIMEOUT, what="the page the POST rendered",
                       output=lambda: hello.debug(browser))[0]
    assert len(hello.beacons("post")) == 1
    wait_client_state(tab, ("open",), hello, browser)

    hello.edit("main.py", GREETING, "Reloaded after a POST")
    reloaded = wait_until(lambda: len(loads()) >= 2 and loads(), timeout=RELOAD_TIMEOUT,
                          what="the reload of the page the POST rendered", output=lambda: hello.debug(browser))[1]
    assert "Reloaded after a POST" in reloaded["text"] and reloaded["pid"] != first["pid"]
    assert len(hello.beacons("post")) == 1, "the reload sent the POST again:\n" + hello.debug(browser)
    assert tab.evaluate("location.href") == url
    hello.stop()


CRASH_LINE = ('raise RuntimeError("port taken <img src=x onerror=\\"window.airPwned=1\\">'
              '<script>window.airPwned=2</script>")\n')


def test_app_crash_shows_at_once_as_text_and_the_next_good_start_reloads(start_hello, browser):
    # a long app_start_timeout: an answer that waited for it would fail the test
    hello = start_hello(["--proxy.app_start_timeout", "30000"])
    tab = open_page(browser, hello, page="a")
    hello.wait_loads(1, page="a", browser=browser)

    # the build (a syntax check) passes; the app dies at import
    src = (hello.dir / "main.py").read_text()
    (hello.dir / "main.py").write_text(src.replace("import base64\n", CRASH_LINE + "import base64\n", 1))
    text = wait_until(lambda: "RuntimeError" in overlay_text(tab) and overlay_text(tab),
                      timeout=RELOAD_TIMEOUT, what="the app-exited overlay",
                      output=lambda: hello.debug(browser))
    assert "App exited" in text
    assert "exit status 1" in text
    assert "Traceback (most recent call last)" in text
    assert '<img src=x onerror="window.airPwned=1">' in text  # the output as text, not markup
    markup = "document.querySelectorAll('#air-std-overlay img, #air-std-overlay script').length"
    assert tab.evaluate(markup) == 0

    # a page opened now gets the 502 page at once (no app_start_timeout wait), with the
    # status and the output as text, and its client shows the overlay too
    started = time.monotonic()
    late = open_page(browser, hello, page="late")
    assert time.monotonic() - started < 10.0
    body = late.evaluate("document.body.innerText")
    assert "exited (exit status 1)" in body and "RuntimeError: port taken <img" in body
    wait_until(lambda: "RuntimeError" in overlay_text(late), timeout=RELOAD_TIMEOUT,
               what="the overlay on a page opened after the crash", output=lambda: hello.debug(browser))
    assert late.evaluate("document.querySelectorAll('img').length") == 0

    time.sleep(1.0)  # an injected onerror would have run by now
    for page in (tab, late):
        assert page.evaluate("typeof window.airPwned") == "undefined"

    # the fix: the next good start reloads both pages, without the overlay
    (hello.dir / "main.py").write_text(src.replace(GREETING, "Back after the crash"))
    reloaded = hello.wait_loads(2, page="a", browser=browser)[1]
    assert "Back after the crash" in reloaded["text"]
    hello.wait_loads(1, page="late", browser=browser)
    wait_client_state(tab, ("open",), hello, browser)
    assert overlay_text(tab) == ""
    # not hello.stop(): the app's own traceback is in the log, as it should be
    hello.air.signal(signal.SIGINT)
    assert hello.air.wait(10) == 0, hello.debug()
    assert "Exception in thread" not in hello.air.stderr()


CSS_ROUTE = """        if self.path.startswith("/static/site.css"):  # served from disk, as static files are
            with open(os.path.join(HERE, "static", "site.css"), encoding="utf-8") as f:
                return self.reply(200, "text/css", f.read())
        if self.path == "/health":"""
CSS_RULE = """[[build.rules]]
name = "static"
include_dir = ["static"]
reload = true
delay = 50
"""


def add_stylesheet_and_rule(hello):
    hello.edit("main.py", '        if self.path == "/health":', CSS_ROUTE)
    hello.edit("templates/index.html", "<title>", '<link rel="stylesheet" href="/static/site.css"><title>')
    (hello.dir / "static").mkdir()
    (hello.dir / "static" / "site.css").write_text("h1 { color: rgb(1, 2, 3) }\n")
    with open(hello.dir / ".air.toml", "a", encoding="utf-8") as f:
        f.write("\n" + CSS_RULE)


def heading_colour(tab):
    try:
        return tab.evaluate("getComputedStyle(document.getElementById('greeting')).color", timeout=2.0)
    except BrowserError:
        return ""


def test_a_css_change_swaps_the_stylesheet_without_a_reload(start_hello, browser):
    """A rule with reload = true whose change is only .css: the page keeps its
    state (a typed value, the scroll position, a global) and gets the new
    style; the app is not restarted and the page is not loaded again."""
    hello = start_hello(prepare=add_stylesheet_and_rule)
    tab = open_page(browser, hello)
    first = hello.wait_loads(1, browser=browser)[0]
    assert heading_colour(tab) == "rgb(1, 2, 3)"
    tab.evaluate("""(function () {
        var field = document.createElement("input");
        field.id = "typed";
        document.body.appendChild(field);
        field.value = "kept";
        document.body.style.minHeight = "5000px";
        window.scrollTo(0, 1234);
        window.airStdMarker = 42;
    })()""")
    (hello.dir / "static" / "site.css").write_text("h1 { color: rgb(4, 5, 6) }\n")
    wait_until(lambda: heading_colour(tab) == "rgb(4, 5, 6)", timeout=RELOAD_TIMEOUT,
               what="the new stylesheet in the page", output=lambda: hello.debug(browser))
    state = tab.evaluate("[window.airStdMarker, document.getElementById('typed').value, "
                         "window.scrollY, window.__airStd.events.indexOf('css-swapped') >= 0, "
                         "document.querySelectorAll('link[rel=stylesheet]').length]")
    assert state == [42, "kept", 1234, True, 1], state
    hello.assert_quiet(1)
    assert hello.beacons("load")[0]["pid"] == first["pid"]
    hello.air.wait_for("[static] stylesheets swapped in 1 page(s)", timeout=5)
    hello.stop()
