// The web console: views of the platform and the ledger, forms for the writes, all over API
// calls signed in this page (sign.js) and ledger proofs checked in this page (verify.js).

import { b64decode } from "/console/bytes.js";
import { keyIdOfFile, loadSigner, signedFetch } from "/console/sign.js";
import { checkCheckpoint, checkReceipt, parseVkey } from "/console/verify.js";

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const WAIT_S = 25;
const state = { signer: null, roles: [], size: 0, view: "platform", problem: null, follow: 0, vkey: null };
const $ = (id) => document.getElementById(id);

// ---- DOM helpers (text only: nothing the node sends becomes markup) ----

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value !== null && value !== undefined && value !== false) el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function fill(target, ...children) {
  const el = typeof target === "string" ? $(target) : target;
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
  return el;
}

function table(columns, rows, { onPick, selected } = {}) {
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", {}, title)))),
    h("tbody", {}, rows.map((row) => h("tr", {
      class: [onPick ? "pick" : "", selected && selected(row) ? "selected" : ""].join(" ").trim() || null,
      onclick: onPick ? () => onPick(row) : null,
      "data-uuid": row.uuid ?? null,
    }, columns.map(([, cell]) => h("td", {}, cell(row)))))));
}

function mark(ok, text) {
  return h("span", { class: `mark ${ok === null ? "wait" : ok ? "ok" : "bad"}` }, text);
}

function errorText(e) {
  return e instanceof ApiError ? e.message : `${e.message || e}`;
}

function errorBox(e) {
  return h("p", { class: "error" }, errorText(e));
}

function when(ms) {
  return ms === null || ms === undefined ? "" : new Date(ms).toISOString().replace(".000Z", "Z");
}

function short(uuid) {
  return typeof uuid === "string" && UUID.test(uuid) ? uuid.slice(0, 8) : uuid ?? "";
}

function docLink(collection, uuid) {
  if (typeof uuid !== "string") return uuid === null || uuid === undefined ? "—" : String(uuid);
  return h("button", {
    type: "button", class: "link mono", title: uuid,
    onclick: (event) => { event.stopPropagation(); openDocument(collection, uuid); },
  }, short(uuid));
}

// ---- calls ----

