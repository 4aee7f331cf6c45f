#!/usr/bin/env bash
# Redirect benchmarks in the lab (scripts/lab.sh; needs root):
#
#   lift   from the success request leaving the UE to the first unredirected request forwarded
#          to the real site. BENCH_RUNS subscribers under redirect, each its own address in ue2;
#          each requests the success URL with a valid token and, as soon as the answer is in,
#          the site again. t0 = the success request's SYN on ue2's interface, t1 = that
#          subscriber's first SYN to the site on the web server's interface (both captures,
#          one clock). Prints p50/p99 of t1 - t0.
#   302    how long a client waits for a 302 (curl's time_total, connection set-up included):
#          Weir's responder answering ue2 (redirected) against a real web server (Python's
#          http.server in inet, answering the same 302 on the same path) answering ue (in
#          credit, forwarded by Weir). BENCH_302_RUNS requests each; p50/p99 and the ratio.
#
# Settings: BENCH_RUNS (default 200), BENCH_302_RUNS (default 500), WEIR_BIN (default: the
# release build), WEIR_LAB_PREFIX (default wbr-).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-redirect: needs root (network namespaces): sudo $0" >&2; exit 1; }
for tool in tcpdump tshark curl python3; do
  command -v "$tool" >/dev/null || { echo "bench-redirect: $tool missing (scripts/install-deps.sh)" >&2; exit 1; }
done

RUNS=${BENCH_RUNS:-200}
RUNS_302=${BENCH_302_RUNS:-500}
export WEIR_LAB_PREFIX=${WEIR_LAB_PREFIX:-wbr-}
export WEIR_LAB_STATE=${WEIR_LAB_STATE:-/tmp/weir-bench-redirect}
export WEIR_LAB_CLIENTS="ue ue2" WEIR_LAB_PORTAL=1
UE=${WEIR_LAB_PREFIX}ue UE2=${WEIR_LAB_PREFIX}ue2 INET=${WEIR_LAB_PREFIX}inet
if [ -z "${WEIR_BIN:-}" ]; then
  cargo build --release --quiet
  export WEIR_BIN=$PWD/target/release/weir
fi
SUB_PREFIX=imsi-00101090000
FIRST=10.45.1.0
KEY=$(sed -n 's/^token_key *= *"\([0-9a-f]*\)".*/\1/p' examples/lab.toml)

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  scripts/lab.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

# The lab's configuration plus one redirected subscriber per run, 10.45.1.0 upwards.
mkdir -p "$WEIR_LAB_STATE"
cfg=$WEIR_LAB_STATE/bench.toml
cp examples/lab.toml "$cfg"
python3 - "$RUNS" "$SUB_PREFIX" >>"$cfg" <<'EOF'
import ipaddress, sys
runs, prefix = int(sys.argv[1]), sys.argv[2]
for i in range(runs):
    print('\n[[session]]\nsubscriber = "%s%04d"\nipv4 = "%s"' % (prefix, i, ipaddress.IPv4Address("10.45.1.0") + i))
    print('predefined = ["dns", "web", "recharge-redirect"]')
EOF
WEIR_LAB_CONFIG=$cfg scripts/lab.sh up >/dev/null

python3 - "$RUNS" <<'EOF' | while read -r a; do ip -n "$UE2" addr add "$a/32" dev eth0; done
import ipaddress, sys
for i in range(int(sys.argv[1])):
    print(ipaddress.IPv4Address("10.45.1.0") + i)
EOF

percentiles() {
  # stdin: one number per line; prints "p50 p99" (nearest rank).
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "- -"; exit }
    i50 = int(NR * 0.50 + 0.999999); i99 = int(NR * 0.99 + 0.999999)
    printf "%s %s\n", v[i50], v[i99] }'
}

capture() { # namespace, interface, filter, file
  ip netns exec "$1" tcpdump -i "$2" -U --immediate-mode -n -s 96 -w "$4" "$3" 2>"$4.log" &
  PIDS+=($!)
  for _ in $(seq 50); do grep -q "listening on" "$4.log" 2>/dev/null && return 0; sleep 0.1; done
  echo "bench-redirect: tcpdump did not start" >&2; exit 1
}

