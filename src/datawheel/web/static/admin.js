// The operator console: sign in once (the key becomes an HTTP-only cookie), then watch and steer the wheel.
"use strict";

let ROLE = null;
let queueItem = null;
let queueKeys = {};

function svgNode(markup) {
  const doc = new DOMParser().parseFromString(markup, "image/svg+xml");
  return document.importNode(doc.documentElement, true);
}

function cell(text) { return el("td", { text: text === null || text === undefined ? "—" : String(text) }); }
function pct(x) { return typeof x === "number" ? (x * 100).toFixed(2) + "%" : "—"; }

async function loadOverview() {
  const data = await api("GET", "/app/console/overview");
  for (const name of ["accuracy", "activity", "reasons", "snapshots"]) {
    document.getElementById("chart-" + name + "-box").replaceChildren(svgNode(data.charts[name]));
  }
}

function cycleRow(c) {
  const report = c.report || {};
  const details = el("details", {}, el("summary", { text: c.id.slice(0, 8) }), el("pre", { text: JSON.stringify(report, null, 2) }));
  const valuation = report.valuation ? report.valuation.seconds : null;
  return el("tr", {}, cell(c.id.slice(0, 8)), cell(c.status), cell(c.decision), cell(c.champion_version ? "v" + c.champion_version : null),
    cell(pct(report.champion_accuracy)), cell(valuation), el("td", {}, details));
}

async function loadCycles() {
  const data = await api("GET", "/app/console/cycles");
  document.querySelector("#cycles tbody").replaceChildren(...data.cycles.map(cycleRow));
  const running = data.cycles.find((c) => c.status === "running");
  if (running) watchCycle(running.id);
}

let watching = null;
async function watchCycle(id) {
  if (watching === id) return;
  watching = id;
  const box = document.getElementById("cycle-progress");
  const bar = document.getElementById("cycle-bar");
  const stage = document.getElementById("cycle-stage");
  const button = document.getElementById("run-cycle");
  box.hidden = false; button.disabled = true;
  for (;;) {
    const c = await api("GET", "/app/console/cycles/" + id);
    const steps = c.progress.steps;
    bar.value = [steps.curated, steps.trained, steps.released].filter(Boolean).length;
    stage.textContent = t("admin.stage", { id: id.slice(0, 8), stage: c.progress.stage, seconds: c.progress.elapsed_seconds });
    stage.dataset.stage = c.progress.stage;
    if (c.status !== "running") break;
    await new Promise((resolve) => setTimeout(resolve, 700));
  }
  watching = null; button.disabled = false;
  await Promise.all([loadOverview(), loadCycles(), loadModels(), loadQueue(), loadAudit()]);
}

async function runCycle() {
  try {
    const started = await api("POST", "/app/console/cycles", { warm_start: document.getElementById("warm-start").checked });
    await watchCycle(started.cycle_id);
  } catch (error) { fail(error); document.getElementById("run-cycle").disabled = false; }
}

function modelRow(m) {
  const promote = el("button", { type: "button", class: "promote", "data-version": String(m.version), text: t("admin.promote") });
  promote.disabled = m.aliases.includes("champion");
  promote.addEventListener("click", () => act("POST", "/app/console/models/" + m.version + "/promote"));
  const card = el("button", { type: "button", text: t("admin.card") });
  card.addEventListener("click", async () => {
    const answer = await api("GET", "/app/console/models/" + m.version + "/card");
    const pre = document.getElementById("card");
    pre.hidden = false; pre.textContent = answer.markdown; pre.focus();
  });
  const row = el("tr", { "data-version": String(m.version) }, cell("v" + m.version), cell(m.model_name),
    cell(m.aliases.join(", ")), cell(pct(m.accuracy)), el("td", {}, promote, " ", card));
  if (m.aliases.includes("champion")) row.classList.add("you");
  return row;
}

async function loadModels() {
  const data = await api("GET", "/app/console/models");
  document.querySelector("#models tbody").replaceChildren(...data.models.map(modelRow));
}

async function act(method, path) {
  try { await api(method, path); await Promise.all([loadModels(), loadOverview()]); say(""); } catch (error) { fail(error); }
}

