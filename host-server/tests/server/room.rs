//! The room's notices: the welcome, joins and leaves, and who is told of whom.

use proto_core::NoticeKind;

use crate::util::{config, is_notice, start, Bin, Got};

#[test]
fn welcome_join_and_leave_are_announced() {
    let server = start(config());
    let mut a = Bin::connect(server.addr);
    let text = a.welcome();
    assert!(text.contains("nobody else"), "{text}");
    let mut b = Bin::connect(server.addr);
    let welcome = b.welcome();
    assert!(welcome.contains(&a.addr.to_string()), "{welcome}");
    assert!(welcome.contains(&b.addr.to_string()), "{welcome}");
    let joined = a.got();
    assert!(is_notice(&joined, NoticeKind::Join, b.addr), "{joined:?}");
    let b_addr = b.addr;
    drop(b);
    let left = a.got();
    assert!(is_notice(&left, NoticeKind::Leave, b_addr), "{left:?}");
}

#[test]
fn a_burst_of_joins_tells_each_client_only_of_later_arrivals() {
    let server = start(config());
    let mut clients: Vec<Bin> = (0..6)
        .map(|_| {
            let mut c = Bin::connect(server.addr);
            c.welcome();
            c
        })
        .collect();
    let addrs: Vec<_> = clients.iter().map(|c| c.addr).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let joins: Vec<_> = c
            .sync()
            .into_iter()
            .filter_map(|g| match g {
                Got::Notice {
                    kind: NoticeKind::Join,
                    peer,
                    ..
                } => peer,
                _ => None,
            })
            .collect();
        assert_eq!(joins, addrs[i + 1..], "client {i}");
    }
}
