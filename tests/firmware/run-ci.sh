#!/usr/bin/env bash
# CI entry point of the firmware: runs the protocol conformance test on a Cortex-M3
# under QEMU (plain semihosting output, then defmt output decoded by defmt-print),
# and prints what proto-core costs in flash and static RAM.
#
# It installs and checks nothing: it needs qemu-system-arm, the thumbv7m-none-eabi
# Rust target, defmt-print and `size` (binutils; set SIZE to use another tool such
# as llvm-size or arm-none-eabi-size). Any failure ends it with a non-zero status;
# QEMU always runs under `timeout` (see qemu-run.sh).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
export QEMU_TIMEOUT="${QEMU_TIMEOUT:-60}"
elf_dir="$CARGO_TARGET_DIR/thumbv7m-none-eabi/release"
size_tool="${SIZE:-size}"

echo "== conformance on thumbv7m-none-eabi (semihosting output)"
cargo run --release --bin conformance

echo "== conformance with the defmt feature (decoded by defmt-print)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo run --release --features defmt --bin conformance | tee "$log" | grep -v '^DEBUG '
# The exit status says the vectors passed; this says the defmt stream decoded.
grep -Eq '^conformance: [0-9]+ passed, 0 failed$' "$log"

# Footprint: `room` against `room-baseline`, which does the same UART and
# semihosting work without proto-core.
footprint() {
  local label="$1"
  shift
  cargo build --release --bin room --bin room-baseline "$@"
  echo "== footprint, $label"
  "$size_tool" "$elf_dir/room" "$elf_dir/room-baseline"
  "$size_tool" "$elf_dir/room" "$elf_dir/room-baseline" | awk '
    NR == 2 { text = $1; ram = $2 + $3 }
    NR == 3 { printf "proto-core costs %d bytes of flash (text+rodata), %d bytes of static RAM (data+bss)\n", text - $1, ram - ($2 + $3) }'
}
footprint "panic messages printed (default)"
footprint "silent panics (--features silent-panic)" --features silent-panic
