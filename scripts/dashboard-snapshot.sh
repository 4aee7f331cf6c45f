#!/usr/bin/env bash
# A picture of the shipped Grafana dashboard (packaging/grafana/weir.json) over a live lab (needs
# root): brings the lab up (scripts/lab.sh), starts a real Prometheus in the gateway's namespace
# scraping the gateway's /metrics (127.0.0.1:9464) and the policy engine's (192.0.2.1:9465) every
# second, drives traffic for a while (pages and a 4 MiB file from ue, a blocked port, ue2
# redirected, paying at the portal and freed, weir ctl and grpcurl calls), then evaluates every
# panel's query over that time with Prometheus (/api/v1/query_range) and draws the panels with
# scripts/dashboard/render.html in headless Chromium. Grafana's own server is not packaged for
# Debian; the panels, their layout and their PromQL are the shipped dashboard's.
#
#   scripts/dashboard-snapshot.sh [OUT.png]     default docs/dashboard.png
#
# Settings (environment):
#   WEIR_DASH_SECONDS  how long traffic runs (default 40)
#   WEIR_DASH_DOM      also write the drawn page's DOM here (Chromium --dump-dom)
#   WEIR_DASH_DATA     also write the query results (JSON) here
#   WEIR_LAB_PREFIX, WEIR_LAB_STATE, WEIR_BIN   as for scripts/lab.sh (default prefix "weir-dash-")
# The lab and Prometheus are removed on exit, failure or not.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-docs/dashboard.png}
SECONDS_OF_TRAFFIC=${WEIR_DASH_SECONDS:-40}
export WEIR_LAB_PREFIX=${WEIR_LAB_PREFIX:-weir-dash-}
export WEIR_LAB_STATE=${WEIR_LAB_STATE:-/tmp/weir-lab-${WEIR_LAB_PREFIX%-}}
export WEIR_LAB_BILLING_DELAY=${WEIR_LAB_BILLING_DELAY:-5}
P=$WEIR_LAB_PREFIX
STATE=$WEIR_LAB_STATE
PROM=$STATE/prometheus
DASHBOARD=packaging/grafana/weir.json

die() { echo "dashboard-snapshot: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "needs root (the lab's network namespaces)"
case "$SECONDS_OF_TRAFFIC" in ''|*[!0-9]*) die "WEIR_DASH_SECONDS must be whole seconds, got '$SECONDS_OF_TRAFFIC'" ;; esac
for tool in prometheus chromium grpcurl python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh installs it)"
done

# Never tear down a lab this run did not build.
if ip netns list | grep -q "^${P}gw\b"; then die "a lab with prefix '$P' exists; remove it (WEIR_LAB_PREFIX=$P scripts/lab.sh down) or set another WEIR_LAB_PREFIX"; fi

