// The community page: contributors ranked by the computed value of their labels, and the visitor's own share.
"use strict";

let DATA = null;
let ME = null;

function render() {
  if (!DATA || !ME) return;
  const rows = DATA.contributors.map((c) => {
    const name = el("td", { text: c.name + (c.you ? " " + t("community.you") : "") });
    const row = el("tr", { "data-name": c.name }, el("td", { text: String(c.rank) }), name,
      el("td", { text: c.value.toFixed(3) }), el("td", { text: String(c.labels) }));
    if (c.you) row.classList.add("you");
    return row;
  });
  document.querySelector("#ranking tbody").replaceChildren(...rows);
  document.getElementById("ranking-empty").hidden = rows.length > 0;
  document.getElementById("method-name").textContent = DATA.method;
  document.getElementById("method-about").textContent = t("community.about");
  const v = DATA.valuation;
  document.getElementById("method-cost").textContent = v ? t("community.cost", { cycle: v.cycle_id.slice(0, 8),
    points: v.points, tests: v.test_points, seconds: v.seconds }) : t("community.none");
  document.getElementById("me").textContent = t("community.me", { name: ME.you, corrections: ME.corrections,
    contributions: ME.contributions, models: ME.models.length });
  document.getElementById("me-value").textContent = ME.valued ? t("community.meValue", { value: ME.value.toFixed(3),
    rank: ME.rank, of: ME.of, cls: ME.best_class, points: (ME.best_class_points || 0).toFixed(2) }) : t("community.meNot");
}

document.addEventListener("dw-language", render);
document.addEventListener("DOMContentLoaded", async () => {
  try {
    await startSession();
    [DATA, ME] = await Promise.all([api("GET", "/app/community"), api("GET", "/app/community/me")]);
    render();
  } catch (error) { fail(error); }
});
