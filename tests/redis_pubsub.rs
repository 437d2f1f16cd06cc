//! `host-client bench --redis-pubsub`: the bench's fan-out load against a real
//! `redis-server` (receivers SUBSCRIBE, senders PUBLISH), as the README's comparison
//! with Redis pub/sub runs it. Each test starts its own Redis on a free loopback port
//! (Debian package `redis-server`; `.ci/run` installs it).

use std::process::Command;

use serde_json::Value;

use crate::backplane::Redis;
use crate::util::bin;

/// Runs `host-client bench ARGS` and returns its exit success, stdout and stderr.
fn bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin("host-client"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run host-client bench");
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

#[test]
fn fanout_over_redis_pubsub_counts_every_delivery() {
    let redis = Redis::start_volatile();
    let addr = format!("127.0.0.1:{}", redis.port);
    let args = [
        "fanout",
        "--redis-pubsub",
        "--json",
        "-n",
        "5",
        "-s",
        "2",
        "-m",
        "50",
        "--size",
        "40",
        &addr,
    ];
    let (ok, out, err) = bench(&args);
    assert!(ok, "bench failed: {err}{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["mode"], "redis-pubsub", "{out}");
    // Five subscribers each get both senders' 50 messages; the senders get nothing.
    assert_eq!(v["expected"], 5 * 2 * 50, "{out}");
    assert_eq!(v["delivered"], v["expected"], "{out}");
    for zero in [
        "lost",
        "order_violations",
        "decode_errors",
        "refused",
        "disconnects",
    ] {
        assert_eq!(v[zero], 0, "{zero}: {out}");
    }
}

#[test]
fn a_redis_that_refuses_the_subscription_is_an_error_that_says_so() {
    let redis = Redis::start_volatile();
    // The default user may no longer use any channel: SUBSCRIBE gets -NOPERM.
    assert_eq!(
        redis.cli(&["ACL", "SETUSER", "default", "resetchannels"]),
        "OK"
    );
    let addr = format!("127.0.0.1:{}", redis.port);
    let (ok, out, err) = bench(&["fanout", "--redis-pubsub", "-n", "1", "-s", "1", &addr]);
    assert!(!ok, "bench ran: {out}");
    assert!(err.contains("SUBSCRIBE answered with -NOPERM"), "{err}");
}
