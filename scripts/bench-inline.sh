#!/usr/bin/env bash
# Inline forwarding benchmark (needs root): the lab topology (scripts/lab.sh), first with the Linux
# kernel's bridge in gw, then with Weir bridging the same legs, one after the other in one run.
#
#   packet rate  trafgen in ue sends 64-byte frames (60 + FCS: Ethernet/IPv4/UDP) as fast as it
#                can for BENCH_SECONDS; delivered = frames the inet end received (its interface
#                counter), lost = sent - delivered
#   TCP          iperf3 ue -> inet, BENCH_SECONDS, receiver's goodput
#   latency      ping ue -> inet every 2 ms, p50 and p99 of the round trip; added latency is
#                Weir's minus the bridge's
#
# Prints Weir / kernel bridge for each. Settings: BENCH_SECONDS (default 5), WEIR_BENCH_CORES
# (Weir's worker cores, default "1": trafgen runs on core 0), WEIR_BENCH_TPACKET (v2|v3, default v2),
# WEIR_BENCH_BACKENDS (data paths to measure one after the other in this run, e.g.
# "af_packet af_xdp"; default "af_packet"), WEIR_BENCH_TX (AF_PACKET transmit modes to measure one
# after the other, e.g. "ring copy"; default: the config's), WEIR_BENCH_SET (more [dataplane] keys for every Weir run, e.g.
# "batch=128 tx_frames=256"),
# BENCH_PERF=1 to profile Weir during the packet-rate run (perf report to $STATE/perf-<tx>.txt),
# BENCH_PLACEMENT=shared|split (default shared):
#   shared  only trafgen is pinned (core 0); clients, servers and their network stacks run
#           wherever the scheduler puts them — including, for frames Weir sends, on Weir's core:
#           veth delivers synchronously, so the receiver's whole TCP stack runs inside Weir's send
#   split   the endpoints (their processes, and their stacks via RPS) stay on core 0, as if they
#           were other machines; the gateway — Weir's worker, or the bridge's softirq — gets core 1
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench-inline: needs root (network namespaces): sudo $0" >&2; exit 1; }
for tool in trafgen iperf3 ping ethtool; do
  command -v "$tool" >/dev/null || { echo "bench-inline: $tool missing (scripts/install-deps.sh)" >&2; exit 1; }
done

SECS=${BENCH_SECONDS:-5}
PLACEMENT=${BENCH_PLACEMENT:-shared}
CORES=${WEIR_BENCH_CORES:-1}
TPACKET=${WEIR_BENCH_TPACKET:-v2}
read -r -a TX_MODES <<<"${WEIR_BENCH_TX:-}"
[ ${#TX_MODES[@]} -gt 0 ] || TX_MODES=(default)
read -r -a BACKENDS <<<"${WEIR_BENCH_BACKENDS:-af_packet}"
# Every Weir run: an AF_PACKET run per transmit mode, one AF_XDP run (its transmit has no modes).
RUNS=()
for backend in "${BACKENDS[@]}"; do
  case $backend in
    af_packet) RUNS+=("${TX_MODES[@]}") ;;
    af_xdp) RUNS+=(af_xdp) ;;
    *) echo "bench-inline: unknown backend '$backend' in WEIR_BENCH_BACKENDS (af_packet, af_xdp)" >&2; exit 1 ;;
  esac
done
read -r -a SET <<<"${WEIR_BENCH_SET:-}"
export WEIR_LAB_PREFIX=${WEIR_LAB_PREFIX:-wbench-}
export WEIR_LAB_STATE=${WEIR_LAB_STATE:-/tmp/weir-bench}
# One client wired straight to the gateway and nothing but the web server behind it: no switch
# namespaces on the path, so the figures measure the gateway alone.
export WEIR_LAB_CLIENTS=${WEIR_LAB_CLIENTS:-ue} WEIR_LAB_PORTAL=${WEIR_LAB_PORTAL:-0}
UE=${WEIR_LAB_PREFIX}ue INET=${WEIR_LAB_PREFIX}inet GW=${WEIR_LAB_PREFIX}gw
if [ -z "${WEIR_BIN:-}" ]; then
  cargo build --release --quiet
  export WEIR_BIN=$PWD/target/release/weir
