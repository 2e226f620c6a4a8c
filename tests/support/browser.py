"""Loads a page in headless Chromium and reads its rendered DOM over the DevTools protocol, for
the cross-process tests of the status pages: a real browser running the page's JavaScript.

Usage: browser.py URL SECONDS [SCREENSHOT.png]; prints one JSON object
{"first": DOM once loaded, "last": DOM after SECONDS more}, and saves a screenshot of the
page as it is at the end when asked. Needs chromium and the websocket-client package.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

url, seconds = sys.argv[1], float(sys.argv[2])
screenshot = sys.argv[3] if len(sys.argv) > 3 else None
browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
if not browser:
    sys.exit("no chromium on PATH")
profile = tempfile.mkdtemp(prefix="fanfold-browser-")
proc = subprocess.Popen(
    [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
     "--disable-extensions", "--remote-debugging-port=0", "--user-data-dir=" + profile,
     "--window-size=1280,1000", "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
try:
    endpoint = None
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"DevTools listening on (ws://\S+)", line)
        if m:
            endpoint = m.group(1)
            break
    if not endpoint:
        sys.exit("chromium did not open its DevTools port")
    port = re.search(r":(\d+)/", endpoint).group(1)
    request = urllib.request.Request("http://127.0.0.1:%s/json/new?about:blank" % port, method="PUT")
    target = json.load(urllib.request.urlopen(request, timeout=10))
    ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=30)
    counter = [0]

    def call(method, **params):
        counter[0] += 1
        ws.send(json.dumps({"id": counter[0], "method": method, "params": params}))
        while True:
            message = json.loads(ws.recv())
            if message.get("id") == counter[0]:
                if "error" in message:
                    sys.exit("%s: %s" % (method, message["error"]))
                return message["result"]

    def dom():
        result = call("Runtime.evaluate", expression="document.documentElement.outerHTML",
                      returnByValue=True)
        return result["result"]["value"]

    call("Page.enable")
    call("Page.navigate", url=url)
    # Loaded, with the page's script run: its main element is there.
    for _ in range(100):
        ready = call("Runtime.evaluate", expression="document.readyState", returnByValue=True)
        if ready["result"].get("value") == "complete":
            break
        time.sleep(0.1)
    first = dom()
    time.sleep(seconds)
    last = dom()
    if screenshot:
        shot = call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    ws.close()
    print(json.dumps({"first": first, "last": last}))
finally:
    proc.kill()
    proc.wait()
    shutil.rmtree(profile, ignore_errors=True)
