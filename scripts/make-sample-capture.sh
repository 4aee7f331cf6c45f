#!/usr/bin/env bash
# Records examples/sample.pcap: real traffic between a client namespace (UE 10.45.0.2,
# 2001:db8:45:1::2) and a server namespace (198.51.100.10, 2001:db8:100::10) over a veth pair —
# HTTP downloads over IPv4 and IPv6, DNS-style UDP on port 53, TCP to 443 and 6881, and ping.
# Needs root. The namespaces are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-examples/sample.pcap}
id=$$
ue=weir-cap-ue-$id srv=weir-cap-srv-$id
tmp=$(mktemp -d)
cleanup() {
  ip netns pids "$srv" 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del "$ue" 2>/dev/null || true
  ip netns del "$srv" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
ip netns add "$ue"; ip netns add "$srv"
ip link add cap0 netns "$ue" type veth peer name cap1 netns "$srv"
ip -n "$ue" addr add 10.45.0.2/24 dev cap0
ip -n "$ue" -6 addr add 2001:db8:45:1::2/64 dev cap0 nodad
ip -n "$srv" addr add 198.51.100.10/24 dev cap1
ip -n "$srv" -6 addr add 2001:db8:100::10/64 dev cap1 nodad
for ns in "$ue" "$srv"; do ip -n "$ns" link set lo up; done
ip -n "$ue" link set cap0 up; ip -n "$srv" link set cap1 up
ip -n "$ue" -6 route add 2001:db8:100::/64 dev cap0
ip -n "$srv" -6 route add 2001:db8:45:1::/64 dev cap1
ip -n "$ue" route add 198.51.100.0/24 dev cap0
ip -n "$srv" route add 10.45.0.0/16 dev cap1
for ns in "$ue" "$srv"; do ip netns exec "$ns" ethtool -K "$(ip -n "$ns" -o link show | awk -F': ' '/cap/{print $2}' | cut -d@ -f1)" tso off gso off gro off >/dev/null 2>&1 || true; done

mkdir -p "$tmp/www"
head -c 20000 /dev/urandom | base64 > "$tmp/www/file.txt"
echo '<html><body>hello from inet</body></html>' > "$tmp/www/index.html"
ip netns exec "$srv" python3 -m http.server 80 --bind :: --directory "$tmp/www" >/dev/null 2>&1 &
ip netns exec "$srv" python3 - <<'PY' >/dev/null 2>&1 &
import socket, threading
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("198.51.100.10", 53))
    for _ in range(4):
        data, peer = s.recvfrom(2048); s.sendto(data[:2] + b"\x81\x80" + data[4:], peer)
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", port)); s.listen()
    c, _ = s.accept(); c.sendall(c.recv(100)); c.close()
threads = [threading.Thread(target=udp)] + [threading.Thread(target=tcp, args=(p,)) for p in (443, 6881)]
for t in threads: t.start()
for t in threads: t.join(timeout=20)
PY
sleep 1
ip netns exec "$ue" tcpdump -i cap0 -w "$tmp/cap.pcap" -U -s 0 not arp and not icmp6 >/dev/null 2>&1 &
dump=$!
sleep 1
ip netns exec "$ue" curl -s -o /dev/null http://198.51.100.10/index.html
ip netns exec "$ue" curl -s -o /dev/null http://198.51.100.10/file.txt
ip netns exec "$ue" curl -s -o /dev/null -g "http://[2001:db8:100::10]/file.txt"
ip netns exec "$ue" python3 - <<'PY'
import socket
for i in range(4):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    q = bytes([0x12, i]) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x04site\x07example\x00\x00\x01\x00\x01"
    s.sendto(q, ("198.51.100.10", 53)); s.recvfrom(2048)
for port in (443, 6881):
    c = socket.create_connection(("198.51.100.10", port), timeout=3); c.sendall(b"x" * 64); c.recv(100); c.close()
PY
ip netns exec "$ue" ping -c 3 -i 0.2 -q 198.51.100.10 >/dev/null
sleep 1
kill "$dump"; wait "$dump" 2>/dev/null || true
cp "$tmp/cap.pcap" "$out"
echo "wrote $out ($(tcpdump -r "$out" 2>/dev/null | wc -l) frames)"
