// Shared by every page: the UI's words in English and Chinese, the language switch, and same-origin JSON calls.
// No library: the pages must work offline and under a CSP that allows only this origin's scripts.
"use strict";

const STRINGS = {
  en: {
    "nav.try": "Try it", "nav.admin": "Operator console", "nav.community": "Community", "lang.switch": "中文",
    "lang.label": "Switch the interface to Chinese",
    "try.title": "Try the model", "try.draw": "Draw a digit with your mouse or finger",
    "try.canvas": "Drawing area: draw one character", "try.clear": "Clear", "try.upload": "Upload an image",
    "try.predict": "Ask the model", "try.text": "Your text", "try.unknownTask": "This workspace's task has no panel yet.",
    "try.answer": "Answer", "try.version": "model version", "try.top3": "Top 3 scores",
    "try.correct": "Correct it", "try.rightLabel": "The right label", "try.sendCorrection": "Send correction",
    "try.thumbsUp": "Right answer", "try.thumbsDown": "Wrong answer", "try.thanks": "Thank you: your feedback is stored.",
    "try.blank": "Draw or upload something first.",
    "chat.title": "Chat with the model", "chat.log": "Conversation",
    "chat.intro": "Ask anything. After each answer you can rate it, edit it into the answer you wanted, or ask for two answers and pick the better one.",
    "chat.message": "Your message", "chat.keys": "Enter sends; Shift+Enter starts a new line.", "chat.send": "Send",
    "chat.two": "Show me two answers to pick from", "chat.new": "New conversation", "chat.you": "You", "chat.model": "Model",
    "chat.thinking": "The model is writing…", "chat.blank": "Type a message first.",
    "chat.emptyAnswer": "(the model gave an empty answer)", "chat.good": "Good answer", "chat.bad": "Bad answer",
    "chat.edit": "Edit the answer", "chat.editNeither": "Neither: write the answer you wanted",
    "chat.wanted": "The answer you wanted", "chat.sendCorrection": "Send correction", "chat.cancel": "Cancel",
    "chat.pick": "Two answers: pick the better one.", "chat.better": "This one is better", "chat.yours": "Your answer",
    "chat.corrected": "Corrected by you; the model had said:",
    "consent.label": "Let my inputs and corrections train future models",
    "consent.explain": "Training consent means what you send here and your corrections may be used to train the next versions of this model; you can withdraw it, or delete everything, at any time.",
    "consent.on": "Training consent is on.", "consent.off": "Training consent is off: nothing of yours will be trained on.",
    "my.title": "My data", "my.show": "Show my data", "my.download": "Download as JSON", "my.delete": "Delete my data",
    "my.you": "Your pseudonym", "my.summary": "Answers: {interactions}; corrections: {corrections}; ratings: {ratings}. Went into snapshots: {snapshots}; models: {models}.",
    "my.none": "nothing yet", "my.empty": "Nothing is held about you.", "my.predicted": "model said", "my.yourLabel": "you said",
    "my.models": "trained models", "my.confirmTitle": "Delete all your data?",
    "my.confirmText": "Your records, corrections and consent history are deleted from this server now. Models already trained on them are named in the receipt.",
    "my.confirm": "Delete everything", "my.cancel": "Cancel", "my.receipt": "Erasure receipt",
    "my.receiptText": "Receipt {id}: {records} records and {feedback} feedback deleted; models trained on your data: {models}.",
    "my.retraining": "A replacement for the serving model, trained without your data, is being trained now.",
    "my.summaryChat": "Conversations: {interactions}; corrected answers: {corrections}; choices between two answers: {choices}; ratings: {ratings}. Went into snapshots: {snapshots}; models: {models}.",
    "my.chose": "chose answer {n}",
    "admin.title": "Operator console", "admin.key": "Admin or annotator key", "admin.login": "Sign in",
    "admin.logout": "Sign out", "admin.signedIn": "Signed in as {role}.",
    "admin.overview": "The wheel at a glance", "admin.cycles": "Cycles", "admin.run": "Run a cycle",
    "admin.warm": "Warm start from the champion", "admin.progress": "Cycle progress",
    "admin.stage": "Cycle {id}: {stage}, {seconds} s", "admin.models": "Model registry", "admin.rollback": "Roll back",
    "admin.promote": "Promote", "admin.card": "Model card", "admin.trials": "Shadow and canary",
    "admin.noTrial": "No shadow or canary is running.", "admin.queue": "Annotation queue",
    "admin.queueHelp": "Press a label's key to answer; the next item follows.", "admin.queueEmpty": "The queue is empty.",
    "admin.queueOpen": "{n} open items", "admin.audit": "Audit chain", "admin.chainOk": "Verified: {n} entries, chain intact.",
    "admin.chainBroken": "Broken at entry {first}: {problem}", "col.version": "Version", "col.model": "Model",
    "col.aliases": "Aliases", "col.accuracy": "Accuracy", "col.actions": "Actions", "col.cycle": "Cycle",
    "col.status": "Status", "col.decision": "Decision", "col.champion": "Champion", "col.valuation": "Valuation (s)",
    "col.report": "Report", "col.at": "At", "col.actor": "Actor", "col.action": "Action", "col.rank": "Rank",
    "col.name": "Contributor", "col.value": "Value (accuracy points)", "col.labels": "Labels",
    "community.title": "Community", "community.method": "How value is computed",
    "community.about": "Each label's Shapley value for a k-nearest-neighbour classifier on the serving model's embeddings, judged by accuracy on the golden set (Jia et al., VLDB 2019: exact, O(N log N) per golden item). A contributor's value is the sum over their labels, in accuracy points; wrong labels count against it.",
    "community.cost": "Computed in cycle {cycle}: {points} labels against {tests} golden items in {seconds} s.",
    "community.none": "No cycle has valued contributions yet.", "community.you": "(you)",
    "community.mine": "Your contribution", "community.empty": "No consenting contributor has been valued yet.",
    "community.me": "You are {name}. Your {corrections} corrections and {contributions} contributions went into {models} models.",
    "community.meValue": "Your labels are worth {value} accuracy points (rank {rank} of {of}); without them, accuracy on class {cls} would be about {points} points lower.",
    "community.meNot": "Your labels have not been valued: valuation needs training consent and a cycle after your labels.",
    "error": "Something went wrong: {detail}",
  },
  zh: {
    "nav.try": "试一试", "nav.admin": "运维控制台", "nav.community": "社区", "lang.switch": "English",
    "lang.label": "将界面切换为英文",
    "try.title": "试用模型", "try.draw": "用鼠标或手指写一个数字", "try.canvas": "绘图区：写一个字符", "try.clear": "清除",
    "try.upload": "上传图片", "try.predict": "让模型识别", "try.text": "你的文本", "try.unknownTask": "此工作区的任务暂无界面。",
    "try.answer": "答案", "try.version": "模型版本", "try.top3": "前三得分", "try.correct": "纠正它",
    "try.rightLabel": "正确的标签", "try.sendCorrection": "提交纠正", "try.thumbsUp": "答对了", "try.thumbsDown": "答错了",
    "try.thanks": "谢谢：你的反馈已保存。", "try.blank": "请先画或上传一张图。",
    "chat.title": "和模型对话", "chat.log": "对话",
    "chat.intro": "随便问。每个回答之后，你可以评价它、把它改成你想要的回答，或者要两个回答并选出更好的一个。",
    "chat.message": "你的消息", "chat.keys": "按 Enter 发送；按 Shift+Enter 换行。", "chat.send": "发送",
    "chat.two": "给我两个回答来挑选", "chat.new": "新对话", "chat.you": "你", "chat.model": "模型",
    "chat.thinking": "模型正在回答…", "chat.blank": "请先输入消息。", "chat.emptyAnswer": "（模型给出了空回答）",
    "chat.good": "好回答", "chat.bad": "不好的回答", "chat.edit": "修改回答", "chat.editNeither": "都不好：写出你想要的回答",
    "chat.wanted": "你想要的回答", "chat.sendCorrection": "提交纠正", "chat.cancel": "取消",
    "chat.pick": "两个回答：选出更好的一个。", "chat.better": "这个更好", "chat.yours": "你的回答",
    "chat.corrected": "已由你纠正；模型原来的回答：",
    "consent.label": "允许用我的输入和纠正训练以后的模型",
    "consent.explain": "训练同意的意思是：你在这里提交的内容和你的纠正可能被用来训练这个模型的后续版本；你可以随时撤回，或删除全部数据。",
    "consent.on": "已同意用于训练。", "consent.off": "未同意用于训练：你的数据不会被用来训练。",
    "my.title": "我的数据", "my.show": "查看我的数据", "my.download": "下载 JSON", "my.delete": "删除我的数据",
    "my.you": "你的化名", "my.summary": "{interactions} 次回答，{corrections} 次纠正，{ratings} 次评价；进入的快照：{snapshots}；模型：{models}。",
    "my.none": "暂无", "my.empty": "服务器上没有你的数据。", "my.predicted": "模型回答", "my.yourLabel": "你的标签",
    "my.models": "训练过的模型", "my.confirmTitle": "删除你的全部数据？",
    "my.confirmText": "你的记录、纠正和同意历史将立即从服务器删除。已用它们训练过的模型会列在回执中。",
    "my.confirm": "全部删除", "my.cancel": "取消", "my.receipt": "删除回执",
    "my.receiptText": "回执 {id}：删除了 {records} 条记录和 {feedback} 条反馈；用你的数据训练过的模型：{models}。",
    "my.retraining": "正在训练一个不含你的数据的新模型，用来替换当前在用的模型。",
    "my.summaryChat": "{interactions} 次对话，{corrections} 次纠正回答，{choices} 次二选一，{ratings} 次评价；进入的快照：{snapshots}；模型：{models}。",
    "my.chose": "选了回答 {n}",
    "admin.title": "运维控制台", "admin.key": "管理员或标注员密钥", "admin.login": "登录", "admin.logout": "退出",
    "admin.signedIn": "已以 {role} 身份登录。", "admin.overview": "飞轮概览", "admin.cycles": "训练周期",
    "admin.run": "运行一个周期", "admin.warm": "从当前冠军模型热启动", "admin.progress": "周期进度",
    "admin.stage": "周期 {id}：{stage}，{seconds} 秒", "admin.models": "模型注册表", "admin.rollback": "回滚",
    "admin.promote": "设为冠军", "admin.card": "模型卡", "admin.trials": "影子与金丝雀", "admin.noTrial": "没有运行中的影子或金丝雀。",
    "admin.queue": "标注队列", "admin.queueHelp": "按标签对应的键作答，随后显示下一项。", "admin.queueEmpty": "队列为空。",
    "admin.queueOpen": "{n} 项待标注", "admin.audit": "审计链", "admin.chainOk": "已验证：{n} 条记录，链完整。",
    "admin.chainBroken": "在第 {first} 条断开：{problem}", "col.version": "版本", "col.model": "模型", "col.aliases": "别名",
    "col.accuracy": "准确率", "col.actions": "操作", "col.cycle": "周期", "col.status": "状态", "col.decision": "决定",
    "col.champion": "冠军", "col.valuation": "估值耗时（秒）", "col.report": "报告", "col.at": "时间", "col.actor": "执行者",
    "col.action": "动作", "col.rank": "名次", "col.name": "贡献者", "col.value": "价值（准确率点数）", "col.labels": "标签数",
    "community.title": "社区", "community.method": "价值如何计算",
    "community.about": "每个标签的价值是它在 k 近邻分类器（基于当前模型的嵌入）上的 Shapley 值，以黄金集准确率衡量（Jia 等，VLDB 2019：精确计算，每个黄金样本 O(N log N)）。贡献者的价值是其全部标签之和，单位为准确率点数；错误的标签会降低价值。",
    "community.cost": "在周期 {cycle} 中计算：{points} 个标签、{tests} 个黄金集样本，用时 {seconds} 秒。",
    "community.none": "还没有周期计算过贡献价值。", "community.you": "（你）", "community.mine": "你的贡献",
    "community.empty": "还没有已同意的贡献者被估值。",
    "community.me": "你是 {name}。你的 {corrections} 次纠正和 {contributions} 次贡献进入了 {models} 个模型。",
    "community.meValue": "你的标签价值 {value} 个准确率点（第 {rank} 名，共 {of} 名）；没有它们，类别 {cls} 的准确率约低 {points} 个点。",
    "community.meNot": "你的标签尚未估值：估值需要训练同意，并在你的标签之后运行一个周期。",
    "error": "出错了：{detail}",
  },
};

