#!/usr/bin/env bash
# A gateway lab in network namespaces (needs root):
#
#   ue  ─┐                                                            ┌─ inet (web server, site.example)
#        lan ──veth── gw (Weir between gw-ue and gw-inet) ──veth── wan ┤
#   ue2 ─┘            │ ctl 192.0.2.2                                  └─ portal (weir portal, portal.example)
#                     │                                                     │ ctl 192.0.2.3
#                     └──────── pcrf (weir policy-engine, 192.0.2.1) ───────┘
#
# With WEIR_LAB_GATEWAYS=2 a second gateway gw2 (its clients ue3...) joins wan beside gw, and
# the control network at 192.0.2.4, on the same policy engine. With WEIR_LAB_CHARGING=1 the
# gateways charge the web rule online, asking the charging system in pcrf (see below).
#
# By default `ue` is a subscriber in credit and browses freely; `ue2` is out of credit: its web
# requests are answered by Weir with a 302 to the recharge portal until it recharges. The clients
# resolve site.example and portal.example from their namespace's hosts file (/etc/netns/<ns>/hosts,
# which `ip netns exec` puts in place of /etc/hosts).
#
# The policy engine (`weir policy-engine`, examples/policy-engine.toml with a fresh database) runs
# in its own namespace on the control network 192.0.2.0/24, a bridge inside pcrf that the gateway
# and the portal join over their own veth pairs (`ctl`); no subscriber reaches it. Its accounts:
# `ue` (imsi-001010000000001) in credit, `ue2` (imsi-001010000000002) at zero balance. The portal
# credits every payment there (weir.v1.Admin/Recharge) before it issues the success token. Its
# Prometheus metrics are at 192.0.2.1:9465/metrics; the gateway's at 127.0.0.1:9464/metrics in gw.
#
#   scripts/lab.sh up         build the namespaces, start the policy engine, the portal and Weir
#                             in gw; Weir takes its sessions from the policy engine
#                             (examples/lab-pcrf.toml: [control], [[subscriber]], the recharge
#                             success reported to the policy engine, which lifts the redirect)
#   scripts/lab.sh up --static  the same, but Weir's sessions come from its own file
#                             (examples/lab.toml) and the success is lifted in the gateway
#   scripts/lab.sh down       stop everything and remove the namespaces (also a half-built lab)
#   scripts/lab.sh status     what exists, and Weir's usage report
#
# Then, e.g.:  ip netns exec weir-ue curl http://site.example/
#              ip netns exec weir-ue2 curl -i http://site.example/      # the 302 to the portal
#              ip netns exec weir-gw grpcurl -plaintext 192.0.2.1:50051 list
#              ip netns exec weir-gw target/release/weir ctl --server 192.0.2.2:50052 sessions
#
# Settings (environment):
#   WEIR_LAB_PREFIX   namespace name prefix (default "weir-"): namespaces are <prefix>ue, <prefix>gw,
#                     <prefix>inet (<prefix>lan when there is more than one client, <prefix>portal
#                     and <prefix>wan with the portal, <prefix>pcrf with the policy engine)
#   WEIR_LAB_CLIENTS  client namespaces, space separated (default "ue ue2"); client i gets 10.45.0.(2+i)
#                     and 2001:db8:45:(i+1)::2; with several clients a switch namespace joins them
#   WEIR_LAB_PORTAL   1 (default): `weir portal` in <prefix>portal (198.51.100.20, 2001:db8:100::20),
#                     beside inet behind a switch namespace <prefix>wan; 0: none, inet alone
#   WEIR_LAB_PCRF     1 (default): `weir policy-engine` in <prefix>pcrf (192.0.2.1:50051); 0: none
#                     (the portal then only signs tokens)
#   WEIR_LAB_SESSIONS pcrf (default) | static (what `up --static` sets, and the default with
#                     WEIR_LAB_PCRF=0 or WEIR_LAB_MODE=routed): where Weir's sessions come from,
#                     which picks the default configuration (examples/lab-pcrf.toml, or
#                     examples/lab.toml / examples/lab-routed.toml)
#   WEIR_LAB_CHARGING 1: online charging (Gy): Weir takes examples/lab-ocs.toml (the web rule,
#                     rating group 10, online; downloads from port 8080, rating group 20,
#                     offline) and the policy engine examples/policy-engine-ocs.toml (accounts
#                     without money, browsing on data buckets); inet also serves port 8080.
#                     0 (default): no charging system
#   WEIR_LAB_PE_CONFIG  the policy engine's configuration (default examples/policy-engine.toml,
#                     or examples/policy-engine-ocs.toml with WEIR_LAB_CHARGING=1)
#   WEIR_LAB_GATEWAYS 2: a second gateway <prefix>gw2 running the same configuration with
#                     [control] listen 192.0.2.4:50052 and origin_host gw2.lab.example, on the
#                     same control network, policy engine and internet side (needs the portal,
#                     the policy engine and bridge mode); its clients are WEIR_LAB_CLIENTS2.
#                     1 (default): one gateway
#   WEIR_LAB_CLIENTS2 the second gateway's client namespaces (default "ue3"); client i gets
#                     10.45.1.(2+i) and 2001:db8:45:(11+i)::2 (a switch <prefix>lan2 when several)
#   WEIR_LAB_BILLING_DELAY  seconds a recharge takes to reach the balance in the policy engine
#                     (default: examples/policy-engine.toml's billing_delay)
#   WEIR_LAB_GATEWAY  weir (default) | bridge (the kernel's bridge, for comparison) | none
#   WEIR_LAB_MODE     bridge (default: Weir bridges the legs) | routed (Weir on TUN, gw routes)
#   WEIR_LAB_CONFIG   configuration for Weir and the portal (default: as WEIR_LAB_SESSIONS says);
#                     one that names a [control] policy_engine needs WEIR_LAB_PCRF=1
#   WEIR_LAB_PORTAL_CONFIG  the configuration the portal reads (default WEIR_LAB_CONFIG's): its
#                     [redirect] token key and success_url, e.g. when Weir's has no success_url
#   WEIR_BIN          the weir binary (default target/release/weir, rebuilt when out of date)
#   WEIR_LAB_CORES    cores for Weir's workers, e.g. "1" (default: the config's)
#   WEIR_LAB_OFFLOADS off (default: the endpoints' veths hand over wire-sized frames with their
#                     checksums: TSO, GSO, GRO and checksum offload off) | keep (the endpoints
#                     keep the veth defaults, so TCP leaves them as 64 KiB aggregates)
#   WEIR_LAB_STATE    where pid files, logs, the web root and the policy engine's database live
#                     (default /tmp/weir-lab-<prefix>)
set -Eeuo pipefail
cd "$(dirname "$0")/.."