async function loadTrials() {
  const data = await api("GET", "/app/console/trials");
  const parts = [];
  if (data.shadow) parts.push("shadow v" + data.shadow.version + ": " + JSON.stringify(data.shadow));
  if (data.canary) parts.push("canary v" + data.canary.canary.version + " (" + data.canary.canary.with_feedback + " judged, accuracy " + pct(data.canary.canary.accuracy) + ") vs champion v" + data.canary.champion.version + " (" + pct(data.canary.champion.accuracy) + ")");
  document.getElementById("trials").textContent = parts.length ? parts.join(" · ") : t("admin.noTrial");
}

function keyFor(label, index, labels) {
  if (labels.every((l) => l.length === 1)) return label;
  return index < 9 ? String(index + 1) : null;
}

async function loadQueue() {
  const data = await api("GET", "/app/console/queue");
  queueItem = data.item;
  document.getElementById("queue-open").textContent = t("admin.queueOpen", { n: data.open });
  const holder = document.getElementById("queue-item");
  const labels = document.getElementById("queue-labels");
  queueKeys = {};
  if (!queueItem) { holder.replaceChildren(el("p", { text: t("admin.queueEmpty") })); labels.replaceChildren(); return; }
  holder.replaceChildren(showInput(queueItem.input, t("admin.queue")));
  holder.dataset.itemId = queueItem.item_id;
  labels.replaceChildren(...data.labels.map((label, i) => {
    const key = keyFor(label, i, data.labels);
    if (key) queueKeys[key] = label;
    const button = el("button", { type: "button", "aria-keyshortcuts": key || "" }, label, " ", el("kbd", { text: key || "" }));
    button.addEventListener("click", () => answer(label));
    return button;
  }));
}

async function answer(label) {
  if (!queueItem) return;
  const item = queueItem;
  queueItem = null;
  try { await api("POST", "/app/console/queue/" + item.item_id, { label }); say(label + " ✓"); } catch (error) { fail(error); }
  await loadQueue();
}

function onKey(event) {
  const tag = (event.target.tagName || "").toLowerCase();
  if (["input", "textarea", "select"].includes(tag) || event.ctrlKey || event.metaKey || event.altKey) return;
  if (queueItem && queueKeys[event.key] !== undefined) { event.preventDefault(); answer(queueKeys[event.key]); }
}

async function loadAudit() {
  const data = await api("GET", "/app/console/audit");
  const chain = document.getElementById("chain");
  chain.className = data.chain.ok ? "ok" : "bad";
  chain.textContent = data.chain.ok ? t("admin.chainOk", { n: data.chain.entries }) : t("admin.chainBroken", data.chain);
  document.querySelector("#audit tbody").replaceChildren(...data.entries.map((e) =>
    el("tr", {}, cell(e.seq === undefined ? e.id : e.seq), cell(e.at), cell(e.actor), cell(e.action))));
}

async function enter(role) {
  ROLE = role;
  document.getElementById("login").hidden = true;
  document.getElementById("console").hidden = false;
  document.getElementById("signed-in").textContent = t("admin.signedIn", { role });
  for (const section of document.querySelectorAll(".admin-only")) section.hidden = role !== "admin";
  const loads = [loadQueue()];
  if (role === "admin") loads.push(loadOverview(), loadCycles(), loadModels(), loadTrials(), loadAudit());
  try { await Promise.all(loads); } catch (error) { fail(error); }
}

document.addEventListener("dw-language", () => { if (ROLE) enter(ROLE); });
document.addEventListener("DOMContentLoaded", async () => {
  document.addEventListener("keydown", onKey);
  document.getElementById("run-cycle").addEventListener("click", runCycle);
  document.getElementById("rollback").addEventListener("click", () => act("POST", "/app/console/rollback"));
  document.getElementById("logout").addEventListener("click", async () => {
    await api("POST", "/app/console/logout"); location.reload();
  });
  document.getElementById("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = document.getElementById("key");
    try {
      const answer = await api("POST", "/app/console/login", { key: input.value });
      input.value = "";
      await enter(answer.role);
    } catch (error) { fail(error); }
  });
  try {
    await startSession();
    const who = await api("GET", "/app/console/whoami");
    await enter(who.role);
  } catch (error) {
    document.getElementById("login").hidden = false;
    if (error.status !== 401) fail(error);
  }
});