fi
cleanup() { scripts/lab.sh down >/dev/null 2>&1 || true; }
trap cleanup EXIT

# Where endpoint processes run.
PIN=()
[ "$PLACEMENT" = split ] && PIN=(taskset -c 0)

place_endpoints() {
  [ "$PLACEMENT" = split ] || return 0
  local n
  for n in "$UE" "$INET"; do
    ip netns exec "$n" sh -c 'echo 1 > /sys/class/net/eth0/queues/rx-0/rps_cpus'
  done
  if [ "${1:-}" = bridge ]; then
    # Received by the gateway's legs: forwarded on core 1.
    for leg in gw-ue gw-inet; do
      ip netns exec "$GW" sh -c "echo 2 > /sys/class/net/$leg/queues/rx-0/rps_cpus"
    done
  fi
}

counter() { ip netns exec "$1" cat "/sys/class/net/eth0/statistics/$2"; }

# Packet rate: prints "sent delivered".
pps() {
  local cfg=$WEIR_LAB_STATE/trafgen.cfg
  cat >"$cfg" <<EOF
{
  eth(da=$(ip netns exec "$INET" cat /sys/class/net/eth0/address), sa=$(ip netns exec "$UE" cat /sys/class/net/eth0/address), type=0x0800),
  ipv4(saddr=10.45.0.2, daddr=198.51.100.10, ttl=64),
  udp(sport=4000, dport=9),
  fill(0x00, 18)
}
EOF
  local tx0 rx0 tx1 rx1
  tx0=$(counter "$UE" tx_packets); rx0=$(counter "$INET" rx_packets)
  ip netns exec "$UE" timeout -s INT "$SECS" taskset -c 0 trafgen -o eth0 -i "$cfg" -P 1 -C >/dev/null 2>&1 || true
  sleep 0.5
  tx1=$(counter "$UE" tx_packets); rx1=$(counter "$INET" rx_packets)
  echo "$((tx1 - tx0)) $((rx1 - rx0))"
}

tcp() {
  ip netns exec "$INET" "${PIN[@]}" iperf3 -s -1 >/dev/null 2>&1 &
  sleep 0.5
  ip netns exec "$UE" timeout $((SECS + 10)) "${PIN[@]}" iperf3 -c 198.51.100.10 -t "$SECS" -J |
    python3 -c 'import json,sys; print(int(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]))'
  wait || true
}

# Prints "p50_us p99_us".
latency() {
  ip netns exec "$UE" ping -c 3 -i 0.2 -q 198.51.100.10 >/dev/null
  ip netns exec "$UE" "${PIN[@]}" ping -c 2000 -i 0.002 198.51.100.10 |
    sed -n 's/.*time=\([0-9.]*\) ms/\1/p' |
    python3 -c 'import sys
v = sorted(float(x) * 1000 for x in sys.stdin)
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print(f"{q(0.50):.0f} {q(0.99):.0f}")'
}

declare -A R
measure() {
  local kind=$1
  scripts/lab.sh up >/dev/null
  place_endpoints "$kind"
  read -r sent delivered < <(pps)
  R[$kind.sent]=$sent R[$kind.delivered]=$delivered
  if [ "$kind" != bridge ] && [ "${BENCH_PERF:-0}" = 1 ] && command -v perf >/dev/null; then
    local pid
    pid=$(cat "$WEIR_LAB_STATE/weir.pid")
    perf record -q -g -p "$pid" -o "$WEIR_LAB_STATE/perf.data" -- sleep "$SECS" >/dev/null 2>&1 &
    local perf_pid=$!
    pps >/dev/null
    wait "$perf_pid" || true
    perf report -q --stdio --no-children -i "$WEIR_LAB_STATE/perf.data" 2>/dev/null | grep -v '^$' | head -60 >"$WEIR_LAB_STATE/perf-$kind.txt" || true
  fi
  R[$kind.tcp]=$(tcp)
  read -r p50 p99 < <(latency)
  R[$kind.p50]=$p50 R[$kind.p99]=$p99
  scripts/lab.sh down >/dev/null
}

