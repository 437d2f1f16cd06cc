//! The HTTP side of the web routes: reading a request head within a bound and a
//! time, parsing it with `httparse`, and deciding the answer (a pure function of the
//! head and the settings, tested alone).

use std::time::{Duration, Instant};

use tungstenite::handshake::derive_accept_key;

use crate::conn::Conn;
use crate::sys::is_transient;

/// Most header lines a request may have; a browser sends about 15.
const MAX_HEADERS: usize = 64;

/// Why no request head could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Longer than the limit, or too many header lines (431).
    TooLarge,
    /// Not HTTP/1.x (400).
    Malformed,
    /// Not complete within the time allowed (408).
    TooSlow,
    /// The peer closed, or the connection failed: nobody to answer.
    Gone,
}

/// Reads a request head that begins with `first` (the bytes the sniffer read) from
/// `conn` (plaintext, so over TLS too), at most `limit` bytes within `timeout`. Returns the bytes read and the
/// length of the head within them (anything after it is the client's next bytes).
pub(crate) fn read_head(
    conn: &Conn,
    first: &[u8],
    limit: usize,
    timeout: Duration,
) -> Result<(Vec<u8>, usize), HeadError> {
    let deadline = Instant::now() + timeout;
    let mut bytes = first.to_vec();
    let mut chunk = [0u8; 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        match httparse::Request::new(&mut headers).parse(&bytes) {
            // The sniff may have read a whole head longer than the limit at once.
            Ok(httparse::Status::Complete(n)) if n > limit => return Err(HeadError::TooLarge),
            Ok(httparse::Status::Complete(n)) => return Ok((bytes, n)),
            Ok(httparse::Status::Partial) if bytes.len() >= limit => {
                return Err(HeadError::TooLarge)
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Malformed),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::TooSlow);
        }
        conn.tcp()
            .set_read_timeout(Some(left))
            .map_err(|_| HeadError::Gone)?;
        let room = (limit + 1).saturating_sub(bytes.len()).min(chunk.len());
        match conn.read(&mut chunk[..room]) {
            Ok(0) => return Err(HeadError::Gone),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if is_transient(&e) => {}
            Err(_) => return Err(HeadError::Gone),
        }
    }
}

/// What the web settings allow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules<'a> {
    /// Origins allowed besides the server's own (`--web-origin`), normalised.
    pub(crate) origins: &'a [String],
    /// The connection arrived over TLS, so the page's origin is `https://`.
    pub(crate) secure: bool,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 200 with the chat page.
    Page,
    /// 101: the connection becomes a WebSocket client; the `Sec-WebSocket-Accept`.
    Upgrade(String),
    /// An error status with a short reason, and the connection closed.
    Status(u16, &'static str),
}

/// Decides the answer to the request in `head` (a complete head, as
/// [`read_head`] returns it).
pub(crate) fn answer(head: &[u8], rules: Rules<'_>) -> Answer {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return Answer::Status(400, "Bad Request");
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let path = req.path.unwrap_or("");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let method = req.method.unwrap_or("");
    match (path, method) {
        ("/", "GET") => return Answer::Page,
        ("/ws", "GET") => {}
        ("/" | "/ws", _) => return Answer::Status(405, "Method Not Allowed"),
        _ => return Answer::Status(404, "Not Found"),
    }
    // A page of another site may not make the visitor's browser join (see `origin`).
    let Some(host) = header("host") else {
        return Answer::Status(400, "Bad Request");
    };
    if let Some(origin) = header("origin") {
        if !super::origin::allowed(origin, host, rules) {
            return Answer::Status(403, "Forbidden");
        }
    }
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Answer::Status(426, "Upgrade Required");
    }
    if header("sec-websocket-version").map(str::trim) != Some("13") {
        return Answer::Status(426, "Upgrade Required");
    }
    match header("sec-websocket-key").map(str::trim) {
        Some(key) if !key.is_empty() => Answer::Upgrade(derive_accept_key(key.as_bytes())),
        _ => Answer::Status(400, "Bad Request"),
    }
}

/// The answer to a plain request on a server that takes TLS only: for a GET or HEAD
/// with a usable `Host`, 308 to the same host, port and path over https; 403
/// otherwise. Both say why in their text.
pub(crate) fn to_tls(head: &[u8]) -> Vec<u8> {
    const NOTICE: &str = "this server takes TLS connections only";
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = matches!(req.parse(head), Ok(httparse::Status::Complete(_)));
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
        // A host name or address and a port: nothing that could end the URL's
        // authority and send the browser elsewhere.
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let path = req.path.filter(|p| p.starts_with('/'));
    match (parsed, req.method, host, path) {
        (true, Some("GET" | "HEAD"), Some(host), Some(path)) => {
            let location = format!("https://{host}{path}");
            let body = format!("{NOTICE}: {location}\n");
            with_headers(
                308,
                "Permanent Redirect",
                &body,
                &format!("Location: {location}\r\n"),
            )
        }
        _ => response(403, "Forbidden", &format!("{NOTICE}; connect with TLS\n")),
    }
}

/// The bytes of an answer other than an upgrade: the head and `body`, the page
/// (HTML) for a 200, plain text otherwise.
pub(crate) fn response(status: u16, reason: &str, body: &str) -> Vec<u8> {
    with_headers(status, reason, body, "")
}