echo "== lift: $RUNS subscribers, success request -> first request forwarded to the site"
capture "$UE2" eth0 "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn and dst host 198.51.100.20 and dst port 80" "$WEIR_LAB_STATE/ue2.pcap"
capture "$INET" eth0 "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn and dst host 198.51.100.10 and dst port 80" "$WEIR_LAB_STATE/inet.pcap"
ip netns exec "$UE2" python3 scripts/bench-redirect.py lift "$RUNS" "$SUB_PREFIX" "$FIRST" "$KEY" >"$WEIR_LAB_STATE/lift.txt"
sleep 0.5
kill "${PIDS[@]}" 2>/dev/null || true
wait "${PIDS[@]}" 2>/dev/null || true
PIDS=()
python3 - "$WEIR_LAB_STATE" <<'EOF' >"$WEIR_LAB_STATE/lift-us.txt"
import subprocess, sys
state = sys.argv[1]
def first(path):
    out = subprocess.run(["tshark", "-n", "-r", path, "-Y", "tcp.flags.syn == 1 && tcp.flags.ack == 0",
                          "-T", "fields", "-e", "ip.src", "-e", "frame.time_epoch"],
                         check=True, capture_output=True, text=True).stdout
    seen = {}
    for line in out.splitlines():
        src, t = line.split("\t")
        seen.setdefault(src, float(t))
    return seen
t0, t1 = first(state + "/ue2.pcap"), first(state + "/inet.pcap")
for line in open(state + "/lift.txt"):
    ue = line.split()[0]
    print("%.1f" % ((t1[ue] - t0[ue]) * 1e6))
EOF
read -r p50 p99 < <(percentiles <"$WEIR_LAB_STATE/lift-us.txt")
client=$(awk '{ printf "%.1f\n", ($3 - $2) * 1e6 }' "$WEIR_LAB_STATE/lift.txt" | percentiles)
echo "lift (success SYN on the UE leg -> first site SYN forwarded), $(wc -l <"$WEIR_LAB_STATE/lift-us.txt") runs: p50 ${p50} us, p99 ${p99} us"
echo "client view (success request started -> the site's real page in): p50/p99 ${client// / / } us"

echo "== 302: $RUNS_302 requests each, curl time_total"
LOCATION='http://portal.example/recharge?orig=http%3A%2F%2Fsite.example%2F&sub=imsi-001010000000001'
ip netns exec "$INET" python3 - "$LOCATION" >"$WEIR_LAB_STATE/302.log" 2>&1 <<'EOF' &
import http.server, sys
location = sys.argv[1]
body = ('<!DOCTYPE html>\n<html><head><title>Recharge needed</title></head><body>\n'
        '<p><a href="%s">Continue to the recharge page</a></p>\n</body></html>\n' % location).encode()
class Redirect(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response_only(302, "Found")
        for k, v in (("Location", location), ("Cache-Control", "no-store"), ("Connection", "close"),
                     ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))):
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", 8080), Redirect).serve_forever()
EOF
PIDS+=($!)
for _ in $(seq 50); do
  ip netns exec "$INET" python3 -c "import socket; socket.create_connection(('127.0.0.1', 8080), 0.2)" 2>/dev/null && break
  sleep 0.1
done
times() { # namespace, url
  local i
  for i in $(seq "$RUNS_302"); do
    ip netns exec "$1" curl -s -o /dev/null --max-time 5 -w '%{http_code} %{time_total}\n' "$2"
  done
}
times "$UE2" http://198.51.100.10/ >"$WEIR_LAB_STATE/302-weir.txt"
times "$UE" http://198.51.100.10:8080/ >"$WEIR_LAB_STATE/302-server.txt"
for f in weir server; do
  bad=$(awk '$1 != 302' "$WEIR_LAB_STATE/302-$f.txt" | wc -l)
  [ "$bad" -eq 0 ] || { echo "bench-redirect: $bad answers of $f were not 302" >&2; exit 1; }
done
read -r w50 w99 < <(awk '{ printf "%.1f\n", $2 * 1e6 }' "$WEIR_LAB_STATE/302-weir.txt" | percentiles)
read -r s50 s99 < <(awk '{ printf "%.1f\n", $2 * 1e6 }' "$WEIR_LAB_STATE/302-server.txt" | percentiles)
echo "302 from Weir's responder (ue2):            p50 ${w50} us, p99 ${w99} us"
echo "302 from a Python web server via Weir (ue): p50 ${s50} us, p99 ${s99} us"
awk -v a="$s50" -v b="$w50" -v c="$s99" -v d="$w99" \
  'BEGIN { printf "ratio web server / Weir: p50 %.2f, p99 %.2f\n", a / b, c / d }'
