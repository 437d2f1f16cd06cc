//! The pacer's bookkeeping with few and with many clients behind: a client going
//! behind and catching up (hold + release), one draining while behind (its hold
//! moves), and a sender's check before it reads on (`wait` that gives up at once:
//! the latest holder near the top of the ring, or the longest scan of the ring, or
//! every hold ended). Each should cost the same with 100 and with 10,000 clients
//! behind.
//!
//! `cargo bench -p host-server --bench pacer`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

// The pacer is internal to the server; it is compiled into the bench as it is, with
// the one helper it takes from the server's `sys` module. Clippy checks benches with
// `cfg(test)`, under which the module's test helpers are unused here.
#[allow(dead_code)]
#[path = "../src/outbox/pacer.rs"]
mod pacer;

mod sys {
    use std::sync::{Mutex, MutexGuard, PoisonError};

    /// As the server's `sys::lock`: locks, recovering from a poisoned lock.
    pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

use pacer::Pacer;

/// The longest `--pace-grace-ms`, so holds made at the start are still on when
/// each case runs (the ring has at most 130 cells whatever the grace).
const GRACE: Duration = Duration::from_secs(60);

/// A pacer with `n` clients behind (keys 0..n), holding until `until(key)`.
fn with_behind(n: u64, until: impl Fn(u64) -> Instant) -> Pacer {
    let pacer = Pacer::new(GRACE);
    for key in 0..n {
        pacer.hold(key, until(key));
    }
    pacer
}

fn bench_pacer(c: &mut Criterion) {
    let mut group = c.benchmark_group("pacer");
    for n in [100u64, 10_000] {
        // Holds spread over the grace, as clients that went behind at different times.
        let start = Instant::now();
        let pacer = with_behind(n, |key| {
            start + GRACE.mul_f64((key % 128 + 1) as f64 / 128.0)
        });
        group.bench_with_input(BenchmarkId::new("hold+release", n), &n, |b, &n| {
            b.iter(|| {
                pacer.hold(black_box(n), Instant::now() + GRACE);
                pacer.release(black_box(n));
            });
        });
        let mut key = 0;
        group.bench_with_input(BenchmarkId::new("drain (hold moves)", n), &n, |b, &n| {
            b.iter(|| {
                key = (key + 1) % n;
                pacer.hold(black_box(key), Instant::now() + GRACE);
            });
        });
        group.bench_with_input(BenchmarkId::new("wait, held", n), &n, |b, &n| {
            b.iter(|| pacer.wait(black_box(n), || true));
        });
        // The longest check: the nearest slot holds (all n clients), and one that
        // held until the horizon has caught up, so every cell is looked at.
        let nearest = with_behind(n, |_| Instant::now());
        nearest.hold(n, Instant::now() + GRACE);
        nearest.release(n);
        group.bench_with_input(BenchmarkId::new("wait, whole ring", n), &n, |b, &n| {
            b.iter(|| nearest.wait(black_box(n), || true));
        });
        // Clients still behind whose holds have all ended (before the pacer was made,
        // as holds are rounded up to the end of a slot): no cell is looked at.
        let ended = with_behind(n, |_| start);
        group.bench_with_input(BenchmarkId::new("wait, none held", n), &n, |b, &n| {
            b.iter(|| ended.wait(black_box(n), || panic!("held")));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_pacer);
criterion_main!(benches);
