//! The pacer's bookkeeping with few and with many clients behind: a client going
//! behind and catching up (hold + release), one draining while behind (its hold
//! moves), and a sender's check before it reads on (`wait` that gives up at once,
//! or finds nobody holding: the whole ring scanned). Each should cost the same with
//! 100 and with 10,000 clients behind.
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

/// The server's default `--pace-grace-ms`.
const GRACE: Duration = Duration::from_millis(250);

/// A pacer with `n` clients behind (keys 0..n), their holds spread over the grace.
fn with_behind(n: u64) -> Pacer {
    let pacer = Pacer::new(GRACE);
    let now = Instant::now();
    for key in 0..n {
        let spread = GRACE.mul_f64((key % 128) as f64 / 128.0);
        pacer.hold(key, now + spread);
    }
    pacer
}

fn bench_pacer(c: &mut Criterion) {
    let mut group = c.benchmark_group("pacer");
    for n in [100u64, 10_000] {
        let pacer = with_behind(n);
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
        // Every hold made so far ends within the grace: then nobody holds, and the
        // check looks at every cell of the ring before it says so.
        std::thread::sleep(GRACE + Duration::from_millis(10));
        group.bench_with_input(BenchmarkId::new("wait, none held", n), &n, |b, &n| {
            b.iter(|| pacer.wait(black_box(n), || panic!("held")));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_pacer);
criterion_main!(benches);