PROM_PID=
cleanup() {
  [ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null && wait "$PROM_PID" 2>/dev/null || true
  scripts/lab.sh down >/dev/null 2>&1 || true
  rm -rf "$PROM"
}
trap cleanup EXIT

scripts/lab.sh up >&2
BIN=${WEIR_BIN:-$PWD/target/release/weir}
gw() { ip netns exec "${P}gw" "$@"; }
ctl() { gw "$BIN" ctl --server 192.0.2.2:50052 "$@"; }

mkdir -p "$PROM"
cat >"$PROM/prometheus.yml" <<'EOF'
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: weir
    static_configs: [{ targets: ["127.0.0.1:9464"], labels: { instance: "gw.lab.example" } }]
  - job_name: weir-policy-engine
    static_configs: [{ targets: ["192.0.2.1:9465"], labels: { instance: "pcrf.lab.example" } }]
EOF
gw prometheus --config.file="$PROM/prometheus.yml" --storage.tsdb.path="$PROM/data" \
  --web.listen-address=127.0.0.1:9090 >"$PROM/log" 2>&1 &
PROM_PID=$!
for _ in $(seq 100); do
  gw curl -sf --max-time 1 http://127.0.0.1:9090/-/ready >/dev/null 2>&1 && break
  kill -0 "$PROM_PID" 2>/dev/null || { cat "$PROM/log" >&2; die "prometheus did not start"; }
  sleep 0.1
done
START=$(date +%s)
echo "dashboard-snapshot: prometheus scraping; traffic for $SECONDS_OF_TRAFFIC s" >&2

ue() { ip netns exec "${P}ue" "$@"; }
ue2() { ip netns exec "${P}ue2" "$@"; }
q() { "$@" >/dev/null 2>&1 || true; }
pay=0
while [ $(( $(date +%s) - START )) -lt "$SECONDS_OF_TRAFFIC" ]; do
  t=$(( $(date +%s) - START ))
  q ue curl -s --max-time 3 http://site.example/
  q ue curl -s --max-time 5 -o /dev/null http://site.example/file.bin
  # The lab's blocked-p2p rule closes the gate to BitTorrent's ports: these are dropped.
  q ue curl -s --max-time 1 http://site.example:6881/
  q ue2 curl -s --max-time 3 http://site.example/
  q ctl stats
  q gw grpcurl -plaintext -d '{"subscriber_id": "imsi-001010000000002"}' 192.0.2.1:50051 weir.v1.Admin/GetAccount
  if [ "$pay" = 0 ] && [ "$t" -ge $((SECONDS_OF_TRAFFIC / 4)) ]; then
    # ue2 pays at the portal; the success URL is reported and the policy engine lifts the redirect.
    q ue2 curl -s -L --max-time 5 --data 'sub=imsi-001010000000002&orig=http%3A%2F%2Fsite.example%2F&amount=10' \
      http://portal.example/recharge/pay
    pay=1
  fi
  if [ "$pay" = 1 ] && [ "$t" -ge $((SECONDS_OF_TRAFFIC * 3 / 4)) ]; then
    # And the operator redirects ue for the rest of the run.
    q ctl redirect imsi-001010000000001 --url http://portal.example/recharge
    pay=2
  fi
  sleep 0.5
done
END=$(date +%s)
sleep 2   # the last scrape

DATA=$STATE/dashboard-data.json
gw python3 - "$DASHBOARD" "$START" "$END" >"$DATA" <<'EOF'
import json, sys, urllib.parse, urllib.request
dashboard, start, end = json.load(open(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])

def query(expr):
    # Grafana's variables: every gateway, and a rate window of a few scrapes.
    expr = expr.replace("$instance", ".*").replace("$__rate_interval", "5s")
    url = "http://127.0.0.1:9090/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": "1"})
    answer = json.load(urllib.request.urlopen(url, timeout=10))
    if answer.get("status") != "success":
        sys.exit(f"prometheus refused {expr!r}: {answer}")
    return answer["data"]["result"]

def name(fmt, labels):
    if not fmt:
        return ",".join(f"{k}={v}" for k, v in labels.items()) or "value"
    out = fmt
    for k, v in labels.items():
        out = out.replace("{{" + k + "}}", v)
    return out

panels = []
def walk(ps):
    for p in ps:
        out = {"title": p.get("title", ""), "type": p.get("type"), "gridPos": p["gridPos"], "series": []}
        for t in p.get("targets", []):
            for r in query(t["expr"]):
                out["series"].append({
                    "name": name(t.get("legendFormat"), r["metric"]),
                    "values": [[int(float(ts)), float(v)] for ts, v in r["values"]],
                })
        panels.append(out)
        walk(p.get("panels", []))
walk(dashboard["panels"])
json.dump({"title": dashboard["title"], "start": start, "end": end,
           "caption": f"the shipped dashboard's panels and queries, evaluated by Prometheus over {end - start} s of the lab",
           "panels": panels}, sys.stdout)
EOF
[ -n "${WEIR_DASH_DATA:-}" ] && cp "$DATA" "$WEIR_DASH_DATA"

PAGE=$STATE/dashboard.html
python3 - scripts/dashboard/render.html "$DATA" >"$PAGE" <<'EOF'
import sys
page, data = open(sys.argv[1]).read(), open(sys.argv[2]).read().replace("</", "<\\/")
marker = "const DATA = null; /*DATA*/"
assert marker in page, "render.html has no DATA line"
sys.stdout.write(page.replace(marker, "const DATA = " + data + ";"))
EOF
HEIGHT=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(max(p["gridPos"]["y"]+p["gridPos"]["h"] for p in d["panels"])*30+60)' "$DATA")
CHROME=(chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$STATE/chromium")
mkdir -p "$(dirname "$OUT")"
SHOT=$STATE/dashboard.png
rm -f "$SHOT"
"${CHROME[@]}" --window-size=1600,"$HEIGHT" --screenshot="$SHOT" "file://$PAGE" >"$STATE/chromium.log" 2>&1 || true
[ -s "$SHOT" ] || { cat "$STATE/chromium.log" >&2; die "chromium wrote no screenshot"; }
mv "$SHOT" "$OUT"
if [ -n "${WEIR_DASH_DOM:-}" ]; then
  "${CHROME[@]}" --dump-dom "file://$PAGE" >"$WEIR_DASH_DOM" 2>/dev/null || die "chromium --dump-dom failed"
fi
echo "dashboard-snapshot: $OUT ($(stat -c %s "$OUT") bytes, $(( END - START )) s of the lab)" >&2
