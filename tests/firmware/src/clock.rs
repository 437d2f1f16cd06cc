//! A millisecond clock from the Cortex-M SysTick timer.
//!
//! SysTick interrupts once a millisecond; its handler calls [`on_tick`], which counts.
//! The count is 64 bits wide, so it never wraps, and is read inside a critical
//! section, so a read never sees half of an update. The tick also bounds every
//! `WFI` of the network adapter to one millisecond, which is how it notices timers
//! (retransmissions, deadlines) without a timer of its own.
//!
//! SysTick is part of every Cortex-M3/M4/M7 core, so this module works unchanged on
//! any such chip; only the core clock frequency given to [`start`] is the board's.

use core::cell::Cell;

use cortex_m::interrupt::{self, Mutex};
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::SYST;

/// The core clock of QEMU's `lm3s6965evb` out of reset: the 200 MHz PLL output
/// divided by 16, the `SYSDIV` field of the `RCC` register's reset value. A real
/// board passes the frequency it configured.
pub const QEMU_LM3S6965_HZ: u32 = 12_500_000;

static MILLIS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// Starts SysTick from the core clock (`core_hz`), interrupting every millisecond.
pub fn start(syst: &mut SYST, core_hz: u32) {
    syst.disable_counter();
    syst.set_clock_source(SystClkSource::Core);
    // The reload register is 24 bits wide: enough for 1 ms up to 16.7 GHz.
    syst.set_reload((core_hz / 1000).saturating_sub(1));
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Counts one millisecond. Call it from the `SysTick` exception handler, and from
/// nowhere else.
pub fn on_tick() {
    interrupt::free(|cs| {
        let ms = MILLIS.borrow(cs);
        ms.set(ms.get() + 1);
    });
}

/// Milliseconds since [`start`].
pub fn now_ms() -> u64 {
    interrupt::free(|cs| MILLIS.borrow(cs).get())
}

/// The time as smoltcp wants it.
pub fn now() -> smoltcp::time::Instant {
    // i64 milliseconds last 292 million years.
    smoltcp::time::Instant::from_millis(now_ms() as i64)
}
