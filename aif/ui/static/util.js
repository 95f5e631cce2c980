// Shared helpers: DOM building (text only, never HTML), the API client, formatting.
// Nothing here puts data into innerHTML: names, logs and values from jobs are
// experiment content and go in as text.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

let csrfFromInfo = "";
export function setCsrf(value) { csrfFromInfo = value || ""; }

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

export async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: {}, credentials: "same-origin" };
  if (init.method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    init.headers["X-AIF-CSRF"] = cookie("aif_csrf") || csrfFromInfo;
    init.body = JSON.stringify(options.body === undefined ? {} : options.body);
  }
  const response = await fetch(path, init);
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (!response.ok && !(options.accept || []).includes(response.status)) {
    throw new ApiError(response.status, body);
  }
  return { status: response.status, body };
}

// Times come as ISO strings or epoch seconds.
export function toMillis(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value * 1000;
  const n = Number(value);
  if (!Number.isNaN(n)) return n * 1000;
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : t;
}

export function age(value, now = Date.now()) {
  const t = toMillis(value);
  if (t === null) return "";
  const s = Math.max(0, (now - t) / 1000);
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  if (s < 86400) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

export function pct(x) {
  return typeof x === "number" && Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : "";
}

export function stateBadge(state) {
  return h("span", { class: `state state-${String(state || "").replace(/[^a-z]/g, "")}` }, state || "");
}

export function progressText(progress) {
  if (!progress) return "";
  const parts = [];
  if (progress.epoch !== undefined && progress.epoch !== null) {
    parts.push(`epoch ${progress.epoch}${progress.epochs ? "/" + progress.epochs : ""}`);
  }
  if (progress.job) parts.push(String(progress.job));
  return parts.join(" ");
}

export function toast(message) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 4000);
}

export function yamlDump(value) {
  return window.jsyaml.dump(value, { noRefs: true, lineWidth: 100, flowLevel: -1 });
}
