//! Human-readable output to the host, through semihosting or through defmt.
//!
//! One binary must never mix the two: semihosting text written between defmt's
//! binary frames corrupts the defmt stream. So all output goes through [`line`](fn@line), which
//! picks the channel at build time from the crate's `defmt` feature.

use core::fmt;

#[cfg(feature = "defmt")]
use defmt_semihosting as _;

/// Writes one line (the newline is added) to the host.
///
/// Without the `defmt` feature it is a semihosting write to QEMU's stdout. With it,
/// the line becomes one defmt `println!` record, which `defmt-print` shows as text.
pub fn line(args: fmt::Arguments<'_>) {
    #[cfg(not(feature = "defmt"))]
    cortex_m_semihosting::hprintln!("{}", args);
    #[cfg(feature = "defmt")]
    defmt::println!("{}", defmt::Display2Format(&args));
}

/// Formats its arguments like `format_args!` and writes them as one line to the host
/// through [`console::line`](fn@crate::console::line).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::console::line(::core::format_args!($($arg)*))
    };
}
