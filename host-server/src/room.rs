//! The room: who is connected, and the single ordered stream of broadcasts.
//!
//! One lock guards the list of clients and the sequence counter. A batch of messages
//! gets its sequence numbers and is pushed to every recipient's outbox under that lock,
//! so every client sees broadcasts in one global order. Each batch is encoded once per
//! mode (the text form only if some recipient speaks text) and shared by all
//! recipients; pushing never blocks (see `outbox`), so a stalled client cannot hold the
//! lock.
//!
//! With a backplane the room spans servers: messages and joins and leaves come back
//! from it in the room's one order ([`Room::deliver`], [`Room::roster`]), and the
//! welcome and the console's `list` name the members it reported, on every server.

use std::net::Shutdown;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use proto_core::{ErrorCode, Frame, NoticeKind, PeerAddr};

use crate::outbox::{Chunk, Outbox, Pacer};
use crate::sys::{lock, wait};
use crate::wire::{self, encode_into, Encodings, Mode};

/// How many addresses a welcome lists before it only counts.
const WELCOME_LISTS: usize = 10;

/// How long join and leave notices wait to be sent together, per client in the room,
/// and its bounds.
const NOTICE_DELAY_PER_CLIENT: Duration = Duration::from_micros(10);
const NOTICE_DELAY_MIN: Duration = Duration::from_millis(2);
const NOTICE_DELAY_MAX: Duration = Duration::from_millis(100);

/// What the room needs from a sequencer outside it (the backplane, which gives
/// every message its place in an order shared by several servers). The room defines
/// it and the backplane implements it, so that imports run one way: the backplane
/// knows the room, the room knows only this trait.
pub(crate) trait Sequencer: Send + Sync {
    /// Queues the messages of client `client` (at `peer`) to be sequenced; they
    /// come back to the room once they have their place.
    fn append(&self, client: u64, peer: PeerAddr, messages: &mut dyn Iterator<Item = &str>);
    /// Queues the join (`why` `None`) or the leave (`why` its reason, maybe empty)
    /// of client `client`, after everything it queued before.
    fn roster(&self, client: u64, peer: PeerAddr, why: Option<&str>);
    /// This server's id in the room.
    fn server_id(&self) -> &str;
    /// The Pong `bytes` for client `client` if it may go now; if not, the sequencer
    /// sends it once the client's messages sent before it are answered.
    fn pong(&self, client: u64, bytes: Vec<u8>) -> Option<Vec<u8>>;
}

/// Sends `client` its welcome: the room holds `count` others, the first of them
/// (up to [`WELCOME_LISTS`]) named from `named`.
fn welcome(client: &Client, count: usize, named: impl Iterator<Item = PeerAddr>) {
    // On the stack, as the text: see `welcome_text`.
    let named: heapless::Vec<PeerAddr, WELCOME_LISTS> = named.take(WELCOME_LISTS).collect();
    let text = welcome_text(client.peer, count, &named);
    client.outbox.push_bytes(&wire::notice(
        client.mode(),
        NoticeKind::Welcome,
        Some(client.peer),
        &text,
    ));
}

/// A connected client as the room sees it.
pub(crate) struct Client {
    /// Unique for the server's lifetime.
    pub(crate) id: u64,
    /// The address the others see.
    pub(crate) peer: PeerAddr,
    /// Where its bytes go (shared with the writer pool while it has a backlog).
    pub(crate) outbox: Arc<Outbox>,
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

    /// Bytes of text waiting, all messages together.
    pub(crate) fn bytes(&self) -> usize {
        self.text.len()
    }

    /// Forgets the messages (once relayed), keeping the memory for the next batch.
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

/// Join and leave notices not yet sent, encoded once in each form.
///
/// Announcing a join to everyone at once costs one send per client, so a burst of
/// N joins would cost N² sends. Notices wait here instead for a short while (longer in
/// a bigger room) and go out together: one send per client per burst. A broadcast
/// sends them first, so nobody sees a message before the join of its sender.
#[derive(Default)]
struct Pending {
    forms: Encodings,
    /// Where each pending notice starts in each form.
    starts: Vec<[usize; 3]>,
    /// Clients that joined while notices were pending, and the index of the first
    /// notice they are to get (the ones before are about peers their welcome named).
    fresh: Vec<(u64, usize)>,
    /// Clients of this server whose own join, read back from the backplane, is
    /// pending: the index of that notice, which they do not get.
    own: Vec<(u64, usize)>,
}

impl Pending {
    fn push(&mut self, kind: NoticeKind, peer: PeerAddr, text: &str) {
        self.starts.push(self.forms.lens());
        let notice = Frame::Notice(proto_core::Notice {
            kind,
            peer: Some(peer),
            text,
        });
        // Every form, whoever is in the room: a newcomer may speak any of them.
        self.forms.encode(&notice, [true; 3]);
    }

