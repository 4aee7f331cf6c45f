#!/usr/bin/env python3
"""The portal's pages in headless Chromium at a phone and a desktop viewport.

    python3 tests/browser/portal_pages.py --url 'http://127.0.0.1:PORT/recharge?sub=...' --out DIR

For each viewport it opens the recharge page, checks the DOM (viewport meta, the Recharge
button's height, every amount's touch target, no horizontal scroll, labels), saves a
screenshot, pays with the preselected amount, and does the same on the success page. It prints
one JSON document with what it measured; the caller asserts. Driven over the DevTools protocol
by the same pipe client as recharge.py.
"""

import argparse
import base64
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from recharge import Browser  # noqa: E402

VIEWPORTS = {
    "phone": {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
    "desktop": {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False},
}

MEASURE = """(() => {
  const meta = document.querySelector('meta[name="viewport"]');
  const box = (el) => el ? el.getBoundingClientRect() : null;
  const button = box(document.getElementById('recharge'));
  const link = box(document.getElementById('continue') || document.getElementById('back'));
  const offers = [...document.querySelectorAll('.offer span')].map((s) => box(s).height);
  const inputs = [...document.querySelectorAll('input[type=radio]')];
  const body = getComputedStyle(document.body);
  return {
    title: document.title,
    viewport_meta: meta ? meta.getAttribute('content') : null,
    inner_width: window.innerWidth,
    scroll_width: document.documentElement.scrollWidth,
    button_height: button ? button.height : null,
    button_width: button ? button.width : null,
    link_height: link ? link.height : null,
    offer_heights: offers,
    radios_labelled: inputs.every((i) => i.closest('label') !== null),
    legend: document.querySelector('legend')?.textContent ?? null,
    font_size_px: parseFloat(body.fontSize),
    subscriber: document.getElementById('subscriber')?.textContent ?? null,
    balance: document.getElementById('balance')?.textContent ?? null,
    heading: document.querySelector('h1')?.textContent ?? null,
    charged: document.getElementById('charged')?.textContent ?? null,
    new_balance: document.getElementById('new-balance')?.textContent ?? null,
    selected: document.querySelector('input[name=amount]:checked')?.value ?? null,
  };
})()"""


def shot(b, path):
    data = b.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})["data"]
    with open(path, "wb") as f:
        f.write(base64.b64decode(data))
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--url", required=True, help="the recharge page, as a redirected client gets it")
    ap.add_argument("--out", required=True, help="where the screenshots go")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--log", default=os.devnull)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    result = {}
    with open(a.log, "ab") as log:
        b = Browser(a.chromium, time.monotonic() + a.timeout, log)
        try:
            target = b.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            b.session = b.call(
                "Target.attachToTarget", {"targetId": target, "flatten": True}, session=False
            )["sessionId"]
            b.call("Page.enable")
            b.call("Network.enable")
            b.call("Network.setCacheDisabled", {"cacheDisabled": True})
            for name, metrics in VIEWPORTS.items():
                b.call("Emulation.setDeviceMetricsOverride", metrics)
                r = {}
                b.until_loaded(lambda: b.call("Page.navigate", {"url": a.url}))
                r["page"] = b.evaluate(MEASURE)
                r["page_shot"] = shot(b, os.path.join(a.out, "portal-%s.png" % name))
                b.until_loaded(lambda: b.evaluate("document.getElementById('recharge').click()"))
                r["success_url"] = b.evaluate("location.href")
                r["success"] = b.evaluate(MEASURE)
                r["success_shot"] = shot(b, os.path.join(a.out, "success-%s.png" % name))
                # The same success link once more: the page must not claim a second success.
                b.until_loaded(lambda: b.call("Page.reload", {"ignoreCache": True}))
                r["reloaded"] = b.evaluate(MEASURE)
                r["reloaded_shot"] = shot(b, os.path.join(a.out, "not-confirmed-%s.png" % name))
                result[name] = r
        finally:
            b.close()
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
