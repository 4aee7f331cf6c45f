#!/usr/bin/env python3
"""The client half of scripts/bench-redirect.sh, run inside the redirected client's namespace.

lift RUNS SUBSCRIBER_PREFIX FIRST_ADDRESS KEY_HEX
    For each run i, from its own address (FIRST_ADDRESS + i, a subscriber under redirect):
    checks the site answers with the gateway's 302, then requests the success URL with a token
    signed as the portal signs it (so the request itself is what lifts the redirect), and the
    moment the answer is in, requests the site again; that request must reach the real server.
    Prints one line per run: address, the time the success request started (epoch seconds),
    the time the site's real page was in.

The token is built here rather than fetched from the portal on purpose: a payment through the
gateway would show the watch the portal's 303 first, and the redirect would be lifted before
the success request ever left the client.
"""

import hashlib
import hmac
import ipaddress
import os
import socket
import struct
import sys
import time

SITE = ("198.51.100.10", 80)
PORTAL = ("198.51.100.20", 80)
CONTEXT = b"weir-recharge-success-v1"


def get(src, dst, host, target):
    """One HTTP/1.1 request from `src`; returns the status code."""
    s = socket.create_connection(dst, timeout=5, source_address=(src, 0))
    try:
        s.sendall(
            ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (target, host)).encode()
        )
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return int(data.split(b" ", 2)[1])


def token(key, subscriber, ue, expires, nonce):
    mac = hmac.new(key, CONTEXT, hashlib.sha256)
    for field in (subscriber.encode(), nonce.encode()):
        mac.update(struct.pack(">I", len(field)) + field)
    addr = ipaddress.ip_address(ue)
    if addr.version == 4:
        addr = ipaddress.IPv6Address("::ffff:" + ue)
    mac.update(addr.packed)
    mac.update(struct.pack(">Q", expires))
    quote = lambda t: "".join(c if c.isalnum() else "%%%02X" % ord(c) for c in t)
    return "sub=%s&ue=%s&exp=%d&nonce=%s&sig=%s" % (
        quote(subscriber), ue, expires, quote(nonce), mac.hexdigest())


def lift(runs, prefix, first, key_hex):
    key = bytes.fromhex(key_hex)
    base = ipaddress.IPv4Address(first)
    for i in range(runs):
        ue = str(base + i)
        subscriber = "%s%04d" % (prefix, i)
        status = get(ue, SITE, "site.example", "/")
        if status != 302:
            sys.exit("run %d: %s is not redirected (status %d)" % (i, ue, status))
        q = token(key, subscriber, ue, int(time.time()) + 600, os.urandom(16).hex())
        started = time.time()
        status = get(ue, PORTAL, "portal.example", "/recharge/success?" + q)
        if status != 200:
            sys.exit("run %d: success page status %d" % (i, status))
        status = get(ue, SITE, "site.example", "/")
        done = time.time()
        if status != 200:
            sys.exit("run %d: still redirected after the success (status %d)" % (i, status))
        print("%s %.6f %.6f" % (ue, started, done), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "lift":
        lift(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
    else:
        sys.exit("usage: bench-redirect.py lift RUNS SUBSCRIBER_PREFIX FIRST_ADDRESS KEY_HEX")
