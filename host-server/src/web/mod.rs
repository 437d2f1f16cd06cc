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

use std::io::Write;
use std::net::TcpStream;
use std::sync::LazyLock;
use std::time::Instant;

use proto_core::PeerAddr;

pub(crate) use frames::{Discard, WsDecoder, WsError, WsEvent};
pub use origin::parse_origin;
pub(crate) use visits::Visits;

use crate::context::Context;
use crate::refuse::refuse;
use http::{answer, head_error_status, read_head, response, switching, Answer, Rules};

/// The chat page: HTML, CSS and JavaScript built into the binary, so the room works
/// on a network with no internet. The parts are kept in their own files to be
/// edited as what they are, and put together once.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    include_str!("page/index.html")
        .replace("/* CHAT_CSS */", include_str!("page/chat.css"))
        .replace("/* CHAT_JS */", include_str!("page/chat.js"))
});

/// How an HTTP request ended.
pub(crate) enum Served {
    /// Answered (the page or an error) and closed.
    Done,
    /// Upgraded: the connection is a WebSocket client now; these bytes followed
    /// the request head.
    Upgraded(Vec<u8>),
}

/// Answers the HTTP request that begins with `first` on `stream`.
pub(crate) fn serve(stream: &TcpStream, first: &[u8], peer: PeerAddr, ctx: &Context) -> Served {
    let config = &ctx.config;
    let (bytes, head_len) =
        match read_head(stream, first, config.http_head_limit, config.http_timeout) {
            Ok(read) => read,
            Err(e) => {
                if let Some((status, reason)) = head_error_status(e) {
                    tracing::info!("{peer}: HTTP {status} {reason}");
                    refuse(
                        stream,
                        &response(status, reason, &format!("{status} {reason}\n")),
                    );
                }
                return Served::Done;
            }
        };
    let head = &bytes[..head_len];
    let rules = Rules {
        origins: &config.web_origins,
        secure: false,
    };
    match answer(head, rules) {
        Answer::Page => {
            tracing::info!("{peer}: served the chat page");
            if let Ok(addr) = stream.peer_addr() {
                ctx.visits.note(addr.ip(), Instant::now());
            }
            refuse(stream, &response(200, "OK", &PAGE));
            Served::Done
        }
        Answer::Upgrade(accept) => {
            let mut s = stream;
            if let Err(e) = s.write_all(&switching(&accept)) {
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
                stream,
                &response(status, reason, &format!("{status} {reason}\n")),
            );
            Served::Done
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
