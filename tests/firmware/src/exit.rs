//! Ending a program under QEMU with an exit status the host can check.
//!
//! Semihosting's exit call ends QEMU with the status it is given. A panic and a hard
//! fault end it with a failing status too: cortex-m-rt's default fault handler would
//! spin forever, leaving only the host's `timeout` to stop QEMU.

use core::panic::PanicInfo;

use cortex_m_rt::{exception, ExceptionFrame};
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};

/// Ends the program (and QEMU) with status 0 if `success`, else 1.
pub fn exit(success: bool) -> ! {
    debug::exit(if success { EXIT_SUCCESS } else { EXIT_FAILURE });
    // Only reached when semihosting is off, as on a real board without a debugger.
    loop {
        cortex_m::asm::wfi();
    }
}

/// Reports the panic, then fails. With the `silent-panic` feature the message is not
/// formatted, which lets the linker drop the formatting code of every panic site, as
/// a product firmware would (see the footprint figures in README.md).
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    #[cfg(not(feature = "silent-panic"))]
    crate::say!("panic: {}", info);
    #[cfg(feature = "silent-panic")]
    let _ = info;
    exit(false)
}

#[exception]
// SAFETY: cortex-m-rt requires the HardFault handler to be declared `unsafe`; this one
// only reads the stacked frame it is given and then exits through semihosting.
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    crate::say!(
        "hard fault: pc={:#010x} lr={:#010x}",
        frame.pc(),
        frame.lr()
    );
    exit(false)
}
