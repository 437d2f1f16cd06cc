//! The room: who is connected, and the single ordered stream of broadcasts.
//!
//! One lock guards the list of clients and the sequence counter. A batch of messages
//! gets its sequence numbers and is pushed to every recipient's outbox under that lock,
//! so every client sees broadcasts in one global order. Each batch is encoded once per
//! mode (the text form only if some recipient speaks text) and shared by all
//! recipients; pushing never blocks (see `outbox`), so a stalled client cannot hold the
//! lock.

use std::sync::{Arc, Mutex};

use proto_core::{Frame, NoticeKind, PeerAddr};

use crate::outbox::{Chunk, Outbox};
use crate::sys::lock;
use crate::wire::{self, encode_into, Mode};

/// How many addresses a welcome lists before it only counts.
const WELCOME_LISTS: usize = 10;

/// A connected client as the room sees it.
pub(crate) struct Client {
    /// Unique for the server's lifetime.
    pub(crate) id: u64,
    /// The address the others see.
    pub(crate) peer: PeerAddr,
    /// Where its bytes go.
    pub(crate) outbox: Outbox,
}

impl Client {
    fn mode(&self) -> Mode {
        self.outbox.mode()
    }
}

/// Messages read from one client, waiting to be broadcast together.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    text: String,
    ends: Vec<usize>,
}

impl Batch {
    /// Adds one message.
    pub(crate) fn push(&mut self, message: &str) {
        self.text.push_str(message);
        self.ends.push(self.text.len());
    }

    /// True when no message is waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Number of messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Forgets the messages, keeping the memory for the next batch.
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(s, e)| &self.text[s..e])
    }
}

#[derive(Default)]
struct State {
    clients: Vec<Arc<Client>>,
    text_clients: usize,
    /// The sequence number of the next broadcast.
    next_seq: u64,
    next_id: u64,
    /// The server is shutting down: nobody joins, leaves are not announced.
    closing: bool,
    /// Encoding scratch, kept to avoid allocating per batch.
    binary: Vec<u8>,
    text: Vec<u8>,
    acks: Vec<u8>,
}

/// The chat room.
pub(crate) struct Room {
    state: Mutex<State>,
}

impl Room {
    /// An empty room; the first broadcast has sequence number 1.
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                next_seq: 1,
                ..State::default()
            }),
        }
    }

    /// A new client id.
    pub(crate) fn next_id(&self) -> u64 {
        let mut st = lock(&self.state);
        st.next_id += 1;
        st.next_id
    }

    /// Adds `client`, greets it with a welcome and tells the others. Returns the number
    /// of clients now in the room, or `None` if the server is shutting down.
    pub(crate) fn join(&self, client: Arc<Client>) -> Option<usize> {
        let mut st = lock(&self.state);
        if st.closing {
            return None;
        }
        let others: Vec<PeerAddr> = st.clients.iter().map(|c| c.peer).collect();
        // The others first: once the newcomer reads its welcome, everyone has been told.
        let text = format!("{} joined", client.peer);
        announce(&st.clients, NoticeKind::Join, client.peer, &text);
        let welcome = welcome_text(client.peer, &others);
        client.outbox.push_bytes(&wire::notice(
            client.mode(),
            NoticeKind::Welcome,
            Some(client.peer),
            &welcome,
        ));
        if client.mode() == Mode::Text {
            st.text_clients += 1;
        }
        st.clients.push(client);
        Some(st.clients.len())
    }

    /// Removes client `id` and, unless the server is shutting down, tells the others
    /// it left, with `why` if given. Returns the number of clients left.
    pub(crate) fn leave(&self, id: u64, why: Option<&str>) -> usize {
        let mut st = lock(&self.state);
        let Some(at) = st.clients.iter().position(|c| c.id == id) else {
            return st.clients.len();
        };
        let gone = st.clients.swap_remove(at);
        if gone.mode() == Mode::Text {
            st.text_clients -= 1;
        }
        if !st.closing {
            let text = match why {
                Some(why) => format!("{} left ({why})", gone.peer),
                None => format!("{} left", gone.peer),
            };
            announce(&st.clients, NoticeKind::Leave, gone.peer, &text);
        }
        st.clients.len()
    }

    /// Sends every message of `batch` from `from` to every other client, in order,
    /// each with the next sequence number; a binary sender gets an Ack of each.
    pub(crate) fn broadcast(&self, from: &Client, batch: &Batch) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if st.closing || batch.is_empty() {
            return;
        }
        let first = st.next_seq;
        st.next_seq += batch.len() as u64;
        let text_wanted = st.text_clients > usize::from(from.mode() == Mode::Text);
        st.binary.clear();
        st.text.clear();
        for (seq, text) in (first..).zip(batch.iter()) {
            let frame = Frame::Broadcast {
                seq,
                peer: from.peer,
                text,
            };
            encode_into(Mode::Binary, &frame, &mut st.binary);
            if text_wanted {
                encode_into(Mode::Text, &frame, &mut st.text);
            }
        }
        let (mut binary, mut text) = (Chunk::new(&st.binary), Chunk::new(&st.text));
        for client in st.clients.iter().filter(|c| c.id != from.id) {
            match client.mode() {
                Mode::Binary => client.outbox.push(&mut binary),
                Mode::Text => client.outbox.push(&mut text),
            }
        }
        if from.mode() == Mode::Binary {
            // The sender learns each message's place in the order, in that order.
            st.acks.clear();
            for seq in first..st.next_seq {
                encode_into(Mode::Binary, &Frame::Ack { seq }, &mut st.acks);
            }
            from.outbox.push(&mut Chunk::new(&st.acks));
        }
    }

    /// The addresses of everyone in the room, in order of arrival (mostly: a leave
    /// moves the last arrival into the gap).
    pub(crate) fn peers(&self) -> Vec<PeerAddr> {
        lock(&self.state).clients.iter().map(|c| c.peer).collect()
    }

    /// Shuts the room: nobody joins any more, and leaves are no longer announced.
    /// Returns everyone who was in it.
    pub(crate) fn close(&self) -> Vec<Arc<Client>> {
        let mut st = lock(&self.state);
        st.closing = true;
        st.clients.clone()
    }
}

