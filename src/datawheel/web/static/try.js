// The Try-it page: draw or type, get the model's answer, correct it, manage consent and "My data".
// A text-generation workspace's chat is in chat.js.
"use strict";

let lastAnswer = null;
let drawn = false;

function setupCanvas() {
  const canvas = document.getElementById("canvas");
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, canvas.width, canvas.height); drawn = false; };
  clear();
  let last = null;
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => { canvas.setPointerCapture(event.pointerId); last = point(event); });
  canvas.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = point(event);
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 20; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(last[0], last[1]); ctx.lineTo(next[0], next[1]); ctx.stroke();
    last = next; drawn = true;
  });
  for (const type of ["pointerup", "pointercancel", "pointerleave"]) canvas.addEventListener(type, () => { last = null; });
  document.getElementById("clear").addEventListener("click", clear);
  document.getElementById("upload").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const image = new Image();
    image.onload = () => {
      clear();
      const scale = Math.min(canvas.width / image.width, canvas.height / image.height);
      ctx.drawImage(image, 0, 0, image.width * scale, image.height * scale);
      drawn = true; URL.revokeObjectURL(image.src);
    };
    image.src = URL.createObjectURL(file);
  });
  document.getElementById("predict-image").addEventListener("click", () => {
    if (!drawn) { say(t("try.blank"), true); return; }
    ask({ image: canvas.toDataURL("image/png") });
  });
}

async function ask(input) {
  try {
    const answer = await api("POST", "/app/predict", { input });
    lastAnswer = answer;
    showAnswer(answer);
    say("");
  } catch (error) { fail(error); }
}

function showAnswer(answer) {
  document.getElementById("result").hidden = false;
  document.getElementById("answer").textContent = answer.label;
  document.getElementById("answer-version").textContent = "v" + answer.model_version;
  const list = document.getElementById("scores");
  list.replaceChildren();
  for (const item of answer.top) {
    const bar = el("div", { class: "bar" });
    bar.style.width = Math.max(1, Math.round(item.score * 100)) + "%";
    const track = el("div", { class: "bar-track", role: "meter", "aria-valuemin": "0", "aria-valuemax": "100",
      "aria-valuenow": String(Math.round(item.score * 100)), "aria-label": item.label }, bar);
    list.append(el("li", {}, el("strong", { text: item.label }), track, el("span", { text: (item.score * 100).toFixed(1) + "%" })));
  }
  const select = document.getElementById("right-label");
  select.value = answer.label;
}

async function sendFeedback(body) {
  if (!lastAnswer) return;
  try {
    await api("POST", "/app/feedback", { interaction_id: lastAnswer.interaction_id, ...body });
    say(t("try.thanks"));
    if (!document.getElementById("my-records").hidden) await showMyData();
  } catch (error) { fail(error); }
}

function setupAnswer(labels) {
  const select = document.getElementById("right-label");
  select.replaceChildren(...labels.map((label) => el("option", { value: label, text: label })));
  document.getElementById("send-correction").addEventListener("click", () => sendFeedback({ label: select.value }));
  document.getElementById("thumbs-up").addEventListener("click", () => sendFeedback({ rating: 1 }));
  document.getElementById("thumbs-down").addEventListener("click", () => sendFeedback({ rating: -1 }));
  document.getElementById("predict-text").addEventListener("click", () => {
    const text = document.getElementById("text-input").value;
    if (!text.trim()) { say(t("try.blank"), true); return; }
    ask({ text });
  });
}

function setupConsent(consent) {
  // The switch stays disabled until the session says where it stands: a click before that would be undone.
  const box = document.getElementById("consent");
  box.checked = Boolean(consent && consent.training);
  box.disabled = false;
  box.addEventListener("change", async () => {
    try {
      const answer = await api("PUT", "/app/consent", { training: box.checked });
      box.checked = answer.consent.training;
      say(t(box.checked ? "consent.on" : "consent.off"));
    } catch (error) { box.checked = !box.checked; fail(error); }
  });
}

async function showMyData() {
  try {
    const data = await api("GET", "/app/my-data");
    const s = data.summary;
    const list = (xs, prefix) => xs.length ? xs.map((x) => prefix + String(x).slice(0, 8)).join(", ") : t("my.none");
    const chat = DW.session && DW.session.task === "text-generation";
    document.getElementById("my-summary").textContent = data.records.length === 0 ? t("my.empty") : t(chat ? "my.summaryChat" : "my.summary", {
      interactions: s.interactions + s.contributions, corrections: s.corrections, ratings: s.ratings, choices: s.choices,
      snapshots: list(s.snapshots, ""), models: list(s.models, "v") });
    document.getElementById("my-summary").dataset.corrections = String(s.corrections);
    const records = document.getElementById("my-records");
    records.hidden = false;
    records.replaceChildren(...data.records.map((r) => {
      if (r.answers) return chatRecord(r, list);
      const yours = r.feedback.filter((f) => f.label).map((f) => f.label).pop() || r.label || "—";
      return el("li", { class: "record" }, showInput(r.input, t("my.predicted") + " " + (r.predicted_label || "")),
        el("span", { text: t("my.predicted") + ": " + (r.predicted_label || "—") }),
        el("span", { text: t("my.yourLabel") + ": " + yours }),
        el("span", { text: t("my.models") + ": " + list(r.models, "v") }));
    }));
  } catch (error) { fail(error); }
}

function setupMyData() {
  document.getElementById("show-data").addEventListener("click", showMyData);
  const dialog = document.getElementById("confirm-delete");
  document.getElementById("delete-data").addEventListener("click", () => dialog.showModal());
  document.getElementById("confirm-no").addEventListener("click", () => dialog.close());
  document.getElementById("confirm-yes").addEventListener("click", async () => {
    dialog.close();
    try {
      const answer = await api("DELETE", "/app/my-data");
      DW.csrf = answer.csrf;
      const r = answer.receipt;
      const models = r.model_versions_trained_on_user_data;
      document.getElementById("receipt").hidden = false;
      document.getElementById("receipt-text").textContent = t("my.receiptText", { id: r.receipt_id,
        records: r.records_deleted, feedback: r.feedback_deleted, models: models.length ? models.map((v) => "v" + v).join(", ") : t("my.none") })
        + (r.replacement_training ? " " + t("my.retraining") : "");
      document.getElementById("my-records").replaceChildren();
      document.getElementById("my-summary").textContent = "";
      document.getElementById("consent").checked = false;
      if (DW.session.task === "text-generation") chatReset();
      const session = await startSession();
      document.getElementById("pseudonym").textContent = session.you;
    } catch (error) { fail(error); }
  });
}

document.addEventListener("DOMContentLoaded", async () => {
  try {
    const session = await startSession();
    const panel = document.getElementById("panel-" + session.task) || document.getElementById("panel-unknown");
    panel.hidden = false;
    document.getElementById("pseudonym").textContent = session.you;
    if (session.task === "image-classification") setupCanvas();
    if (session.task === "text-generation") setupChat();
    setupAnswer(session.labels);
    setupConsent(session.consent);
    setupMyData();
  } catch (error) { fail(error); }
});
