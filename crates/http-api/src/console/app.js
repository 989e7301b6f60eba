// The Conflux console: a small single-page app over the org's own REST API. It reads and writes
// as the logged-in user (so their object and field permissions apply), builds every element with
// textContent (never HTML from data), and follows the record on screen through /console/watch.
"use strict";

const API = "/services/data/v60.0";
let csrf = null;
let user = null;
let watcher = null;
const describes = new Map();

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
  main.focus();
}

function notice(text) {
  const n = document.getElementById("notice");
  n.textContent = text || "";
  n.hidden = !text;
}

class ApiError extends Error {
  constructor(status, errors) {
    super(errors.map((e) => e.message).join(" "));
    this.status = status;
    this.errors = errors;
  }
}

async function api(path, options = {}) {
  const headers = { "X-Conflux-CSRF": csrf || "", Accept: "application/json" };
  if (options.body) headers["Content-Type"] = "application/json";
  const r = await fetch(path.startsWith("/") ? path : `${API}/${path}`, {
    method: options.method || "GET",
    headers,
    body: options.body ? JSON.stringify(options.body) : undefined,
    credentials: "same-origin",
  });
  if (r.status === 401) {
    csrf = null;
    location.hash = "#/login";
    throw new ApiError(401, [{ message: "Your session has ended. Log in again." }]);
  }
  const text = await r.text();
  const body = text ? JSON.parse(text) : null;
  if (!r.ok) {
    const errors = Array.isArray(body) ? body : [{ message: (body && (body.error || body.message)) || r.statusText }];
    throw new ApiError(r.status, errors);
  }
  return body;
}

async function describe(object) {
  if (!describes.has(object)) describes.set(object, await api(`sobjects/${encodeURIComponent(object)}/describe`));
  return describes.get(object);
}

function soqlString(s) {
  return "'" + s.replace(/\\/g, "\\\\").replace(/'/g, "\\'") + "'";
}

function display(value, field) {
  if (value === null || value === undefined) return "";
  if (field && field.type === "boolean") return value ? "Yes" : "No";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// ---- login -----------------------------------------------------------------------------------

function loginPage(message) {
  document.getElementById("nav").hidden = true;
  const err = el("p", { class: "error", role: "alert", id: "login-error" }, message || "");
  const form = el(
    "form",
    { class: "login", "aria-labelledby": "login-title" },
    el("h1", { id: "login-title", text: "Log in to Conflux" }),
    err,
    el("label", { for: "username", text: "Username" }),
    el("input", { id: "username", name: "username", autocomplete: "username", required: true }),
    el("label", { for: "password", text: "Password" }),
    el("input", { id: "password", name: "password", type: "password", autocomplete: "current-password", required: true }),
    el("p", {}, el("button", { type: "submit", text: "Log in" })),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await fetch("/console/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.username.value, password: form.password.value }),
      credentials: "same-origin",
    });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      err.textContent = body.error || "Login failed.";
      form.password.focus();
      return;
    }
    csrf = body.csrf;
    user = body;
    location.hash = "#/";
    route();
  });
  show(form);
  form.username.focus();
}

async function logout() {
  await fetch("/console/logout", { method: "POST", headers: { "X-Conflux-CSRF": csrf || "" }, credentials: "same-origin" });
  csrf = null;
  location.hash = "#/login";
}

// ---- objects ---------------------------------------------------------------------------------

async function objectsPage() {
  const all = await api("sobjects");
  const objects = all.sobjects.filter((o) => o.queryable && o.retrieveable && !o.name.endsWith("__e") && !o.name.endsWith("ChangeEvent"));
  show(
    el("h1", { text: "Objects" }),
    el("ul", { class: "objects" }, objects.map((o) => el("li", {}, el("a", { href: `#/o/${o.name}`, text: o.labelPlural || o.label })))),
  );
}

// ---- list views ------------------------------------------------------------------------------

function listColumns(d) {
  const name = d.fields.find((f) => f.nameField);
  const rest = d.fields.filter((f) => !f.nameField && f.name !== "Id" && !f.name.endsWith("Id") && f.type !== "textarea" && f.type !== "address" && f.type !== "location" && f.sortable !== false);
  const preferred = rest.filter((f) => f.custom || ["Phone", "Industry", "Type", "StageName", "Amount", "Status", "Email", "CloseDate", "City"].includes(f.name));
  const picked = (preferred.length ? preferred : rest).slice(0, 4);
  return name ? [name, ...picked] : picked.slice(0, 5);
}

