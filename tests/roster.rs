//! One roster for a room across servers: joins and leaves heard everywhere in one
//! order, the welcome and the console's `list` naming the whole room, and a dead
//! server's clients taken out of the room by the others' heartbeat.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use crate::backplane::Redis;
use crate::relay::{Mode, Relay};
use crate::util::{BinClient, Got, Server};

/// A host-server in the room at `redis`, taking a server silent for `timeout_ms`
/// for dead.
fn server(redis: &Redis, timeout_ms: u64) -> Server {
    let ms = timeout_ms.to_string();
    Server::start(&[
        "--backplane",
        &redis.url(),
        "--backplane-server-timeout-ms",
        &ms,
    ])
}

/// Connects a client and returns it with its welcome's text.
fn join(server: &Server) -> (BinClient, String) {
    let client = BinClient::connect(server.addr);
    let welcome = match client
        .expect(|g| matches!(g, Got::Notice { code: None, text } if text.starts_with("welcome")))
    {
        Got::Notice { text, .. } => text,
        _ => unreachable!(),
    };
    (client, welcome)
}

/// The join and leave notices `client` receives until `done` says it has them all
/// (messages between them are skipped); fails after `limit`.
fn roster_notices(
    client: &BinClient,
    limit: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + limit;
    let mut heard = Vec::new();
    while !done(&heard) {
        let left = deadline.saturating_duration_since(Instant::now());
        match client.rx.recv_timeout(left) {
            Ok(Got::Notice { code: None, text })
                if text.ends_with(" joined") || text.contains(" left") =>
            {
                heard.push(text);
            }
            Ok(Got::End(why)) => panic!("connection ended ({why}); heard {heard:?}"),
            Ok(_) => {}
            Err(_) => panic!("after {limit:?} heard only {heard:?}"),
        }
    }
    heard
}

/// Waits until `client` has heard of `peer` joining.
fn heard_join(client: &BinClient, peer: &str) {
    let want = format!("{peer} joined");
    roster_notices(client, Duration::from_secs(10), |h| h.contains(&want));
}

const TIMEOUT_MS: u64 = 3000;

#[test]
fn every_join_and_leave_is_heard_on_every_server_in_one_order() {
    let redis = Redis::start();
    let servers: Vec<Server> = (0..3).map(|_| server(&redis, TIMEOUT_MS)).collect();
    let (first, _) = join(&servers[0]);
    // `first` does not hear its own join: wait until it is in the room's order
    // (the roster stream), so it is known to come before all the others.
    let epoch = redis.cli(&["GET", "{room:lobby}:epoch"]);
    let roster = format!("{{room:lobby}}:roster:{epoch}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.cli(&["XLEN", &roster]) != "1" {
        assert!(Instant::now() < deadline, "first's join never written");
        thread::sleep(Duration::from_millis(10));
    }
    // Joins and leaves on all three servers, some at once.
    let mut others = Vec::new();
    for round in 0..2 {
        for s in &servers {
            others.push(join(s).0);
        }
        if round == 0 {
            let gone = others.remove(1);
            drop(gone);
        }
    }
    let last = others.pop().unwrap();
    let last_peer = last.peer();
    drop(last);
    let want_left = format!("{last_peer} left");
    let expect = |c: &BinClient| {
        roster_notices(c, Duration::from_secs(10), |h| {
            h.last().is_some_and(|t| *t == want_left)
        })
    };
    let all = expect(&first);
    // 6 joins and 2 leaves after `first`'s own join.
    assert_eq!(all.len(), 8, "{all:?}");
    for (i, c) in others.iter().enumerate() {
        let heard = expect(c);
        let own = format!("{} joined", c.peer());
        assert!(!heard.contains(&own), "client {i} heard its own join");
        // Everything after what its welcome named, but its own join.
        // (`first`'s own join too: a client may come before it was read back on
        // their server.)
        let due: Vec<String> = std::iter::once(format!("{} joined", first.peer()))
            .chain(all.iter().cloned())
            .filter(|t| *t != own)
            .collect();
        assert!(
            due.ends_with(&heard) && heard.len() >= due.len() - 6,
            "client {i} heard {heard:?}, not the end of {due:?}"
        );
    }
}

