#!/usr/bin/env bash
# Cargo's runner for this crate: runs a firmware ELF under QEMU (lm3s6965evb).
#
#   qemu-run.sh ELF
#
# QEMU always runs under `timeout` (QEMU_TIMEOUT seconds, 60 by default), because a
# firmware that hangs or faults without semihosting never ends on its own. The exit
# status is the firmware's semihosting exit status (124 on timeout). An ELF built
# with the `defmt` feature (it has a .defmt section) has its log decoded by
# defmt-print. UART0 is not connected unless QEMU_SERIAL names a chardev, such as
# QEMU_SERIAL=tcp:127.0.0.1:9000. The Ethernet controller is not connected unless
# QEMU_NIC gives the -nic options, such as (for room-net, with a server on 9000)
# QEMU_NIC=user,model=stellaris,restrict=on,guestfwd=tcp:10.0.2.100:7000-tcp:127.0.0.1:9000.
set -euo pipefail
elf="$1"
shift
qemu=(timeout "${QEMU_TIMEOUT:-60}" qemu-system-arm -cpu cortex-m3 -machine lm3s6965evb
  -nographic -monitor none -serial "${QEMU_SERIAL:-none}"
  -semihosting-config enable=on,target=native -kernel "$elf")
if [ -n "${QEMU_NIC:-}" ]; then
  qemu+=(-nic "$QEMU_NIC")
fi
if readelf -S "$elf" | grep -q '\.defmt'; then
  "${qemu[@]}" | defmt-print -e "$elf" stdin
else
  exec "${qemu[@]}"
fi
