//! Gives the unused part of an idle thread's stack back to the system.
//!
//! Each client has a reader thread of its own, and a thread keeps every stack page it
//! ever touched: joining, sniffing, a TLS handshake or a long log line go deeper than
//! the wait for the next message, so an idle client would hold three or four pages
//! where it needs two. A reader that has been idle for a while calls [`release`]
//! before it waits on, so that what an idle client costs is what its wait needs.
//! glibc does the same for a thread that exits (`advise_stack_range`), and Redis
//! frees an idle client's query buffer for the same reason.

/// How long a reader waits for bytes before it gives its unused stack back: long
/// enough that a client in a conversation never pays for it (the pages come back
/// zeroed on the next touch, a page fault each), short enough that a room of idle
/// clients is soon at its smallest.
pub(crate) const IDLE_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Room left below the caller's frame, never released: the x86-64 red zone (128
/// bytes a leaf function may use below its stack pointer) and the `madvise` system
/// call, which rustix makes inline, without a libc frame. A signal handler that runs
/// further down only finds zeroed pages, which it writes before it reads.
const MARGIN: usize = 512;

/// Releases the pages of the calling thread's stack that lie wholly below the
/// caller's frame (less [`MARGIN`]). They read as zeros when next touched, which is
/// all a stack below its pointer may assume. Does nothing where the stack's bounds
/// are not known, or on the process's main thread (whose stack the kernel grows).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub(crate) fn release() {
    let Some((low, high)) = bounds() else {
        return;
    };
    let here = 0u8;
    let sp = std::hint::black_box(std::ptr::addr_of!(here)) as usize;
    let page = rustix::param::page_size();
    let keep_from = sp.saturating_sub(MARGIN) & !(page - 1);
    if sp <= low || sp > high || keep_from <= low {
        return;
    }
    // SAFETY: [low, keep_from) is a whole number of pages of this thread's own stack
    // (bounds from glibc for this thread, page-aligned), all below this frame's
    // variables by more than MARGIN. Nothing live is there: those bytes belong to
    // frames that have returned, and no reference into a returned frame can exist.
    // The stack is a private anonymous mapping, so MADV_DONTNEED only makes those
    // pages read as zeros when touched again, which is what a fresh stack holds.
    // The system call runs inline (rustix, no libc frame) within MARGIN.
    let released = unsafe {
        rustix::mm::madvise(
            low as *mut std::ffi::c_void,
            keep_from - low,
            rustix::mm::Advice::LinuxDontNeed,
        )
    };
    if let Err(e) = released {
        tracing::debug!("cannot release an idle thread's stack: {e}");
    }
}

/// Not on this platform: an idle thread keeps what it touched.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub(crate) fn release() {}

/// The lowest usable address of the calling thread's stack and its top, as glibc
/// allocated it (the guard page excluded); `None` for the main thread.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bounds() -> Option<(usize, usize)> {
    thread_local! {
        // Asked of glibc once per thread: pthread_getattr_np allocates and frees, and
        // what a thread frees stays in its allocator's cache.
        static BOUNDS: std::cell::Cell<Option<Option<(usize, usize)>>> =
            const { std::cell::Cell::new(None) };
    }
    BOUNDS.with(|known| {
        let bounds = known.get().unwrap_or_else(ask_bounds);
        known.set(Some(bounds));
        bounds
    })
}

/// [`bounds`], from glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn ask_bounds() -> Option<(usize, usize)> {
    // The main thread's stack is the kernel's and grows on demand; only threads that
    // the server spawned are trimmed.
    if rustix::thread::gettid() == rustix::process::getpid() {
        return None;
    }
    let mut attr = std::mem::MaybeUninit::<libc::pthread_attr_t>::uninit();
    let mut addr = std::ptr::null_mut();
    let mut size = 0usize;
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is read, and is
    // destroyed exactly once, only if it was initialised; `addr` and `size` are live
    // locals of the types pthread_attr_getstack writes.
    unsafe {
        if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
            return None;
        }
        let got = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
        libc::pthread_attr_destroy(attr.as_mut_ptr());
        if got != 0 {
            return None;
        }
    }
    let low = addr as usize;
    Some((low, low.checked_add(size)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resident pages of the mapping that holds `addr`, from /proc/self/smaps.
    fn resident_kib(addr: usize) -> Option<usize> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((from, to)) = range.split_once('-') {
                    if let (Ok(from), Ok(to)) = (
                        usize::from_str_radix(from, 16),
                        usize::from_str_radix(to, 16),
                    ) {
                        inside = (from..to).contains(&addr);
                        continue;
                    }
                }
            }
            if inside {
                if let Some(kib) = line.strip_prefix("Rss:") {
                    return kib.trim().trim_end_matches(" kB").trim().parse().ok();
                }
            }
        }
        None
    }

    #[inline(never)]
    fn go_deep() -> u8 {
        let mut deep = [1u8; 32 * 1024];
        std::hint::black_box(&mut deep);
        deep.iter().fold(0, |a, b| a.wrapping_add(*b))
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn pages_touched_deep_are_given_back_and_the_stack_still_works() {
        let touched = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(|| {
                let here = 0u8;
                let at = std::ptr::addr_of!(here) as usize;
                let before = resident_kib(at).unwrap();
                std::hint::black_box(go_deep());
                let deep = resident_kib(at).unwrap();
                release();
                let after = resident_kib(at).unwrap();
                // The released pages are usable again, zeroed.
                let again = go_deep();
                (before, deep, after, again)
            })
            .unwrap()
            .join()
            .unwrap();
        let (before, deep, after, again) = touched;
        // `before` may already count pages: glibc reuses the stacks of exited threads.
        assert!(deep >= 32 && deep >= before, "{touched:?}");
        // Reading smaps after the release touches a few pages again.
        assert!(after + 20 <= deep, "nothing given back: {touched:?}");
        assert_eq!(again, 0, "32 KiB of ones add up to 0 modulo 256");
    }
}
