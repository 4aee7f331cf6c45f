#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer): builds the targets in fuzz/, writes the seed
# corpora from the captures and test vectors, and runs each target for a bounded time.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     default: 30 s each, every target
#
# FUZZ_SANITIZER=address runs under AddressSanitizer (built with RUSTC_BOOTSTRAP=1, for these
# commands only, in fuzz/target/asan); the default is none. FUZZ_RUNS=N also stops each target
# after N executions (the long runs: FUZZ_RUNS=10000000 scripts/fuzz.sh 3600). Each target keeps
# the inputs it finds in fuzz/corpus/TARGET and starts from them next time. Prints executions and exec/s per target;
# a crash, a timeout or a leak fails the run and leaves its reproducer in fuzz/artifacts/TARGET/
# (replay it with `cargo fuzz run --sanitizer none TARGET fuzz/artifacts/TARGET/crash-...`).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(frame flow_description http config token)
fi
sanitizer=${FUZZ_SANITIZER:-none}

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "error: cargo-fuzz is missing; scripts/install-deps.sh installs it" >&2
  exit 1
fi

fuzz=(cargo fuzz)
flags=(--sanitizer "$sanitizer")
if [ "$sanitizer" != none ]; then
  # The sanitizers are unstable rustc flags; OSS-Fuzz builds Rust on stable the same way.
  fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
  flags+=(--target-dir target/asan)
fi

echo "== fuzz seeds"
rm -rf fuzz/target/seeds
# A debug build in the main target directory: it shares what the tests already compiled. Not
# --locked: fuzz/Cargo.lock (the root lock plus libFuzzer) follows a new dependency of weir.
cargo run -q --manifest-path fuzz/Cargo.toml --target-dir target --example seeds -- fuzz/target/seeds

echo "== cargo fuzz build (sanitizer $sanitizer)"
(cd fuzz && "${fuzz[@]}" build "${flags[@]}")

mkdir -p fuzz/target/logs
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  dirs=("corpus/$t")
  for d in "seeds/$t" "target/seeds/$t"; do
    [ -d "fuzz/$d" ] && dirs+=("$d")
  done
  extra=()
  [ -n "${FUZZ_RUNS:-}" ] && extra+=(-runs="$FUZZ_RUNS")
  [ -f "fuzz/dicts/$t.dict" ] && extra+=(-dict="dicts/$t.dict")
  log=fuzz/target/logs/$t.log
  echo "== fuzz $t for ${seconds}s"
  status=0
  (cd fuzz && "${fuzz[@]}" run "${flags[@]}" "$t" "${dirs[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 ${extra[@]+"${extra[@]}"}) \
    >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  line=$(printf '%-17s %12s runs %9s exec/s  corpus %6s' "$t" "${runs:-?}" "${rate:-?}" "$corpus")
  if [ "$status" -ne 0 ]; then
    grep -E 'panicked at|ERROR: |SUMMARY: ' "$log" | head -5 >&2 || true
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    echo "error: $t failed (exit $status); reproducer: ${artifact:-fuzz/artifacts/$t/}; log: $log" >&2
    line="$line  FAILED"
    failed+=("$t")
  fi
  echo "$line"
  summary+=("$line")
done

echo "== fuzz summary (${seconds}s each, sanitizer $sanitizer)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}" >&2
fi
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
