#!/usr/bin/env bash
# CI entry point of the firmware: checks its formatting and lints, runs the protocol
# conformance test on a Cortex-M3 under QEMU (plain semihosting output, then defmt
# output decoded by defmt-print), and prints what proto-core and the TCP/IP stack
# cost in flash and static RAM. (The room clients themselves run in the root
# integration tests, firmware_room and firmware_net.)
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

echo "== format and lints of the firmware crate (its own workspace)"
cargo fmt --check
cargo clippy --release --locked --all-targets -- -D warnings

echo "== conformance on thumbv7m-none-eabi (semihosting output)"
cargo run --release --bin conformance

echo "== conformance with the defmt feature (decoded by defmt-print)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo run --release --features defmt --bin conformance | tee "$log" | grep -v '^DEBUG '
# The exit status says the vectors passed; this says the defmt stream decoded.
grep -Eq '^conformance: [0-9]+ passed, 0 failed$' "$log"

# Footprint: each client against its baseline, which does the same work without
# proto-core: `room` (UART) against `room-baseline`, `room-net` (TCP/IP) against
# `room-net-baseline`. The two baselines differ by the TCP/IP stack (smoltcp, the
# Ethernet driver and the blocking adapter).
footprint() {
  local label="$1"
  shift
  local bins=(room room-baseline room-net room-net-baseline)
  cargo build --release --locked "${bins[@]/#/--bin=}" "$@"
  echo "== footprint, $label"
  "$size_tool" "${bins[@]/#/$elf_dir/}"
  "$size_tool" "${bins[@]/#/$elf_dir/}" | awk '
    NR > 1 { text[NR - 1] = $1; ram[NR - 1] = $2 + $3 }
    END {
      printf "proto-core over the UART costs %d bytes of flash (text+rodata), %d bytes of static RAM (data+bss)\n", text[1] - text[2], ram[1] - ram[2]
      printf "the TCP/IP stack costs %d bytes of flash, %d bytes of static RAM\n", text[4] - text[2], ram[4] - ram[2]
      printf "proto-core over TCP/IP costs %d bytes of flash, %d bytes of static RAM\n", text[3] - text[4], ram[3] - ram[4]
      printf "room-net in all: %d bytes of flash, %d bytes of static RAM\n", text[3], ram[3]
    }'
}
footprint "panic messages printed (default)"
footprint "silent panics (--features silent-panic)" --features silent-panic
