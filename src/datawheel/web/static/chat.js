// The Try-it chat, for a text-generation workspace: a conversation with the champion, and "Correct it" on
// every answer (a thumb, the answer edited into the one wanted, or the better of two answers).
// The page keeps the conversation and sends all of it each turn; the server stores each turn as one exchange.
"use strict";

// Oldest first: {role: "user"|"assistant", content}. An assistant turn's content is what the conversation
// continues from: the answer, the visitor's correction of it, or the answer they chose.
let chatTurns = [];
let chatBusy = false;

function chatMessages() { return chatTurns.map(({ role, content }) => ({ role, content })); }

function chatWho(key, extra) {
  const who = el("span", { class: "who" }, el("span", { "data-i18n": key, text: t(key) }));
  if (extra) who.append(" ", extra);
  return who;
}

function chatBubble(text) {
  if (text) return el("p", { class: "bubble", text });
  return el("p", { class: "bubble empty", "data-i18n": "chat.emptyAnswer", text: t("chat.emptyAnswer") });
}

function chatButton(key, cls, symbol) {
  const button = el("button", { type: "button", class: cls });
  if (symbol) button.append(el("span", { "aria-hidden": "true", text: symbol + "\u00a0" }));
  button.append(el("span", { "data-i18n": key, text: t(key) }));
  return button;
}

async function chatFeedback(item, body) {
  await api("POST", "/app/chat/feedback", { interaction_id: item.dataset.interactionId, ...body });
  say(t("try.thanks"));
  if (document.getElementById("my-records").childElementCount) await showMyData();
}

function chatThumbs(item) {
  const good = chatButton("chat.good", "thumb-up", "✓");
  const bad = chatButton("chat.bad", "thumb-down", "✗");
  for (const [button, rating] of [[good, 1], [bad, -1]]) {
    button.setAttribute("aria-pressed", "false");
    button.addEventListener("click", async () => {
      try {
        await chatFeedback(item, { rating });
        good.setAttribute("aria-pressed", String(rating === 1));
        bad.setAttribute("aria-pressed", String(rating === -1));
      } catch (error) { fail(error); }
    });
  }
  return [good, bad];
}

// "Edit the answer": the visitor's answer is sent as a correction and the conversation continues from it.
function chatEditor(item, turn, shown) {
  const form = el("form", { class: "edit-form", hidden: "" });
  const id = "wanted-" + item.dataset.interactionId;
  const box = el("textarea", { id, class: "correction", rows: "3", maxlength: "20000" });
  const cancel = chatButton("chat.cancel", "cancel");
  const submit = chatButton("chat.sendCorrection", "primary send-correction");
  submit.type = "submit";
  form.append(el("label", { for: id, "data-i18n": "chat.wanted", text: t("chat.wanted") }), box,
    el("div", { class: "row" }, submit, cancel));
  cancel.addEventListener("click", () => { form.hidden = true; });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const correction = box.value.trim();
    if (!correction) { say(t("chat.blank"), true); box.focus(); return; }
    try {
      await chatFeedback(item, { correction });
      turn.content = correction;
      shown(correction);
      form.hidden = true;
    } catch (error) { fail(error); }
  });
  const open = () => { box.value = turn.content; form.hidden = false; box.focus(); };
  return [form, open];
}

function chatCorrected(item, original) {
  return (correction) => {
    item.querySelector(".bubble").replaceWith(chatBubble(correction));
    let was = item.querySelector(".was");
    if (!was) {
      was = el("p", { class: "was" }, el("span", { "data-i18n": "chat.corrected", text: t("chat.corrected") }), " ",
        original ? el("span", { class: "original", text: original })
          : el("span", { class: "original", "data-i18n": "chat.emptyAnswer", text: t("chat.emptyAnswer") }));
      item.querySelector(".bubble").after(was);
    }
  };
}

function chatAnswer(answer, turn) {
  const item = el("li", { class: "msg assistant", "data-interaction-id": answer.interaction_id,
    "data-version": String(answer.model_version) });
  const text = answer.answers[0];
  const [form, open] = chatEditor(item, turn, chatCorrected(item, text));
  const edit = chatButton("chat.edit", "edit", "✎");
  edit.addEventListener("click", open);
  item.append(chatWho("chat.model", "v" + answer.model_version), chatBubble(text),
    el("div", { class: "row actions" }, ...chatThumbs(item), edit), form);
  return item;
}