#[test]
fn the_welcome_names_clients_on_other_servers() {
    let redis = Redis::start();
    let (a, b, c) = (
        server(&redis, TIMEOUT_MS),
        server(&redis, TIMEOUT_MS),
        server(&redis, TIMEOUT_MS),
    );
    let (a1, _) = join(&a);
    let (b1, _) = join(&b);
    heard_join(&a1, &b1.peer());
    // Long enough for every server's reader to have read both joins.
    thread::sleep(Duration::from_millis(300));
    let (_c1, welcome) = join(&c);
    assert!(welcome.contains("2 others are here"), "{welcome}");
    for peer in [a1.peer(), b1.peer()] {
        assert!(welcome.contains(&peer), "{peer} missing from {welcome}");
    }
}

#[test]
fn the_console_lists_the_whole_room_with_each_server() {
    let redis = Redis::start();
    let (mut a, b) = (server(&redis, TIMEOUT_MS), server(&redis, TIMEOUT_MS));
    let (a1, _) = join(&a);
    let (b1, _) = join(&b);
    heard_join(&a1, &b1.peer());
    a.proc.send("list");
    a.proc.out.expect("2 connected", |l| l == "2 connected:");
    let lines = [
        a.proc.out.expect("a line", |_| true),
        a.proc.out.expect("a line", |_| true),
    ];
    let mine = lines
        .iter()
        .find(|l| l.contains(&a1.peer()))
        .expect("a1 listed");
    assert!(!mine.contains("on server"), "{mine}");
    let theirs = lines
        .iter()
        .find(|l| l.contains(&b1.peer()))
        .expect("b1 listed");
    assert!(theirs.contains("on server "), "{theirs}");
}

#[test]
fn a_killed_server_s_clients_leave_with_a_reason_within_the_timeout() {
    let redis = Redis::start();
    let (a, b) = (server(&redis, TIMEOUT_MS), server(&redis, TIMEOUT_MS));
    let (a1, _) = join(&a);
    let (b1, _) = join(&b);
    let (b2, _) = join(&b);
    heard_join(&a1, &b2.peer());
    let killed = Instant::now();
    b.proc.signal("KILL");
    let gone = [b1.peer(), b2.peer()];
    let heard = roster_notices(&a1, Duration::from_millis(TIMEOUT_MS + 3000), |h| {
        gone.iter()
            .all(|p| h.iter().any(|t| t.starts_with(&format!("{p} left"))))
    });
    let took = killed.elapsed();
    eprintln!("leaves heard {took:?} after the kill");
    for text in &heard {
        assert!(text.contains("(its server stopped answering"), "{text}");
    }
    // Within the timeout, with room for the reader and a loaded machine.
    assert!(
        took < Duration::from_millis(TIMEOUT_MS + 1500),
        "{took:?}: {heard:?}"
    );
    // A new client elsewhere is told only of a1.
    let (_c, welcome) = join(&a);
    assert!(welcome.contains("1 other is here"), "{welcome}");
}

#[test]
fn a_redis_frozen_for_less_than_the_timeout_takes_nobody_out() {
    let redis = Redis::start();
    let (a, b) = (server(&redis, TIMEOUT_MS), server(&redis, TIMEOUT_MS));
    let (a1, _) = join(&a);
    let (mut b1, _) = join(&b);
    heard_join(&a1, &b1.peer());
    redis.signal("STOP");
    thread::sleep(Duration::from_millis(TIMEOUT_MS * 9 / 10));
    redis.signal("CONT");
    // Past the time a server would have been taken out had its beats been judged
    // by the clock alone.
    thread::sleep(Duration::from_millis(TIMEOUT_MS));
    b1.say("still here");
    let (b2, _) = join(&b);
    let want = format!("{} joined", b2.peer());
    let (mut notices, mut chat) = (Vec::new(), false);
    while !(chat && notices.contains(&want)) {
        match a1.next() {
            Got::Chat { text, .. } => chat |= text == "still here",
            Got::Notice { text, .. } => notices.push(text),
            Got::End(why) => panic!("a1 disconnected: {why}; {notices:?}"),
            _ => {}
        }
    }
    assert_eq!(notices, [want]);
}

