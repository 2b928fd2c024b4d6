/* fixbot web chat: talks to the JSON API (see /openapi.yaml), keeps the
   conversation key in localStorage, and builds every message from DOM nodes
   and textContent, so nothing anyone typed can become markup. */
(function () {
  "use strict";

  var STORAGE_KEY = "fixbot.conversation";
  var API = "api/v1/";
  var log = document.getElementById("log");
  var chat = log.parentNode;
  var statusLine = document.getElementById("status");
  var form = document.getElementById("composer");
  var input = document.getElementById("message");
  var sendButton = document.getElementById("send");
  var token = null;
  var cursor = 0;
  var shown = new Set();
  var busy = false;

  if (window.self !== window.top) document.documentElement.classList.add("embedded");

  // Third-party iframes may have no storage; the chat then lasts as long as the page.
  function loadToken() {
    try { return window.localStorage.getItem(STORAGE_KEY); } catch (error) { return null; }
  }
  function saveToken(value) {
    try { window.localStorage.setItem(STORAGE_KEY, value); } catch (error) { /* kept in memory only */ }
  }

  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  async function call(method, path, body) {
    var headers = { "Accept": "application/json" };
    if (token) headers["Authorization"] = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    var response = await fetch(API + path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit"
    });
    var data = {};
    try { data = await response.json(); } catch (error) { /* not JSON: an outage page */ }
    return { status: response.status, data: data };
  }

  async function startConversation() {
    var answer = await call("POST", "conversations");
    if (answer.status !== 201) throw new Error(answer.data.error || "The chat is not available right now.");
    token = answer.data.token;
    saveToken(token);
    cursor = 0;
    shown.clear();
  }

  function say(text) { statusLine.textContent = text || ""; }

  function renderSpan(span) {
    var node;
    if (span.style === "bold") node = document.createElement("strong");
    else if (span.style === "code") node = document.createElement("code");
    else if (span.style === "link" && /^https?:\/\//i.test(span.href || "")) {
      node = document.createElement("a");
      node.href = span.href;
      node.target = "_blank";
      node.rel = "noopener noreferrer";
    } else return document.createTextNode(span.text);
    node.textContent = span.text;
    return node;
  }

  function retireChoices() {
    log.querySelectorAll(".choices button").forEach(function (button) { button.disabled = true; });
  }

  function renderEvent(event) {
    var fromBot = event.from === "bot";
    var item = document.createElement("li");
    item.className = "message " + (fromBot ? "bot" : "visitor");
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = fromBot ? "Help desk bot" : "You";
    item.appendChild(who);
    var body = document.createElement("div");
    body.className = "body";
    event.body.forEach(function (span) { body.appendChild(renderSpan(span)); });
    item.appendChild(body);
    if (event.choices.length) {
      retireChoices();
      var group = document.createElement("div");
      group.className = "choices";
      group.setAttribute("role", "group");
      group.setAttribute("aria-label", "Answers");
      event.choices.forEach(function (choice) {
        var button = document.createElement("button");
        button.type = "button";
        button.textContent = choice.label;
        button.addEventListener("click", function () {
          group.querySelectorAll("button").forEach(function (other) { other.disabled = true; });
          button.classList.add("chosen");
          send({ choice: choice.ref });
        });
        group.appendChild(button);
      });
      item.appendChild(group);
    }
    log.appendChild(item);
  }

  function accept(batch) {
    // A cursor going back means the server restarted and numbers afresh.
    if (batch.cursor < cursor) shown.clear();
    cursor = batch.cursor;
    batch.events.forEach(function (event) {
      if (shown.has(event.id)) return;
      shown.add(event.id);
      renderEvent(event);
    });
    chat.scrollTop = chat.scrollHeight;
  }

  function setBusy(value) {
    busy = value;
    sendButton.disabled = value;
    log.setAttribute("aria-busy", value ? "true" : "false");
  }

  async function send(body) {
    if (busy) return;
    setBusy(true);
    say("");
    try {
      if (!token) await startConversation();
      var answer = await call("POST", "messages", body);
      if (answer.status === 401) {
        await startConversation();
        answer = await call("POST", "messages", body);
      }
      if (answer.status === 200) accept(answer.data);
      else say(answer.data.error || "Something went wrong. Please try again.");
    } catch (error) {
      say("The help desk cannot be reached. Check the connection and try again.");
    } finally {
      setBusy(false);
    }
  }

  async function poll() {
    for (;;) {
      if (!token) { await sleep(1000); continue; }
      try {
        var answer = await call("GET", "events?after=" + cursor);
        if (answer.status === 200) accept(answer.data);
        else await sleep(3000);
      } catch (error) {
        await sleep(3000);
      }
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    if (!text.trim()) { say("Type or paste something first."); input.focus(); return; }
    input.value = "";
    send({ text: text }).then(function () { input.focus(); });
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  document.getElementById("restart").addEventListener("click", function () { send({ command: "restart" }); });
  document.getElementById("human").addEventListener("click", function () { send({ command: "human" }); });

  async function boot() {
    token = loadToken();
    if (token) {
      try {
        var history = await call("GET", "events?after=0&wait=0");
        if (history.status === 200 && history.data.events.length) {
          accept(history.data);
          poll();
          return;
        }
        if (history.status === 401) token = null;
      } catch (error) { /* start afresh below */ }
    }
    // A new visitor, or a server that no longer holds the history: "start"
    // greets, or shows where an open case stands.
    await send({ command: "start" });
    poll();
  }

  input.focus();
  boot();
})();
