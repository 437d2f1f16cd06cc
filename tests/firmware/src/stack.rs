//! Measuring how much stack a piece of code uses, by stack painting.
//!
//! [`measure`] fills the free stack below the current stack pointer with a pattern,
//! runs the code, and finds the lowest word the code overwrote: the high-water mark.
//! The figure includes the call into the code and everything it calls. It can only
//! under-count if the code happened to write the pattern itself at its deepest point.

use core::ptr;

/// The word painted into free stack.
const PAINT: u32 = 0xDEAD_C0DE;
/// The most bytes painted, so a measurement stays cheap.
const MAX_PAINT: usize = 16 * 1024;

extern "C" {
    /// The lowest address the stack may grow down to (end of static RAM), from
    /// cortex-m-rt's linker script.
    static _stack_end: u32;
}

/// Runs `f` and returns its result with the number of bytes of stack it used.
///
/// At most 16 KiB (or the free stack, if less) is watched; a deeper use reports
/// that limit.
#[inline(never)]
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let top = cortex_m::register::msp::read() as usize & !3;
    // Only the symbol's address is taken; the "static" is never read.
    let floor = ptr::addr_of!(_stack_end) as usize;
    let bottom = top.saturating_sub(MAX_PAINT).max(floor);
    let words = (top - bottom) / 4;
    let base = bottom as *mut u32;
    for i in 0..words {
        // SAFETY: [bottom, top) lies between the end of static RAM and the stack
        // pointer, inside RAM: free stack, which no Rust object occupies. Writes go
        // through a raw pointer with volatile stores, so the compiler assumes nothing
        // about them; this function's own frame lies above `top` and is untouched.
        unsafe { ptr::write_volatile(base.add(i), PAINT) };
    }
    let result = call(f);
    let untouched = (0..words)
        // SAFETY: the same free-stack words as above; `f` has returned, so they are
        // free again and reading them races with nothing.
        .take_while(|&i| unsafe { ptr::read_volatile(base.add(i)) } == PAINT)
        .count();
    (result, (words - untouched) * 4)
}

/// Calls `f` in a frame of its own, below the painted stack pointer, so that its
/// locals are counted even when the compiler inlines `f` here.
#[inline(never)]
fn call<R>(f: impl FnOnce() -> R) -> R {
    f()
}
