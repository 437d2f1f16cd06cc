//! The room in a browser, on the chat port: `GET /` answers with the chat page and
//! `GET /ws` upgrades to a WebSocket that joins the room as a client of its own
//! form (see `wire::Mode::WebSocket`); any other request gets 404 or 405.
//!
//! The sniffer hands over a connection whose first line is an HTTP request. Until
//! now such a request was always refused, so that a web page could not make a
//! browser post into the room by sending it a form; with the web routes that
//! protection is the Origin check of the upgrade (see `origin`), and `--no-web`
//! restores the plain refusal. A request head is read within a size limit and a
//! time limit, parsed by `httparse`; every answer but the upgrade closes the
//! connection, so one connection is one request and costs no keep-alive state.

mod frames;
mod http;
mod origin;
mod visits;

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use proto_core::PeerAddr;

pub(crate) use frames::{Discard, WsDecoder, WsError, WsEvent};
pub use origin::parse_origin;
pub(crate) use visits::Visits;

use crate::conn::{send_all, Conn};
use crate::context::Context;
use crate::refuse::refuse;
use http::{answer, head_error_status, read_head, response, switching, to_tls, Answer, Rules};

/// The chat page: HTML, CSS and JavaScript built into the binary, so the room works
/// on a network with no internet. The parts are kept in their own files to be
/// edited as what they are, and put together once.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("page/index.html")
        .replace("/* CHAT_CSS */", include_str!("page/chat.css"))
        .replace("/* CHAT_JS */", include_str!("page/chat.js"))
});

/// How long the 101 answer may take to go out.
const SWITCH_WAIT: Duration = Duration::from_secs(1);

/// How an HTTP request ended.
pub(crate) enum Served {
    /// Answered (the page or an error) and closed.
    Done,
    /// Upgraded: the connection is a WebSocket client now; these bytes followed
    /// the request head.
    Upgraded(Vec<u8>),
}

/// Answers the HTTP request that begins with `first` on `conn`.
pub(crate) fn serve(conn: &Conn, first: &[u8], peer: PeerAddr, ctx: &Context) -> Served {
    let config = &ctx.config;
    let Some((bytes, head_len)) = head_or_answer(conn, first, peer, ctx) else {
        return Served::Done;
    };
    let head = &bytes[..head_len];
    let rules = Rules {
        origins: &config.web_origins,
        // A page fetched over TLS has an https:// origin.
        secure: conn.is_tls(),
    };
    match answer(head, rules) {
        Answer::Page => {
            tracing::info!("{peer}: served the chat page");
            // The client's address, which a PROXY front forwards: the front's own
            // is every visitor's.
            ctx.visits.note(peer.socket_addr().ip(), Instant::now());
            refuse(conn, &response(200, "OK", &PAGE));
            Served::Done
        }
        Answer::Upgrade(accept) => {
            let deadline = Instant::now() + SWITCH_WAIT;
            if let Err(e) = send_all(conn, &switching(&accept), deadline) {
                tracing::info!("{peer}: WebSocket upgrade failed: {e}");
                return Served::Done;
            }
            Served::Upgraded(bytes[head_len..].to_vec())
        }
        Answer::Status(status, reason) => {
            let line = request_line(head);
            if status == 403 {
                // Nobody in the room hears of it: the page may not even know it tried.
                tracing::warn!("{peer}: WebSocket refused, 403: {}", origin_of(head));
            } else {
                tracing::info!("{peer}: HTTP {status} {reason} for {line:?}");
            }
            refuse(
                conn,
                &response(status, reason, &format!("{status} {reason}\n")),
            );
            Served::Done
        }
    }
}

/// Answers a plain HTTP request that begins with `first` on a server that takes TLS
/// only (`--tls-required`): a GET is sent to the same address over https, on the same
/// port (308), so a browser that typed `http://` comes back over TLS; anything else
/// gets 403 with the notice.
pub(crate) fn insist_on_tls(conn: &Conn, first: &[u8], peer: PeerAddr, ctx: &Context) {
    if let Some((bytes, head_len)) = head_or_answer(conn, first, peer, ctx) {
        refuse(conn, &to_tls(&bytes[..head_len]));
    }
}

/// Reads the request head that begins with `first`: the bytes read and the head's
/// length, or `None` when it could not be read (answered with 431, 400 or 408 if
/// the peer is still there).
fn head_or_answer(
    conn: &Conn,
    first: &[u8],
    peer: PeerAddr,
    ctx: &Context,
) -> Option<(Vec<u8>, usize)> {
    let config = &ctx.config;
    match read_head(conn, first, config.http_head_limit, config.http_timeout) {
        Ok(read) => Some(read),
        Err(e) => {
            if let Some((status, reason)) = head_error_status(e) {
                tracing::info!("{peer}: HTTP {status} {reason}");
                refuse(
                    conn,
                    &response(status, reason, &format!("{status} {reason}\n")),
                );
            }
            None
        }
    }
}

/// True when `first`, the first bytes of a connection (perhaps not a whole line),
/// begin an HTTP request.
pub(crate) fn is_request(first: &[u8]) -> bool {
    let line = first.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    proto_core::looks_like_http(line.trim_end_matches('\r'))
}

/// The answer to an HTTP request from a connection that is turned away (the
/// server is full, too many from one address, not on the allow list): 503 with the
/// notice's text.
pub(crate) fn unavailable(text: &str) -> Vec<u8> {
    response(503, "Service Unavailable", &format!("{text}\n"))
}

/// The first line of a head, for the log (cut short).
fn request_line(head: &[u8]) -> String {
    let line = head
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or(b"");
    String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned()
}

/// The `Origin` line of a head, for the log.
fn origin_of(head: &[u8]) -> String {
    String::from_utf8_lossy(head)
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("origin:"))
        .map_or_else(|| "no origin".into(), |l| l.chars().take(200).collect())
}