class ApiError extends Error {
  /** The server's refusal as it sent it: the status and its JSON error, verbatim. */
  constructor(status, text) {
    super(`${status}: ${text}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  if (!state.signer) throw new Error("load a key file first");
  const resp = await signedFetch(state.signer, method, path, body);
  const text = await resp.text();
  if (!resp.ok) throw new ApiError(resp.status, text);
  return (resp.headers.get("Content-Type") || "").startsWith("application/json") ? JSON.parse(text) : text;
}

function query(path, params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) search.append(name, value);
  }
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

// ---- a collection with its filters and paging (GET /{collection}?field=value&limit=N&after=UUID) ----

function collectionPanel(name, title, filters, columns, { onPick, selected, fixed } = {}) {
  const inputs = Object.fromEntries(filters.map((field) => [field, h("input", { name: field, size: 12, spellcheck: "false" })]));
  const limit = h("input", { name: "limit", size: 4, value: "20", inputmode: "numeric" });
  const pages = [null]; // the `after` of each page shown so far
  const results = h("div", {});
  const status = h("span", { class: "note" });
  const form = h("form", { onsubmit: (event) => { event.preventDefault(); pages.length = 1; load(); } },
    filters.map((field) => h("label", {}, `${field} `, inputs[field])),
    h("label", {}, "limit ", limit),
    h("button", { type: "submit" }, "Filter"),
    h("button", { type: "button", onclick: () => { if (pages.length > 1) { pages.pop(); load(); } } }, "Previous page"),
    h("button", { type: "button", class: "next", onclick: () => { if (state.nextOf?.[name]) { pages.push(state.nextOf[name]); load(); } } }, "Next page"),
    status);
  async function load() {
    const params = Object.fromEntries(filters.map((field) => [field, inputs[field].value.trim()]));
    Object.assign(params, fixed ? fixed() : {}, { limit: limit.value.trim(), after: pages[pages.length - 1] });
    try {
      const page = await api("GET", query(`/${name}`, params));
      const rows = page[`${name}s`];
      state.nextOf = { ...state.nextOf, [name]: page.next_after ?? null };
      status.textContent = `page ${pages.length}, ${rows.length} shown${page.next_after ? ", more remain" : ""}`;
      fill(results, rows.length ? table(columns, rows, { onPick, selected }) : h("p", { class: "note" }, `no ${name}s`));
    } catch (e) {
      fill(results, errorBox(e));
    }
  }
  return { element: h("div", { id: `panel-${name}` }, h("h2", {}, title), form, results), load };
}

// ---- views ----

const problems = collectionPanel("problem", "Problems", ["uuid", "workflow"], [
  ["uuid", (p) => docLink("problem", p.uuid)],
  ["workflow", (p) => short(p.workflow)],
  ["train size", (p) => p.size_train_dataset],
  ["test data", (p) => p.test_dataset.length],
  ["uploaded", (p) => when(p.timestamp_upload * 1000)],
], { onPick: (p) => { state.problem = p.uuid; problems.load(); loadChain(); }, selected: (p) => p.uuid === state.problem });

const chainStatus = h("select", { id: "chain-status" }, ["", "waiting", "todo", "pending", "done", "failed"].map((s) => h("option", { value: s }, s || "any status")));
const chainWorker = h("input", { id: "chain-worker", size: 12, placeholder: "worker uuid" });

async function loadChain() {
  const target = $("chain");
  if (!state.problem) return fill(target, h("p", { class: "note" }, "Pick a problem to see its algos and learnuplet chains."));
  try {
    const algos = (await api("GET", query("/algo", { problem: state.problem, limit: 1000 }))).algos;
    const uplets = [];
    let after = null;
    do {
      const page = await api("GET", query("/learnuplet", {
        problem: state.problem, status: chainStatus.value, worker: chainWorker.value.trim(), limit: 10000, after,
      }));
      uplets.push(...page.learnuplets);
      after = page.next_after ?? null;
    } while (after);
    const filters = h("form", { onsubmit: (event) => { event.preventDefault(); loadChain(); } },
      h("label", {}, "status ", chainStatus), h("label", {}, "worker ", chainWorker), h("button", { type: "submit" }, "Filter"));
    const sections = algos.map((algo) => {
      const chain = uplets.filter((u) => u.algo === algo.uuid).sort((a, b) => a.rank - b.rank);
      return h("div", { class: "algo", "data-algo": algo.uuid },
        h("h3", {}, `Algo ${algo.name} `, docLink("algo", algo.uuid), ` — ${chain.length} learnuplets`),
        chart(chain),
        table([
          ["rank", (u) => u.rank],
          ["status", (u) => h("span", { class: `status-${u.status}` }, u.status)],
          ["perf", (u) => (u.perf === null ? "—" : u.perf)],
          ["model_start", (u) => short(u.model_start) || "—"],
          ["model_end", (u) => short(u.model_end)],
          ["worker", (u) => short(u.worker) || "—"],
          ["learnuplet", (u) => docLink("learnuplet", u.uuid)],
        ], chain));
    });
    fill(target, h("h2", {}, `Problem ${short(state.problem)}: algos and learnuplet chains`), filters,
      sections.length ? sections : h("p", { class: "note" }, "No algo for this problem yet."));
  } catch (e) {
    fill(target, errorBox(e));
  }
}

/** A small SVG chart of perf by rank (done learnuplets only). */
function chart(chain) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  };
  const points = chain.filter((u) => typeof u.perf === "number");
  const [w, hgt, pad] = [320, 110, 24];
  const root = svg("svg", { class: "chart", width: w, height: hgt, viewBox: `0 0 ${w} ${hgt}`, role: "img" });
  const title = svg("title", {});
  title.textContent = "perf by rank";
  root.append(title);
  if (!points.length) {
    const text = svg("text", { x: pad, y: hgt / 2 });
    text.textContent = "no perf reported yet";
    root.append(text);
    return root;
  }
  const maxRank = Math.max(1, ...chain.map((u) => u.rank));
  const perfs = points.map((u) => u.perf);
  const [lo, hi] = [Math.min(...perfs), Math.max(...perfs)];
  const x = (rank) => pad + (rank / maxRank) * (w - 2 * pad);
  const y = (perf) => hgt - pad - (hi === lo ? 0.5 : (perf - lo) / (hi - lo)) * (hgt - 2 * pad);
  root.append(svg("polyline", { points: points.map((u) => `${x(u.rank)},${y(u.perf)}`).join(" ") }));
  for (const u of points) root.append(svg("circle", { cx: x(u.rank), cy: y(u.perf), r: 3 }));
  for (const [text, tx, ty] of [[`${hi}`, 2, pad - 6], [`${lo}`, 2, hgt - 6], [`rank ${maxRank}`, w - pad - 30, hgt - 6]]) {
    const label = svg("text", { x: tx, y: ty });
    label.textContent = text;
    root.append(label);
  }
  return root;
}

const datas = collectionPanel("data", "Data", ["uuid", "problems"], [
  ["uuid", (d) => docLink("data", d.uuid)],
  ["problems", (d) => d.problems.map((p) => short(p)).join(", ")],
  ["uploaded", (d) => when(d.timestamp_upload * 1000)],
]);

const preduplets = collectionPanel("preduplet", "Preduplets", ["problem", "data", "status", "worker"], [
  ["uuid", (p) => docLink("preduplet", p.uuid)],
  ["problem", (p) => short(p.problem)],
  ["data", (p) => short(p.data)],
  ["model", (p) => short(p.model)],
  ["status", (p) => p.status],
  ["worker", (p) => short(p.worker) || "—"],
  ["prediction", (p) => short(p.prediction_storage_uuid) || "—"],
  ["requested", (p) => when(p.timestamp_request * 1000)],
]);

async function loadMembers() {
  try {
    const { nodes } = await api("GET", "/nodes");
    fill("view-members", h("h2", {}, "Members and roles"), table([
      ["key id", (n) => n.key_id],
      ["roles", (n) => n.roles.join(", ")],
      ["revoked", (n) => (n.revoked ? "revoked" : "")],
      ["public key", (n) => h("code", {}, n.public_key)],
    ], nodes));
  } catch (e) {
    fill("view-members", h("h2", {}, "Members and roles"), errorBox(e));
  }
}

// ---- the ledger: head, checkpoint, entries, and each entry's receipt checked here ----

async function nodeKey() {
  if (!state.vkey) state.vkey = await parseVkey(await api("GET", "/ledger/key"), 0x01);
  return state.vkey;
}

async function witnessKeys() {
  const lines = $("witness-vkeys").value.split("\n").map((l) => l.trim()).filter(Boolean);
  return Promise.all(lines.map((line) => parseVkey(line, 0x04)));
}

function signatureRows(signatures) {
  return table([
    ["signer", (s) => s.name],
    ["key id", (s) => h("code", {}, s.keyId)],
    ["kind", (s) => s.kind + (s.time ? ` at ${when(s.time * 1000)}` : "")],
    ["check", (s) => (s.verified === null ? mark(null, "not checked (no key for it)") : mark(s.verified, s.verified ? "verified" : "not verified"))],
  ], signatures);
}

async function loadLedger() {
  try {
    const head = await api("GET", "/ledger/head");
    fill("ledger-head", h("h2", {}, "Head"), h("p", {}, `size ${head.size}, state digest `, h("code", {}, head.state_digest)));
  } catch (e) {
    fill("ledger-head", h("h2", {}, "Head"), errorBox(e));
  }
  try {
    const note = await api("GET", "/ledger/checkpoint");
    let verdict;
    let signatures = null;
    try {
      const vkey = await nodeKey();
      const checked = await checkCheckpoint(note, vkey, await witnessKeys());
      signatures = checked.signatures;
      verdict = mark(true, `verified: signed by ${vkey.name}`);
    } catch (e) {
      verdict = mark(false, `not verified: ${errorText(e)}`);
    }
    fill("ledger-checkpoint", h("h2", {}, "Checkpoint ", h("span", { id: "checkpoint-verdict" }, verdict)),
      h("pre", {}, note), state.vkey ? h("p", { class: "note" }, "node verifier key ", h("code", {}, state.vkey.text)) : null,
      signatures ? signatureRows(signatures) : null);
  } catch (e) {
    fill("ledger-checkpoint", h("h2", {}, "Checkpoint"), errorBox(e));
  }
  await loadEntries();
}

async function loadEntries(before = null) {
  try {
    const size = before ?? (await api("GET", "/ledger/head")).size;
    const start = Math.max(0, size - 20);
    const page = await api("GET", query("/ledger/entries", { start, end: size }));
    const rows = page.entries.slice().reverse();
    fill("ledger-entries", h("h2", {}, `Recent entries (${start} to ${size - 1} of ${page.size})`),
      table([
        ["seq", (e) => e.seq],
        ["when", (e) => when(e.entry.time)],
        ["who", (e) => e.entry.key],
        ["what", (e) => describe(e.entry)],
        ["proof", (e) => h("button", { type: "button", class: "check", "data-seq": e.seq, onclick: () => openEntry(e.seq) }, "check")],
      ], rows),
      start > 0 ? h("button", { type: "button", onclick: () => loadEntries(start) }, "Older entries") : null);
  } catch (e) {
    fill("ledger-entries", h("h2", {}, "Recent entries"), errorBox(e));
  }
}

function describe(entry) {
  if (entry.genesis) return "genesis";
  const target = new URL(entry.target);
  return `${entry.method} ${target.pathname}${target.search}`;
}

function entryBody(entry) {
  if (!entry.body) return null;
  const text = new TextDecoder().decode(b64decode(entry.body, "the entry body"));
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

/** Fetch entry seq and its receipt, and check the receipt here: the verdict of verify.checkReceipt. */
async function checkEntry(seq, raw = null) {
  const receipt = await api("GET", `/ledger/receipts/${seq}`);
  try {
    const checked = await checkReceipt(receipt, seq, await nodeKey(), raw, await witnessKeys());
    return { ok: true, receipt, checked };
  } catch (e) {
    return { ok: false, receipt, reason: errorText(e) };
  }
}

function verdictOf(result) {
  if (result.ok) {
    return mark(true, `verified: in the tree of ${result.checked.size} entries signed by ${state.vkey.name}`);
  }
  return mark(false, `not verified: ${result.reason}`);
}

async function openEntry(seq) {
  const target = fill("ledger-entry", h("h2", {}, `Entry ${seq}`), mark(null, "checking…"));
  try {
    const item = await api("GET", `/ledger/entries/${seq}`);
    const result = await checkEntry(seq, b64decode(item.raw, "the entry"));
    const body = entryBody(item.entry);
    fill(target, h("h2", {}, `Entry ${seq} `, h("span", { id: "entry-verdict" }, verdictOf(result))),
      h("p", {}, `${describe(item.entry)} by ${item.entry.key} at ${when(item.entry.time)}`),
      result.ok ? h("p", { class: "note mono" }, `leaf hash ${result.checked.leaf}, root ${result.checked.root}`) : null,
      body ? h("pre", {}, body) : null,
      h("h3", {}, "Receipt (C2SP tlog-proof@v1)"), h("pre", { class: "receipt" }, result.receipt),
      result.ok ? signatureRows(result.checked.signatures) : null);
    target.scrollIntoView();
  } catch (e) {
    fill(target, h("h2", {}, `Entry ${seq} `, h("span", { id: "entry-verdict" }, mark(false, `not verified: ${errorText(e)}`))));
  }
}

// ---- one document and its history ----

function openDocument(collection, uuid) {
  $("doc-collection").value = collection;
  $("doc-uuid").value = uuid;
  $("doc-at").value = "";
  show("document");
}

async function loadDocument() {
  const collection = $("doc-collection").value;
  const uuid = $("doc-uuid").value.trim();
  const at = $("doc-at").value.trim();
  if (!uuid) {
    fill("doc-body", h("p", { class: "note" }, "Give a uuid, or click one in another view."));
    fill("doc-history");
    return;
  }
  try {
    const doc = await api("GET", query(`/${collection}/${encodeURIComponent(uuid)}`, { at }));
    fill("doc-body", h("h2", {}, `${collection} ${uuid}${at ? ` as of entry ${at}` : ""}`), h("pre", { id: "doc-json" }, JSON.stringify(doc, null, 2)));
  } catch (e) {
    fill("doc-body", h("h2", {}, `${collection} ${uuid}`), errorBox(e));
  }
  try {
    const answer = await api("GET", `/${collection}/${encodeURIComponent(uuid)}/history`);
    const versions = Array.isArray(answer) ? answer : Object.values(answer).find(Array.isArray) || [];
    const rows = versions.map((v) => ({ ...v, verdict: h("span", { class: "history-verdict" }, mark(null, "checking…")) }));
    fill("doc-history", h("h2", {}, `History (${rows.length} version${rows.length === 1 ? "" : "s"})`), table([
      ["seq", (v) => v.seq],
      ["when", (v) => when(v.time)],
      ["who", (v) => v.keyid],
      ["request", (v) => (v.request && typeof v.request === "object" ? `${v.request.method ?? ""} ${v.request.target ?? v.request.path ?? ""}` : String(v.request ?? ""))],
      ["document", (v) => h("pre", {}, JSON.stringify(v.document, null, 1))],
      ["entry", (v) => h("button", { type: "button", class: "link", onclick: () => { show("ledger"); openEntry(v.seq); } }, `entry ${v.seq}`)],
      ["proof", (v) => v.verdict],
    ], rows));
    for (const row of rows) {
      try {
        fill(row.verdict, verdictOf(await checkEntry(row.seq)));
      } catch (e) {
        fill(row.verdict, mark(false, `not verified: ${errorText(e)}`));
      }
    }
  } catch (e) {
    fill("doc-history", h("h2", {}, "History"), errorBox(e));
  }
}

// ---- actions: the writes, as the key's roles allow ----

function newUuid() {
  return crypto.randomUUID();
}

function uuidList(text, what, { empty = false } = {}) {
  const items = text.split(/[\s,]+/).filter(Boolean);
  if (!items.length && !empty) throw new Error(`${what}: give at least one uuid`);
  for (const item of items) if (!UUID.test(item)) throw new Error(`${what}: ${item} is not a uuid`);
  return items;
}

function one(text, what) {
  const value = text.trim();
  if (!UUID.test(value)) throw new Error(`${what}: ${JSON.stringify(value)} is not a uuid`);
  return value;
}

function perfList(text, what) {
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`${what}: not JSON (a list of numbers, or a mapping of data uuid to number)`);
  }
  const numbers = Array.isArray(value) ? value : value && typeof value === "object" ? Object.values(value) : null;
  if (!numbers || !numbers.every((n) => typeof n === "number" && Number.isFinite(n))) {
    throw new Error(`${what}: a list of finite numbers, or a mapping of data uuid to number`);
  }
  return value;
}

const ACTIONS = [
  {
    id: "problem", title: "Register a problem", role: "admin",
    fields: [["uuid", "uuid", newUuid], ["workflow", "workflow uuid", newUuid], ["test_dataset", "test data uuids (comma-separated, may be empty)"], ["size_train_dataset", "train size", () => "1"]],
    request: (f) => {
      const size = Number(f.size_train_dataset);
      if (!Number.isInteger(size) || size < 1) throw new Error("train size: a whole number of at least 1");
      return ["/problem", { uuid: one(f.uuid, "uuid"), workflow: one(f.workflow, "workflow"), test_dataset: uuidList(f.test_dataset, "test data", { empty: true }), size_train_dataset: size }];
    },
  },
  {
    id: "data", title: "Register data", role: "viewer",
    fields: [["uuid", "data uuids (comma-separated)", newUuid], ["problems", "problem uuids (comma-separated)", () => state.problem || ""]],
    request: (f) => ["/data", { uuid: uuidList(f.uuid, "data"), problems: uuidList(f.problems, "problems") }],
  },
  {
    id: "algo", title: "Register an algo", role: "analytics",
    fields: [["uuid", "uuid", newUuid], ["name", "name"], ["problem", "problem uuid", () => state.problem || ""]],
    request: (f) => {
      if (!f.name.trim()) throw new Error("name: give a name");
      return ["/algo", { uuid: one(f.uuid, "uuid"), name: f.name, problem: one(f.problem, "problem") }];
    },
  },
  {
    id: "claim", title: "Claim a learnuplet", role: "compute",
    fields: [["learnuplet", "learnuplet uuid"], ["worker", "worker uuid", newUuid]],
    request: (f) => [`/worker/learnuplet/${one(f.learnuplet, "learnuplet")}`, { worker: one(f.worker, "worker") }],
  },
  {
    id: "learndone", title: "Report a learnuplet (learndone)", role: "compute",
    fields: [["learnuplet", "learnuplet uuid"], ["status", "status (done or failed)", () => "done"], ["perf", "perf"], ["train_perf", "train_perf (JSON list or mapping)"], ["test_perf", "test_perf (JSON list or mapping)"]],
    request: (f) => {
      const status = f.status.trim();
      if (status !== "done" && status !== "failed") throw new Error("status: done or failed");
      const body = { status };
      if (status === "done" || f.perf.trim()) {
        const perf = Number(f.perf);
        if (f.perf.trim() === "" || !Number.isFinite(perf)) throw new Error("perf: a finite number");
        body.perf = perf;
      }
      if (status === "done" || f.train_perf.trim()) body.train_perf = perfList(f.train_perf, "train_perf");
      if (status === "done" || f.test_perf.trim()) body.test_perf = perfList(f.test_perf, "test_perf");
      return [`/learndone/${one(f.learnuplet, "learnuplet")}`, body];
    },
  },
  {
    id: "prediction", title: "Request a prediction", role: "viewer",
    fields: [["data", "data uuids (comma-separated)"], ["problem", "problem uuid", () => state.problem || ""]],
    request: (f) => ["/prediction", { data: uuidList(f.data, "data"), problem: one(f.problem, "problem") }],
  },
];

function buildActions() {
  const forms = ACTIONS.map((action) => {
    const inputs = {};
    const result = h("div", { class: "result", id: `result-${action.id}` });
    const roleNote = h("span", { class: "note role-note" });
    const fresh = () => {
      for (const [name, , initial] of action.fields) if (initial && !inputs[name].value) inputs[name].value = initial();
    };
    const form = h("form", {
      id: `form-${action.id}`,
      onsubmit: async (event) => {
        event.preventDefault();
        const values = Object.fromEntries(Object.entries(inputs).map(([name, input]) => [name, input.value]));
        let path;
        let body;
        try {
          [path, body] = action.request(values);
        } catch (e) {
          fill(result, h("p", { class: "error" }, `not sent: ${e.message}`));
          return;
        }
        fill(result, h("p", { class: "note" }, "sending…"));
        try {
          const answer = await api("POST", path, body);
          const seq = answer.receipt?.seq;
          fill(result, h("p", { class: "ok" }, `accepted, entry ${seq} `,
            h("button", { type: "button", class: "link", onclick: () => { show("ledger"); openEntry(seq); } }, "check its proof")),
          h("pre", {}, JSON.stringify(answer, null, 2)));
          for (const [name, , initial] of action.fields) if (initial && name === "uuid") inputs[name].value = initial();
        } catch (e) {
          fill(result, errorBox(e));
        }
      },
    },
    action.fields.map(([name, label]) => {
      inputs[name] = h("input", { name, size: name.endsWith("perf") ? 24 : 38, spellcheck: "false", autocomplete: "off" });
      return h("label", {}, `${label} `, inputs[name]);
    }),
    h("button", { type: "submit" }, action.title.split(" (")[0]));
    action.refresh = () => {
      fresh();
      const has = state.roles.includes(action.role);
      roleNote.textContent = has ? `needs ${action.role}: your key has it` : `needs ${action.role}: your key lacks it (the node will refuse)`;
    };
    return h("fieldset", { id: `action-${action.id}` }, h("legend", {}, action.title, " ", roleNote), form, result);
  });
  fill("view-actions", h("h2", {}, "Actions"), h("p", { class: "note" }, "Each form sends one signed write; the node's answer, or its refusal, shows below it."), forms);
}

// ---- navigation, the key, and following the ledger ----

const LOADERS = {
  platform: () => Promise.all([problems.load(), loadChain()]),
  data: () => datas.load(),
  preduplets: () => preduplets.load(),
  members: () => loadMembers(),
  ledger: () => loadLedger(),
  document: () => loadDocument(),
  actions: async () => ACTIONS.forEach((a) => a.refresh()),
};

function show(view) {
  state.view = view;
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("on", button.dataset.view === view);
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.id !== `view-${view}`;
  return refresh();
}

function refresh() {
  if (!state.signer) return Promise.resolve();
  return LOADERS[state.view]();
}

let pending = null;
/** Refresh the view shown once the entries that just arrived are in (one refresh per burst). */
function changed() {
  if (pending) return;
  pending = setTimeout(async () => {
    pending = null;
    if (state.view !== "actions" && state.view !== "ledger") await refresh();
    else if (state.view === "ledger") await Promise.all([loadEntries(), loadLedgerHeadOnly()]);
  }, 150);
}

async function loadLedgerHeadOnly() {
  try {
    const head = await api("GET", "/ledger/head");
    fill("ledger-head", h("h2", {}, "Head"), h("p", {}, `size ${head.size}, state digest `, h("code", {}, head.state_digest)));
  } catch (e) {
    fill("ledger-head", h("h2", {}, "Head"), errorBox(e));
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Follow the log: long-poll GET /ledger/entries?start=<size>&wait=S (auditors), else poll the head. */
async function follow(generation) {
  while (generation === state.follow) {
    try {
      if (state.roles.includes("auditor")) {
        $("live").textContent = `live: following the log at ${state.size}`;
        const page = await api("GET", query("/ledger/entries", { start: state.size, wait: WAIT_S }));
        if (generation !== state.follow) return;
        if (page.entries.length) {
          state.size = page.entries[page.entries.length - 1].seq + 1;
          changed();
        }
      } else {
        $("live").textContent = `live: watching the head at ${state.size} (no auditor role: polled)`;
        const head = await api("GET", "/ledger/head");
        if (head.size !== state.size) {
          state.size = head.size;
          changed();
        }
        await sleep(2000);
      }
    } catch (e) {
      $("live").textContent = `not following: ${errorText(e)}`;
      await sleep(3000);
      try {
        state.size = (await api("GET", "/ledger/head")).size;
      } catch {
        // shown above; tried again
      }
    }
  }
}

async function useKey(event) {
  event.preventDefault();
  const file = $("key-file").files[0];
  const status = $("key-status");
  if (!file) {
    status.textContent = "Choose a key file (the .pem that `orchestrator init` or `keys new` wrote).";
    return;
  }
  const keyId = $("key-id").value.trim() || keyIdOfFile(file.name);
  try {
    state.signer = await loadSigner(await file.text(), keyId);
  } catch (e) {
    state.signer = null;
    status.textContent = `Key not loaded: ${e.message}`;
    return;
  }
  $("key-id").value = keyId;
  state.vkey = null;
  try {
    const node = await api("GET", `/nodes/${encodeURIComponent(keyId)}`);
    state.roles = node.roles;
    status.textContent = `Key ${keyId}: ${node.roles.join(", ") || "no roles"}${node.revoked ? " (revoked)" : ""}`;
    state.size = (await api("GET", "/ledger/head")).size;
  } catch (e) {
    state.roles = [];
    status.textContent = `Key ${keyId} loaded; the node answers ${errorText(e)}`;
  }
  status.dataset.loaded = keyId;
  follow(++state.follow);
  await show(state.view);
}

async function start() {
  fill("view-platform", problems.element, h("div", { id: "chain" }));
  fill("view-data", datas.element);
  fill("view-preduplets", preduplets.element);
  buildActions();
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => show(button.dataset.view));
  $("key-form").addEventListener("submit", useKey);
  $("key-file").addEventListener("change", () => {
    const file = $("key-file").files[0];
    if (file) $("key-id").value = keyIdOfFile(file.name);
  });
  $("doc-form").addEventListener("submit", (event) => { event.preventDefault(); loadDocument(); });
  try {
    const index = await (await fetch("/", { cache: "no-store", credentials: "omit" })).json();
    $("origin").textContent = `${index.origin} (${index.version})`;
  } catch {
    $("origin").textContent = "";
  }
  document.body.dataset.ready = "1";
}

start();