VERB=${1:-}
case "${2:-}" in
  '') ;;
  --static) WEIR_LAB_SESSIONS=static ;;
  --pcrf) WEIR_LAB_SESSIONS=pcrf ;;
  *) echo "lab: unknown option '$2' (only 'up --static' or 'up --pcrf')" >&2; exit 2 ;;
esac
P=${WEIR_LAB_PREFIX:-weir-}
read -r -a CLIENTS <<<"${WEIR_LAB_CLIENTS:-ue ue2}"
PORTAL=${WEIR_LAB_PORTAL:-1}
GATEWAY=${WEIR_LAB_GATEWAY:-weir}
MODE=${WEIR_LAB_MODE:-bridge}
PCRF=${WEIR_LAB_PCRF:-1}
CHARGING=${WEIR_LAB_CHARGING:-0}
GATEWAYS=${WEIR_LAB_GATEWAYS:-1}
OFFLOADS=${WEIR_LAB_OFFLOADS:-off}
case "$OFFLOADS" in off | keep) ;; *) echo "lab: WEIR_LAB_OFFLOADS must be off or keep, got '$OFFLOADS'" >&2; exit 2 ;; esac
read -r -a CLIENTS2 <<<"${WEIR_LAB_CLIENTS2:-ue3}"
# Sessions from the policy engine unless there is none, or the mode has no such configuration.
if [ "$PCRF" = 1 ] && [ "$MODE" = bridge ]; then SESSIONS=${WEIR_LAB_SESSIONS:-pcrf}; else SESSIONS=${WEIR_LAB_SESSIONS:-static}; fi
case "$SESSIONS/$MODE" in
  static/routed) CONFIG=${WEIR_LAB_CONFIG:-examples/lab-routed.toml} ;;
  static/*) CONFIG=${WEIR_LAB_CONFIG:-examples/lab.toml} ;;
  pcrf/routed) CONFIG=${WEIR_LAB_CONFIG:-} ;;
  pcrf/*) if [ "$CHARGING" = 1 ]; then CONFIG=${WEIR_LAB_CONFIG:-examples/lab-ocs.toml}; else CONFIG=${WEIR_LAB_CONFIG:-examples/lab-pcrf.toml}; fi ;;
  *) echo "lab: WEIR_LAB_SESSIONS must be pcrf or static, got '$SESSIONS'" >&2; exit 2 ;;
esac
PORTAL_CONFIG=${WEIR_LAB_PORTAL_CONFIG:-$CONFIG}
if [ "$CHARGING" = 1 ]; then PE_EXAMPLE=${WEIR_LAB_PE_CONFIG:-examples/policy-engine-ocs.toml}; else PE_EXAMPLE=${WEIR_LAB_PE_CONFIG:-examples/policy-engine.toml}; fi
BILLING_DELAY=${WEIR_LAB_BILLING_DELAY:-$(sed -n 's/^billing_delay *= *\([0-9]*\).*/\1/p' "$(dirname "$0")/../$PE_EXAMPLE")}
STATE=${WEIR_LAB_STATE:-/tmp/weir-lab-${P%-}}
GW=${P}gw INET=${P}inet LAN=${P}lan WAN=${P}wan PORTAL_NS=${P}portal PCRF_NS=${P}pcrf
GW2=${P}gw2 LAN2=${P}lan2
BUILT=1
INET4=198.51.100.10 INET6=2001:db8:100::10
PORTAL4=198.51.100.20 PORTAL6=2001:db8:100::20
# The control network: the policy engine, the gateway's weir.v1.Gateway, the portal.
PCRF4=192.0.2.1 GW_CTL4=192.0.2.2 PORTAL_CTL4=192.0.2.3 GW2_CTL4=192.0.2.4
PE_LISTEN=$PCRF4:50051
# Its Prometheus metrics, beside it (the gateway's are at 127.0.0.1:9464/metrics inside gw).
PE_METRICS=$PCRF4:9465