# Writes the lab's config with [dataplane] keys overridden: key=value (strings quoted here).
weir_config() {
  local out=$1 kv key value
  sed -e "s/^tpacket_version = .*/tpacket_version = \"$TPACKET\"/" examples/lab.toml >"$out"
  shift
  for kv in "$@"; do
    key=${kv%%=*} value=${kv#*=}
    [[ $value =~ ^[0-9]+$|^true$|^false$ ]] || value="\"$value\""
    sed -i "/^$key *=/d" "$out"
    sed -i "s/^\[dataplane\]$/[dataplane]\n$key = ${value//\//\\/}/" "$out"
  done
}

mkdir -p "$WEIR_LAB_STATE"
echo "== kernel bridge"
WEIR_LAB_GATEWAY=bridge measure bridge
for tx in "${RUNS[@]}"; do
  cfg=$WEIR_LAB_STATE/bench-$tx.toml
  if [ "$tx" = af_xdp ]; then
    echo "== weir (cores $CORES, AF_XDP, placement $PLACEMENT${SET[*]:+, ${SET[*]}})"
    weir_config "$cfg" "backend=af_xdp" "${SET[@]}"
  else
    echo "== weir (cores $CORES, $TPACKET, tx $tx, placement $PLACEMENT${SET[*]:+, ${SET[*]}})"
    if [ "$tx" = default ]; then weir_config "$cfg" "${SET[@]}"; else weir_config "$cfg" "tx_mode=$tx" "${SET[@]}"; fi
  fi
  WEIR_LAB_GATEWAY=weir WEIR_LAB_CONFIG=$cfg WEIR_LAB_CORES=$CORES measure "$tx"
  [ -f "$WEIR_LAB_STATE/report.json" ] && python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("weir io:", json.dumps(r["io"]))' "$WEIR_LAB_STATE/report.json"
done

args=("$SECS" "${R[bridge.sent]}" "${R[bridge.delivered]}" "${R[bridge.tcp]}" "${R[bridge.p50]}" "${R[bridge.p99]}")
for tx in "${RUNS[@]}"; do
  args+=("$tx" "${R[$tx.sent]}" "${R[$tx.delivered]}" "${R[$tx.tcp]}" "${R[$tx.p50]}" "${R[$tx.p99]}")
done
python3 - "${args[@]}" <<'PY'
import sys
a = sys.argv[1:]
s = float(a[0])
bs, bd, bt, bp50, bp99 = map(float, a[1:6])
runs = [(a[i], *map(float, a[i + 1:i + 6])) for i in range(6, len(a), 6)]
name = lambda t: "Weir" if t == "default" else ("Weir (AF_XDP)" if t == "af_xdp" else f"Weir ({t})")
print()
print("| measure | kernel bridge | " + " | ".join(f"{name(t)} | ÷ bridge" for t, *_ in runs) + " |")
print("|---|---:|" + "---:|---:|" * len(runs))
print(f"| 64-byte frames delivered per second | {bd/s:,.0f} | " + " | ".join(f"{wd/s:,.0f} | {wd/bd:.2f}" for _, ws, wd, *_ in runs) + " |")
print(f"| 64-byte frames lost (of sent) | {bs-bd:,.0f} of {bs:,.0f} | " + " | ".join(f"{ws-wd:,.0f} of {ws:,.0f} | " for _, ws, wd, *_ in runs) + " |")
print(f"| TCP throughput (iperf3, Gbit/s) | {bt/1e9:.2f} | " + " | ".join(f"{wt/1e9:.2f} | {wt/bt:.2f}" for _, _, _, wt, *_ in runs) + " |")
print(f"| round trip p50 / p99 (µs) | {bp50:.0f} / {bp99:.0f} | " + " | ".join(f"{w50:.0f} / {w99:.0f} | added p50 {w50-bp50:+.0f} µs, p99 {w99-bp99:+.0f} µs" for *_, w50, w99 in runs) + " |")
PY
