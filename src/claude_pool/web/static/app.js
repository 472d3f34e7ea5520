// The claude-pool dashboard: plain JavaScript, no build step, no outside resources.
// It reads the REST API and stays current from the server-sent events at /api/v1/events:
// each event updates the slot it concerns at once and schedules one re-read of the lists.
"use strict";

const API = "/api/v1";
const state = { token: null, lastEventId: null, activity: {}, slots: [], reviewDrafts: {} };

function tokenFromPage() {
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.get("token")) {
    sessionStorage.setItem("claude-pool-token", hash.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  return sessionStorage.getItem("claude-pool-token");
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h["Authorization"] = "Bearer " + state.token;
  return h;
}

class Unauthorized extends Error {}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = headers(opts.body ? { "Content-Type": "application/json" } : {});
  const response = await fetch(API + path, opts);
  if (response.status === 401) throw new Unauthorized();
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error((body && body.detail) || response.statusText);
  return body;
}

// ── small helpers ───────────────────────────────────────────────────

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const usd = (micro) => "$" + ((micro || 0) / 1e6).toFixed(micro >= 1e6 ? 2 : 4);
const secs = (ms) => (ms ? (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + "s" : "—");
const short = (id) => (id || "").replace(/^task-/, "").slice(0, 8);
const preview = (text, n) => {
  const flat = (text || "").replace(/\s+/g, " ").trim();
  return flat.length > n ? flat.slice(0, n - 1) + "…" : flat;
};
const stateChip = (s) => el("span", { class: "state", "data-state": s }, s.replace("_", " "));

function replace(container, nodes, empty) {
  container.replaceChildren(...(nodes.length ? nodes : [el("li", { class: "muted" }, empty)]));
}

// ── rendering ───────────────────────────────────────────────────────

function renderStatus(status) {
  document.getElementById("worker").textContent = "worker " + status.worker_id;
  const budget = status.budget_microdollars;
  const spent = status.spend_microdollars;
  document.getElementById("spend-text").textContent = budget
    ? `${usd(spent)} of ${usd(budget)}` + (status.budget_exhausted ? " — exhausted" : "")
    : `${usd(spent)} (no budget set)`;
  document.getElementById("spend-bar").style.width =
    budget ? Math.min(100, (100 * spent) / budget) + "%" : "0";
  const counts = Object.entries(status.tasks || {}).filter(([, n]) => n)
    .map(([s, n]) => `${n} ${s.replace("_", " ")}`);
  document.getElementById("task-counts").textContent = counts.join(" · ") || "no tasks yet";
  const limit = document.getElementById("ratelimit");
  limit.hidden = !status.rate_limit;
  if (status.rate_limit) {
    const until = new Date(status.rate_limit.until_ms).toLocaleTimeString();
    limit.textContent = `rate limited (HTTP ${status.rate_limit.status || "?"}) until ${until}`;
  }
  state.slots = status.slots;
  renderSlots();
}

function renderSlots() {
  const items = state.slots.map((slot) => {
    const name = slot.config.name || slot.config.role || slot.id;
    const doing = slot.current_task
      ? `${short(slot.current_task)} · ${state.activity[slot.id] || "running"}`
      : "";
    return el("li", { "data-slot-id": slot.id },
      el("strong", {}, name), " ", stateChip(slot.state),
      el("span", { class: "muted" }, ` · ${slot.tasks_completed} done · ${usd(slot.cost_microdollars)}`),
      doing ? el("span", { class: "activity" }, doing) : null);
  });
  replace(document.getElementById("slots"), items, "no slots");
}

// What a pending task waits for (its dependencies not yet completed), if anything.
function waitsFor(ids) {
  if (!ids || !ids.length) return null;
  return el("span", { class: "waits", title: ids.join(", ") }, "waits for ",
    ...ids.flatMap((id, i) => [i ? ", " : "", el("code", {}, short(id))]));
}

// Each run of a task's verification command: ✓ passed, ✗ failed (exit code), oldest first.
function checks(result) {
  const runs = (result && result.verifications) || [];
  if (!runs.length) return null;
  return el("span", { class: "checks", title: runs[runs.length - 1].command },
    ...runs.map((v) => el("span", { class: v.passed ? "pass" : "fail",
      title: `${v.command}: exit ${v.exit_code ?? "none"}\n${v.output || ""}` },
    v.passed ? "✓" : `✗${v.exit_code ?? ""}`)));
}

const isPlan = (t) => t.state === "pending_review" && t.plan_first && !t.plan_approved;

function renderQueue(tasks, waiting) {
  document.getElementById("queue-count").textContent = tasks.length ? `(${tasks.length})` : "";
  replace(document.getElementById("queue"), tasks.map((t) =>
    el("li", { "data-task-id": t.id }, el("code", {}, short(t.id)), " ", preview(t.prompt, 90),
      waitsFor(waiting[t.id]))),
  "nothing waiting");
}

function renderRecent(tasks) {
  const rows = tasks.map((t) => {
    const r = t.result || {};
    const elapsed = r.elapsed_ms || (t.started_at_ms ? Date.now() - t.started_at_ms : 0);
    return el("tr", { "data-task-id": t.id, "data-state": t.state },
      el("td", {}, el("code", { title: t.id }, short(t.id))),
      el("td", {}, stateChip(t.state)),
      el("td", { class: "prompt", title: t.prompt }, preview(t.original_prompt || t.prompt, 80),
        t.depends_on && t.depends_on.length
          ? el("span", { class: "after" }, "after ", ...t.depends_on.flatMap((id, i) =>
            [i ? ", " : "", el("code", {}, short(id))]))
          : null,
        t.plan_first ? el("span", { class: "badge" }, t.plan_approved ? "plan approved" : "plan first") : null,
        checks(t.result)),
      el("td", { class: "num" }, t.result ? usd(r.cost_microdollars) : "—"),
      el("td", { class: "num" }, t.result ? r.turns_used : "—"),
      el("td", { class: "num" }, t.state === "pending" ? "—" : secs(elapsed)));
  });
  document.querySelector("#recent tbody").replaceChildren(...rows);
}

function colorDiff(text) {
  const pre = el("pre", { class: "diff" });
  for (const line of text.split("\n")) {
    const cls = line.startsWith("+") && !line.startsWith("+++") ? "add"
      : line.startsWith("-") && !line.startsWith("---") ? "del" : null;
    pre.append(el("span", { class: cls }, line + "\n"));
  }
  return pre;
}

function renderReviews(tasks) {
  document.getElementById("review-count").textContent = tasks.length ? `(${tasks.length})` : "";
  const box = document.getElementById("reviews");
  // Keep feedback being typed across re-renders.
  for (const area of box.querySelectorAll("textarea")) state.reviewDrafts[area.dataset.taskId] = area.value;
  if (!tasks.length) { box.replaceChildren(el("p", { class: "muted" }, "nothing to review")); return; }
  box.replaceChildren(...tasks.map((t) => {
    const feedback = el("textarea", { rows: 2, placeholder: "What should change?", "data-task-id": t.id });
    feedback.value = state.reviewDrafts[t.id] || "";
    const diff = el("div", { class: "diff-box" });
    api(`/tasks/${encodeURIComponent(t.id)}/diff`).then((d) => {
      if (d.diff) diff.replaceChildren(el("strong", {}, "Worktree diff"), colorDiff(d.diff));
    }).catch(() => {});
    const attempt = t.rejection_count ? ` · attempt ${t.rejection_count + 1} of ${t.max_rejections + 1}` : "";
    const plan = isPlan(t);
    return el("div", { class: "review", "data-task-id": t.id, "data-kind": plan ? "plan" : "result" },
      el("div", {},
        el("span", { class: "kind" }, plan ? "Plan to approve" : "Result"), " ",
        el("code", {}, short(t.id)), " ", preview(t.original_prompt || t.prompt, 120),
        el("span", { class: "muted" }, attempt), checks(t.result)),
      el("pre", { class: "output" }, (t.result && t.result.output) || ""),
      diff,
      el("div", { class: "actions" },
        el("button", { class: "approve", onclick: () => act(t.id, "approve") },
          plan ? "Approve: carry it out" : "Approve"),
        feedback,
        el("button", { class: "reject secondary", onclick: () => {
          if (!feedback.value.trim()) { feedback.focus(); return; }
          const text = feedback.value;
          feedback.value = "";
          delete state.reviewDrafts[t.id];
          act(t.id, "reject", { feedback: text });
        } }, plan ? "Ask for a new plan" : "Reject with feedback")));
  }));
}

function renderModels(metrics) {
  const models = metrics.model_breakdown || [];
  document.querySelector("#models tbody").replaceChildren(...models.map((m) =>
    el("tr", {}, el("td", {}, m.model), el("td", { class: "num" }, m.task_count),
      el("td", { class: "num" }, usd(m.total_cost_microdollars)),
      el("td", { class: "num" }, secs(m.avg_elapsed_ms)))));
  const svg = document.getElementById("model-chart");
  const max = Math.max(1, ...models.map((m) => m.total_cost_microdollars));
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  svg.setAttribute("height", String(models.length * 22));
  models.forEach((m, i) => {
    const bar = document.createElementNS(ns, "rect");
    bar.setAttribute("x", "0"); bar.setAttribute("y", String(i * 22 + 3));
    bar.setAttribute("height", "16"); bar.setAttribute("rx", "3");
    const share = Math.max(1, (50 * m.total_cost_microdollars) / max);
    bar.setAttribute("width", share + "%");
    bar.setAttribute("fill", "var(--accent)");
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", share + 2 + "%");
    label.setAttribute("y", String(i * 22 + 15)); label.setAttribute("font-size", "11");
    label.setAttribute("fill", "currentColor");
    label.textContent = `${m.model} ${usd(m.total_cost_microdollars)}`;
    svg.append(bar, label);
  });
}

function renderChains(chains) {
  const box = document.getElementById("chains");
  if (!chains.length) { box.replaceChildren(el("p", { class: "muted" }, "no chains")); return; }
  box.replaceChildren(...chains.slice(-10).reverse().map((c) =>
    el("div", { class: "chain", "data-chain-id": c.id },
      el("div", {}, el("strong", {}, c.name || c.id), " ", stateChip(c.state),
        el("span", { class: "muted" }, " " + usd(c.total_cost_microdollars))),
      ...c.steps.map((s, i) => el("div", { class: "step" },
        el("span", {}, `${i + 1}. ${s.name}`),
        stateChip(c.current_step === i && c.state === "running" ? "running" : s.state))))));
}

// ── loading and acting ──────────────────────────────────────────────

async function refresh() {
  const [status, recent, queue, reviews, metrics, chains] = await Promise.all([
    api("/status"), api("/tasks?limit=25"), api("/tasks?state=pending&limit=50"),
    api("/tasks?state=pending_review&limit=20"), api("/metrics"), api("/chains?limit=50"),
  ]);
  renderStatus(status);
  renderRecent(recent.tasks);
  renderQueue(queue.tasks, queue.waiting || {});
  renderReviews(reviews.tasks);
  renderModels(metrics);
  renderChains(chains.chains);
  // Start the stream a little in the past, so that running tasks' latest text or tool shows.
  if (state.lastEventId === null) state.lastEventId = Math.max(0, status.latest_event_seq - 200);
}

let refreshTimer = null;
function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh().catch(failed); }, 150);
}

