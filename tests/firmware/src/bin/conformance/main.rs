//! Protocol conformance on the target: runs every vector of
//! `proto-core/tests/vectors.txt` (the same file the host tests read, through the
//! same reader) through proto-core as compiled for a Cortex-M3, and exits with
//! status 0 only if every vector passes.
//!
//! Each event is formatted with `{:?}` (or `{}` for peers) into a `heapless::String`
//! and compared with the vector's EXPECTED field. Frame vectors whose events are all
//! `Ok` must also re-encode, frame by frame, to their INPUT bytes. The last line is
//! `conformance: N passed, M failed`; the line before it gives the most stack that
//! `FrameDecoder::feed` used on any frame vector.
#![no_std]
#![no_main]

mod check;

#[path = "../../../../../proto-core/tests/vectors_format.rs"]
mod vectors_format;

use chatroom_firmware::{exit::exit, say};
use cortex_m_rt::entry;

use check::{Scratch, Tally};

/// The vectors, compiled into flash: the host tests read the very same file.
const VECTORS: &str = include_str!("../../../../../proto-core/tests/vectors.txt");

#[entry]
fn main() -> ! {
    let scratch = cortex_m::singleton!(: Scratch = Scratch::new());
    let Some(scratch) = scratch else {
        say!("conformance: scratch buffers taken twice");
        exit(false)
    };
    let mut tally = Tally::default();
    for vector in vectors_format::vectors(VECTORS) {
        match vector {
            Ok(vector) => tally.record(check::vector(&vector, scratch)),
            Err(e) => {
                say!("FAIL vectors.txt: {:?}", e);
                tally.record(false);
            }
        }
    }
    say!(
        "stack: FrameDecoder::feed used at most {} bytes",
        scratch.max_feed_stack
    );
    say!(
        "conformance: {} passed, {} failed",
        tally.passed,
        tally.failed
    );
    exit(tally.failed == 0 && tally.passed > 0)
}
