//! Which pages may open a WebSocket to the room (cross-site WebSocket hijacking).
//!
//! A browser sends the `Origin` of the page that opens a WebSocket, and lets any
//! page open one to any server: without this check, every web page a user visits
//! could join a chat server on their LAN and post in their name. So an upgrade is
//! accepted only without an `Origin` (a tool such as websocat, not a browser), from
//! the server's own origin (the scheme of the connection, the host and port the
//! browser asked for in `Host`), or from an origin the operator added.

use super::http::Rules;

/// True when a page of `origin` may join, given the request's `host`.
pub(crate) fn allowed(origin: &str, host: &str, rules: Rules<'_>) -> bool {
    let origin = normalise(origin);
    let scheme = if rules.secure { "https" } else { "http" };
    origin == normalise(&format!("{scheme}://{host}")) || rules.origins.contains(&origin)
}

/// An origin in the form compared: lower case, no trailing slash, no default port.
pub(crate) fn normalise(origin: &str) -> String {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    for (scheme, port) in [("http://", ":80"), ("https://", ":443")] {
        if origin.starts_with(scheme) {
            if let Some(bare) = origin.strip_suffix(port) {
                return bare.to_string();
            }
        }
    }
    origin
}

/// Checks an origin given on the command line: `http://` or `https://`, a host and
/// an optional port, nothing after.
///
/// # Errors
/// A message saying what is wrong, for clap.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let origin = normalise(text);
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .ok_or_else(|| format!("{text}: an origin starts with http:// or https://"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "{text}: an origin is a scheme, a host and a port, as in http://chat.lan:9000"
        ));
    }
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(origins: &[String], secure: bool) -> Rules<'_> {
        Rules { origins, secure }
    }

    #[test]
    fn own_origin_follows_the_host_and_the_scheme() {
        let none = rules(&[], false);
        assert!(allowed("http://192.168.1.5:9000", "192.168.1.5:9000", none));
        assert!(allowed("http://chat.lan", "chat.lan:80", none));
        assert!(allowed("http://[::1]:9000", "[::1]:9000", none));
        assert!(!allowed(
            "http://192.168.1.5:9000",
            "192.168.1.6:9000",
            none
        ));
        assert!(!allowed("https://chat.lan:9000", "chat.lan:9000", none));
        assert!(allowed(
            "https://chat.lan:9000",
            "chat.lan:9000",
            rules(&[], true)
        ));
        assert!(!allowed(
            "http://chat.lan:9000",
            "chat.lan:9000",
            rules(&[], true)
        ));
    }

    #[test]
    fn added_origins_are_allowed_whatever_the_host() {
        let extra = [parse_origin("HTTP://Intranet.example/").unwrap()];
        assert_eq!(extra[0], "http://intranet.example");
        assert!(allowed(
            "http://intranet.example:80",
            "10.0.0.1:9000",
            rules(&extra, false)
        ));
        assert!(!allowed(
            "http://other.example",
            "10.0.0.1:9000",
            rules(&extra, false)
        ));
    }

    #[test]
    fn bad_origins_on_the_command_line_are_refused() {
        assert!(parse_origin("chat.lan:9000").is_err());
        assert!(parse_origin("http://").is_err());
        assert!(parse_origin("http://chat.lan/room").is_err());
        assert_eq!(
            parse_origin("https://chat.lan:443").unwrap(),
            "https://chat.lan"
        );
    }
}