die() { echo "lab: $*" >&2; exit 1; }
ns() { local n=$1; shift; ip netns exec "$n" "$@"; }

quiet_offloads() {
  # Frames on a real wire are at most one MTU and carry their checksums; veth would otherwise
  # hand the gateway 64 KB super-frames with checksums left to "hardware".
  [ "$OFFLOADS" = keep ] && return 0
  ns "$1" ethtool -K "$2" tx off tso off gso off gro off >/dev/null 2>&1 || true
}

add_ns() {
  ip netns add "$1"
  echo "$1" >>"$STATE/namespaces"
  ns "$1" ip link set lo up
  # No duplicate address detection: addresses are usable at once, so the first packets of a
  # test do not race IPv6 address setup.
  ns "$1" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
}

weir_bin() {
  if [ -n "${WEIR_BIN:-}" ]; then echo "$WEIR_BIN"; return; fi
  # Always ask cargo: a binary left from an older checkout would run the wrong code.
  if command -v cargo >/dev/null 2>&1; then
    echo "lab: building weir (cargo build --release)" >&2
    cargo build --release --quiet >&2
  elif [ ! -x target/release/weir ]; then
    die "target/release/weir missing and cargo not found: run 'cargo build --release' first (as your user), or set WEIR_BIN"
  fi
  echo "$PWD/target/release/weir"
}