    fn clear(&mut self) {
        self.forms.clear();
        self.starts.clear();
        self.fresh.clear();
        self.own.clear();
    }

    /// Sends every pending notice to the clients meant to get it.
    fn flush(&mut self, clients: &[Arc<Client>]) {
        if self.starts.is_empty() {
            return;
        }
        let mut chunks = Mode::ALL.map(|mode| Chunk::new(self.forms.of(mode)));
        for client in clients {
            if !self.send_special(client) {
                client.outbox.push(&mut chunks[client.mode().index()]);
            }
        }
        self.clear();
    }

    /// True for a client that is not to get every pending notice (it joined while
    /// they were pending, or its own join is among them): sends it those it is to
    /// get. False for any other client, sending nothing.
    fn send_special(&self, client: &Client) -> bool {
        let mode = client.mode();
        let form = self.forms.of(mode);
        if let Some(&(_, i)) = self.own.iter().find(|(id, _)| *id == client.id) {
            // Everything but the notice of its own join.
            let start = self.starts[i][mode.index()];
            let end = self
                .starts
                .get(i + 1)
                .map_or(form.len(), |s| s[mode.index()]);
            for part in [&form[..start], &form[end..]] {
                if !part.is_empty() {
                    client.outbox.push(&mut Chunk::new(part));
                }
            }
            return true;
        }
        match self.fresh.iter().find(|(id, _)| *id == client.id) {
            None => false,
            Some(&(_, i)) => {
                if let Some(start) = self.starts.get(i) {
                    client
                        .outbox
                        .push(&mut Chunk::new(&form[start[mode.index()]..]));
                }
                true
            }
        }
    }
}

/// Someone in the room as the backplane's roster knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The id of the server the client is on.
    pub(crate) server: Arc<str>,
    /// Its id there.
    pub(crate) client: u64,
    pub(crate) peer: PeerAddr,
}

/// A join or leave read from the backplane's roster, in the room's order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RosterEvent<'a> {
    pub(crate) join: bool,
    pub(crate) server: &'a str,
    pub(crate) client: u64,
    pub(crate) peer: PeerAddr,
    /// Why it left (empty if not said).
    pub(crate) why: &'a str,
}

/// One line of the console's `list`: an address, and the server it is on when the
/// room spans several (`None` for this one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    /// The client's address.
    pub(crate) peer: PeerAddr,
    /// The id of the other server it is on; `None` for this server.
    pub(crate) server: Option<String>,
}

#[derive(Default)]
struct State {
    clients: Vec<Arc<Client>>,
    /// Everyone in the room across servers, as far as the backplane's roster has
    /// been delivered here (unused without a backplane).
    members: Vec<Member>,
    /// How many clients speak each mode (by [`Mode::index`]).
    counts: [usize; 3],
    /// The sequence number of the next broadcast.
    next_seq: u64,
    next_id: u64,
    /// The server is shutting down: nobody joins, leaves are not announced.
    closing: bool,
    pending: Pending,
    /// Encoding scratch, kept to avoid allocating per batch.
    forms: Encodings,
    acks: Vec<u8>,
}

/// The chat room.
pub(crate) struct Room {
    state: Mutex<State>,
    /// Senders wait here for clients that are behind.
    pacer: Arc<Pacer>,
    /// Wakes the notice sender when the first notice of a burst is pending.
    notices: Condvar,
    /// Where broadcasts go to be sequenced when the room spans several servers;
    /// unset, the room sequences them itself.
    backplane: OnceLock<Box<dyn Sequencer>>,
}

/// One message whose place in the room's order was given elsewhere (by the backplane),
/// ready to be delivered with [`Room::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sequenced<'a> {
    /// Its sequence number in the room.
    pub(crate) seq: u64,
    /// The sender's address, as its own server saw it.
    pub(crate) peer: PeerAddr,
    /// The message.
    pub(crate) text: &'a str,
    /// The id of the sender when it is a client of this server: it gets an Ack (if
    /// binary) instead of its own message.
    pub(crate) origin: Option<u64>,
}

