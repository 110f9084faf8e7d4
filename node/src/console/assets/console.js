// Flotilla console: follows the cluster's events and keeps the page current without a reload.
//
// The page says which events it follows (data-events), which region to refresh when one
// arrives (data-live), the cluster's members (data-members) and the session's CSRF value
// (data-csrf). The stream resumes from the last event id it saw, on this node or, when this
// node stops answering, on the next member: the server's event ids are the same on every node,
// so nothing is missed and nothing is shown twice (ids already seen are dropped).
"use strict";
(() => {
  const body = document.body;
  if (!body || body.dataset.members === undefined) return;
  const members = JSON.parse(body.dataset.members || "[]");
  const origins = [location.origin].concat(members.filter((m) => m !== location.origin));
  const filter = body.dataset.events || "";
  const liveUrl = body.dataset.live || null;
  const csrf = body.dataset.csrf || null;
  // Every event type the server has (SSE named events reach only listeners of their name).
  const KINDS = (body.dataset.kinds || "").split(",").filter((k) => k);
  const MAX_FEED = 500;          // rows kept in the event feed
  const MAX_SEEN = 10000;        // event ids remembered to drop repeats
  const REFRESH_MS = 250;        // at most one live-region refresh per this
  const RETRY_MS = [250, 500, 1000, 2000, 4000];

  // What the page has received, for people (the status line) and for tests (window.flotilla):
  // event ids in order, the node streaming them, reconnections, refreshes, script errors.
  const state = { ids: [], lastId: null, origin: null, reconnects: 0, refreshes: 0, errors: [] };
  window.flotilla = state;
  const seen = new Set();
  let current = 0, failures = 0, source = null;

  const streamState = document.getElementById("stream-state");
  function setStatus(text, cls) {
    if (!streamState) return;
    streamState.textContent = text;
    streamState.className = cls || "";
  }

  function compareIds(a, b) {
    const [ai, ap] = a.split("-").map(Number), [bi, bp] = b.split("-").map(Number);
    return ai !== bi ? ai - bi : ap - bp;
  }

  function connect() {
    const origin = origins[current % origins.length];
    const params = new URLSearchParams(filter);
    if (state.lastId) params.set("after", state.lastId);
    params.set("heartbeat_ms", "2000");
    const es = new EventSource(origin + "/v1/events?" + params.toString(), { withCredentials: origin !== location.origin });
    source = es;
    es.onopen = () => {
      failures = 0;
      state.origin = origin;
      setStatus(origin === location.origin ? "live" : "live via " + origin, "live");
    };
    const onEvent = (e) => {
      if (!e.lastEventId || seen.has(e.lastEventId)) return;
      if (state.lastId && compareIds(e.lastEventId, state.lastId) <= 0) return;
      seen.add(e.lastEventId);
      if (seen.size > MAX_SEEN) seen.delete(seen.values().next().value);
      state.lastId = e.lastEventId;
      state.ids.push(e.lastEventId);
      if (state.ids.length > MAX_SEEN) state.ids.shift();
      try { handle(e.type, e.data); } catch (err) { state.errors.push(String(err)); }
    };
    for (const kind of KINDS) es.addEventListener(kind, onEvent);
    es.addEventListener("gap", () => {
      setStatus("missed events: reload the page", "down");
      es.close();
    });
    es.onerror = () => {
      // The browser retries the same node by itself; a node that is down is left for the next.
      es.close();
      if (source !== es) return;
      failures += 1;
      state.reconnects += 1;
      current += 1;
      setStatus("reconnecting…", "down");
      const wait = RETRY_MS[Math.min(failures - 1, RETRY_MS.length - 1)];
      setTimeout(connect, wait);
    };
  }

  let refreshTimer = null;
  function handle(kind, data) {
    const feed = document.getElementById("event-feed");
    if (feed) {
      const li = document.createElement("li");
      let parsed = null;
      try { parsed = JSON.parse(data); } catch (_) { /* shown raw */ }
      const id = document.createElement("span");
      id.textContent = parsed ? parsed.id : "";
      li.dataset.id = parsed ? parsed.id : "";
      const k = document.createElement("span");
      k.className = "kind";
      k.textContent = kind;
      const rest = document.createElement("span");
      // The event's own fields: all but the envelope (id, term) and its type.
      let fields = data;
      if (parsed) {
        const { id: _id, term: _term, type: _type, ...own } = parsed;
        fields = Object.entries(own).map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v))).join(" ");
      }
      rest.textContent = fields;
      li.append(id, k, rest);
      feed.prepend(li);
      while (feed.children.length > MAX_FEED) feed.lastElementChild.remove();
    }
    if (liveUrl && !refreshTimer) refreshTimer = setTimeout(refresh, REFRESH_MS);
  }

  async function refresh() {
    refreshTimer = null;
    const origin = state.origin || location.origin;
    try {
      const r = await fetch(origin + liveUrl, { credentials: origin === location.origin ? "same-origin" : "include" });
      if (!r.ok) return;
      const html = await r.text();
      const live = document.getElementById("live");
      if (!live) return;
      const active = document.activeElement && document.activeElement.id;
      live.innerHTML = html;
      state.refreshes += 1;
      const fresh = live.querySelector("[data-fresh-index]");
      if (fresh) {
        const set = (id, text) => { const el = document.getElementById(id); if (el) el.textContent = text; };
        set("fresh-node", fresh.dataset.freshNode);
        set("fresh-index", fresh.dataset.freshIndex);
        const at = document.getElementById("fresh-at");
        if (at) at.dataset.ms = fresh.dataset.freshMs;
      }
      if (active) { const el = document.getElementById(active); if (el) el.focus(); }
      bindActions();
      localTimes();
    } catch (_) { /* the stream's reconnect moves us to a live node */ }
  }

  // Pages that show the cluster refresh on a timer too: leadership is not an event.
  function poll() {
    const el = document.querySelector("[data-poll-ms]");
    if (!el || !liveUrl) return;
    setInterval(() => { if (!refreshTimer) refresh(); }, Number(el.dataset.pollMs) || 2000);
  }

  function localTimes() {
    for (const t of document.querySelectorAll("time[data-ms]")) {
      const d = new Date(Number(t.dataset.ms));
      if (!isNaN(d)) t.textContent = d.toLocaleString();
    }
  }

  // Actions call the REST API with the session's CSRF value; the API checks the role.
  function bindActions() {
    for (const b of document.querySelectorAll("button[data-action]")) {
      if (b.dataset.bound) continue;
      b.dataset.bound = "1";
      b.addEventListener("click", async () => {
        if (b.dataset.confirm && !window.confirm(b.dataset.confirm)) return;
        b.disabled = true;
        const r = await fetch(b.dataset.action, { method: "POST", headers: apiHeaders("application/json"),
          body: b.dataset.body || "{}", credentials: "same-origin" });
        if (!r.ok) {
          const e = await r.json().catch(() => ({}));
          alert((e.error && e.error.message) || ("refused: " + r.status));
        } else if (b.dataset.gotoPipeline) {
          // A re-run: its page is the new pipeline's.
          const v = await r.json().catch(() => ({}));
          if (v.pipeline) { location.href = "/ui/pipelines/" + v.pipeline; return; }
        }
        b.disabled = false;
        refresh();
      });
    }
  }

  function apiHeaders(contentType) {
    const h = { "Content-Type": contentType };
    if (csrf) h["X-Flotilla-Csrf"] = csrf;
    return h;
  }

  function bindSubmit() {
    const form = document.getElementById("submit-form");
    if (!form) return;
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = document.getElementById("submit-spec").value;
      const out = document.getElementById("submit-result");
      const type = text.trim().startsWith("{") ? "application/json" : "application/yaml";
      const r = await fetch(form.dataset.action, { method: "POST", headers: apiHeaders(type), body: text, credentials: "same-origin" });
      const v = await r.json().catch(() => ({}));
      if (r.ok) {
        location.href = "/ui/pipelines/" + v.pipeline;
      } else {
        out.textContent = (v.error && (v.error.field ? v.error.field + ": " : "") + v.error.message) || ("refused: " + r.status);
      }
    });
  }

  // Job output: streamed from the node, ANSI colours rendered, searchable.
  const ESC = String.fromCharCode(27);
  function appendOutput(pre, text, carry) {
    let style = carry.style;
    const parts = (carry.rest + text).split(ESC);
    carry.rest = "";
    let line = pre.lastElementChild;
    const newLine = () => { line = document.createElement("div"); line.className = "line"; pre.append(line); return line; };
    if (!line) newLine();
    const put = (s) => {
      const lines = s.split("\n");
      lines.forEach((piece, i) => {
        if (i > 0) newLine();
        if (!piece) return;
        const span = document.createElement("span");
        span.textContent = piece;
        if (style.length) span.className = style.join(" ");
        line.append(span);
      });
    };
    parts.forEach((part, i) => {
      if (i === 0) { put(part); return; }
      const m = /^\[([0-9;]*)m/.exec(part);
      if (!m) {
        if (i === parts.length - 1 && part.length < 16 && !/[A-Za-z]/.test(part)) { carry.rest = ESC + part; return; }
        put(part); return;
      }
      for (const code of (m[1] || "0").split(";").map(Number)) {
        if (code === 0) style = [];
        else if ([1, 3, 4].includes(code)) style.push("ansi-" + code);
        else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) { style = style.filter((c) => !c.startsWith("fg-")); style.push("fg-" + code); }
        else if (code === 39) style = style.filter((c) => !c.startsWith("fg-"));
      }
      put(part.slice(m[0].length));
    });
    carry.style = style;
    applySearch();
  }

  function applySearch() {
    const input = document.getElementById("output-search");
    const pre = document.getElementById("output");
    if (!input || !pre) return;
    const q = input.value.toLowerCase();
    for (const line of pre.children) line.classList.toggle("hidden", q !== "" && !line.textContent.toLowerCase().includes(q));
  }

  // The output is followed from the node serving the page; when that stream breaks before
  // the job has finished, it resumes on the next member after the bytes already shown.
  async function followOutput() {
    const pre = document.getElementById("output");
    if (!pre) return;
    const job = pre.dataset.job;
    const input = document.getElementById("output-search");
    if (input) input.addEventListener("input", applySearch);
    const note = document.getElementById("output-state");
    const say = (text) => { if (note) note.textContent = text; };
    const carry = { style: [], rest: "" };
    const decoder = new TextDecoder();
    let received = 0;
    for (let attempt = 0; attempt < origins.length * 3; attempt++) {
      const origin = origins[attempt % origins.length];
      try {
        const r = await fetch(origin + "/v1/jobs/" + job + "/logs?follow=true&offset=" + received,
          { credentials: origin === location.origin ? "same-origin" : "include" });
        if (!r.ok || !r.body) { say("output unavailable (" + r.status + ")"); return; }
        say(attempt === 0 ? "following…" : "following via " + origin);
        const reader = r.body.getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) {
            // A stream also ends when its node stops: complete only once the job has finished.
            const st = document.getElementById("job-state");
            if (!st || st.dataset.terminal === "true") { say("complete"); return; }
            throw new Error("ended early");
          }
          received += value.length;
          appendOutput(pre, decoder.decode(value, { stream: true }), carry);
          pre.scrollTop = pre.scrollHeight;
        }
      } catch (_) {
        say("the stream broke: resuming on another node…");
        await new Promise((ok) => setTimeout(ok, RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)]));
      }
    }
    say("the stream stopped: reload to continue");
  }

  localTimes();
  bindActions();
  bindSubmit();
  followOutput();
  poll();
  connect();
})();
