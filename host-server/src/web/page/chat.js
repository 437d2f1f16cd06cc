"use strict";
// The chat page: one WebSocket to /ws of the server that served the page. Every
// line the room sends is shown as text (textContent, never HTML), in the form a
// terminal client sees it: "[PEER] TEXT" for a message, "*** TEXT" for a notice.
(() => {
  const log = document.getElementById("log");
  const state = document.getElementById("state");
  const form = document.getElementById("send");
  const input = document.getElementById("line");
  const me = document.getElementById("me");
  const jump = document.getElementById("jump");
  // An https page may only open wss://, so the scheme follows the page's.
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  const LIMIT = 1024; // bytes of UTF-8 in one message, the room's limit
  const KEEP = 2000; // messages kept on the page
  const encoder = new TextEncoder();
  let socket = null;
  let failures = 0;
  let timer = null;

  function setState(name, text) {
    document.body.dataset.state = name;
    state.textContent = text;
  }

  function atBottom() {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  }

  function show(row) {
    const follow = atBottom();
    log.append(row);
    while (log.childElementCount > KEEP) log.firstElementChild.remove();
    if (follow) {
      log.scrollTop = log.scrollHeight;
    } else {
      jump.hidden = false;
    }
  }

  function message(peer, text, kind) {
    const row = document.createElement("div");
    row.className = kind;
    const who = document.createElement("span");
    who.className = "peer";
    who.textContent = "[" + peer + "]";
    row.append(who, " ", text);
    show(row);
  }

  function note(text, kind) {
    const row = document.createElement("div");
    row.className = kind;
    row.textContent = text;
    show(row);
  }

  function received(line) {
    const broadcast = /^\[([^\]]*)\] ([\s\S]*)$/.exec(line);
    if (broadcast) return message(broadcast[1], broadcast[2], "message");
    const text = line.startsWith("*** ") ? line.slice(4) : line;
    const welcome = /^welcome, you are (\S+);/.exec(text);
    if (welcome) me.textContent = welcome[1];
    note("*** " + text, "notice");
  }

  function connect() {
    clearTimeout(timer);
    setState("connecting", failures ? "Reconnecting…" : "Connecting…");
    const ws = new WebSocket(url);
    socket = ws;
    ws.onopen = () => {
      failures = 0;
      setState("open", "Connected");
    };
    ws.onmessage = (event) => {
      if (typeof event.data === "string") received(event.data);
    };
    ws.onclose = () => {
      if (socket !== ws) return;
      socket = null;
      failures += 1;
      const seconds = Math.min(30, 2 ** Math.min(failures - 1, 5));
      setState("closed", "Disconnected. Reconnecting in " + seconds + " s (Enter retries now)");
      timer = setTimeout(connect, seconds * 1000);
    };
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!socket) {
      connect(); // what was typed stays in the input
      return;
    }
    if (socket.readyState !== WebSocket.OPEN || text.trim() === "") return;
    if (encoder.encode(text).length > LIMIT) {
      note("Not sent: a message holds at most " + LIMIT + " bytes.", "local");
      return;
    }
    socket.send(text);
    // The room does not echo a message to its sender.
    message(me.textContent + " (you)", text, "message mine");
    log.scrollTop = log.scrollHeight;
    input.value = "";
  });

  log.addEventListener("scroll", () => {
    if (atBottom()) jump.hidden = true;
  });
  jump.addEventListener("click", () => {
    log.scrollTop = log.scrollHeight;
    jump.hidden = true;
    input.focus();
  });

  connect();
})();