function chatChoice(item, turn, answer, index) {
  const choice = el("div", { class: "choice", "data-index": String(index) },
    el("span", { class: "who" }, el("span", { "data-i18n": "try.answer", text: t("try.answer") }), " " + (index + 1)),
    chatBubble(answer.answers[index]));
  const pick = chatButton("chat.better", "choose");
  pick.addEventListener("click", async () => {
    try {
      await chatFeedback(item, { chosen: index });
      turn.content = answer.answers[index];
      for (const other of item.querySelectorAll(".choice")) {
        const mine = other === choice;
        other.classList.toggle("chosen", mine);
        other.querySelector(".choose").setAttribute("aria-pressed", String(mine));
      }
    } catch (error) { fail(error); }
  });
  pick.setAttribute("aria-pressed", "false");
  choice.append(pick);
  return choice;
}

function chatPair(answer, turn) {
  const item = el("li", { class: "msg assistant pair", "data-interaction-id": answer.interaction_id,
    "data-version": String(answer.model_version) });
  const choices = el("div", { class: "choices" }, ...answer.answers.map((_, i) => chatChoice(item, turn, answer, i)));
  const yours = (correction) => {
    let mine = item.querySelector(".yours");
    if (!mine) {
      mine = el("div", { class: "yours" }, chatWho("chat.yours"), chatBubble(correction));
      choices.after(mine);
    }
    mine.querySelector(".bubble").replaceWith(chatBubble(correction));
  };
  const [form, open] = chatEditor(item, turn, yours);
  const edit = chatButton("chat.editNeither", "edit", "✎");
  edit.addEventListener("click", open);
  item.append(chatWho("chat.model", "v" + answer.model_version), el("p", { class: "hint", "data-i18n": "chat.pick",
    text: t("chat.pick") }), choices, el("div", { class: "row actions" }, edit), form);
  return item;
}

async function chatSend() {
  const input = document.getElementById("chat-input");
  const text = input.value.trim();
  if (chatBusy) return;
  if (!text) { say(t("chat.blank"), true); return; }
  const log = document.getElementById("chat-log");
  const two = document.getElementById("two-answers").checked;
  const mine = el("li", { class: "msg user" }, chatWho("chat.you"), chatBubble(text));
  log.append(mine);
  document.getElementById("chat-intro").hidden = true;
  chatBusy = true; log.setAttribute("aria-busy", "true"); document.getElementById("chat-send").disabled = true;
  say(t("chat.thinking"));
  input.value = "";
  try {
    const answer = await api("POST", "/app/chat", { messages: [...chatMessages(), { role: "user", content: text }],
      n: two ? 2 : 1 });
    const turn = { role: "assistant", content: answer.answers[0] };
    chatTurns.push({ role: "user", content: text }, turn);
    log.append(answer.answers.length > 1 ? chatPair(answer, turn) : chatAnswer(answer, turn));
    say("");
  } catch (error) {
    mine.remove(); input.value = text; fail(error);
  } finally {
    chatBusy = false; log.removeAttribute("aria-busy"); document.getElementById("chat-send").disabled = false;
    log.lastElementChild && log.lastElementChild.scrollIntoView({ block: "nearest" });
    input.focus();
  }
}

function setupChat() {
  const input = document.getElementById("chat-input");
  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter is a new line; Enter that confirms an input method's candidate (Chinese) is not a send.
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    chatSend();
  });
  document.getElementById("chat-send").addEventListener("click", chatSend);
  document.getElementById("chat-new").addEventListener("click", () => { chatReset(); input.focus(); });
}

// A new conversation; also after erasure, whose answers can no longer take feedback.
function chatReset() {
  chatTurns = [];
  document.getElementById("chat-log").replaceChildren();
  document.getElementById("chat-intro").hidden = false;
}

// One conversation in "My data": the visitor's last message, the answers it got, and what they said back.
function chatRecord(r, list) {
  const said = r.feedback.map((f) => f.correction || (f.chosen !== null && f.chosen !== undefined
    ? t("my.chose", { n: f.chosen + 1 }) : f.rating === 1 ? t("chat.good") : f.rating === -1 ? t("chat.bad") : ""))
    .filter(Boolean);
  const answers = r.answers.map((a) => a || t("chat.emptyAnswer"));
  return el("li", { class: "record chat-record", "data-answers": String(r.answers.length) },
    showInput(r.input, ""),
    el("span", { text: t("my.predicted") + ": " + (answers.length ? answers.join(" | ") : "—") }),
    el("span", { text: t("my.yourLabel") + ": " + (said.length ? said.join("; ") : "—") }),
    el("span", { text: t("my.models") + ": " + list(r.models, "v") }));
}
