#!/usr/bin/env bash
# Inline forwarding benchmark (needs root): the lab topology (scripts/lab.sh), first with the Linux
# kernel's bridge in gw, then with Weir bridging the same legs, one after the other in one run.
#
#   packet rate  trafgen in ue sends 64-byte frames (60 + FCS: Ethernet/IPv4/UDP) as fast as it
#                can for BENCH_SECONDS; delivered = frames the inet end received (its interface
#                counter), lost = sent - delivered. WEIR_BENCH_SINK=stack (default) lets the
#                inet end's stack take them (and answer each with ICMP port unreachable, work
#                that veth runs on the sender's core: for Weir, inside its transmit call);
#                WEIR_BENCH_SINK=socket has a UDP socket on port 9 take them and read none (the
#                kernel drops what its full buffer cannot hold, answering nothing): less of the
#                receiving host's work on the gateway's core, as over a wire to another machine
#   TCP          iperf3 ue -> inet, BENCH_SECONDS, receiver's goodput, with 1 and with 4 streams;
#                CPU per Gbit/s = the cores the whole machine kept busy during the transfer
#                (/proc/stat: everything but idle and iowait; endpoints included, the same for
#                every gateway) divided by the goodput
#   latency      ping ue -> inet every 2 ms, p50 and p99 of the round trip; added latency is
#                Weir's minus the bridge's
#
# Prints Weir / kernel bridge for each. Settings: BENCH_SECONDS (default 5), WEIR_BENCH_CORES
# (Weir's worker cores, default "1": trafgen runs on core 0), WEIR_BENCH_TPACKET (v2|v3, default v2),
# WEIR_BENCH_BACKENDS (data paths to measure one after the other in this run, e.g.
# "af_packet af_xdp"; default "af_packet"), WEIR_BENCH_TX (AF_PACKET transmit modes to measure one
# after the other, e.g. "ring copy"; default: the config's), WEIR_BENCH_SET (more [dataplane] keys for every Weir run, e.g.
# "batch=128 tx_frames=256"),
# WEIR_BENCH_OFFLOADS=off|keep (default off): keep leaves the endpoints' veth offloads on, so TCP
#   leaves the client as 64 KiB aggregates, and runs Weir's AF_PACKET legs with offloads = "keep"
#   (aggregates forwarded whole, PACKET_VNET_HDR); AF_XDP still runs with offloads off (an XDP
#   program sees no aggregates, so the kernel segments before it, leaving each segment's
#   checksum for Weir to finish), the bridge with the veth defaults,
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
SINK=${WEIR_BENCH_SINK:-stack}
case $SINK in stack | socket) ;; *) echo "bench-inline: WEIR_BENCH_SINK must be stack or socket, got '$SINK'" >&2; exit 1 ;; esac
OFFLOADS=${WEIR_BENCH_OFFLOADS:-off}
case $OFFLOADS in
  off) ;;
  keep) SET+=("offloads=keep") ;;
  *) echo "bench-inline: WEIR_BENCH_OFFLOADS must be off or keep, got '$OFFLOADS'" >&2; exit 1 ;;
esac
export WEIR_LAB_OFFLOADS=$OFFLOADS
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
  local sink=
  if [ "$SINK" = socket ]; then
    ip netns exec "$INET" python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9))
time.sleep(float(sys.argv[1]))' "$((SECS + 2))" &
    sink=$!
    sleep 0.3
  fi
  tx0=$(counter "$UE" tx_packets); rx0=$(counter "$INET" rx_packets)
  # With an XDP program on its peer, a veth stops its queue while the peer's ring is full
  # (backpressure, Linux 6.16 and later); trafgen gives up on the first flush refused then
  # ("Flushing TX_RING failed"), so it is started again for the time left.
  local end_us=$((${EPOCHREALTIME/./} + SECS * 1000000)) left out restarts=0
  while :; do
    left=$((end_us - ${EPOCHREALTIME/./}))
    [ "$left" -gt 100000 ] || break
    out=$(ip netns exec "$UE" timeout -s INT "$((left / 1000000)).$(printf %06d $((left % 1000000)))" \
      taskset -c 0 trafgen -o eth0 -i "$cfg" -P 1 -C 2>&1) || true
    grep -q "TX_RING failed" <<<"$out" || break
    restarts=$((restarts + 1))
  done
  [ "$restarts" -eq 0 ] || echo "bench-inline: trafgen restarted $restarts time(s) after its queue was stopped" >&2
  sleep 0.5
  tx1=$(counter "$UE" tx_packets); rx1=$(counter "$INET" rx_packets)
  if [ -n "$sink" ]; then kill "$sink" 2>/dev/null; wait "$sink" 2>/dev/null || true; fi
  echo "$((tx1 - tx0)) $((rx1 - rx0))"
}

# The machine's CPU counters: "busy total" in clock ticks, all cores.
cpu_ticks() { awk '/^cpu /{t=0; for(i=2;i<=NF;i++) t+=$i; print t-$5-$6, t}' /proc/stat; }