async function listPage(object, params) {
  const d = await describe(object);
  const cols = listColumns(d);
  const sort = params.get("sort") || (cols[0] && cols[0].name) || "Id";
  const dir = params.get("dir") === "desc" ? "DESC" : "ASC";
  const filter = params.get("q") || "";
  const nameField = d.fields.find((f) => f.nameField);
  let soql = `SELECT Id, ${cols.map((c) => c.name).join(", ")} FROM ${object}`;
  if (filter && nameField) soql += ` WHERE ${nameField.name} LIKE ${soqlString("%" + filter + "%")}`;
  soql += ` ORDER BY ${sort} ${dir} NULLS LAST LIMIT 200`;
  const result = await api(`query?q=${encodeURIComponent(soql)}`);
  const go = (changes) => {
    const p = new URLSearchParams(params);
    for (const [k, v] of Object.entries(changes)) v ? p.set(k, v) : p.delete(k);
    location.hash = `#/o/${object}?${p}`;
  };
  const search = el("input", { id: "filter", type: "search", value: filter, placeholder: nameField ? `Search ${nameField.label}` : "" });
  const filterForm = el(
    "form",
    { class: "bar", role: "search" },
    el("div", {}, el("label", { for: "filter", text: `Filter by ${nameField ? nameField.label : "name"}` }), search),
    el("button", { type: "submit", text: "Filter" }),
    d.createable ? el("a", { class: "button", href: `#/new/${object}`, text: `New ${d.label}` }) : null,
  );
  filterForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    go({ q: search.value });
  });
  const header = el(
    "tr",
    {},
    cols.map((c) =>
      el(
        "th",
        { scope: "col", class: c === cols[0] ? null : "wide", "aria-sort": sort === c.name ? (dir === "ASC" ? "ascending" : "descending") : null },
        el("button", { type: "button", onclick: () => go({ sort: c.name, dir: sort === c.name && dir === "ASC" ? "desc" : "asc" }) }, c.label, sort === c.name ? (dir === "ASC" ? " ▲" : " ▼") : ""),
      ),
    ),
  );
  const rows = result.records.map((r) =>
    el(
      "tr",
      {},
      cols.map((c, i) => el("td", { class: i === 0 ? null : "wide" }, i === 0 ? el("a", { href: `#/r/${object}/${r.Id}`, text: display(r[c.name], c) || r.Id }) : display(r[c.name], c))),
    ),
  );
  show(
    el("h1", { text: d.labelPlural }),
    filterForm,
    el("p", { text: `${result.totalSize} record${result.totalSize === 1 ? "" : "s"}` }),
    el("table", {}, el("caption", { class: "skip", text: d.labelPlural }), el("thead", {}, header), el("tbody", {}, rows)),
  );
}

// ---- records ---------------------------------------------------------------------------------

function watch(object, id, onChange) {
  if (watcher) watcher.close();
  watcher = new EventSource(`/console/watch?object=${encodeURIComponent(object)}&id=${encodeURIComponent(id)}&csrf=${encodeURIComponent(csrf)}`);
  watcher.addEventListener("change", (ev) => onChange(JSON.parse(ev.data)));
}

async function recordPage(object, id) {
  const d = await describe(object);
  const fieldsById = new Map(d.fields.map((f) => [f.name, f]));
  let record = await api(`sobjects/${object}/${id}`);
  let editing = null;

  const detail = () => {
    const names = Object.keys(record).filter((k) => k !== "attributes" && fieldsById.has(k));
    return el("dl", { class: "fields", id: "fields" }, names.flatMap((n) => [el("dt", { text: fieldsById.get(n).label }), el("dd", { "data-field": n, text: display(record[n], fieldsById.get(n)) })]));
  };
  const title = () => record[(d.fields.find((f) => f.nameField) || { name: "Id" }).name] || id;
  const heading = el("h1", { id: "title", text: title() });
  const body = el("div", { id: "record" }, detail());
  const actions = el(
    "div",
    { class: "bar" },
    d.updateable ? el("button", { type: "button", id: "edit", onclick: () => startEdit() }, "Edit") : null,
    el("a", { href: `#/o/${object}`, text: `All ${d.labelPlural}` }),
  );

  const startEdit = () => {
    editing = recordForm(d, record, async (values) => {
      await api(`sobjects/${object}/${id}`, { method: "PATCH", body: values });
      editing = null;
      record = await api(`sobjects/${object}/${id}`);
      heading.textContent = title();
      body.replaceChildren(detail());
      actions.hidden = false;
      notice("Saved.");
    }, () => {
      editing = null;
      body.replaceChildren(detail());
      actions.hidden = false;
    });
    actions.hidden = true;
    body.replaceChildren(editing);
    editing.querySelector("input, select, textarea").focus();
  };

  watch(object, id, async (change) => {
    const who = change.by ? ` by ${change.by}` : "";
    if (editing) {
      notice(`This record was changed${who} while you were editing. Your unsaved input is kept; saving will overwrite the changed fields you edited.`);
      return;
    }
    record = await api(`sobjects/${object}/${id}`);
    heading.textContent = title();
    body.replaceChildren(detail());
    notice(`Updated${who}.`);
  });

  show(heading, actions, body, await relatedLists(d, id));
}