function pickLanguage() {
  const saved = localStorage.getItem("dw-lang");
  if (saved === "en" || saved === "zh") return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

let LANG = pickLanguage();

function t(key, values) {
  let text = (STRINGS[LANG] && STRINGS[LANG][key]) || STRINGS.en[key] || key;
  for (const [name, value] of Object.entries(values || {})) text = text.split("{" + name + "}").join(String(value));
  return text;
}

function translatePage() {
  document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  document.dispatchEvent(new Event("dw-language"));
}

function setupLanguageSwitch() {
  const button = document.getElementById("lang-switch");
  if (!button) return;
  button.addEventListener("click", () => {
    LANG = LANG === "zh" ? "en" : "zh";
    localStorage.setItem("dw-lang", LANG);
    translatePage();
  });
}

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; this.detail = detail; }
}

const DW = { csrf: "", session: null };

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  const options = { method, headers, credentials: "same-origin" };
  if (body !== undefined) { headers["Content-Type"] = "application/json"; options.body = JSON.stringify(body); }
  if (method !== "GET") headers["X-CSRF-Token"] = DW.csrf;
  const response = await fetch(path, options);
  let data = {};
  try { data = await response.json(); } catch (e) { data = {}; }
  if (!response.ok) throw new ApiError(response.status, data.detail || response.statusText);
  return data;
}

async function startSession() {
  DW.session = await api("GET", "/app/session");
  DW.csrf = DW.session.csrf;
  return DW.session;
}

function say(message, isError) {
  const status = document.getElementById("status");
  if (!status) return;
  status.textContent = message;
  status.classList.toggle("error", Boolean(isError));
}

function fail(error) { say(t("error", { detail: error.detail || error.message }), true); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function showInput(input, alt) {
  if (input && input.image) return el("img", { src: "data:image/png;base64," + input.image, alt: alt, class: "thumb" });
  if (input && input.messages) {  // a conversation: the turn the model answered is its last user message
    const asked = input.messages.filter((m) => m.role === "user").pop();
    return el("span", { class: "text-input", text: asked ? asked.content : "" });
  }
  return el("span", { class: "text-input", text: (input && input.text) || "" });
}

document.addEventListener("DOMContentLoaded", () => { setupLanguageSwitch(); translatePage(); });