/// Sends a join or leave notice about `peer` to every client in `clients`.
fn announce(clients: &[Arc<Client>], kind: NoticeKind, peer: PeerAddr, text: &str) {
    let binary = wire::notice(Mode::Binary, kind, Some(peer), text);
    let line = wire::notice(Mode::Text, kind, Some(peer), text);
    let (mut binary, mut line) = (Chunk::new(&binary), Chunk::new(&line));
    for client in clients {
        match client.mode() {
            Mode::Binary => client.outbox.push(&mut binary),
            Mode::Text => client.outbox.push(&mut line),
        }
    }
}

/// The welcome text: the newcomer's own address and who else is here.
fn welcome_text(me: PeerAddr, others: &[PeerAddr]) -> String {
    let mut text = format!("welcome, you are {me}; ");
    match others.len() {
        0 => text.push_str("nobody else is here"),
        1 => text.push_str("1 other is here: "),
        n => text.push_str(&format!("{n} others are here: ")),
    }
    let listed: Vec<String> = others
        .iter()
        .take(WELCOME_LISTS)
        .map(|p| p.to_string())
        .collect();
    text.push_str(&listed.join(", "));
    if others.len() > WELCOME_LISTS {
        text.push_str(&format!(" and {} more", others.len() - WELCOME_LISTS));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> PeerAddr {
        PeerAddr::V4 {
            ip: [127, 0, 0, 1],
            port,
        }
    }

    #[test]
    fn welcome_lists_a_few_and_counts_the_rest() {
        assert_eq!(
            welcome_text(peer(1), &[]),
            "welcome, you are 127.0.0.1:1; nobody else is here"
        );
        assert_eq!(
            welcome_text(peer(1), &[peer(2)]),
            "welcome, you are 127.0.0.1:1; 1 other is here: 127.0.0.1:2"
        );
        let many: Vec<_> = (2..20).map(peer).collect();
        let text = welcome_text(peer(1), &many);
        assert!(text.contains("18 others are here: 127.0.0.1:2, "), "{text}");
        assert!(text.ends_with("127.0.0.1:11 and 8 more"), "{text}");
    }

    #[test]
    fn batch_iterates_in_order() {
        let mut b = Batch::default();
        b.push("one");
        b.push("");
        b.push("three");
        assert_eq!(b.iter().collect::<Vec<_>>(), ["one", "", "three"]);
        b.clear();
        assert!(b.is_empty());
        b.push("x");
        assert_eq!(b.iter().collect::<Vec<_>>(), ["x"]);
    }
}
