// Live aggregates: polls the API and draws bar charts. Served by the service itself (no CDN).
"use strict";

const LABELS = {};
const MAX_BARS = 12;

function bars(id, entries) {
  const box = document.getElementById(id);
  box.replaceChildren();
  const top = entries.slice(0, MAX_BARS);
  const max = Math.max(1, ...top.map(([, n]) => n));
  for (const [label, count] of top) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.key = label;
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = LABELS[label] || label;
    name.title = name.textContent;
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${(100 * count) / max}%`;
    const n = document.createElement("span");
    n.className = "count";
    n.textContent = count.toLocaleString("en");
    row.append(name, fill, n);
    box.append(row);
  }
}

async function refresh() {
  const survey = document.getElementById("survey").value;
  const url = survey ? `/v1/surveys/${encodeURIComponent(survey)}/summary` : "/v1/overview";
  const response = await fetch(url);
  if (!response.ok) return;
  const data = await response.json();
  document.getElementById("total").textContent = data.total.toLocaleString("en");
  for (const field of ["development_priorities", "capacity_needs", "collaboration_interests",
                       "by_respondent_type", "by_country"]) {
    bars(field, Object.entries(data[field]));
  }
  bars("by_city", data.by_city.map((c) => [`${c.city} (${c.country})`, c.count]));
  document.getElementById("updated").textContent = `Updated ${new Date().toLocaleTimeString("en")}.`;
}

async function start() {
  const [labels, surveys] = await Promise.all([
    fetch("/v1/labels").then((r) => r.json()),
    fetch("/v1/surveys").then((r) => r.json()),
  ]);
  Object.assign(LABELS, labels);
  const select = document.getElementById("survey");
  for (const s of surveys) {
    const option = document.createElement("option");
    option.value = s.survey_id;
    option.textContent = s.title;
    select.append(option);
  }
  select.addEventListener("change", refresh);
  await refresh();
  setInterval(refresh, 3000);
}

start();