async function relatedLists(d, id) {
  const section = el("section", { "aria-label": "Related lists" });
  const children = d.childRelationships.filter((c) => c.relationshipName && c.field && !c.childSObject.endsWith("__e")).slice(0, 4);
  for (const c of children) {
    try {
      const cd = await describe(c.childSObject);
      const name = cd.fields.find((f) => f.nameField);
      const result = await api(`query?q=${encodeURIComponent(`SELECT Id${name ? ", " + name.name : ""} FROM ${c.childSObject} WHERE ${c.field} = '${id}' LIMIT 10`)}`);
      section.append(
        el("h2", { text: `${cd.labelPlural} (${result.totalSize})` }),
        result.records.length
          ? el("ul", {}, result.records.map((r) => el("li", {}, el("a", { href: `#/r/${c.childSObject}/${r.Id}`, text: (name && r[name.name]) || r.Id }))))
          : el("p", { text: "None." }),
      );
    } catch (e) {
      // An object the user may not read is simply not listed.
    }
  }
  return section;
}

function input(f, value) {
  const id = `f-${f.name}`;
  if (f.type === "boolean") return el("input", { id, name: f.name, type: "checkbox", checked: !!value });
  if (f.type === "picklist") {
    return el("select", { id, name: f.name }, el("option", { value: "", text: "—" }), f.picklistValues.filter((p) => p.active).map((p) => el("option", { value: p.value, selected: p.value === value, text: p.label })));
  }
  if (f.type === "textarea") return el("textarea", { id, name: f.name, rows: 3 }, value ?? "");
  const type = { double: "number", currency: "number", percent: "number", int: "number", date: "date", email: "email", url: "url", phone: "tel" }[f.type] || "text";
  return el("input", { id, name: f.name, type, step: type === "number" ? "any" : null, value: value ?? "", maxlength: f.length || null });
}

function recordForm(d, record, save, cancel) {
  const creating = !record;
  const fields = d.fields.filter((f) => (creating ? f.createable : f.updateable) && !["reference", "address", "location"].includes(f.type));
  const errors = el("div", { role: "alert", class: "error", id: "form-errors" });
  const form = el(
    "form",
    { id: "record-form", "aria-label": creating ? `New ${d.label}` : `Edit ${d.label}` },
    errors,
    fields.map((f) => el("div", {}, el("label", { for: `f-${f.name}`, text: f.label + (f.nillable || f.type === "boolean" || f.defaultedOnCreate ? "" : " (required)") }), input(f, record ? record[f.name] : null), el("span", { class: "error", id: `e-${f.name}` }))),
    el("div", { class: "bar" }, el("button", { type: "submit", text: "Save" }), el("button", { type: "button", class: "secondary", onclick: cancel, text: "Cancel" })),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const values = {};
    for (const f of fields) {
      const i = form.elements[f.name];
      let v = f.type === "boolean" ? i.checked : i.value;
      if (v === "" ) v = null;
      else if (i.type === "number" && v !== null) v = Number(v);
      const before = record ? record[f.name] ?? null : null;
      if (creating ? v !== null : v !== before) values[f.name] = v;
    }
    errors.textContent = "";
    form.querySelectorAll("span.error").forEach((s) => (s.textContent = ""));
    try {
      await save(values);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      errors.textContent = e.message;
      for (const err of e.errors) for (const f of err.fields || []) {
        const s = document.getElementById(`e-${f}`);
        if (s) s.textContent = err.message;
      }
    }
  });
  return form;
}