impl Room {
    /// An empty room; the first broadcast has sequence number 1. Its clients hold
    /// senders for at most `pace_grace` at a time (see `outbox::pacer`).
    pub(crate) fn new(pace_grace: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                next_seq: 1,
                ..State::default()
            }),
            pacer: Arc::new(Pacer::new(pace_grace)),
            notices: Condvar::new(),
            backplane: OnceLock::new(),
        }
    }

    /// The pacer every outbox of this room reports to.
    pub(crate) fn pacer(&self) -> &Arc<Pacer> {
        &self.pacer
    }

    /// Hands every later broadcast to `sequencer` to be sequenced, instead of
    /// sequencing it here. Returns false if a backplane was set already.
    pub(crate) fn set_backplane(&self, sequencer: Box<dyn Sequencer>) -> bool {
        self.backplane.set(sequencer).is_ok()
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
        if let Some(backplane) = self.backplane.get() {
            // The welcome names the room as delivered here so far; every join and
            // leave after that reaches the newcomer as a notice, its own excepted.
            let named = st.members.iter().map(|m| m.peer);
            welcome(&client, st.members.len(), named);
            st.counts[client.mode().index()] += 1;
            let (id, peer) = (client.id, client.peer);
            st.clients.push(client);
            let n = st.clients.len();
            drop(st);
            // Queued before anything the client sends, so its join comes first.
            backplane.roster(id, peer, None);
            return Some(n);
        }
        let text = format!("{} joined", client.peer);
        self.announce(&mut st, NoticeKind::Join, client.peer, &text);
        let first = st.pending.starts.len();
        st.pending.fresh.push((client.id, first));
        welcome(&client, st.clients.len(), st.clients.iter().map(|c| c.peer));
        st.counts[client.mode().index()] += 1;
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
        st.counts[gone.mode().index()] -= 1;
        if let Some(backplane) = self.backplane.get() {
            let n = st.clients.len();
            let closing = st.closing;
            drop(st);
            // At shutdown the heartbeat takes all of this server's clients out.
            if !closing {
                backplane.roster(gone.id, gone.peer, Some(why.unwrap_or("")));
            }
            return n;
        }
        if !st.closing {
            let text = match why {
                Some(why) => format!("{} left ({why})", gone.peer),
                None => format!("{} left", gone.peer),
            };
            self.announce(&mut st, NoticeKind::Leave, gone.peer, &text);
        }
        st.clients.len()
    }

    /// Queues a join or leave notice for everyone in the room.
    fn announce(&self, st: &mut State, kind: NoticeKind, peer: PeerAddr, text: &str) {
        if st.pending.starts.is_empty() {
            self.notices.notify_one();
        }
        st.pending.push(kind, peer, text);
    }

    /// Sends the pending notices now. A ping is answered after this, so its pong
    /// tells the client it has heard of everything that happened before.
    pub(crate) fn flush_notices(&self) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        st.pending.flush(&st.clients);
    }

    /// Sends pending notices in bursts until the room closes: the notice thread's body.
    pub(crate) fn send_notices(&self) {
        let mut st = lock(&self.state);
        loop {
            while st.pending.starts.is_empty() && !st.closing {
                st = wait(&self.notices, st);
            }
            if st.closing {
                return;
            }
            // A flush costs one send per client: wait longer in a bigger room, so
            // sending notices takes a small share of the time however fast people join.
            let size = u32::try_from(st.clients.len()).unwrap_or(u32::MAX);
            let delay = (NOTICE_DELAY_PER_CLIENT * size).clamp(NOTICE_DELAY_MIN, NOTICE_DELAY_MAX);
            drop(st);
            thread::sleep(delay);
            st = lock(&self.state);
            let st = &mut *st;
            st.pending.flush(&st.clients);
        }
    }

    /// Sends every message of `batch` from `from` to every other client, in order,
    /// each with the next sequence number; a binary sender gets an Ack of each.
    pub(crate) fn broadcast(&self, from: &Client, batch: &Batch) {
        if let Some(backplane) = self.backplane.get() {
            // Delivered (or refused with a notice to the sender) once sequenced.
            return backplane.append(from.id, from.peer, &mut batch.iter());
        }
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if st.closing || batch.is_empty() {
            return;
        }
        st.pending.flush(&st.clients);
        let first = st.next_seq;
        st.next_seq += batch.len() as u64;
        // Only the forms some recipient speaks (the sender hears its own as acks).
        let wanted = Mode::ALL.map(|m| st.counts[m.index()] > usize::from(from.mode() == m));
        st.forms.clear();
        for (seq, text) in (first..).zip(batch.iter()) {
            let frame = Frame::Broadcast {
                seq,
                peer: from.peer,
                text,
            };
            st.forms.encode(&frame, wanted);
        }
        let mut chunks = Mode::ALL.map(|mode| Chunk::new(st.forms.of(mode)));
        for client in st.clients.iter().filter(|c| c.id != from.id) {
            client.outbox.push(&mut chunks[client.mode().index()]);
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

    /// The Pong `bytes` for client `id`, if it may be sent now: at once without a
    /// backplane (the Acks of its messages are queued already); with one, only once
    /// the messages it sent before are answered, else it is sent later.
    pub(crate) fn pong(&self, id: u64, bytes: Vec<u8>) -> Option<Vec<u8>> {
        match self.backplane.get() {
            Some(backplane) => backplane.pong(id, bytes),
            None => Some(bytes),
        }
    }

    /// Delivers messages sequenced elsewhere, in the order given: every client gets
    /// every message but its own, a binary sender an Ack of its own in its place.
    pub(crate) fn deliver(&self, batch: &[Sequenced<'_>]) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if st.closing || batch.is_empty() {
            return;
        }
        st.forms.clear();
        // Pending notices go out in the same push as the messages (a join or leave
        // then costs no push of its own); clients with a view of their own of them
        // get theirs apart.
        let mut special = Vec::new();
        if !st.pending.starts.is_empty() {
            for client in &st.clients {
                if st.pending.send_special(client) {
                    special.push(client.id);
                }
            }
            st.forms.append(&st.pending.forms);
            st.pending.clear();
        }
        let notices = st.forms.lens();
        let wanted = st.counts.map(|n| n > 0);
        // Where each message starts in each encoding, and where the last one ends.
        let mut starts = Vec::with_capacity(batch.len() + 1);
        for m in batch {
            starts.push(st.forms.lens());
            let frame = Frame::Broadcast {
                seq: m.seq,
                peer: m.peer,
                text: m.text,
            };
            st.forms.encode(&frame, wanted);
        }
        starts.push(st.forms.lens());
        let mut chunks = Mode::ALL.map(|mode| Chunk::new(st.forms.of(mode)));
        for client in &st.clients {
            let mode = client.mode();
            let apart = special.contains(&client.id);
            if !apart && !batch.iter().any(|m| m.origin == Some(client.id)) {
                client.outbox.push(&mut chunks[mode.index()]);
                continue;
            }
            // A sender in this batch: everything but its own messages, which a
            // binary client learns the place of by an Ack where they stand.
            st.acks.clear();
            if !apart {
                let form = st.forms.of(mode);
                st.acks.extend_from_slice(&form[..notices[mode.index()]]);
            }
            for (i, m) in batch.iter().enumerate() {
                let range = starts[i][mode.index()]..starts[i + 1][mode.index()];
                match (m.origin == Some(client.id), mode) {
                    (true, Mode::Binary) => {
                        encode_into(Mode::Binary, &Frame::Ack { seq: m.seq }, &mut st.acks);
                    }
                    (true, Mode::Text | Mode::WebSocket) => {}
                    (false, _) => st.acks.extend_from_slice(&st.forms.of(mode)[range]),
                }
            }
            client.outbox.push(&mut Chunk::new(&st.acks));
        }
    }

    /// Sets who is in the room across servers (at start, and after a reset).
    pub(crate) fn set_roster(&self, members: Vec<Member>) {
        lock(&self.state).members = members;
    }

    /// Applies a join or leave read from the backplane, in the room's order: the
    /// roster changes and everyone here hears of it, but a client of this server
    /// does not hear its own join, and one taken out of the room by another server
    /// (this server was taken for dead) is disconnected with the reason.
    pub(crate) fn roster(&self, ev: RosterEvent<'_>) {
        let mut guard = lock(&self.state);
        let st = &mut *guard;
        if st.closing {
            return;
        }
        let me = self.backplane.get().map(|b| b.server_id());
        let here = if me == Some(ev.server) {
            st.clients.iter().find(|c| c.id == ev.client).cloned()
        } else {
            None
        };
        let same = |m: &Member| m.client == ev.client && &*m.server == ev.server;
        if ev.join {
            if !st.members.iter().any(same) {
                st.members.push(Member {
                    server: ev.server.into(),
                    client: ev.client,
                    peer: ev.peer,
                });
            }
            let text = format!("{} joined", ev.peer);
            self.announce(st, NoticeKind::Join, ev.peer, &text);
            if let Some(client) = here {
                let own = st.pending.starts.len() - 1;
                st.pending.own.push((client.id, own));
            }
            return;
        }
        st.members.retain(|m| !same(m));
        let text = match ev.why {
            "" => format!("{} left", ev.peer),
            why => format!("{} left ({why})", ev.peer),
        };
        self.announce(st, NoticeKind::Leave, ev.peer, &text);
        if let Some(client) = here {
            let text = format!("you were taken out of the room: {text}; reconnect");
            client
                .outbox
                .push_last(&wire::error(client.mode(), ErrorCode::ROOM_RESET, &text));
            let _ = client.outbox.conn().tcp().shutdown(Shutdown::Read);
        }
    }

    /// Everyone in the room for the console's `list`: across servers with a
    /// backplane (with the server each is on), else this server's clients.
    pub(crate) fn listing(&self) -> Vec<Listed> {
        let st = lock(&self.state);
        match self.backplane.get() {
            Some(backplane) => st
                .members
                .iter()
                .map(|m| Listed {
                    peer: m.peer,
                    server: (&*m.server != backplane.server_id()).then(|| m.server.to_string()),
                })
                .collect(),
            None => st
                .clients
                .iter()
                .map(|c| Listed {
                    peer: c.peer,
                    server: None,
                })
                .collect(),
        }
    }

    /// Sends `bytes` to client `id` alone, if it is still in the room.
    pub(crate) fn tell(&self, id: u64, bytes: impl Fn(Mode) -> Vec<u8>) {
        let st = lock(&self.state);
        if let Some(client) = st.clients.iter().find(|c| c.id == id) {
            client.outbox.push_bytes(&bytes(client.mode()));
        }
    }

    /// Disconnects every client in the room with an error notice: `code` and `text`.
    /// Each is sent what was queued for it, then the notice, then its connection ends
    /// (the session sees the end of its input and leaves). Returns how many there were.
    pub(crate) fn disconnect_all(&self, code: ErrorCode, text: &str) -> usize {
        let st = lock(&self.state);
        for client in &st.clients {
            client
                .outbox
                .push_last(&wire::error(client.mode(), code, text));
            let _ = client.outbox.conn().tcp().shutdown(Shutdown::Read);
        }
        st.clients.len()
    }

    /// True once the room is shut.
    pub(crate) fn is_closing(&self) -> bool {
        lock(&self.state).closing
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
        st.pending.clear();
        self.notices.notify_all();
        st.clients.clone()
    }
}

/// The welcome text: the newcomer's own address and who else is here (`count`
/// others, the first of them `named`).
fn welcome_text(me: PeerAddr, count: usize, named: &[PeerAddr]) -> WelcomeText {
    use std::fmt::Write as _;
    // Written on the stack: every client's reader thread runs this once, and each
    // temporary it allocated and freed would stay cached in that thread's allocator
    // for as long as the client stays idle (see `stack`). The text always fits.
    let mut text = WelcomeText::new();
    let _ = write!(text, "welcome, you are {me}; ");
    let _ = match count {
        0 => write!(text, "nobody else is here"),
        1 => write!(text, "1 other is here: "),
        n => write!(text, "{n} others are here: "),
    };
    for (i, peer) in named.iter().enumerate() {
        let comma = if i == 0 { "" } else { ", " };
        let _ = write!(text, "{comma}{peer}");
    }
    if count > named.len() {
        let _ = write!(text, " and {} more", count - named.len());
    }
    text
}

/// The longest address as text, with the comma after it.
const ADDRESS_MAX: usize = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535, ".len();

/// A welcome text: room for the newcomer's address, the count and [`WELCOME_LISTS`]
/// addresses.
type WelcomeText = heapless::String<{ 80 + ADDRESS_MAX * (WELCOME_LISTS + 1) }>;

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
            welcome_text(peer(1), 0, &[]),
            "welcome, you are 127.0.0.1:1; nobody else is here"
        );
        assert_eq!(
            welcome_text(peer(1), 1, &[peer(2)]),
            "welcome, you are 127.0.0.1:1; 1 other is here: 127.0.0.1:2"
        );
        let named: Vec<_> = (2..12).map(peer).collect();
        let text = welcome_text(peer(1), 18, &named);
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