# TCP with $1 streams: prints "bits_per_second cores_busy".
tcp() {
  ip netns exec "$INET" "${PIN[@]}" iperf3 -s -1 >/dev/null 2>&1 &
  sleep 0.5
  local b0 t0 b1 t1 bps
  read -r b0 t0 < <(cpu_ticks)
  bps=$(ip netns exec "$UE" timeout $((SECS + 10)) "${PIN[@]}" iperf3 -c 198.51.100.10 -t "$SECS" -P "$1" -J |
    python3 -c 'import json,sys; print(int(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]))')
  read -r b1 t1 < <(cpu_ticks)
  wait || true
  echo "$bps $(python3 -c "import os; print(f'{($b1 - $b0) / ($t1 - $t0) * os.cpu_count():.3f}')")"
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
  read -r "R[$kind.tcp]" "R[$kind.cpu]" < <(tcp 1)
  read -r "R[$kind.tcp4]" "R[$kind.cpu4]" < <(tcp 4)
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
    # An XDP program sees no aggregates: AF_XDP refuses offloads = "keep".
    weir_config "$cfg" "backend=af_xdp" "${SET[@]/offloads=keep/offloads=off}"
  else
    echo "== weir (cores $CORES, $TPACKET, tx $tx, placement $PLACEMENT${SET[*]:+, ${SET[*]}})"
    if [ "$tx" = default ]; then weir_config "$cfg" "${SET[@]}"; else weir_config "$cfg" "tx_mode=$tx" "${SET[@]}"; fi
  fi
  WEIR_LAB_GATEWAY=weir WEIR_LAB_CONFIG=$cfg WEIR_LAB_CORES=$CORES measure "$tx"
  [ -f "$WEIR_LAB_STATE/report.json" ] && python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("weir io:", json.dumps(r["io"]))' "$WEIR_LAB_STATE/report.json"
done

FIELDS=(sent delivered tcp cpu tcp4 cpu4 p50 p99)
args=("$SECS" "$OFFLOADS")
for kind in bridge "${RUNS[@]}"; do
  args+=("$kind")
  for f in "${FIELDS[@]}"; do args+=("${R[$kind.$f]}"); done
done
python3 - "${args[@]}" <<'PY'
import sys
a = sys.argv[1:]
s, offloads = float(a[0]), a[1]
w = 9  # name + 8 fields
runs = [(a[i], *map(float, a[i + 1:i + w])) for i in range(2, len(a), w)]
(_, bs, bd, bt, bc, bt4, bc4, bp50, bp99), weir = runs[0], runs[1:]
def name(t):
    if t == "af_xdp":
        return "Weir, AF_XDP"
    return "Weir, AF_PACKET" + ("" if t == "default" else f" ({t})") + (", offloads keep" if offloads == "keep" else "")
def row(label, bridge, cell):
    print(f"| {label} | {bridge} | " + " | ".join(cell(*r[1:]) for r in weir) + " |")
gb = lambda bps: bps / 1e9
print()
print("| measure | kernel bridge | " + " | ".join(f"{name(t)} | ÷ bridge" for t, *_ in weir) + " |")
print("|---|---:|" + "---:|---:|" * len(weir))
row("64-byte frames delivered per second", f"{bd/s:,.0f}", lambda ws, wd, *_: f"{wd/s:,.0f} | {wd/bd:.2f}")
row("64-byte frames lost (of sent)", f"{bs-bd:,.0f} of {bs:,.0f}", lambda ws, wd, *_: f"{ws-wd:,.0f} of {ws:,.0f} | ")
row("TCP, 1 stream (Gbit/s)", f"{gb(bt):.2f}", lambda ws, wd, wt, *_: f"{gb(wt):.2f} | {wt/bt:.2f}")
row("TCP, 4 streams (Gbit/s)", f"{gb(bt4):.2f}", lambda ws, wd, wt, wc, wt4, *_: f"{gb(wt4):.2f} | {wt4/bt4:.2f}")
row("CPU per Gbit/s, 1 stream (cores busy)", f"{bc/gb(bt):.3f}", lambda ws, wd, wt, wc, *_: f"{wc/gb(wt):.3f} | {wc/gb(wt)/(bc/gb(bt)):.2f}")
row("CPU per Gbit/s, 4 streams (cores busy)", f"{bc4/gb(bt4):.3f}", lambda ws, wd, wt, wc, wt4, wc4, *_: f"{wc4/gb(wt4):.3f} | {wc4/gb(wt4)/(bc4/gb(bt4)):.2f}")
row("round trip p50 / p99 (µs)", f"{bp50:.0f} / {bp99:.0f}", lambda *r: f"{r[-2]:.0f} / {r[-1]:.0f} | added p50 {r[-2]-bp50:+.0f} µs, p99 {r[-1]-bp99:+.0f} µs")
PY
