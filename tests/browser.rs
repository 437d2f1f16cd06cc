//! The chat page in a real browser: Debian's headless Chromium driven through
//! chromedriver with the W3C WebDriver protocol (JSON over HTTP, by `ureq`), in one
//! room with an `nc`-like text client.
//!
//! One browser serves the whole scenario (two tabs, then a page of another
//! origin), because starting Chromium is most of the cost; one more loads the page
//! over TLS, and one more walks the page by keyboard alone and scrolls it (a fresh
//! page, so that the focus starts where a user's does). `.ci/run` installs
//! `chromium` and `chromium-driver`.
//!
//! `UPDATE_SCREENSHOT=1` saves the screenshot of the chat to `docs/browser.png`
//! (otherwise to the target directory, so a run leaves the tree clean).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::util::{free_port, Server, TextClient};

/// chromedriver's key for an element reference (W3C WebDriver, 12.1).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The Enter key in WebDriver's key codes.
const ENTER: &str = "\u{E007}";

/// The Tab key in WebDriver's key codes.
const TAB: &str = "\u{E004}";

/// How long the browser may take to start or to show something.
const BROWSER_WAIT: Duration = Duration::from_secs(30);

/// A chromedriver process and one browser session in it; both end on drop.
struct Browser {
    driver: Child,
    agent: ureq::Agent,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    _profile: TempDir,
}