#[test]
fn a_sender_s_join_comes_before_its_messages_and_its_leave_after_them_everywhere() {
    let redis = Redis::start();
    let (a, b) = (server(&redis, TIMEOUT_MS), server(&redis, TIMEOUT_MS));
    let (a1, _) = join(&a);
    let (mut b1, _) = join(&b);
    heard_join(&a1, &b1.peer());
    // a is stopped while a client of b joins, says three lines, goes, and b1 says
    // one more: a then reads the joins, leaves and messages together and must
    // still place each where it happened.
    a.proc.signal("STOP");
    let mut x = BinClient::connect(b.addr);
    for n in 0..3 {
        x.say(&format!("x {n}"));
    }
    let peer = x.peer();
    for _ in 0..3 {
        x.expect(|g| matches!(g, Got::Ack { .. }));
    }
    drop(x);
    let want = [
        format!("{peer} joined"),
        "x 0".into(),
        "x 1".into(),
        "x 2".into(),
        format!("{peer} left"),
        "after".into(),
    ];
    let heard = |client: &BinClient, n: usize| {
        let mut got = Vec::new();
        while got.len() < n {
            match client.next() {
                Got::Chat { text, .. } => got.push(text),
                Got::Notice { code: None, text } if text.contains(&peer) => got.push(text),
                Got::End(why) => panic!("ended: {why}; {got:?}"),
                _ => {}
            }
        }
        got
    };
    assert_eq!(heard(&b1, 5), want[..5]);
    b1.say("after");
    b1.expect(|g| matches!(g, Got::Ack { .. }));
    a.proc.signal("CONT");
    assert_eq!(heard(&a1, 6), want);
}

#[test]
fn a_server_whose_link_froze_past_the_timeout_disconnects_its_clients_with_a_notice() {
    let redis = Redis::start();
    let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], redis.port)));
    let ms = TIMEOUT_MS.to_string();
    let a = server(&redis, TIMEOUT_MS);
    let b = Server::start(&[
        "--backplane",
        &relay.url(),
        "--backplane-server-timeout-ms",
        &ms,
    ]);
    let (a1, _) = join(&a);
    let (b1, _) = join(&b);
    heard_join(&a1, &b1.peer());
    relay.set(Mode::Freeze);
    let heard = roster_notices(&a1, Duration::from_millis(TIMEOUT_MS + 3000), |h| {
        !h.is_empty()
    });
    assert!(
        heard[0].starts_with(&format!("{} left (its server stopped answering", b1.peer())),
        "{heard:?}"
    );
    relay.set(Mode::Pass);
    // b's client is told it is out of the room, and disconnected: it does not stay
    // on, unseen by the others.
    let told = b1.expect(|g| matches!(g, Got::Notice { code: Some(11), .. } | Got::End(_)));
    assert!(matches!(told, Got::Notice { .. }), "{told:?}");
    b1.expect(|g| matches!(g, Got::End(_)));
    // b is back in the room for new clients.
    let (b2, _) = join(&b);
    heard_join(&a1, &b2.peer());
}

#[test]
fn a_server_that_closes_takes_its_clients_out_at_once() {
    let redis = Redis::start();
    // A timeout far longer than the test: only the closing server's own leaves can
    // be heard.
    let (a, mut b) = (server(&redis, 60_000), server(&redis, 60_000));
    let (a1, _) = join(&a);
    let (b1, _) = join(&b);
    heard_join(&a1, &b1.peer());
    b.proc.send("close");
    let want = format!("{} left (server shut down)", b1.peer());
    let heard = roster_notices(&a1, Duration::from_secs(10), |h| !h.is_empty());
    assert_eq!(heard, [want]);
    b.proc.wait_exit(Duration::from_secs(10));
}

#[test]
fn after_a_reset_the_roster_starts_over_with_the_new_joins() {
    let redis = Redis::start();
    let (a, b) = (server(&redis, TIMEOUT_MS), server(&redis, TIMEOUT_MS));
    let (a1, _) = join(&a);
    let (b1, _) = join(&b);
    heard_join(&a1, &b1.peer());
    assert_eq!(redis.cli(&["DEL", "{room:lobby}:stream"]), "1");
    for client in [&a1, &b1] {
        client.expect(|g| matches!(g, Got::Notice { code: Some(11), .. }));
        client.expect(|g| matches!(g, Got::End(_)));
    }
    let (a2, welcome) = join(&a);
    assert!(
        welcome.ends_with("nobody else is here"),
        "{welcome}; {:#?}",
        a.proc.err.all()
    );
    thread::sleep(Duration::from_millis(300));
    let (b2, welcome) = join(&b);
    assert!(
        welcome.ends_with(&format!("1 other is here: {}", a2.peer())),
        "{welcome}"
    );
    heard_join(&a2, &b2.peer());
}