async function newPage(object) {
  const d = await describe(object);
  const form = recordForm(d, null, async (values) => {
    const r = await api(`sobjects/${object}`, { method: "POST", body: values });
    location.hash = `#/r/${object}/${r.id}`;
  }, () => (location.hash = `#/o/${object}`));
  show(el("h1", { text: `New ${d.label}` }), form);
  form.querySelector("input, select, textarea").focus();
}

// ---- integrations ----------------------------------------------------------------------------

// The integrations page refreshes itself every few seconds while it is shown.
const samples = { timer: null };

function sparkline(label, values) {
  const w = 240, h = 48, max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${(i / Math.max(1, values.length - 1)) * w},${h - (v / max) * (h - 4) - 2}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${label}: latest ${values.length ? values[values.length - 1] : 0}, highest ${max}`);
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", pts);
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#0b5cab");
  line.setAttribute("stroke-width", "2");
  svg.append(line);
  return el("figure", { class: "chart" }, svg, el("figcaption", { text: label }));
}

function table(caption, columns, rows) {
  return el(
    "table",
    {},
    el("caption", { text: caption }),
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", text: c })))),
    el("tbody", {}, rows.length ? rows : el("tr", {}, el("td", { colspan: columns.length, text: "None." }))),
  );
}

async function integrationsPage() {
  const [limits, metrics, summary, failed, dead, syncJobs, faults, bulk, flows] = await Promise.all([
    api("limits"),
    api("conflux/metrics").catch(() => ({ samples: [], intervalSeconds: 2 })),
    api("conflux/deliveries/summary").catch(() => ({ endpoints: [] })),
    api("conflux/deliveries?state=failed&limit=50").catch(() => ({ deliveries: [] })),
    api("conflux/deliveries?state=dead&limit=50").catch(() => ({ deliveries: [] })),
    api("conflux/sync-jobs").catch(() => ({ jobs: [] })),
    api("conflux/flow-faults?limit=20").catch(() => ({ faults: [] })),
    api("jobs/ingest").catch(() => ({ records: [] })),
    api("conflux/flows").catch(() => ({ flows: [] })),
  ]);
  const daily = limits.DailyApiRequests;
  const used = daily.Max - daily.Remaining;
  const series = (k) => metrics.samples.map((m) => m[k] ?? 0);
  // Error rows of the sync jobs, and the progress of the newest bulk jobs.
  const jobs = syncJobs.jobs || [];
  const syncErrors = (
    await Promise.all(
      jobs.map((j) =>
        api(`conflux/sync-jobs/${encodeURIComponent(j.name)}/errors?limit=10`)
          .then((e) => (e.errors || []).map((x) => ({ job: j.name, ...x })))
          .catch(() => []),
      ),
    )
  ).flat();
  const syncRuns = (
    await Promise.all(
      jobs.map((j) =>
        api(`conflux/sync-jobs/${encodeURIComponent(j.name)}/runs?limit=5`)
          .then((r) => (r.runs || []).map((x) => ({ job: j.name, ...x })))
          .catch(() => []),
      ),
    )
  ).flat();
  const bulkJobs = await Promise.all(
    (bulk.records || []).slice(0, 10).map((b) => api(`jobs/ingest/${b.id}`).catch(() => b)),
  );
  const minutes = Math.round((metrics.samples.length * metrics.intervalSeconds) / 60);
  const retry = (ids) => async () => {
    await api("conflux/deliveries/requeue", { method: "POST", body: { ids } });
    notice(ids.length === 1 ? "Requeued; it will be delivered shortly." : `Requeued ${ids.length} messages.`);
    await integrationsPage();
  };
  const messageRows = (list) =>
    list.deliveries.map((d) =>
      el(
        "tr",
        { "data-id": d.id },
        el("td", { text: d.action }),
        el("td", { class: "wide", text: d.endpoint }),
        el("td", { text: d.state }),
        el("td", { text: d.attempts }),
        el("td", { text: d.lastError || "" }),
        el("td", {}, el("button", { type: "button", class: "secondary", onclick: retry([d.id]), "aria-label": `${d.state === "dead" ? "Requeue" : "Retry"} ${d.action} ${d.id}` }, d.state === "dead" ? "Requeue" : "Retry now")),
      ),
    );
  show(
    el("h1", { text: "Integrations" }),
    el(
      "section",
      { "aria-labelledby": "usage" },
      el("h2", { id: "usage", text: "API usage" }),
      el("p", {}, el("label", { for: "api-meter", text: `${used.toLocaleString()} of ${daily.Max.toLocaleString()} daily API requests` }), el("meter", { id: "api-meter", min: 0, max: daily.Max, value: used })),
      el(
        "div",
        { class: "charts" },
        sparkline(`Events per second, last ${minutes} min`, series("eventsPerSecond")),
        sparkline(`API calls per ${metrics.intervalSeconds} s, last ${minutes} min`, series("apiCalls")),
        sparkline(`Delivery latency p50 (ms), last ${minutes} min`, series("deliveryLatencyP50Ms")),
      ),
    ),
    el(
      "section",
      { "aria-labelledby": "queue" },
      el("h2", { id: "queue", text: "Delivery queue" }),
      table("Endpoints", ["Endpoint", "Queued", "Failing", "Dead"], summary.endpoints.map((e) => el("tr", {}, el("td", { text: e.endpoint }), el("td", { text: e.queued }), el("td", { text: e.failed }), el("td", { text: e.dead })))),
      table("Dead-lettered messages", ["Action", "Endpoint", "State", "Attempts", "Last error", ""], messageRows(dead)),
      dead.deliveries.length ? el("p", {}, el("button", { type: "button", onclick: retry(dead.deliveries.map((d) => d.id)), text: "Requeue all dead letters" })) : null,
      table("Failing messages (being retried)", ["Action", "Endpoint", "State", "Attempts", "Last error", ""], messageRows(failed)),
    ),
    el(
      "section",
      { "aria-labelledby": "sync" },
      el("h2", { id: "sync", text: "Sync jobs" }),
      table("Sync jobs", ["Job", "Kind", "Last run", "Read", "Written", "Refused", "Cursor"], jobs.map((j) => {
        const r = j.lastRun || {};
        return el("tr", {}, el("td", { text: j.name }), el("td", { text: j.kind || "incremental" }), el("td", { text: j.running ? "running" : r.status || "never" }), el("td", { text: r.read ?? "" }), el("td", { text: r.written ?? "" }), el("td", { text: r.failed ?? "" }), el("td", { class: "wide", text: j.cursor ? JSON.stringify(j.cursor) : "" }));
      })),
      table("Recent runs (five per job)", ["Job", "Run", "Status", "Started", "Read", "Written", "Refused"], syncRuns.map((r) => el("tr", {}, el("td", { text: r.job }), el("td", { text: r.runId }), el("td", { text: r.status }), el("td", { text: r.startedDate }), el("td", { text: r.read }), el("td", { text: r.written }), el("td", { text: r.failed })))),
      table("Refused rows", ["Job", "Source key", "Error"], syncErrors.map((e) => el("tr", {}, el("td", { text: e.job }), el("td", { text: e.key }), el("td", { text: e.error })))),
    ),
    el(
      "section",
      { "aria-labelledby": "bulk" },
      el("h2", { id: "bulk", text: "Bulk jobs" }),
      table("Bulk API 2.0 ingest jobs (newest ten)", ["Job", "Object", "Operation", "State", "Processed", "Failed"], bulkJobs.map((b) => el("tr", {}, el("td", { text: b.id }), el("td", { text: b.object }), el("td", { text: b.operation }), el("td", { text: b.state }), el("td", { text: b.numberRecordsProcessed ?? "" }), el("td", { text: b.numberRecordsFailed ?? "" })))),
    ),
    el(
      "section",
      { "aria-labelledby": "faults" },
      el("h2", { id: "faults", text: "Flows" }),
      table("Flow runs since the server started", ["Flow", "Object", "On", "Runs", "Faults", "Last run"], (flows.flows || []).map((f) => el("tr", {}, el("td", { text: f.name }), el("td", { text: f.object || "" }), el("td", { text: (f.on || []).join(", ") }), el("td", { text: f.runs ?? 0 }), el("td", { text: f.faults ?? 0 }), el("td", { text: f.lastRunDate || "" })))),
      table("Flow faults", ["When", "Flow", "Record", "Error"], (faults.faults || []).map((f) => el("tr", {}, el("td", { text: f.date || f.createdDate || "" }), el("td", { text: f.flow || "" }), el("td", { text: f.recordId || f.record || "" }), el("td", { text: f.message || f.error || "" })))),
    ),
  );
  clearTimeout(samples.timer);
  samples.timer = setTimeout(() => {
    if (location.hash.startsWith("#/integrations") && !document.hidden) integrationsPage().catch(() => {});
  }, 2000);
}

// ---- events ----------------------------------------------------------------------------------

let tail = null;

async function bayeux(messages) {
  const r = await fetch("/cometd/60.0", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Conflux-CSRF": csrf || "" },
    body: JSON.stringify(messages),
    credentials: "same-origin",
  });
  if (!r.ok) throw new ApiError(r.status, [{ message: `Streaming API answered ${r.status}` }]);
  return r.json();
}

function eventsPage(params) {
  const channel = el("input", { id: "channel", value: params.get("channel") || "/event/", required: true });
  const replay = el("input", { id: "replay", value: params.get("replay") || "-1", inputmode: "numeric" });
  const list = el("ol", { id: "events", class: "events", "aria-live": "polite" });
  const status = el("p", { id: "tail-status", text: "Not subscribed." });
  const form = el(
    "form",
    { class: "bar" },
    el("div", {}, el("label", { for: "channel", text: "Channel" }), channel),
    el("div", {}, el("label", { for: "replay", text: "Replay from (-1 new, -2 all retained, or a replay id)" }), replay),
    el("button", { type: "submit", text: "Subscribe" }),
    el("button", { type: "button", class: "secondary", onclick: () => stopTail(status), text: "Stop" }),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    startTail(channel.value.trim(), Number(replay.value), list, status);
  });
  show(el("h1", { text: "Events" }), form, status, list);
}

function stopTail(status) {
  if (tail) tail.stopped = true;
  tail = null;
  if (status) status.textContent = "Not subscribed.";
}

async function startTail(channel, replay, list, status) {
  stopTail();
  const me = (tail = { stopped: false });
  list.replaceChildren();
  try {
    const [hs] = await bayeux([{ channel: "/meta/handshake", version: "1.0", supportedConnectionTypes: ["long-polling"] }]);
    if (!hs.successful) throw new Error(hs.error || "handshake refused");
    const clientId = hs.clientId;
    const [sub] = await bayeux([{ channel: "/meta/subscribe", clientId, subscription: channel, ext: { replay: { [channel]: replay } } }]);
    if (!sub.successful) throw new Error(sub.error || "subscribe refused");
    status.textContent = `Subscribed to ${channel}.`;
    while (!me.stopped && location.hash.startsWith("#/events")) {
      const replies = await bayeux([{ channel: "/meta/connect", clientId, connectionType: "long-polling" }]);
      for (const m of replies) {
        if (m.channel === channel && m.data) {
          const id = m.data.event ? m.data.event.replayId : "";
          const body = el("pre", { hidden: true, text: JSON.stringify(m.data, null, 2) });
          const toggle = el("button", { type: "button", class: "link", "aria-expanded": "false", text: "Inspect" });
          toggle.addEventListener("click", () => {
            body.hidden = !body.hidden;
            toggle.setAttribute("aria-expanded", String(!body.hidden));
          });
          list.prepend(el("li", { "data-replay": id }, `Replay id ${id} `, toggle, body));
        } else if (m.channel === "/meta/connect" && m.successful === false) {
          throw new Error(m.error || "connect refused");
        }
      }
    }
  } catch (e) {
    if (!me.stopped) status.textContent = `Stopped: ${e.message}`;
  }
}

// ---- routing ---------------------------------------------------------------------------------

async function route() {
  if (watcher) {
    watcher.close();
    watcher = null;
  }
  stopTail();
  clearTimeout(samples.timer);
  notice("");
  const hash = location.hash.replace(/^#/, "") || "/";
  if (hash === "/login") return loginPage();
  if (!csrf) {
    const r = await fetch("/console/session", { credentials: "same-origin" });
    if (!r.ok) return loginPage();
    user = await r.json();
    csrf = user.csrf;
  }
  document.getElementById("nav").hidden = false;
  document.getElementById("who").textContent = user ? user.username : "";
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts.length === 0) await objectsPage();
    else if (parts[0] === "o" && parts[1]) await listPage(parts[1], new URLSearchParams(query || ""));
    else if (parts[0] === "r" && parts[2]) await recordPage(parts[1], parts[2]);
    else if (parts[0] === "new" && parts[1]) await newPage(parts[1]);
    else if (parts[0] === "integrations") await integrationsPage();
    else if (parts[0] === "events") eventsPage(new URLSearchParams(query || ""));
    else show(el("h1", { text: "Not found" }), el("p", {}, el("a", { href: "#/", text: "Objects" })));
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return loginPage(e.message);
    show(el("h1", { text: "Something went wrong" }), el("p", { class: "error", role: "alert", text: e.message }));
  }
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", logout);
  route();
});