/// [`response`] with `extra` header lines (each ending in CRLF).
fn with_headers(status: u16, reason: &str, body: &str, extra: &str) -> Vec<u8> {
    let kind = match status {
        200 => "text/html; charset=utf-8",
        _ => "text/plain; charset=utf-8",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\n",
        body.len()
    );
    match status {
        // The page loads nothing from anywhere; it only talks to this server.
        200 => head.push_str(
            "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; \
             script-src 'unsafe-inline'; connect-src 'self'; img-src data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n",
        ),
        405 => head.push_str("Allow: GET\r\n"),
        426 => head.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"),
        _ => {}
    }
    head.push_str(extra);
    head.push_str("Connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// The 101 answer that makes the connection a WebSocket: no subprotocol and no
/// extension (so no compression, and no decompression bomb).
pub(crate) fn switching(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// The status (and reason) that answers a head that could not be read; `None`
/// when the peer is gone and there is nobody to answer.
pub(crate) fn head_error_status(e: HeadError) -> Option<(u16, &'static str)> {
    match e {
        HeadError::TooLarge => Some((431, "Request Header Fields Too Large")),
        HeadError::Malformed => Some((400, "Bad Request")),
        HeadError::TooSlow => Some((408, "Request Timeout")),
        HeadError::Gone => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn upgrade(extra: &str) -> String {
        format!(
            "GET /ws HTTP/1.1\r\nHost: localhost:9000\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn ask(head: &str) -> Answer {
        let origins = ["http://chat.example:8080".to_string()];
        answer(
            head.as_bytes(),
            Rules {
                origins: &origins,
                secure: false,
            },
        )
    }

    #[test]
    fn the_two_routes_and_the_rest() {
        assert_eq!(ask("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), Answer::Page);
        assert_eq!(ask("GET /?x=1 HTTP/1.0\r\n\r\n"), Answer::Page);
        assert_eq!(
            ask("POST / HTTP/1.1\r\n\r\n"),
            Answer::Status(405, "Method Not Allowed")
        );
        assert_eq!(
            ask("PUT /ws HTTP/1.1\r\n\r\n"),
            Answer::Status(405, "Method Not Allowed")
        );
        assert_eq!(
            ask("GET /favicon.ico HTTP/1.1\r\n\r\n"),
            Answer::Status(404, "Not Found")
        );
    }

    #[test]
    fn an_upgrade_gets_the_accept_key_of_rfc_6455() {
        // The example of RFC 6455, section 1.3.
        let want = Answer::Upgrade("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into());
        assert_eq!(ask(&upgrade("")), want);
        assert_eq!(ask(&upgrade("Origin: http://localhost:9000\r\n")), want);
        assert_eq!(ask(&upgrade("Origin: HTTP://LOCALHOST:9000\r\n")), want);
        assert_eq!(ask(&upgrade("Origin: http://chat.example:8080\r\n")), want);
    }

    #[test]
    fn another_origin_is_forbidden() {
        let forbidden = Answer::Status(403, "Forbidden");
        assert_eq!(ask(&upgrade("Origin: http://evil.example\r\n")), forbidden);
        assert_eq!(
            ask(&upgrade("Origin: http://localhost:9001\r\n")),
            forbidden
        );
        assert_eq!(
            ask(&upgrade("Origin: https://localhost:9000\r\n")),
            forbidden
        );
        assert_eq!(ask(&upgrade("Origin: null\r\n")), forbidden);
    }

    #[test]
    fn a_plain_get_or_another_version_is_told_to_upgrade() {
        assert_eq!(
            ask("GET /ws HTTP/1.1\r\nHost: h\r\n\r\n"),
            Answer::Status(426, "Upgrade Required")
        );
        let v8 = upgrade("").replace("Version: 13", "Version: 8");
        assert_eq!(ask(&v8), Answer::Status(426, "Upgrade Required"));
        let no_key = upgrade("").replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), "");
        assert_eq!(ask(&no_key), Answer::Status(400, "Bad Request"));
    }

    #[test]
    fn a_plain_get_on_a_tls_only_server_is_sent_to_https() {
        let answer = |head: &str| String::from_utf8(to_tls(head.as_bytes())).unwrap();
        let get = answer("GET /?x=1 HTTP/1.1\r\nHost: chat.lan:9000\r\n\r\n");
        assert!(
            get.starts_with("HTTP/1.1 308 Permanent Redirect\r\n"),
            "{get}"
        );
        assert!(
            get.contains("\r\nLocation: https://chat.lan:9000/?x=1\r\n"),
            "{get}"
        );
        for head in [
            "POST / HTTP/1.1\r\nHost: chat.lan\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: evil.example/x?\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a@evil.example\r\n\r\n",
        ] {
            let other = answer(head);
            assert!(other.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{other}");
            assert!(!other.contains("Location"), "{other}");
        }
    }

    #[test]
    fn responses_carry_their_length_and_close() {
        let bytes = String::from_utf8(response(404, "Not Found", "404 Not Found\n")).unwrap();
        assert!(bytes.starts_with("HTTP/1.1 404 Not Found\r\n"), "{bytes}");
        assert!(bytes.contains("Content-Length: 14\r\n"), "{bytes}");
        assert!(
            bytes.ends_with("Connection: close\r\n\r\n404 Not Found\n"),
            "{bytes}"
        );
        let page = String::from_utf8(response(200, "OK", "<p>hi</p>")).unwrap();
        assert!(page.contains("Content-Length: 9\r\n") && page.ends_with("<p>hi</p>"));
    }
}
