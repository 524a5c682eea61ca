// fraudlens risk review page: lists risk events, shows the trades behind a score, and
// records an analyst's decision through the /v1 API. No framework and no external assets:
// the service may run on a machine without internet access.
"use strict";

(function () {
  const API = "/v1/risk-events";
  const STATUSES = ["open", "confirmed", "dismissed", ""];
  // The assignee filter: anyone, the caller's own events, or events nobody works.
  const ASSIGNED = ["", "me", "none"];
  const REVIEWER_KEY = "fraudlens.reviewer";
  const SVG_NS = "http://www.w3.org/2000/svg";

  // Sortable columns and the direction a first click sorts them in.
  const SORTS = {
    priority: "-", id: "-", account_id: "", score: "-", value_moved: "-", counterparty: "", window_end: "-",
    created_at: "-",
  };
  const DEFAULT_SORT = "-priority";

  const state = {
    status: "open",
    assigned: "",
    account: "",
    accountExact: "",
    symbol: "",
    minScore: "",
    minValue: "",
    sort: DEFAULT_SORT,
    selected: new Set(),
    tab: "trades",
    limit: 50,
    offset: 0,
    items: [],
    total: 0,
    selectedId: null,
    event: null,
    busy: false,
  };
  // Who is signed in (GET /v1/me). With a session, every state-changing request carries
  // its CSRF token; with authentication off and nobody signed in, the reviewer's name
  // comes from the field at the top.
  const session = { username: null, role: null, csrf: null, required: false, signingOut: false };
  // Replies can arrive out of order when the analyst clicks fast: only the newest counts.
  let listSeq = 0;
  let detailSeq = 0;

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ API access
  class ApiError extends Error {
    constructor(status, error, detail) {
      super(error);
      this.status = status;
      this.detail = detail;
    }
  }

  async function api(path, options) {
    let response;
    const opts = Object.assign({}, options);
    const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    if (opts.method && opts.method !== "GET" && session.csrf) headers["X-CSRF-Token"] = session.csrf;
    opts.headers = headers;
    opts.credentials = "same-origin";
    try {
      response = await fetch(path, opts);
    } catch (err) {
      throw new ApiError(0, "The service cannot be reached", String(err && err.message ? err.message : err));
    }
    const text = await response.text();
    let body = null;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch (err) {
        body = null;
      }
    }
    if (response.status === 401 && session.required && !session.signingOut) {
      // The session ended (signed out elsewhere, expired, or the user was disabled). A
      // request still in flight when the user signs out here is answered 401 too: the
      // sign-out itself then goes to the sign-in page, without a way back.
      window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname)}`);
    }
    if (!response.ok) {
      const error = body && typeof body.error === "string" ? body.error : `HTTP ${response.status} ${response.statusText}`;
      throw new ApiError(response.status, error, body ? body.detail : text.slice(0, 300));
    }
    return body;
  }

  function describeDetail(detail) {
    if (detail === null || detail === undefined || detail === "") return "";
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail
        .map((d) => (d && d.msg ? `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}` : JSON.stringify(d)))
        .join("\n");
    }
    if (typeof detail === "object") {
      const parts = [];
      for (const [k, v] of Object.entries(detail)) {
        if (v !== null && v !== undefined) parts.push(`${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
      }
      return parts.join("\n");
    }
    return String(detail);
  }

  // ------------------------------------------------------------------ feedback
  function showError(err, context) {
    const status = err && err.status ? ` (HTTP ${err.status})` : "";
    $("banner-title").textContent = `${context}: ${err && err.message ? err.message : err}${status}`;
    $("banner-detail").textContent = describeDetail(err ? err.detail : null);
    $("banner").hidden = false;
  }

  function clearError() {
    $("banner").hidden = true;
  }

  let toastTimer = null;
  function toast(text) {
    const el = $("toast");
    el.textContent = text;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      el.hidden = true;
    }, 2600);
  }

  // ------------------------------------------------------------------ formatting
  function fmtTime(value) {
    if (!value) return "—";
    const d = new Date(value);
    if (Number.isNaN(d.getTime())) return String(value);
    return d.toISOString().replace("T", " ").slice(0, 19);
  }

  function fmtScore(value) {
    return typeof value === "number" && Number.isFinite(value) ? value.toFixed(3) : "—";
  }

  function fmtMoney(value) {
    if (typeof value !== "number" || !Number.isFinite(value)) return "—";
    return value.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  function fmtNumber(value, digits) {
    if (typeof value !== "number" || !Number.isFinite(value)) return value === null || value === undefined ? "—" : String(value);
    return value.toLocaleString("en-US", { maximumFractionDigits: digits });
  }

  function text(value) {
    return value === null || value === undefined || value === "" ? "—" : String(value);
  }

  function el(tag, className, content) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined && content !== null) node.textContent = content;
    return node;
  }

  function badge(status) {
    const known = ["open", "confirmed", "dismissed"].includes(status);
    return el("span", `badge ${known ? "badge-" + status : ""}`, status || "—");
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }

  const clamp01 = (v) => Math.max(0, Math.min(1, Number(v) || 0));

  // A small bar: the score's share of 0..1, the threshold as a tick.
  function scoreBar(score, threshold, width) {
    const w = width || 90;
    const h = 10;
    const root = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: "img" });
    root.appendChild(svg("title", {})).textContent = `score ${fmtScore(score)}, threshold ${fmtScore(threshold)}`;
    root.appendChild(svg("rect", { x: 0, y: 2, width: w, height: h - 4, rx: 3, fill: "#e7eaee" }));
    const over = typeof threshold === "number" && score > threshold; // the one flag rule
    root.appendChild(
      svg("rect", { x: 0, y: 2, width: Math.max(2, clamp01(score) * w), height: h - 4, rx: 3, fill: over ? "#c43c32" : "#6b86b8" })
    );
    if (typeof threshold === "number") {
      const x = Math.round(clamp01(threshold) * (w - 2)) + 1;
      root.appendChild(svg("rect", { x: x - 1, y: 0, width: 2, height: h, fill: "#1b1f24" }));
    }
    return root;
  }

  // The larger gauge in the detail pane, with a scale and a labelled threshold.
  function scoreGauge(score, threshold) {
    const w = 400;
    const root = svg("svg", { viewBox: `0 0 ${w} 34`, preserveAspectRatio: "none", role: "img" });
    root.appendChild(svg("title", {})).textContent = `score ${fmtScore(score)} against threshold ${fmtScore(threshold)}`;
    root.appendChild(svg("rect", { x: 0, y: 6, width: w, height: 12, rx: 4, fill: "#e7eaee" }));
    const over = typeof threshold === "number" && score > threshold; // the one flag rule
    root.appendChild(svg("rect", { x: 0, y: 6, width: Math.max(3, clamp01(score) * w), height: 12, rx: 4, fill: over ? "#c43c32" : "#6b86b8" }));
    for (const t of [0, 0.25, 0.5, 0.75, 1]) {
      const x = Math.min(w - 1, Math.max(1, t * w));
      root.appendChild(svg("rect", { x: x - 0.5, y: 20, width: 1, height: 4, fill: "#8a93a0" }));
      const label = svg("text", { x, y: 33, "font-size": 9, fill: "#5d6673", "text-anchor": t === 0 ? "start" : t === 1 ? "end" : "middle" });
      label.textContent = String(t);
      root.appendChild(label);
    }
    if (typeof threshold === "number") {
      const x = clamp01(threshold) * w;
      root.appendChild(svg("rect", { x: Math.min(w - 2, Math.max(0, x - 1)), y: 1, width: 2, height: 22, fill: "#1b1f24" }));
    }
    return root;
  }

  // Where a fill sits in its bar: the bar's low..high range as a line, the fill as a dot.
  function barPosition(trade) {
    const pos = typeof trade.bar_position === "number" ? trade.bar_position : trade.pos;
    if (typeof pos !== "number" || !Number.isFinite(pos)) return el("span", "muted", "—");
    const w = 44;
    const root = svg("svg", { width: w + 40, height: 14, viewBox: `0 0 ${w + 40} 14`, role: "img" });
    const low = typeof trade.bar_low === "number" ? trade.bar_low : null;
    const high = typeof trade.bar_high === "number" ? trade.bar_high : null;
    root.appendChild(svg("title", {})).textContent =
      `${Math.round(pos * 100)}% of the bar's range` + (low !== null && high !== null ? ` (low ${low}, high ${high})` : "");
    root.appendChild(svg("rect", { x: 2, y: 6, width: w, height: 2, fill: "#c8ced6" }));
    root.appendChild(svg("rect", { x: 1, y: 3, width: 1.5, height: 8, fill: "#8a93a0" }));
    root.appendChild(svg("rect", { x: w + 1, y: 3, width: 1.5, height: 8, fill: "#8a93a0" }));
    const extreme = pos <= 0.05 || pos >= 0.95;
    const fill = trade.side === "sell" ? "#a23b2a" : "#1f6f43";
    root.appendChild(svg("circle", { cx: 2 + clamp01(pos) * w, cy: 7, r: extreme ? 4 : 3, fill, stroke: extreme ? "#1b1f24" : "none", "stroke-width": 1 }));
    const label = svg("text", { x: w + 8, y: 11, "font-size": 10, fill: "#5d6673" });
    label.textContent = `${Math.round(pos * 100)}%`;
    root.appendChild(label);
    return root;
  }

  // ------------------------------------------------------------------ URL state
  function readUrl() {
    const q = new URLSearchParams(window.location.search);
    if (q.has("status")) {
      const s = q.get("status");
      state.status = STATUSES.includes(s) ? s : "open";
    }
    state.assigned = ASSIGNED.includes(q.get("assigned")) ? q.get("assigned") : "";
    state.account = q.get("account") || "";
    state.accountExact = q.get("account_id") || "";
    state.symbol = q.get("symbol") || "";
    state.minScore = q.get("min_score") || "";
    state.minValue = q.get("min_value") || "";
    const sort = q.get("sort") || "";
    if (Object.prototype.hasOwnProperty.call(SORTS, sort.replace(/^-/, ""))) state.sort = sort;
    const limit = parseInt(q.get("limit") || "", 10);
    if ([25, 50, 100, 200].includes(limit)) state.limit = limit;
    const offset = parseInt(q.get("offset") || "", 10);
    if (offset > 0) state.offset = offset;
    const id = parseInt(q.get("event") || "", 10);
    if (id > 0) state.selectedId = id;
  }

  function writeUrl() {
    const q = new URLSearchParams();
    if (state.status !== "open") q.set("status", state.status);
    if (state.assigned) q.set("assigned", state.assigned);
    if (state.account) q.set("account", state.account);
    if (state.accountExact) q.set("account_id", state.accountExact);
    if (state.symbol) q.set("symbol", state.symbol);
    if (state.minScore) q.set("min_score", state.minScore);
    if (state.minValue) q.set("min_value", state.minValue);
    if (state.sort !== DEFAULT_SORT) q.set("sort", state.sort);
    if (state.limit !== 50) q.set("limit", String(state.limit));
    if (state.offset) q.set("offset", String(state.offset));
    if (state.selectedId) q.set("event", String(state.selectedId));
    const qs = q.toString();
    history.replaceState(null, "", qs ? `?${qs}` : window.location.pathname);
    updateExport();
  }

  // ------------------------------------------------------------------ the list
  // The list's filters and order, as the list and the export take them.
  function filterQuery() {
    const q = new URLSearchParams();
    if (state.status) q.set("status", state.status);
    if (state.assigned === "me") {
      // the API resolves "me" to the signed-in user; with authentication off, the
      // reviewer's name is who "me" is
      q.set("assignee", session.username || $("reviewer").value.trim() || "me");
    } else if (state.assigned === "none") {
      q.set("unassigned", "true");
    }
    if (state.account) q.set("account_prefix", state.account);
    if (state.accountExact) q.set("account_id", state.accountExact);
    if (state.symbol) q.set("symbol", state.symbol);
    if (state.minScore !== "") q.set("min_score", state.minScore);
    if (state.minValue !== "") q.set("min_value_moved", state.minValue);
    q.set("sort", state.sort);
    return q;
  }

  function listQuery() {
    const q = filterQuery();
    q.set("limit", String(state.limit));
    q.set("offset", String(state.offset));
    return q.toString();
  }

  // The "Export CSV" link downloads every event of the list's filters, in its order
  // (not only this page): a plain link, so the browser saves the file itself.
  function updateExport() {
    $("export").href = `${API}/export?${filterQuery().toString()}`;
  }

  async function loadList(options) {
    const opts = options || {};
    const seq = ++listSeq;
    $("loading").hidden = false;
    try {
      const page = await api(`${API}?${listQuery()}`);
      if (seq !== listSeq) return;
      clearError();
      // Reviewing the last events of the last page can leave an offset past the end.
      if (page.items.length === 0 && page.total > 0 && state.offset > 0) {
        state.offset = Math.max(0, Math.floor((page.total - 1) / state.limit) * state.limit);
        return loadList(opts);
      }
      state.items = page.items;
      state.total = page.total;
      keepSelection();
      renderList();
      if (!state.items.length) {
        // Nothing matches: no event is shown, so nothing can be confirmed or dismissed.
        state.selectedId = null;
        showNothing();
        return;
      }
      let target = null;
      if (state.selectedId !== null && state.items.some((e) => e.id === state.selectedId)) {
        target = state.selectedId;
      } else if (typeof opts.selectIndex === "number" && state.items.length) {
        target = state.items[Math.min(opts.selectIndex, state.items.length - 1)].id;
      } else if (opts.autoSelect && state.items.length) {
        target = state.items[0].id;
      }
      if (target !== null) {
        await select(target, { keepDetail: opts.keepDetail && target === state.selectedId });
      } else if (state.selectedId !== null && !opts.keepDetail) {
        // The selected event is on no page of this filter: keep showing it, unhighlighted.
        highlight(null);
      }
    } catch (err) {
      if (seq !== listSeq) return;
      state.items = [];
      state.total = 0;
      keepSelection();
      renderList("The list could not be loaded: see the message above.");
      state.selectedId = null;
      showNothing();
      showError(err, "Could not load risk events");
    } finally {
      if (seq === listSeq) $("loading").hidden = true;
      writeUrl();
    }
  }

  function renderList(emptyText) {
    const body = $("events-body");
    body.replaceChildren();
    for (const e of state.items) {
      const tr = document.createElement("tr");
      tr.dataset.id = String(e.id);
      tr.setAttribute("aria-selected", String(e.id === state.selectedId));
      const pickTd = el("td", "pick");
      const pick = document.createElement("input");
      pick.type = "checkbox";
      pick.checked = state.selected.has(e.id);
      pick.setAttribute("aria-label", `Select event ${e.id} for a bulk decision`);
      pick.addEventListener("click", (ev) => ev.stopPropagation());
      pick.addEventListener("change", () => toggleSelected(e.id, pick.checked));
      pickTd.appendChild(pick);
      tr.appendChild(pickTd);
      tr.appendChild(el("td", "num", e.priority > 0 ? fmtMoney(e.priority) : "—"));
      const account = el("td", "account", e.account_id);
      account.title = e.account_id;
      tr.appendChild(account);
      const scoreTd = el("td");
      const cell = el("div", "scorecell");
      cell.appendChild(el("span", "val", fmtScore(e.score)));
      cell.appendChild(scoreBar(e.score, e.threshold, 40));
      scoreTd.appendChild(cell);
      tr.appendChild(scoreTd);
      tr.appendChild(el("td", "num", fmtMoney(e.value_moved)));
      const cp = el("td", "account", text(e.counterparty));
      if (e.counterparty) cp.title = e.counterparty;
      tr.appendChild(cp);
      const when = el("td", "when", fmtTime(e.window_end).slice(5, 16));
      when.title = `${fmtTime(e.window_end)} UTC`;
      tr.appendChild(when);
      const assignee = el("td", "col-assignee account", text(e.assignee));
      if (e.assignee) assignee.title = `${e.assignee} since ${fmtTime(e.assigned_at)} UTC`;
      tr.appendChild(assignee);
      const statusTd = el("td", "col-status");
      statusTd.appendChild(badge(e.status));
      if (e.reviewed_by) statusTd.title = `by ${e.reviewed_by}`;
      tr.appendChild(statusTd);
      tr.addEventListener("click", () => select(e.id));
      body.appendChild(tr);
    }
    $("empty").textContent = emptyText || "No risk events match these filters.";
    $("empty").hidden = state.items.length > 0;
    const first = state.total ? state.offset + 1 : 0;
    const last = state.offset + state.items.length;
    $("range").textContent = state.total
      ? `${first.toLocaleString()}–${last.toLocaleString()} of ${state.total.toLocaleString()}`
      : "0 events";
    $("prev").disabled = state.offset === 0;
    $("next").disabled = last >= state.total;
    for (const b of document.querySelectorAll(".segmented button[data-status]")) {
      b.setAttribute("aria-checked", String(b.dataset.status === state.status));
    }
    for (const b of document.querySelectorAll(".segmented button[data-assigned]")) {
      b.setAttribute("aria-checked", String(b.dataset.assigned === state.assigned));
    }
    // one status shown: the filter says it, and the room goes to the other columns
    $("events").classList.toggle("one-status", Boolean(state.status));
    renderSortHeaders();
    renderChips();
    renderBulk();
  }

  // ------------------------------------------------------------------ sorting
  function sortKey() {
    return state.sort.replace(/^-/, "");
  }

  function renderSortHeaders() {
    const key = sortKey();
    const desc = state.sort.startsWith("-");
    for (const th of document.querySelectorAll("#events th[data-sort]")) {
      const on = th.dataset.sort === key;
      th.setAttribute("aria-sort", on ? (desc ? "descending" : "ascending") : "none");
    }
  }

  function sortBy(key) {
    if (!Object.prototype.hasOwnProperty.call(SORTS, key)) return;
    if (sortKey() === key) {
      state.sort = state.sort.startsWith("-") ? key : `-${key}`;
    } else {
      state.sort = `${SORTS[key]}${key}`;
    }
    state.offset = 0;
    loadList({ autoSelect: true });
  }

  // ------------------------------------------------------------------ filters shown as chips
  function renderChips() {
    const box = $("chips");
    box.replaceChildren();
    if (state.accountExact) {
      const chip = el("span", "chip");
      chip.appendChild(el("span", "", `account = ${state.accountExact}`));
      const x = el("button", "chip-x", "×");
      x.type = "button";
      x.setAttribute("aria-label", `Stop filtering on account ${state.accountExact}`);
      x.addEventListener("click", () => {
        state.accountExact = "";
        state.offset = 0;
        loadList({ autoSelect: true });
      });
      chip.appendChild(x);
      box.appendChild(chip);
    }
  }

  function showAccount(account) {
    // Every alert of one account (e.g. a counterparty), whatever its status.
    state.accountExact = account;
    state.account = "";
    $("account-search").value = "";
    state.status = "";
    state.offset = 0;
    state.selectedId = null;
    loadList({ autoSelect: true });
  }

  // ------------------------------------------------------------------ bulk decisions
  function keepSelection() {
    // Only events on the page can stay selected: a decision never reaches unseen rows.
    const shown = new Set(state.items.map((e) => e.id));
    for (const id of [...state.selected]) if (!shown.has(id)) state.selected.delete(id);
  }

  function toggleSelected(id, on) {
    if (on) state.selected.add(id);
    else state.selected.delete(id);
    for (const tr of $("events-body").children) {
      if (tr.dataset.id === String(id)) tr.querySelector("input[type=checkbox]").checked = on;
    }
    renderBulk();
  }

  function renderBulk() {
    const n = state.selected.size;
    $("bulk").hidden = n === 0;
    $("bulk-count").textContent = `${n} selected`;
    const all = $("select-page");
    all.checked = n > 0 && n === state.items.length;
    all.indeterminate = n > 0 && n < state.items.length;
    for (const b of document.querySelectorAll("[data-bulk], [data-assign]")) b.disabled = state.busy || n === 0;
  }

  // ------------------------------------------------------------------ assignment
  // Assign events to the reviewer ("me") or to nobody. An event another analyst holds
  // is taken only after the analyst agrees (the API's 409 names the holders).
  async function assign(ids, toMe, force) {
    if (!ids.length || state.busy) return false;
    if (!requireReviewer()) return false;
    const who = reviewer();
    state.busy = true;
    renderBulk();
    updateButtons();
    let done = null;
    try {
      done = await api("/v1/assignments", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ ids, assignee: toMe ? who : null, assigned_by: who, force: Boolean(force) }),
      });
      clearError();
    } catch (err) {
      state.busy = false;
      if (err.status === 409 && !force && window.confirm(`${err.message}\n\nTake ${ids.length === 1 ? "it" : "them"} anyway?`)) {
        return await assign(ids, toMe, true);
      }
      showError(err, `Could not ${toMe ? "assign" : "unassign"} ${ids.length === 1 ? `event #${ids[0]}` : `${ids.length} events`}`);
      return false;
    } finally {
      state.busy = false;
      renderBulk();
      updateButtons();
    }
    const n = done.ids.length;
    const what = n === 1 ? `Event #${done.ids[0]}` : `${n} events`;
    toast(toMe ? `${what} assigned to ${who}` : `${what} unassigned`);
    const current = state.event ? state.event.id : null;
    await loadList({ keepDetail: true });
    if (current !== null && done.ids.includes(current)) await select(current);
    return true;
  }

  async function bulkAssign(toMe) {
    const ids = state.items.filter((e) => state.selected.has(e.id)).map((e) => e.id);
    if (await assign(ids, toMe, false)) {
      state.selected.clear();
      renderList();
    }
  }

  // The current event: to me, or back to nobody when it is mine already.
  function assignCurrent() {
    const e = state.event;
    if (!e) return;
    const mine = Boolean(e.assignee) && e.assignee === reviewer();
    assign([e.id], !mine, false);
  }

  async function bulkReview(status) {
    const ids = state.items.filter((e) => state.selected.has(e.id)).map((e) => e.id);
    if (!ids.length || state.busy) return;
    if (!requireReviewer()) return;
    const note = $("bulk-note").value.trim();
    state.busy = true;
    renderBulk();
    updateButtons();
    try {
      const done = await api("/v1/reviews", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ ids, status, reviewed_by: reviewer(), note: note || null }),
      });
      clearError();
      toast(`${done.ids.length} event${done.ids.length === 1 ? "" : "s"} ${status}`);
      state.selected.clear();
      $("bulk-note").value = "";
      if (state.event && done.ids.includes(state.event.id)) {
        state.selectedId = null;
        state.event = null;
      }
      state.busy = false;
      await loadList({ autoSelect: true, keepDetail: state.event !== null });
    } catch (err) {
      showError(err, `Could not record the decision on ${ids.length} events`);
    } finally {
      state.busy = false;
      renderBulk();
      updateButtons();
    }
  }

  function highlight(id) {
    for (const tr of $("events-body").children) {
      const on = id !== null && tr.dataset.id === String(id);
      tr.setAttribute("aria-selected", String(on));
      if (on) tr.scrollIntoView({ block: "nearest" });
    }
  }

  // ------------------------------------------------------------------ the detail pane
  async function select(id, options) {
    const opts = options || {};
    state.selectedId = id;
    highlight(id);
    writeUrl();
    if (opts.keepDetail && state.event && state.event.id === id) return;
    const seq = ++detailSeq;
    try {
      const event = await api(`${API}/${encodeURIComponent(id)}`);
      if (seq !== detailSeq) return;
      renderDetail(event);
    } catch (err) {
      if (seq !== detailSeq) return;
      showError(err, `Could not load risk event ${id}`);
    }
  }

  function renderDetail(e) {
    state.event = e;
    $("detail-empty").hidden = true;
    $("detail-body").hidden = false;
    $("d-id").textContent = `#${e.id}`;
    $("d-fraud-type").textContent = text(e.fraud_type).replace(/_/g, " ");
    $("d-account").textContent = e.account_id;
    const status = $("d-status");
    status.className = `badge badge-${e.status}`;
    status.textContent = e.status;
    $("d-gauge").replaceChildren(scoreGauge(e.score, e.threshold));
    $("d-score").textContent = fmtScore(e.score);
    $("d-threshold").textContent = fmtScore(e.threshold);
    $("d-value").textContent = e.value_moved === null || e.value_moved === undefined ? "—" : fmtMoney(e.value_moved);
    const cpBox = $("d-counterparty");
    cpBox.replaceChildren();
    if (e.counterparty) {
      const link = el("a", "cp-link", e.counterparty);
      link.href = `/review?status=&account_id=${encodeURIComponent(e.counterparty)}`;
      link.title = `Every alert of ${e.counterparty}`;
      link.addEventListener("click", (ev) => {
        ev.preventDefault();
        showAccount(e.counterparty);
      });
      cpBox.appendChild(link);
    } else {
      cpBox.textContent = "—";
    }
    $("d-model").textContent = text(e.model_version);
    $("d-model").title = text(e.model_version);
    $("d-business").textContent = text(e.business_type);
    $("d-window-start").textContent = fmtTime(e.window_start);
    $("d-window-end").textContent = fmtTime(e.window_end);
    $("d-requested").textContent = fmtTime(e.requested_at);
    $("d-created").textContent = fmtTime(e.created_at);
    $("d-reviewed").textContent = e.reviewed_at ? `${fmtTime(e.reviewed_at)} by ${text(e.reviewed_by)}` : "—";
    $("d-note").textContent = text(e.note);
    $("d-assignee").textContent = e.assignee ? `${e.assignee} since ${fmtTime(e.assigned_at)}` : "—";
    $("note").value = e.note || "";
    renderTrades((e.details && Array.isArray(e.details.trades) && e.details.trades) || []);
    renderHistory(Array.isArray(e.history) ? e.history : []);
    $("d-picture").dataset.event = "";
    showTab(state.tab);
    updateButtons();
  }

  // ------------------------------------------------------------------ evidence tabs
  const TABS = ["trades", "picture", "history"];

  function showTab(tab) {
    state.tab = TABS.includes(tab) ? tab : "trades";
    for (const name of TABS) {
      const on = name === state.tab;
      $(`tab-${name}`).setAttribute("aria-selected", String(on));
      $(`panel-${name}`).hidden = !on;
    }
    if (state.tab === "picture") loadPicture();
  }

  function loadPicture() {
    const e = state.event;
    const img = $("d-picture");
    if (!e || img.dataset.event === String(e.id)) return;
    img.dataset.event = String(e.id);
    img.alt = `Trades of account ${e.account_id} over the bars of its window`;
    const status = $("picture-status");
    status.textContent = "Drawing the account's picture…";
    status.hidden = false;
    img.hidden = true;
    img.onload = () => {
      status.hidden = true;
      img.hidden = false;
    };
    img.onerror = () => {
      status.textContent = "The picture could not be drawn (see the service log).";
      status.hidden = false;
    };
    img.src = `${API}/${encodeURIComponent(e.id)}/picture.svg`;
  }

  function renderTrades(trades) {
    const body = $("trades-body");
    body.replaceChildren();
    trades.forEach((t, i) => {
      const tr = document.createElement("tr");
      tr.appendChild(el("td", "num", String(i + 1)));
      const time = el("td", "time", fmtTime(t.ts).slice(5, 16));
      time.title = `${fmtTime(t.ts)} UTC` + (t.trade_id !== undefined ? ` · trade ${t.trade_id}` : "");
      tr.appendChild(time);
      tr.appendChild(el("td", "mono", text(t.symbol)));
      tr.appendChild(el("td", t.side === "buy" ? "side-buy" : t.side === "sell" ? "side-sell" : "", text(t.side)));
      tr.appendChild(el("td", "num", fmtNumber(t.price, 6)));
      tr.appendChild(el("td", "num", fmtNumber(t.quantity, 4)));
      const pos = el("td");
      pos.appendChild(barPosition(t));
      tr.appendChild(pos);
      const reason = el("td", "reason", text(t.reason));
      reason.title = text(t.reason);
      tr.appendChild(reason);
      // one line per trade so that many fit; a click (or Enter) shows the whole reason
      tr.tabIndex = 0;
      tr.addEventListener("click", () => tr.classList.toggle("expanded"));
      tr.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter") tr.classList.toggle("expanded");
      });
      body.appendChild(tr);
    });
    $("trades-empty").hidden = trades.length > 0;
    $("d-trade-count").textContent = trades.length ? `(${trades.length})` : "";
  }

  // What a history entry did, in a word: the decision, or the change of assignee.
  function historyAction(h) {
    if (h.action === "assign") {
      if (!h.to_assignee) return "unassigned";
      return h.from_assignee ? "reassigned" : "assigned";
    }
    if (h.action === "review") {
      if (h.to_status === "open") return h.from_status === "open" ? "reviewed" : "reopened";
      return text(h.to_status);
    }
    return text(h.action);
  }

  // The event's review history (the API sends it oldest first), newest first. Every
  // value is user input (names, notes): it goes in as text, never as markup.
  function renderHistory(history) {
    const when = (h) => {
      const t = Date.parse(h.at);
      return Number.isNaN(t) ? 0 : t;
    };
    const entries = history
      .filter((h) => h && typeof h === "object")
      .sort((a, b) => when(b) - when(a) || (Number(b.id) || 0) - (Number(a.id) || 0));
    const list = $("history-list");
    list.replaceChildren();
    for (const h of entries) {
      const item = el("li", "entry");
      item.dataset.action = text(h.action);
      const head = el("div", "entry-head");
      const time = el("span", "time", fmtTime(h.at));
      time.title = `${fmtTime(h.at)} UTC`;
      head.appendChild(time);
      const who = el("span", "who", text(h.actor));
      who.title = text(h.actor);
      head.appendChild(who);
      head.appendChild(el("span", "action", historyAction(h)));
      const status = el("span", "status");
      status.appendChild(badge(h.from_status));
      if (h.to_status !== h.from_status) {
        status.appendChild(document.createTextNode(" → "));
        status.appendChild(badge(h.to_status));
      }
      head.appendChild(status);
      if (h.action === "assign" || h.from_assignee || h.to_assignee) {
        const assignee = el("span", "assignee", `${text(h.from_assignee)} → ${text(h.to_assignee)}`);
        assignee.title = `assignee ${assignee.textContent}`;
        head.appendChild(assignee);
      }
      item.appendChild(head);
      if (h.note) item.appendChild(el("div", "note", String(h.note)));
      list.appendChild(item);
    }
    $("history-empty").hidden = entries.length > 0;
    $("d-history-count").textContent = entries.length ? `(${entries.length})` : "";
  }

  function updateButtons() {
    const e = state.event;
    const who = reviewer();
    $("review-who").textContent = who ? `as ${who}` : "enter your name at the top to review";
    for (const id of ["confirm", "dismiss", "reopen"]) {
      const b = $(id);
      b.disabled = state.busy || !e || e.status === b.dataset.review;
    }
    const mine = Boolean(e && e.assignee) && e.assignee === who;
    $("assign").disabled = state.busy || !e;
    $("assign").firstChild.textContent = mine ? "Unassign " : "Assign to me ";
    $("reopen").hidden = !e || e.status === "open";
  }

  // ------------------------------------------------------------------ reviewing
  function reviewer() {
    return session.username || $("reviewer").value.trim();
  }

  // A decision needs a name: the signed-in user, or the one typed at the top.
  function requireReviewer() {
    if (reviewer()) return true;
    $("reviewer").classList.add("missing");
    $("reviewer").focus();
    showError(new ApiError(0, "Enter your name as reviewer first", "It is recorded with the decision."), "Cannot review");
    return false;
  }

  async function loadSession() {
    try {
      const me = await api("/v1/me");
      session.username = me.username;
      session.role = me.role;
      session.csrf = me.csrf_token;
      session.required = me.auth_required;
    } catch (err) {
      return; // an older service without /v1/me: the reviewer field stays
    }
    if (session.username) {
      $("reviewer").closest("label").hidden = true;
      $("user-name").textContent = `${session.username} (${session.role})`;
      $("signed-in").hidden = false;
      $("sign-out").hidden = session.csrf === null; // a token has no session to end
    }
    updateButtons();
  }

  async function signOut() {
    session.signingOut = true;
    try {
      await api("/logout", { method: "POST" });
    } catch (err) {
      session.signingOut = false;
      showError(err, "Could not sign out");
      return;
    }
    window.location.assign("/login");
  }

  async function review(status) {
    const e = state.event;
    if (!e || state.busy) return;
    if (!requireReviewer()) return;
    const note = $("note").value.trim();
    state.busy = true;
    updateButtons();
    try {
      const updated = await api(`${API}/${encodeURIComponent(e.id)}/review`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ status, reviewed_by: reviewer(), note: note || null }),
      });
      clearError();
      toast(`Event #${updated.id} (${updated.account_id}) ${status === "open" ? "reopened" : status}`);
      const index = state.items.findIndex((x) => x.id === updated.id);
      const stays = !state.status || state.status === updated.status;
      if (stays) {
        // the decision's reply has no history: read the event again, with its new entry
        renderDetail(Object.assign({}, updated, { history: e.history }));
        await select(updated.id);
        await loadList({ keepDetail: true });
      } else {
        // Move on to the event that takes its place in the list, as in a work queue.
        state.selectedId = null;
        state.event = null;
        await loadList({ selectIndex: Math.max(0, index) });
        if (state.selectedId === null) showNothing();
      }
    } catch (err) {
      showError(err, `Could not record the review of event #${e.id}`);
    } finally {
      state.busy = false;
      updateButtons();
    }
  }

  function showNothing() {
    state.event = null;
    $("detail-body").hidden = true;
    $("detail-empty").hidden = false;
    updateButtons();
  }

  // ------------------------------------------------------------------ wiring
  function setStatus(status) {
    state.status = status;
    state.offset = 0;
    loadList({ autoSelect: true });
  }

  function move(step) {
    if (!state.items.length) return;
    let i = state.items.findIndex((e) => e.id === state.selectedId);
    i = i < 0 ? 0 : Math.max(0, Math.min(state.items.length - 1, i + step));
    select(state.items[i].id);
  }

  function page(step) {
    const offset = state.offset + step * state.limit;
    if (offset < 0 || offset >= state.total) return;
    state.offset = offset;
    loadList({ autoSelect: true });
  }

  let searchTimer = null;
  function onFilterInput() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      state.account = $("account-search").value.trim();
      state.symbol = $("symbol").value.trim();
      state.minScore = $("min-score").value.trim();
      state.minValue = $("min-value").value.trim();
      state.offset = 0;
      loadList({ autoSelect: true });
    }, 300);
  }

  function typing(target) {
    return target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT" || target.isContentEditable);
  }

  function onKey(ev) {
    if (ev.metaKey || ev.ctrlKey || ev.altKey) return;
    if (ev.key === "Escape" && typing(ev.target)) {
      ev.target.blur();
      return;
    }
    if (typing(ev.target) || $("help").open) return;
    const actions = {
      j: () => move(1),
      ArrowDown: () => move(1),
      k: () => move(-1),
      ArrowUp: () => move(-1),
      c: () => review("confirmed"),
      d: () => review("dismissed"),
      n: () => state.event && $("note").focus(),
      a: () => assignCurrent(),
      x: () => state.selectedId !== null && toggleSelected(state.selectedId, !state.selected.has(state.selectedId)),
      p: () => state.event && showTab("picture"),
      t: () => state.event && showTab("trades"),
      h: () => state.event && showTab("history"),
      "/": () => $("account-search").focus(),
      r: () => loadList({ keepDetail: true }),
      "[": () => page(-1),
      "]": () => page(1),
      "?": () => $("help").showModal(),
      1: () => setStatus("open"),
      2: () => setStatus("confirmed"),
      3: () => setStatus("dismissed"),
      4: () => setStatus(""),
    };
    const action = actions[ev.key];
    if (action) {
      ev.preventDefault();
      action();
    }
  }

  function init() {
    readUrl();
    loadSession();
    $("sign-out").addEventListener("click", signOut);
    const saved = window.localStorage ? localStorage.getItem(REVIEWER_KEY) : null;
    $("reviewer").value = saved || "";
    $("account-search").value = state.account;
    $("symbol").value = state.symbol;
    $("min-score").value = state.minScore;
    $("min-value").value = state.minValue;
    $("page-size").value = String(state.limit);

    $("reviewer").addEventListener("input", () => {
      const who = reviewer();
      $("reviewer").classList.toggle("missing", !who);
      if (window.localStorage) localStorage.setItem(REVIEWER_KEY, who);
      updateButtons();
    });
    $("filters").addEventListener("submit", (ev) => ev.preventDefault());
    for (const id of ["account-search", "symbol", "min-score", "min-value"]) {
      $(id).addEventListener("input", onFilterInput);
    }
    for (const th of document.querySelectorAll("#events th[data-sort]")) {
      th.querySelector("button").addEventListener("click", () => sortBy(th.dataset.sort));
    }
    $("select-page").addEventListener("change", () => {
      const on = $("select-page").checked;
      for (const e of state.items) toggleSelected(e.id, on);
    });
    for (const b of document.querySelectorAll("[data-bulk]")) {
      b.addEventListener("click", () => bulkReview(b.dataset.bulk));
    }
    for (const b of document.querySelectorAll("[data-assign]")) {
      b.addEventListener("click", () => bulkAssign(b.dataset.assign === "me"));
    }
    $("assign").addEventListener("click", assignCurrent);
    $("bulk-clear").addEventListener("click", () => {
      for (const id of [...state.selected]) toggleSelected(id, false);
    });
    $("tab-trades").addEventListener("click", () => showTab("trades"));
    $("tab-picture").addEventListener("click", () => showTab("picture"));
    $("tab-history").addEventListener("click", () => showTab("history"));
    $("page-size").addEventListener("change", () => {
      state.limit = parseInt($("page-size").value, 10) || 50;
      state.offset = 0;
      loadList({ autoSelect: true });
    });
    for (const b of document.querySelectorAll(".segmented button[data-status]")) {
      b.addEventListener("click", () => setStatus(b.dataset.status));
    }
    for (const b of document.querySelectorAll(".segmented button[data-assigned]")) {
      b.addEventListener("click", () => {
        state.assigned = b.dataset.assigned;
        state.offset = 0;
        loadList({ autoSelect: true });
      });
    }
    $("refresh").addEventListener("click", () => loadList({ keepDetail: true }));
    $("prev").addEventListener("click", () => page(-1));
    $("next").addEventListener("click", () => page(1));
    for (const b of document.querySelectorAll("[data-review]")) {
      b.addEventListener("click", () => review(b.dataset.review));
    }
    $("banner-close").addEventListener("click", clearError);
    $("help-button").addEventListener("click", () => $("help").showModal());
    $("help-close").addEventListener("click", () => $("help").close());
    document.addEventListener("keydown", onKey);

    const wanted = state.selectedId;
    loadList({ autoSelect: true }).then(() => {
      // An event named in the URL opens even when it is not on this page.
      if (wanted !== null && (!state.event || state.event.id !== wanted)) select(wanted);
    });
  }

  document.addEventListener("DOMContentLoaded", init);
})();
