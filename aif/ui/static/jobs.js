// The jobs table: live (polled), filtered by state and text, rows selectable for Compare.
import { api, h, clear, age, pct, stateBadge, progressText } from "./util.js";

const STATES = ["", "queued", "held", "starting", "running", "suspended", "stopping",
  "succeeded", "failed", "cancelled", "stopped"];
const POLL_MS = 2000;

export function jobsView(main, params) {
  const selected = new Set();
  let stopped = false;
  let timer = null;
  let jobs = [];

  const stateSelect = h("select", { id: "filter-state", onchange: () => refresh() },
    STATES.map((s) => h("option", { value: s }, s || "all states")));
  stateSelect.value = params.get("state") || "";
  const query = h("input", { id: "filter-q", type: "search", placeholder: "filter: id, name, state, detail" });
  query.value = params.get("q") || "";
  let typing = null;
  query.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refresh, 250); });
  const count = h("span", { class: "muted", id: "jobs-count" });
  const compareButton = h("button", {
    id: "compare-selected", disabled: true,
    onclick: () => window.aifNavigate(`/compare?jobs=${[...selected].map(encodeURIComponent).join(",")}`),
  }, "Compare selected");
  const tbody = h("tbody", { id: "jobs-body" });
  const table = h("table", { id: "jobs-table" },
    h("thead", {}, h("tr", {}, ["", "id", "name", "state", "queue", "instance", "priority", "progress", "best accuracy", "age"].map((c) => h("th", {}, c)))),
    tbody);

  main.append(
    h("h1", {}, "Jobs"),
    h("div", { class: "toolbar" }, stateSelect, query, count, compareButton,
      h("a", { href: "/compose", "data-nav": true }, "New experiment")),
    table,
  );

  function row(job, now) {
    const box = h("input", { type: "checkbox", class: "select-job", checked: selected.has(job.id) });
    box.addEventListener("change", () => {
      if (box.checked) selected.add(job.id); else selected.delete(job.id);
      compareButton.disabled = selected.size < 2;
    });
    return h("tr", { dataset: { id: job.id, state: job.state } },
      h("td", {}, box),
      h("td", {}, h("a", { href: `/jobs/${encodeURIComponent(job.id)}`, "data-nav": true }, job.id)),
      h("td", { class: "name" }, job.name || ""),
      h("td", {}, stateBadge(job.state)),
      h("td", {}, job.queue || ""),
      h("td", {}, job.instance || ""),
      h("td", { class: "num" }, job.priority ?? ""),
      h("td", { class: "progress" }, progressText(job.progress)),
      h("td", { class: "num best" }, pct(job.best_accuracy)),
      h("td", { class: "num", title: String(job.submitted ?? "") }, age(job.submitted, now)),
    );
  }

  function render() {
    const now = Date.now();
    const fragment = document.createDocumentFragment();
    for (const job of jobs) fragment.appendChild(row(job, now));
    clear(tbody).appendChild(fragment);
    count.textContent = `${jobs.length} job${jobs.length === 1 ? "" : "s"}`;
    table.dataset.rendered = String(jobs.length);
    // ms since the page's navigation began: the rows built, then on screen (the frame after)
    table.dataset.renderedAt = String(performance.now());
    requestAnimationFrame(() => setTimeout(() => { table.dataset.paintedAt = String(performance.now()); }, 0));
  }

  async function refresh() {
    clearTimeout(timer);
    const search = new URLSearchParams();
    if (stateSelect.value) search.set("state", stateSelect.value);
    if (query.value.trim()) search.set("q", query.value.trim());
    search.set("limit", "1000");
    try {
      const { body } = await api(`/api/jobs?${search}`);
      if (stopped) return;
      jobs = body.jobs || [];
      render();
    } catch (error) {
      count.textContent = `could not list jobs: ${error.message}`;
    }
    if (!stopped) timer = setTimeout(refresh, POLL_MS);
  }

  refresh();
  return { stop() { stopped = true; clearTimeout(timer); } };
}
