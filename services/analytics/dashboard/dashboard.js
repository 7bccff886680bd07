// Live aggregates: polls the API and draws bar charts and the partner ranking.
// Served by the service itself (no CDN); text goes in through textContent only.
// Public view: the suppressed running numbers. With the operator token (kept in this tab's
// sessionStorage, sent as a bearer token): every cell, the filters and the partner ranking.
"use strict";

const LABELS = {};
const UNKNOWN = new Set();  // codes newer than the service's taxonomy (`unknown_codes`)
const MAX_BARS = 12;
const MAX_PARTNERS = 15;
const REFRESH_MS = 3000;
const FIELDS = ["development_priorities", "capacity_needs", "collaboration_interests",
                "by_respondent_type", "by_country"];
const TOKEN_KEY = "analytics-operator-token";
const OPERATOR_FILTERS = ["country", "respondent_type", "theme"];

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function label(code) {
  if (UNKNOWN.has(code)) return `unknown: ${code}`;
  return LABELS[code] || code;
}

function bars(id, entries) {
  const box = document.getElementById(id);
  box.replaceChildren();
  const top = entries.slice(0, MAX_BARS);
  const max = Math.max(1, ...top.map(([, n]) => n));
  for (const [key, count, text] of top) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.key = key;
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = text || label(key);
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

function value(id) {
  return document.getElementById(id).value;
}

function summaryUrl() {
  // Only the cities drawn: a survey may have a hundred thousand of them.
  const params = new URLSearchParams({ city_limit: String(MAX_BARS) });
  for (const name of ["country", "respondent_type"]) {
    if (token() && value(name)) params.set(name, value(name));
  }
  const survey = value("survey");
  const path = survey ? `/v1/surveys/${encodeURIComponent(survey)}/summary` : "/v1/overview";
  return `${path}?${params}`;
}

function partnersUrl() {
  const params = new URLSearchParams({ limit: String(MAX_PARTNERS) });
  if (value("country")) params.set("country", value("country"));
  if (value("theme")) params.set("theme", value("theme"));
  return `/v1/partners?${params}`;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function partners(ranking) {
  const body = document.getElementById("partners");
  body.replaceChildren();
  for (const p of ranking.partners) {
    const row = document.createElement("tr");
    row.dataset.city = `${p.country}|${p.city}`;
    const score = cell(String(p.score), "score");
    score.title = p.reasons.map((r) => `${r.factor} +${r.points}: ${r.detail}`).join("\n");
    row.append(cell(String(p.rank)), cell(p.city), cell(p.country), score,
               cell(String(p.consenting_focal_points)), cell(String(p.institutions)),
               cell(String(p.responses)), cell(p.themes.slice(0, 3).map(label).join(", ")));
    body.append(row);
  }
}

function options(id, entries) {
  const select = document.getElementById(id);
  const known = new Set([...select.options].map((o) => o.value));
  for (const [code, text] of entries) {
    if (known.has(code)) continue;
    const option = document.createElement("option");
    option.value = code;
    option.textContent = text;
    select.append(option);
  }
}

async function getJson(url) {
  const headers = token() ? { authorization: `Bearer ${token()}` } : {};
  const response = await fetch(url, { headers });
  if (response.status === 401 && token()) {
    signOut("The operator token was refused.");
    return null;
  }
  return response.ok ? response.json() : null;
}

function showAccess() {
  const operator = Boolean(token());
  for (const name of OPERATOR_FILTERS) {
    const select = document.getElementById(name);
    select.disabled = !operator;
    if (!operator) select.value = "";
  }
  document.getElementById("who").textContent =
    operator ? "Operator view: every number, filters and partners." : "Public view.";
  document.getElementById("token-field").hidden = operator;
  document.getElementById("sign-in").hidden = operator;
  document.getElementById("sign-out").hidden = !operator;
  document.getElementById("partners-table").hidden = !operator;
  document.getElementById("partners-signin").hidden = operator;
  if (!operator) document.getElementById("partners").replaceChildren();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("signin-error").textContent = message || "";
  showAccess();
}

async function signIn(event) {
  event.preventDefault();
  const field = document.getElementById("token");
  if (!field.value.trim()) return;
  sessionStorage.setItem(TOKEN_KEY, field.value.trim());
  field.value = "";
  document.getElementById("signin-error").textContent = "";
  showAccess();
  await refresh();
}

async function refresh() {
  const operator = Boolean(token());
  const [data, ranking, all] = await Promise.all([
    getJson(summaryUrl()),
    operator ? getJson(partnersUrl()) : null,
    getJson("/v1/overview?city_limit=0"),
  ]);
  if (!data || !all || (operator && !ranking)) return;
  for (const code of [...all.unknown_codes, ...data.unknown_codes]) UNKNOWN.add(code);
  options("country", Object.keys(all.by_country).sort().map((c) => [c, c]));
  document.getElementById("total").textContent = data.total.toLocaleString("en");
  document.getElementById("computed").textContent =
    data.computed_from === "raw responses" ? "(filtered)" : "";
  document.getElementById("suppressed").textContent = data.suppressed_below
    ? `Public numbers: cells under ${data.suppressed_below} responses hidden.` : "";
  for (const field of FIELDS) bars(field, Object.entries(data[field]));
  bars("by_city", data.by_city.map((c) => [`${c.country}|${c.city}`, c.count,
                                           `${c.city} (${c.country})`]));
  if (ranking) partners(ranking);
  document.getElementById("updated").textContent =
    `Updated ${new Date().toLocaleTimeString("en")}.`;
}

async function start() {
  const [labels, surveys, taxonomy] = await Promise.all([
    getJson("/v1/labels"), getJson("/v1/surveys"), getJson("/v1/taxonomy"),
  ]);
  Object.assign(LABELS, labels);
  options("survey", surveys.map((s) => [s.survey_id, s.title]));
  options("respondent_type", taxonomy.respondent_types.map((c) => [c, label(c)]));
  options("theme", taxonomy.themes.map((c) => [c, label(c)]));
  for (const id of ["survey", "country", "respondent_type", "theme"]) {
    document.getElementById(id).addEventListener("change", refresh);
  }
  document.getElementById("signin").addEventListener("submit", signIn);
  document.getElementById("sign-out").addEventListener("click", async () => {
    signOut();
    await refresh();
  });
  showAccess();
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