/// A directory removed on drop: a fresh Chromium profile.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.session).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// A browser with the usual flags and `extra` ones.
    fn start(extra: &[&str]) -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; .ci/run installs it)");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(BROWSER_WAIT))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + BROWSER_WAIT;
        while agent.get(&format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            thread::sleep(Duration::from_millis(50));
        }
        let profile = std::env::temp_dir().join(format!("chat-browser-{port}"));
        // Without the background-networking flags, Chromium reaches for the internet
        // at start, which a closed network answers slowly or not at all.
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=760,560",
        ];
        let mut args: Vec<String> = args.iter().chain(extra).map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
        }}});
        let mut browser = Self {
            driver,
            agent,
            session: String::new(),
            _profile: TempDir(profile),
        };
        let value = browser.call("POST", &format!("{base}/session"), Some(caps));
        let id = value["sessionId"].as_str().expect("a session id");
        browser.session = format!("{base}/session/{id}");
        browser
    }

    /// One WebDriver command; its `value`, or a panic with the error.
    fn call(&self, method: &str, url: &str, body: Option<Value>) -> Value {
        let reply = self.try_call(method, url, body);
        assert!(reply.get("error").is_none(), "{method} {url}: {reply}");
        reply
    }

    fn try_call(&self, method: &str, url: &str, body: Option<Value>) -> Value {
        let response = match (method, body) {
            ("GET", _) => self.agent.get(url).call(),
            ("DELETE", _) => self.agent.delete(url).call(),
            (_, body) => self.agent.post(url).send_json(body.unwrap_or(json!({}))),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let reply: Value = response.body_mut().read_json().expect("a JSON reply");
        reply["value"].clone()
    }

    fn post(&self, path: &str, body: Value) -> Value {
        self.call("POST", &format!("{}{path}", self.session), Some(body))
    }

    fn open(&self, url: &str) {
        self.post("/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body) in the page; its return value.
    fn js(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Waits until `script` returns true in the page.
    fn wait_for(&self, what: &str, script: &str) {
        let deadline = Instant::now() + BROWSER_WAIT;
        while self.js(script) != json!(true) {
            assert!(Instant::now() < deadline, "the page never showed {what}");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `text` into the message input, as keys.
    fn type_keys(&self, text: &str) {
        let found = self.post(
            "/element",
            json!({"using": "css selector", "value": "#line"}),
        );
        let id = found[ELEMENT].as_str().expect("the input").to_string();
        self.post(&format!("/element/{id}/value"), json!({ "text": text }));
    }

    /// Presses and releases each key of `keys` in turn, as a keyboard does, into
    /// whatever has the focus (WebDriver's actions, not an element's value).
    fn press(&self, keys: &str) {
        let actions: Vec<Value> = keys
            .chars()
            .flat_map(|key| {
                let key = key.to_string();
                [
                    json!({"type": "keyDown", "value": key}),
                    json!({"type": "keyUp", "value": key}),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        );
    }

    /// A new tab, switched to; returns the handle of the one before.
    fn new_tab(&self) -> String {
        let before = self.tab();
        let tab = self.post("/window/new", json!({"type": "tab"}));
        self.post("/window", json!({"handle": tab["handle"]}));
        before
    }

    /// The handle of the current tab.
    fn tab(&self) -> String {
        let current = self.call("GET", &format!("{}/window", self.session), None);
        current.as_str().unwrap().to_string()
    }

    fn switch_to(&self, handle: &str) {
        self.post("/window", json!({ "handle": handle }));
    }

    /// Whether an alert is open.
    fn alert_open(&self) -> bool {
        let reply = self.try_call("GET", &format!("{}/alert/text", self.session), None);
        reply.get("error").is_none()
    }

    fn screenshot(&self) -> Vec<u8> {
        let png = self.call("GET", &format!("{}/screenshot", self.session), None);
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64"))
            .expect("a PNG")
    }
}

/// The rows of the page's log, as text.
const ROWS: &str = "return [...document.querySelectorAll('#log > div')].map(d => d.textContent);";

/// Waits until the page shows a row equal to `row`.
fn wait_row(browser: &Browser, row: &str) {
    let script = format!(
        "return [...document.querySelectorAll('#log > div')].some(d => d.textContent === {});",
        json!(row)
    );
    browser.wait_for(&format!("the row {row:?}"), &script);
}

/// Opens the chat page in the current tab; the page's own address once connected.
fn join(browser: &Browser, addr: SocketAddr) -> String {
    join_at(browser, &format!("http://{addr}/"))
}

/// Opens the chat page at `url` in the current tab; the page's own address once
/// connected.
fn join_at(browser: &Browser, url: &str) -> String {
    browser.open(url);
    browser.wait_for(
        "the connected state and the welcome",
        "return document.body.dataset.state === 'open' \
         && document.getElementById('me').textContent.includes(':');",
    );
    browser
        .js("return document.getElementById('me').textContent;")
        .as_str()
        .unwrap()
        .to_string()
}

/// Serves one page, of its own origin, whose script tries to join the room at
/// `room`; the page shows what happened in its title.
fn serve_foreign_page(room: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let page = format!(
        "<!doctype html><title>trying</title><script>\
         const ws = new WebSocket('ws://{room}/ws');\
         ws.onopen = () => {{ document.title = 'joined'; ws.send('posted by another site'); }};\
         ws.onclose = (e) => {{ if (document.title !== 'joined') document.title = 'refused'; }};\
         </script>"
    );
    thread::spawn(move || {
        // The page, then a 404 for the favicon the browser may ask for.
        for stream in listener.incoming().take(2) {
            let Ok(mut stream) = stream else { return };
            let mut head = [0u8; 4096];
            let n = stream.read(&mut head).unwrap_or(0);
            let (status, body) = match head[..n].starts_with(b"GET / ") {
                true => ("200 OK", page.as_str()),
                false => ("404 Not Found", ""),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// Asserts that the next line `nc` hears is `want`, after any joins and leaves of
/// others: whether Chromium's spare connections join (they must not; see
/// `--web-spare-wait-ms`) is checked once, from the server's log, at the end.
fn hears(nc: &mut TextClient, want: &str) {
    let line = nc.expect(|l| l == want || !(l.ends_with(" joined") || l.contains(" left")));
    assert_eq!(line, want);
}

#[test]
fn two_pages_and_nc_chat_safely_and_the_page_shows_a_close() {
    let mut server = Server::start(&[]);
    let mut nc = TextClient::connect(server.addr);
    nc.expect(|l| l.starts_with("*** welcome"));
    let browser = Browser::start(&[]);

    let a = join(&browser, server.addr);
    hears(&mut nc, &format!("*** {a} joined"));
    let tab_a = browser.new_tab();
    let b = join(&browser, server.addr);
    let tab_b = browser.tab();
    hears(&mut nc, &format!("*** {b} joined"));
    // The welcome names the others (spare connections of Chromium's may be among them).
    browser.wait_for(
        "the welcome naming the others",
        &format!(
            "return [...document.querySelectorAll('#log > div')].some(d => \
             d.textContent.startsWith('*** welcome, you are {b};') \
             && d.textContent.includes('{}') && d.textContent.includes('{a}'));",
            nc.peer()
        ),
    );

    // B to A and nc; nc to both; A to B and nc.
    browser.type_keys(&format!("hello from B{ENTER}"));
    hears(&mut nc, &format!("[{b}] hello from B"));
    wait_row(&browser, &format!("[{b} (you)] hello from B"));
    nc.write(b"hello from nc\n");
    wait_row(&browser, &format!("[{}] hello from nc", nc.peer()));
    browser.switch_to(&tab_a);
    wait_row(&browser, &format!("[{b}] hello from B"));
    wait_row(&browser, &format!("[{}] hello from nc", nc.peer()));
    browser.type_keys(&format!("hello from A{ENTER}"));
    hears(&mut nc, &format!("[{a}] hello from A"));
    wait_row(&browser, &format!("[{a} (you)] hello from A"));
    browser.switch_to(&tab_b);
    wait_row(&browser, &format!("[{a}] hello from A"));
    browser.switch_to(&tab_a);

    // A line typed half-way stays while messages arrive.
    browser.type_keys("half a li");
    for i in 0..3 {
        nc.write(format!("interruption {i}\n").as_bytes());
    }
    wait_row(&browser, &format!("[{}] interruption 2", nc.peer()));
    let input = browser.js("const i = document.getElementById('line'); \
         return [i.value, document.activeElement === i];");
    assert_eq!(input, json!(["half a li", true]));
    browser.type_keys(&format!("ne{ENTER}"));
    hears(&mut nc, &format!("[{a}] half a line"));

    // HTML from the room is shown as text and runs nothing.
    let html = "<img src=x onerror=alert(1)>";
    nc.write(format!("{html}\n").as_bytes());
    wait_row(&browser, &format!("[{}] {html}", nc.peer()));
    let images = browser.js("return document.querySelectorAll('img').length;");
    assert_eq!(images, json!(0), "the message became an element");
    assert!(!browser.alert_open(), "the message's script ran");

    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let out = match std::env::var_os("UPDATE_SCREENSHOT") {
        Some(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/browser.png"),
        None => std::env::temp_dir().join("chat-browser.png"),
    };
    std::fs::write(&out, png).unwrap();
    eprintln!("screenshot: {}", out.display());

    // A page of another origin cannot join, and nobody hears of it.
    let foreign = serve_foreign_page(server.addr);
    browser.new_tab();
    browser.open(&format!("http://{foreign}/"));
    browser.wait_for("the refusal", "return document.title === 'refused';");
    server.proc.err.expect("the 403 in the log", |l| {
        l.contains("403") && l.contains(&foreign.to_string())
    });
    browser.call("DELETE", &format!("{}/window", browser.session), None);
    browser.switch_to(&tab_a);
    // The next message nc hears is A's: no message from the other site.
    browser.type_keys(&format!("after the foreign page{ENTER}"));
    hears(&mut nc, &format!("[{a}] after the foreign page"));
    let websockets = server.proc.err.all();
    let joined: Vec<_> = websockets
        .iter()
        .filter(|l| l.contains("joined (websocket"))
        .collect();
    assert_eq!(joined.len(), 2, "{joined:#?}");
    // Chromium's silent spare connections were waited on, not announced as text
    // clients: nc is the one text client that joined.
    let texts = websockets
        .iter()
        .filter(|l| l.contains("joined (text"))
        .count();
    assert_eq!(texts, 1, "{websockets:#?}");
    let heard = browser.js(ROWS);
    assert!(!heard.to_string().contains("another site"), "{heard}");

    // A phone's width: nothing sticks out sideways, the input and Send stay in view.
    browser.post("/window/rect", json!({"width": 390, "height": 740}));
    let fits = browser.js(
        "const send = document.querySelector('button[type=submit]').getBoundingClientRect(); \
         const line = document.getElementById('line').getBoundingClientRect(); \
         return [innerWidth <= 420, document.documentElement.scrollWidth <= innerWidth, \
                 send.right <= innerWidth, send.bottom <= innerHeight, line.width >= 150];",
    );
    assert_eq!(fits, json!([true, true, true, true, true]));

    // The server's close: the page says it is disconnected (and will retry).
    server.proc.send("close");
    browser.wait_for(
        "the disconnected state",
        "return document.body.dataset.state === 'closed' \
         && document.getElementById('state').textContent.startsWith('Disconnected');",
    );
    assert!(nc.closed());

    // A server on the same address again: the page reconnects by itself, says so,
    // and what was typed meanwhile is still there.
    browser.type_keys("typed while away");
    assert!(server.proc.wait_exit(Duration::from_secs(10)).success());
    let again = Server::start_on(&server.addr.to_string(), &[]);
    browser.wait_for(
        "the reconnection",
        "return document.body.dataset.state === 'open' \
         && document.getElementById('state').textContent === 'Connected';",
    );
    let me = browser.js("return document.getElementById('me').textContent;");
    // (Chromium's spare connections to the new server may be in the room already.)
    let welcome = format!("*** welcome, you are {};", me.as_str().unwrap());
    browser.wait_for(
        "the new welcome",
        &format!(
            "return [...document.querySelectorAll('#log > div')].some(d => \
             d.textContent.startsWith({}));",
            json!(welcome)
        ),
    );
    let value = browser.js("return document.getElementById('line').value;");
    assert_eq!(value, json!("typed while away"));
    drop(again);
}

#[test]
fn the_page_follows_the_systems_dark_mode() {
    let server = Server::start(&[]);
    // The page's colours, and their contrast, in the light (default) and dark schemes.
    let colours = "const s = getComputedStyle(document.body); \
                   return [matchMedia('(prefers-color-scheme: dark)').matches, \
                           s.backgroundColor, s.color];";
    let mut seen = Vec::new();
    for flags in [&[][..], &["--force-dark-mode"][..]] {
        let browser = Browser::start(flags);
        join(&browser, server.addr);
        seen.push(browser.js(colours));
    }
    assert_eq!(
        seen[0],
        json!([false, "rgb(253, 253, 252)", "rgb(27, 27, 27)"])
    );
    assert_eq!(
        seen[1],
        json!([true, "rgb(22, 22, 22)", "rgb(232, 232, 230)"])
    );
}

/// Issue 19 with issue 20: the page from a server with built-in TLS, at
/// `https://`, joins over `wss://` by itself (a self-signed certificate, accepted
/// as a user would, by `--ignore-certificate-errors`).
#[test]
fn the_page_over_https_joins_the_room_over_wss() {
    let dir = crate::tls::certificate("browser");
    let server = crate::tls::tls_server(&dir, &[]);
    let mut nc = TextClient::connect(server.addr);
    nc.expect(|l| l.starts_with("*** welcome"));
    let browser = Browser::start(&["--ignore-certificate-errors"]);
    let me = join_at(&browser, &format!("https://{}/", server.addr));
    hears(&mut nc, &format!("*** {me} joined"));
    browser.type_keys(&format!("over wss{ENTER}"));
    hears(&mut nc, &format!("[{me}] over wss"));
    nc.write(b"over plain text\n");
    wait_row(&browser, &format!("[{}] over plain text", nc.peer()));
    server.proc.err.expect("the page's join over TLS", |l| {
        l.contains(&format!("{me} joined (websocket over TLS"))
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// The focused element, as its id (its text, for a button without one; `BODY` when
/// no control has the focus), and whether its focus can be seen (an outline or a shadow).
const FOCUS: &str = "const e = document.activeElement; \
     const s = getComputedStyle(e); \
     const ring = (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) \
                  || s.boxShadow !== 'none'; \
     return [e === document.body ? 'BODY' : e.id || e.textContent.trim(), ring];";

/// Whether the message list is scrolled to its end, and where it is.
const LOG_END: &str = "const l = document.getElementById('log'); \
     return [l.scrollTop + l.clientHeight >= l.scrollHeight - 2, l.scrollTop];";

/// The page's promises of issue 20: usable with the keyboard alone, and it follows
/// new messages unless one scrolled up, offering a way back down.
#[test]
fn the_page_works_by_keyboard_and_follows_new_messages_unless_scrolled_up() {
    let server = Server::start(&[]);
    let mut nc = TextClient::connect(server.addr);
    nc.expect(|l| l.starts_with("*** welcome"));
    let browser = Browser::start(&[]);
    let me = join(&browser, server.addr);
    hears(&mut nc, &format!("*** {me} joined"));

    // A fresh page has the focus in the input, so one can type at once; Tab walks
    // Send, the message list (to scroll it by keys) and back to the input, each
    // with its focus in view. Tabbing past Send may leave the page for a step
    // (the body has the focus then): that step is not a control and is skipped.
    assert_eq!(browser.js(FOCUS), json!(["line", true]));
    let mut walk = Vec::new();
    for _ in 0..4 {
        browser.press(TAB);
        let focus = browser.js(FOCUS);
        if focus[0] != json!("BODY") {
            walk.push(focus);
        }
    }
    assert_eq!(
        walk[..3],
        [
            json!(["Send", true]),
            json!(["log", true]),
            json!(["line", true])
        ],
        "{walk:?}"
    );
    // Typing and Enter send; so do typing, Tab to Send and Enter.
    browser.press(&format!("by keys alone{ENTER}"));
    hears(&mut nc, &format!("[{me}] by keys alone"));
    browser.press(&format!("by the Send button{TAB}{ENTER}"));
    hears(&mut nc, &format!("[{me}] by the Send button"));
    assert_eq!(browser.js(FOCUS), json!(["Send", true]));

    // More lines than the list shows: it follows them to the end.
    let lines: String = (0..60).map(|i| format!("filler {i}\n")).collect();
    nc.write(lines.as_bytes());
    wait_row(&browser, &format!("[{}] filler 59", nc.peer()));
    let end = browser.js(LOG_END);
    assert_eq!(end[0], json!(true), "not at the end after 60 lines: {end}");
    assert!(
        end[1].as_f64() > Some(0.0),
        "the list did not overflow: {end}"
    );

    // Scrolled up, new lines leave the list where it is and offer "New messages".
    browser.js("document.getElementById('log').scrollTop = 0;");
    let jump = "return !document.getElementById('jump').hidden;";
    assert_eq!(browser.js(jump), json!(false));
    nc.write(b"while reading old ones\n");
    wait_row(&browser, &format!("[{}] while reading old ones", nc.peer()));
    assert_eq!(browser.js(LOG_END), json!([false, 0]));
    assert_eq!(browser.js(jump), json!(true), "no 'New messages' control");

    // By keys: from the list, Tab reaches the control, and Enter on it goes to
    // the end and back to the input.
    browser.js("document.getElementById('log').focus();");
    browser.press(TAB);
    let focus = browser.js(FOCUS);
    assert_eq!(focus, json!(["jump", true]));
    browser.press(ENTER);
    assert_eq!(browser.js(LOG_END)[0], json!(true), "Enter did not go down");
    assert_eq!(browser.js(jump), json!(false));
    assert_eq!(browser.js(FOCUS)[0], json!("line"));
}
