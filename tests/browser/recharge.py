#!/usr/bin/env python3
"""The recharge story in a real browser: headless Chromium, driven over the DevTools protocol.

Run it inside a redirected client's network namespace:

    ip netns exec weir-ue2 python3 tests/browser/recharge.py [--url http://site.example/]

It opens the site (the gateway answers with a 302 to the portal), reads the portal page, clicks
Recharge (the portal answers 303 to the success URL), reads the success page, follows its link
back to the site and reads the site's real page. It prints one JSON document with what it saw,
including every 302 the browser met before and after the success page.

Only the standard library: Chromium is started with --remote-debugging-pipe, so the protocol
runs over two pipes (JSON messages ended by NUL) and needs neither a port nor a websocket. Every
wait is bounded by one deadline; Chromium is killed on the way out whatever happens.
"""

import argparse
import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, chromium, deadline, log):
        self.deadline = deadline
        self.next_id = 0
        self.events = []
        self.buffer = b""
        self.profile = tempfile.mkdtemp(prefix="weir-chromium-")
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # The browser expects its end of the pipes at descriptors 3 (commands) and 4 (answers);
        # moving them above 10 first keeps the dup2 calls below from clobbering one another.
        hi_r = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.close(to_child_r)
        os.close(from_child_w)

        def wire_pipes():
            # Its own process group: the browser's helpers (zygote, renderer, network service)
            # are killed with it, not left behind in the namespace.
            os.setsid()
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--disable-extensions",
                "--user-data-dir=" + self.profile,
                "--remote-debugging-pipe",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(3, 4),
            preexec_fn=wire_pipes,
        )
        os.close(hi_r)
        os.close(hi_w)
        self.tx = to_child_w
        self.rx = from_child_r
        self.session = None

    def close(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        # The helpers are not our children: wait until the group is empty, boundedly.
        for _ in range(100):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        for fd in (self.tx, self.rx):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read_message(self):
        while b"\0" not in self.buffer:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the browser did not answer in time")
            ready, _, _ = select.select([self.rx], [], [], left)
            if not ready:
                continue
            chunk = os.read(self.rx, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed its pipe (exit %s)" % self.proc.poll())
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        os.write(self.tx, json.dumps(msg).encode() + b"\0")
        while True:
            m = self._read_message()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def wait_event(self, method, since):
        """The first event `method` at or after index `since` of the event log."""
        while True:
            for i in range(since, len(self.events)):
                if self.events[i]["method"] == method:
                    return i
            since = len(self.events)
            m = self._read_message()
            if "method" in m:
                self.events.append(m)

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError("%s: %s" % (expression, r["exceptionDetails"]))
        return r["result"].get("value")

    def until_loaded(self, action):
        """Runs `action` and waits for the page it starts to finish loading."""
        mark = len(self.events)
        action()
        self.wait_event("Page.loadEventFired", mark)

    def main_document_body(self, since):
        """The body of the last document response after event `since`, as the server sent it."""
        request = None
        for e in self.events[since:]:
            if e["method"] == "Network.responseReceived" and e["params"].get("type") == "Document":
                request = e["params"]["requestId"]
        if request is None:
            return None
        r = self.call("Network.getResponseBody", {"requestId": request})
        return base64.b64decode(r["body"]) if r.get("base64Encoded") else r["body"].encode()


def redirects(events):
    """(status, from URL, to URL) of every redirect the browser followed, and of 3xx it showed."""
    out = []
    for e in events:
        p = e["params"]
        if e["method"] == "Network.requestWillBeSent" and "redirectResponse" in p:
            r = p["redirectResponse"]
            out.append((r["status"], r["url"], p["request"]["url"]))
        elif e["method"] == "Network.responseReceived" and 300 <= p["response"]["status"] < 400:
            out.append((p["response"]["status"], p["response"]["url"], None))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--url", default="http://site.example/")
    ap.add_argument("--timeout", type=float, default=40.0)
    ap.add_argument("--log", default=os.devnull, help="where Chromium's own output goes")
    a = ap.parse_args()
    deadline = time.monotonic() + a.timeout
    with open(a.log, "ab") as log:
        b = Browser(a.chromium, deadline, log)
        try:
            result = story(b, a.url)
        finally:
            b.close()
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


def story(b, url):
    target = b.call("Target.createTarget", {"url": "about:blank"})["targetId"]
    b.session = b.call(
        "Target.attachToTarget", {"targetId": target, "flatten": True}, session=False
    )["sessionId"]
    b.call("Page.enable")
    b.call("Network.enable")
    b.call("Network.setCacheDisabled", {"cacheDisabled": True})
    r = {}

    b.until_loaded(lambda: b.call("Page.navigate", {"url": url}))
    r["portal_url"] = b.evaluate("location.href")
    r["subscriber"] = b.evaluate("document.getElementById('subscriber')?.textContent ?? null")
    r["orig_shown"] = b.evaluate("document.getElementById('orig')?.textContent ?? null")

    b.until_loaded(lambda: b.evaluate("document.getElementById('recharge').click()"))
    r["success_url"] = b.evaluate("location.href")
    r["success_text"] = b.evaluate("document.getElementById('success')?.textContent ?? null")
    success = len(b.events)

    # The success page's link back to the page first asked for.
    b.until_loaded(lambda: b.evaluate("document.getElementById('continue').click()"))
    r["final_url"] = b.evaluate("location.href")
    r["final_title"] = b.evaluate("document.title")
    body = b.main_document_body(success)
    r["final_body"] = body.decode("utf-8", "replace") if body is not None else None

    # Opening the site once more, as a subscriber would: still no redirect.
    again = len(b.events)
    b.until_loaded(lambda: b.call("Page.navigate", {"url": url}))
    r["again_url"] = b.evaluate("location.href")
    body = b.main_document_body(again)
    r["again_body"] = body.decode("utf-8", "replace") if body is not None else None

    r["redirects_before_success"] = redirects(b.events[:success])
    r["redirects_after_success"] = redirects(b.events[success:])
    r["documents"] = [
        (e["params"]["response"]["status"], e["params"]["response"]["url"])
        for e in b.events
        if e["method"] == "Network.responseReceived" and e["params"].get("type") == "Document"
    ]
    return r


if __name__ == "__main__":
    main()