up() {
  [ "$(id -u)" -eq 0 ] || die "needs root (it creates network namespaces): sudo $0 up"
  for tool in ip ethtool python3 curl; do command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh installs it)"; done
  ip netns list | grep -q "^${GW}\b" && die "a lab with prefix '$P' exists; run '$0 down' first"
  case "$BILLING_DELAY" in ''|*[!0-9]*) die "WEIR_LAB_BILLING_DELAY must be whole seconds, got '$BILLING_DELAY'" ;; esac
  [ -n "$CONFIG" ] || die "no routed configuration with sessions from the policy engine ships yet: set WEIR_LAB_CONFIG, or WEIR_LAB_SESSIONS=static"
  [ -f "$CONFIG" ] || die "no configuration at $CONFIG (WEIR_LAB_CONFIG)"
  case "$GATEWAYS" in
    1) ;;
    2) [ "$PORTAL" = 1 ] && [ "$PCRF" = 1 ] && [ "$MODE" = bridge ] && [ "$GATEWAY" = weir ] ||
         die "WEIR_LAB_GATEWAYS=2 needs the portal, the policy engine, bridge mode and Weir (the second gateway joins their networks)" ;;
    *) die "WEIR_LAB_GATEWAYS must be 1 or 2, got '$GATEWAYS'" ;;
  esac
  case "$CHARGING" in 0|1) ;; *) die "WEIR_LAB_CHARGING must be 0 or 1, got '$CHARGING'" ;; esac
  if grep -q '^ *policy_engine *=' "$CONFIG" && [ "$PCRF" != 1 ]; then
    die "$CONFIG takes its sessions from a policy engine ([control] policy_engine), but WEIR_LAB_PCRF=0 starts none: use WEIR_LAB_SESSIONS=static"
  fi
  mkdir -p "$STATE"
  : >"$STATE/namespaces"
  : >"$STATE/etc"
  BUILT=0
  trap '[ "$BUILT" = 1 ] || { echo "lab: setup failed; removing what was built" >&2; down >/dev/null 2>&1 || true; }' EXIT

  add_ns "$GW"; add_ns "$INET"
  if [ "$PORTAL" = 1 ]; then
    # The portal sits beside the web server on the internet side, as a real one would.
    add_ns "$WAN"; add_ns "$PORTAL_NS"
    ns "$WAN" ip link add br0 type bridge
    ip link add uplink netns "$WAN" type veth peer name gw-inet netns "$GW"
    ip link add eth0 netns "$INET" type veth peer name inet netns "$WAN"
    ip link add eth0 netns "$PORTAL_NS" type veth peer name portal netns "$WAN"
    local port
    for port in uplink inet portal; do ns "$WAN" ip link set "$port" master br0 up; done
    ns "$WAN" ip link set br0 up
    quiet_offloads "$PORTAL_NS" eth0
    ns "$PORTAL_NS" ip addr add "$PORTAL4/24" dev eth0
    ns "$PORTAL_NS" ip -6 addr add "$PORTAL6/64" dev eth0 nodad
    ns "$PORTAL_NS" ip link set eth0 up
    if [ "$MODE" = routed ]; then
      ns "$PORTAL_NS" ip route add 10.45.0.0/16 via 198.51.100.1
      ns "$PORTAL_NS" ip -6 route add 2001:db8:45::/48 via 2001:db8:100::1
    else
      ns "$PORTAL_NS" ip route add 10.45.0.0/16 dev eth0
      ns "$PORTAL_NS" ip -6 route add 2001:db8:45::/48 dev eth0
    fi
  else
    ip link add eth0 netns "$INET" type veth peer name gw-inet netns "$GW"
  fi
  quiet_offloads "$INET" eth0

  add_clients "$GW" "$LAN" 0 0 "${CLIENTS[@]}"
  if [ "$GATEWAYS" = 2 ]; then
    # The second gateway: its own clients, the same internet side (another port of wan).
    add_ns "$GW2"
    ip link add uplink2 netns "$WAN" type veth peer name gw-inet netns "$GW2"
    ns "$WAN" ip link set uplink2 master br0 up
    add_clients "$GW2" "$LAN2" 1 16 "${CLIENTS2[@]}"
    ns "$GW2" ip link set gw-ue up
    ns "$GW2" ip link set gw-inet up
  fi
  echo "${CLIENTS[*]} $([ "$GATEWAYS" = 2 ] && echo "${CLIENTS2[*]}")" >"$STATE/clients"

  ns "$INET" ip addr add "$INET4/24" dev eth0
  ns "$INET" ip -6 addr add "$INET6/64" dev eth0 nodad
  ns "$INET" ip link set eth0 up
  if [ "$MODE" = routed ]; then
    ns "$INET" ip route add 10.45.0.0/16 via 198.51.100.1
    ns "$INET" ip -6 route add 2001:db8:45::/48 via 2001:db8:100::1
  else
    ns "$INET" ip route add 10.45.0.0/16 dev eth0
    ns "$INET" ip -6 route add 2001:db8:45::/48 dev eth0
  fi
  ns "$GW" ip link set gw-ue up
  ns "$GW" ip link set gw-inet up

  # The web server: a page and files with known contents.
  mkdir -p "$STATE/www"
  printf '<!doctype html>\n<html><head><title>Weir lab</title></head>\n<body><h1>Hello from inet</h1><p>This page came through Weir.</p></body></html>\n' >"$STATE/www/index.html"
  head -c 4194304 /dev/urandom >"$STATE/www/file.bin"
  (cd "$STATE/www" && sha256sum file.bin >file.bin.sha256)
  ip netns exec "$INET" python3 -m http.server 80 --bind :: --directory "$STATE/www" >"$STATE/http.log" 2>&1 &
  echo $! >"$STATE/http.pid"
  if [ "$CHARGING" = 1 ]; then
    # The offline rating group's site: the same files on port 8080.
    ip netns exec "$INET" python3 -m http.server 8080 --bind :: --directory "$STATE/www" >"$STATE/http8080.log" 2>&1 &
    echo $! >"$STATE/http8080.pid"
  fi

  [ "$PCRF" = 1 ] && start_pcrf
  [ "$PORTAL" = 1 ] && start_portal
  case "$GATEWAY" in
    weir)
      start_weir "$GW" "$CONFIG" ""
      if [ "$GATEWAYS" = 2 ]; then
        sed -e "s/^listen *= *\"[^\"]*\"/listen = \"$GW2_CTL4:50052\"/" \
            -e "s/^origin_host *= *\"[^\"]*\"/origin_host = \"gw2.lab.example\"/" "$CONFIG" >"$STATE/weir2-config.toml"
        grep -q "^listen = \"$GW2_CTL4:50052\"" "$STATE/weir2-config.toml" || die "$CONFIG has no [control] listen line to point at $GW2_CTL4:50052"
        start_weir "$GW2" "$STATE/weir2-config.toml" 2
      fi ;;
    bridge)
      ns "$GW" ip link add br0 type bridge
      ns "$GW" ip link set gw-ue master br0
      ns "$GW" ip link set gw-inet master br0
      ns "$GW" ip link set br0 up ;;
    none) ;;
    *) die "WEIR_LAB_GATEWAY must be weir, bridge or none" ;;
  esac
  local n
  local web_port
  for n in "$INET" $([ "$PORTAL" = 1 ] && echo "$PORTAL_NS"); do
    for _ in $(seq 50); do
      web_port=80
      [ "$n" = "$INET" ] && [ "$CHARGING" = 1 ] && web_port=8080
      ns "$n" python3 -c "import socket; socket.create_connection(('127.0.0.1', 80), 0.2); socket.create_connection(('127.0.0.1', $web_port), 0.2)" 2>/dev/null && break
      sleep 0.1
    done
  done
  BUILT=1
  echo "lab up: clients ${CLIENTS[*]/#/$P} -> $GW ($GATEWAY, $MODE) -> $INET ($INET4, $INET6, site.example)"
  [ "$PORTAL" = 1 ] && echo "        portal $PORTAL_NS ($PORTAL4, $PORTAL6, portal.example)"
  local from="Weir's own file"
  grep -q '^ *policy_engine *=' "$CONFIG" && from="the policy engine"
  [ "$PCRF" = 1 ] && echo "        policy engine $PCRF_NS ($PE_LISTEN, billing delay ${BILLING_DELAY} s, $PE_EXAMPLE)"
  [ "$CHARGING" = 1 ] && echo "        online charging: web (rating group 10) from the charging system at $PE_LISTEN; port 8080 offline"
  [ "$GATEWAYS" = 2 ] && echo "        second gateway $GW2 ($GW2_CTL4:50052) for ${CLIENTS2[*]/#/$P}"
  echo "        sessions from $from ($CONFIG)"
  echo "try:    ip netns exec ${P}${CLIENTS[0]} curl http://site.example/"
  [ ${#CLIENTS[@]} -gt 1 ] && echo "        ip netns exec ${P}${CLIENTS[1]} curl -i http://site.example/"
  return 0
}

# The client namespaces of gateway $1 (a switch namespace $2 joins them when there are several):
# client i gets 10.45.$3.(2+i)/24 and 2001:db8:45:<$4+i+1 in hex>::2/64.
add_clients() {
  local gw=$1 lan=$2 net=$3 v6=$4 i=0 c
  shift 4
  if [ $# -gt 1 ]; then
    # Several clients share the UE leg through a switch, as cells share a gateway.
    add_ns "$lan"
    ns "$lan" ip link add br0 type bridge
    ip link add uplink netns "$lan" type veth peer name gw-ue netns "$gw"
    ns "$lan" ip link set uplink master br0 up
    ns "$lan" ip link set br0 up
  fi
  for c in "$@"; do
    local sub
    sub=$(printf '%x' $((v6 + 1 + i)))
    add_ns "$P$c"
    client_hosts "$P$c"
    if [ $# -gt 1 ]; then
      ip link add eth0 netns "$P$c" type veth peer name "p$i" netns "$lan"
      ns "$lan" ip link set "p$i" master br0 up
    else
      ip link add eth0 netns "$P$c" type veth peer name gw-ue netns "$gw"
    fi
    quiet_offloads "$P$c" eth0
    ns "$P$c" ip addr add "10.45.$net.$((2 + i))/24" dev eth0
    ns "$P$c" ip -6 addr add "2001:db8:45:$sub::2/64" dev eth0 nodad
    ns "$P$c" ip link set eth0 up
    if [ "$MODE" = routed ]; then
      ns "$P$c" ip route add default via 10.45.0.1
      ns "$P$c" ip -6 route add default via "2001:db8:45:$sub::1"
    else
      ns "$P$c" ip route add 198.51.100.0/24 dev eth0
      ns "$P$c" ip -6 route add 2001:db8:100::/64 dev eth0
    fi
    i=$((i + 1))
  done
}

# The names the clients browse to. `ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc, so
# curl, Python and Chromium in the namespace all read this file as /etc/hosts.
client_hosts() {
  mkdir -p "/etc/netns/$1"
  echo "/etc/netns/$1" >>"$STATE/etc"
  {
    printf '127.0.0.1 localhost\n::1 localhost\n'
    printf '%s site.example\n%s site.example\n' "$INET4" "$INET6"
    [ "$PORTAL" = 1 ] && printf '%s portal.example\n%s portal.example\n' "$PORTAL4" "$PORTAL6"
    true
  } >"/etc/netns/$1/hosts"
}

# A veth pair from namespace $1 (its end named ctl, address $2) to the control bridge in pcrf.
ctl_link() {
  ip link add ctl netns "$1" type veth peer name "$3" netns "$PCRF_NS"
  ns "$PCRF_NS" ip link set "$3" master br0 up
  quiet_offloads "$1" ctl
  ns "$1" ip addr add "$2/24" dev ctl
  ns "$1" ip link set ctl up
}

start_pcrf() {
  local bin
  bin=$(weir_bin)
  add_ns "$PCRF_NS"
  ns "$PCRF_NS" ip link add br0 type bridge
  ns "$PCRF_NS" ip addr add "$PCRF4/24" dev br0
  ns "$PCRF_NS" ip link set br0 up
  ctl_link "$GW" "$GW_CTL4" gw
  [ "$PORTAL" = 1 ] && ctl_link "$PORTAL_NS" "$PORTAL_CTL4" portal
  [ "$GATEWAYS" = 2 ] && ctl_link "$GW2" "$GW2_CTL4" gw2
  # The example with the lab's addresses and delay, and a fresh database: every lab starts with
  # ue in credit and ue2 at zero.
  rm -f "$STATE"/policy-engine.sqlite*
  sed -e "s/^listen *=.*/listen = \"$PE_LISTEN\"/" \
      -e "s/^billing_delay *=[^#]*/billing_delay = $BILLING_DELAY   /" \
      -e "s/^# *metrics_listen *=[^#]*/metrics_listen = \"$PE_METRICS\"   /" \
      "$PE_EXAMPLE" >"$STATE/policy-engine.toml"
  grep -q "^listen = \"$PE_LISTEN\"" "$STATE/policy-engine.toml" || die "$PE_EXAMPLE has no listen line to point at $PE_LISTEN"
  grep -q "^metrics_listen = \"$PE_METRICS\"" "$STATE/policy-engine.toml" || die "$PE_EXAMPLE has no metrics_listen line to point at $PE_METRICS"
  ip netns exec "$PCRF_NS" env WEIR_LOG="${WEIR_LOG:-info}" "$bin" policy-engine --config "$STATE/policy-engine.toml" \
    >"$STATE/pcrf.out" 2>"$STATE/pcrf.log" &
  echo $! >"$STATE/pcrf.pid"
  for _ in $(seq 100); do
    grep -q "listening on" "$STATE/pcrf.out" 2>/dev/null && break
    kill -0 "$(cat "$STATE/pcrf.pid")" 2>/dev/null || { cat "$STATE/pcrf.log" >&2; die "weir policy-engine did not start"; }
    sleep 0.1
  done
  grep -q "listening on" "$STATE/pcrf.out" || { cat "$STATE/pcrf.log" >&2; die "weir policy-engine did not come up within 10 s"; }
}

start_portal() {
  local bin credit=()
  bin=$(weir_bin)
  [ "$PCRF" = 1 ] && credit=(--policy-engine "http://$PE_LISTEN")
  ip netns exec "$PORTAL_NS" env WEIR_LOG="${WEIR_LOG:-info}" "$bin" portal --config "$PORTAL_CONFIG" --listen "[::]:80" "${credit[@]}" \
    >"$STATE/portal.out" 2>"$STATE/portal.log" &
  echo $! >"$STATE/portal.pid"
}

# Weir in namespace $1 with configuration $2; its files in $STATE are weir$3.pid, weir$3.log...
start_weir() {
  local gw=$1 cfg=$2 n=$3 bin
  bin=$(weir_bin)
  if [ -n "${WEIR_LAB_CORES:-}" ]; then
    cfg="$STATE/weir$n.toml"
    sed "s/^cores *=.*/cores = [${WEIR_LAB_CORES// /, }]/" "$2" >"$cfg"
    grep -q '^cores *=' "$cfg" || sed -i "s/^\[dataplane\]$/[dataplane]\ncores = [${WEIR_LAB_CORES// /, }]/" "$cfg"
  fi
  if [ "$MODE" = routed ]; then
    ns "$gw" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    ns "$gw" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    ns "$gw" ip addr add 10.45.0.1/24 dev gw-ue
    ns "$gw" ip -6 addr add 2001:db8:45:1::1/64 dev gw-ue nodad
    ns "$gw" ip addr add 198.51.100.1/24 dev gw-inet
    ns "$gw" ip -6 addr add 2001:db8:100::1/64 dev gw-inet nodad
  fi
  # Not through ns(): a function in the background is a subshell, and its pid is not Weir's.
  ip netns exec "$gw" env WEIR_LOG="${WEIR_LOG:-info}" "$bin" run --config "$cfg" --report-out "$STATE/report$n.json" \
    >"$STATE/weir$n.out" 2>"$STATE/weir$n.log" &
  echo $! >"$STATE/weir$n.pid"
  for _ in $(seq 100); do
    grep -q "forwarding" "$STATE/weir$n.log" 2>/dev/null && break
    kill -0 "$(cat "$STATE/weir$n.pid")" 2>/dev/null || { cat "$STATE/weir$n.log" >&2; die "weir in $gw did not start"; }
    sleep 0.1
  done
  grep -q "forwarding" "$STATE/weir$n.log" || { cat "$STATE/weir$n.log" >&2; die "weir in $gw did not come up within 10 s"; }
  if [ "$MODE" = routed ]; then
    # Everything arriving on either leg goes through Weir's TUN; what Weir writes back arrives on
    # the TUN and is routed normally.
    local tun
    tun=$(sed -n 's/^tun *= *"\(.*\)".*/\1/p' "$cfg" | head -1)
    for fam in -4 -6; do
      ns "$gw" ip "$fam" route add default dev "$tun" table 100
      ns "$gw" ip "$fam" rule add iif gw-ue lookup 100
      ns "$gw" ip "$fam" rule add iif gw-inet lookup 100
    done
    ns "$gw" sysctl -qw "net.ipv4.conf.$tun.rp_filter=0"
  fi
}

down() {
  [ "$(id -u)" -eq 0 ] || die "needs root: sudo $0 down"
  local pidfile
  local pid
  for pidfile in "$STATE/weir.pid" "$STATE/weir2.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -TERM "$pid" 2>/dev/null; then
      # Give Weir time to drain and write its final report.
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for pidfile in "$STATE"/*.pid; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
  local names=("$GW" "$GW2" "$INET" "$LAN" "$LAN2" "$WAN" "$PORTAL_NS" "$PCRF_NS")
  local c
  for c in "${CLIENTS[@]}"; do names+=("$P$c"); done
  [ "$GATEWAYS" = 2 ] && for c in "${CLIENTS2[@]}"; do names+=("$P$c"); done
  [ -f "$STATE/clients" ] && for c in $(cat "$STATE/clients"); do names+=("$P$c"); done
  [ -f "$STATE/namespaces" ] && while read -r c; do names+=("$c"); done <"$STATE/namespaces"
  local n
  for n in $(printf '%s\n' "${names[@]}" | sort -u); do
    ip netns list 2>/dev/null | grep -q "^$n\b" || continue
    ip netns pids "$n" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done
  # Only the hosts directories this lab made (recorded at creation), never another lab's.
  if [ -f "$STATE/etc" ]; then
    while read -r c; do
      case "$c" in /etc/netns/"$P"*) rm -rf "$c" ;; esac
    done <"$STATE/etc"
  fi
  # Keep the final report and logs for a look after the fact; drop the rest.
  rm -rf "$STATE/www" "$STATE"/*.pid "$STATE/namespaces" "$STATE/clients" "$STATE/etc" "$STATE"/policy-engine.sqlite*
  echo "lab down (prefix '$P')"
}

status() {
  local n found=0
  for n in $(ip netns list | awk '{print $1}' | grep "^$P" || true); do
    found=1
    echo "namespace $n: $(ip netns pids "$n" | wc -l) process(es)"
  done
  [ $found -eq 1 ] || { echo "no lab with prefix '$P'"; return 0; }
  if [ -f "$STATE/weir.pid" ] && kill -0 "$(cat "$STATE/weir.pid")" 2>/dev/null; then
    echo "weir running (pid $(cat "$STATE/weir.pid")), log $STATE/weir.log"
    ns "$GW" curl -s --max-time 3 http://127.0.0.1:9464/report || true
  else
    echo "weir not running"
  fi
  if [ -f "$STATE/pcrf.pid" ] && kill -0 "$(cat "$STATE/pcrf.pid")" 2>/dev/null; then
    echo "policy engine running (pid $(cat "$STATE/pcrf.pid")) at $PE_LISTEN, log $STATE/pcrf.log"
  fi
}

case "$VERB" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up [--static]|down|status (see the top of this file for settings)" >&2; exit 2 ;;
esac