async function act(taskId, action, body) {
  try {
    await api(`/tasks/${encodeURIComponent(taskId)}/${action}`,
      { method: "POST", body: JSON.stringify(body || {}) });
  } catch (error) { alert(`${action} failed: ${error.message}`); }
  refreshSoon();
}

function failed(error) {
  if (error instanceof Unauthorized) { askForToken(); return; }
  console.error(error);
}

function askForToken() {
  document.getElementById("board").hidden = true;
  document.getElementById("login").hidden = false;
  setLive("offline", "needs a token");
}

function setLive(s, text) {
  const chip = document.getElementById("live");
  chip.dataset.state = s;
  chip.textContent = text || s;
}

// ── the event stream (fetch, so the token can go in a header) ───────

function onEvent(event) {
  if (event.type === "task_text" && event.slot_id) state.activity[event.slot_id] = "says: " + preview(event.text, 120);
  else if (event.type === "task_tool_use" && event.slot_id) state.activity[event.slot_id] = `tool: ${event.tool} ${preview(event.detail, 100)}`;
  else if (event.type === "task_claimed") state.activity[event.slot_id] = "starting…";
  else if (event.type === "task_started") state.activity[event.slot_id] = "running" + (event.model ? ` on ${event.model}` : "");
  if (event.type === "task_text" || event.type === "task_tool_use") renderSlots();
  if (!["task_text", "task_tool_use", "task_turn"].includes(event.type)) refreshSoon();
}

async function stream() {
  let delay = 500;
  for (;;) {
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (state.lastEventId !== null) h["Last-Event-ID"] = String(state.lastEventId);
      const response = await fetch(API + "/events", { headers: h });
      if (response.status === 401) { askForToken(); return; }
      if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
      setLive("live");
      delay = 500;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let current = {};
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, end).replace(/\r$/, "");
          buffer = buffer.slice(end + 1);
          if (line === "") {
            if (current.data) {
              state.lastEventId = Number(current.id);
              onEvent(JSON.parse(current.data));
            }
            current = {};
          } else if (!line.startsWith(":")) {
            const at = line.indexOf(":");
            const field = at < 0 ? line : line.slice(0, at);
            const val = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
            current[field] = field === "data" && current.data ? current.data + "\n" + val : val;
          }
        }
      }
    } catch (error) {
      console.warn("event stream:", error);
    }
    setLive("connecting", "reconnecting");
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(10000, delay * 2);
  }
}

// ── start ───────────────────────────────────────────────────────────

document.getElementById("login").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = document.getElementById("token").value.trim();
  sessionStorage.setItem("claude-pool-token", state.token);
  document.getElementById("login").hidden = true;
  document.getElementById("board").hidden = false;
  start();
});

document.getElementById("submit").addEventListener("submit", async (e) => {
  e.preventDefault();
  const prompt = document.getElementById("prompt");
  try {
    await api("/tasks", { method: "POST",
      body: JSON.stringify({ prompt: prompt.value, review: document.getElementById("review").checked }) });
    prompt.value = "";
  } catch (error) { alert("submit failed: " + error.message); }
  refreshSoon();
});

async function start() {
  try {
    await refresh();
  } catch (error) { failed(error); return; }
  stream();
}

state.token = tokenFromPage();
start();
