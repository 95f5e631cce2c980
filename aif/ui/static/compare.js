// Compare: pick jobs, see accuracy against drift time (log axis), training curves, and
// a table of the experiment fields that differ.
import { api, h, clear, pct, stateBadge } from "./util.js";
import { LineChart, color, driftSeries } from "./charts.js";

function show(value) {
  if (value === undefined) return "—";
  if (value === null) return "null";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

export function compareView(main, params) {
  const ids = (params.get("jobs") || "").split(",").map((s) => s.trim()).filter(Boolean);
  const charts = [];
  let stopped = false;

  const picker = h("div", { id: "compare-picker" });
  const results = h("div", { id: "compare-results" });
  main.append(h("h1", {}, "Compare"), picker, results);

  async function pick() {
    const { body } = await api("/api/jobs?limit=500");
    if (stopped) return;
    const chosen = new Set(ids);
    const go = h("button", { id: "compare-go", class: "primary", onclick: () => window.aifNavigate(`/compare?jobs=${[...chosen].map(encodeURIComponent).join(",")}`) }, "Compare");
    const rows = (body.jobs || []).map((job) => {
      const box = h("input", { type: "checkbox", class: "pick-job", checked: chosen.has(job.id), dataset: { id: job.id } });
      box.addEventListener("change", () => { if (box.checked) chosen.add(job.id); else chosen.delete(job.id); });
      return h("tr", {}, h("td", {}, box), h("td", {}, job.id), h("td", {}, job.name || ""), h("td", {}, stateBadge(job.state)), h("td", { class: "num" }, pct(job.best_accuracy)));
    });
    clear(picker).append(
      h("details", { open: ids.length < 2 }, h("summary", {}, "Choose jobs"),
        h("table", {}, h("tbody", {}, rows)), h("div", { class: "toolbar" }, go)));
  }

  async function compare() {
    if (ids.length < 1) return;
    const { body } = await api("/api/compare", { method: "POST", body: { jobs: ids } });
    if (stopped) return;
    const driftEl = h("div", { class: "chart", id: "compare-drift" });
    const trainEl = h("div", { class: "chart", id: "compare-training" });
    const diffBody = h("tbody");
    const jobs = body.jobs || [];
    results.append(
      h("div", { class: "grid2" },
        h("div", { class: "card" }, h("h2", {}, "Accuracy after drift"), driftEl),
        h("div", { class: "card" }, h("h2", {}, "Test accuracy per epoch"), trainEl)),
      h("h2", {}, "What differs"),
      h("table", { class: "diff-table", id: "compare-differences" },
        h("thead", {}, h("tr", {}, h("th", {}, "field"), jobs.map((j) => h("th", {}, `${j.name || ""} (${j.id})`)))),
        diffBody),
    );
    const drift = [];
    const training = [];
    // One colour per compared run (a job, or one configuration of a sweep), in both charts.
    const colours = new Map();
    const colourOf = (name) => {
      if (!colours.has(name)) colours.set(name, colours.size);
      return colours.get(name);
    };
    jobs.forEach((job) => {
      const many = (job.results || []).length > 1;
      (job.results || []).forEach((r, k) => {
        const name = many ? `${job.name || job.id} ${r.job ?? k}` : job.name || job.id;
        drift.push(...driftSeries(r, name, colourOf(name)));
      });
      const byJob = new Map();
      for (const m of job.metrics || []) {
        const key = m.job ?? "";
        if (!byJob.has(key)) byJob.set(key, []);
        byJob.get(key).push(m);
      }
      for (const [key, rows] of byJob) {
        rows.sort((a, b) => a.epoch - b.epoch);
        const name = byJob.size > 1 ? `${job.name || job.id} ${key}` : job.name || job.id;
        training.push({ label: name, x: rows.map((r) => r.epoch), y: rows.map((r) => r.accuracy), color: color(colourOf(name)) });
      }
    });
    charts.push(new LineChart(driftEl, { x: "time after programming", xlog: true, timeAxis: true, y: "accuracy", series: drift }));
    charts.push(new LineChart(trainEl, { x: "epoch", y: "accuracy", series: training }));
    for (const d of body.differences || []) {
      diffBody.appendChild(h("tr", {}, h("td", {}, d.field), jobs.map((j) => h("td", {}, show((d.values || {})[j.id])))));
    }
    if (!(body.differences || []).length) diffBody.appendChild(h("tr", {}, h("td", { colspan: jobs.length + 1 }, "The experiments are the same.")));
    results.dataset.ready = "1";
  }

  pick().catch((error) => { picker.textContent = `could not list jobs: ${error.message}`; });
  compare().catch((error) => { results.textContent = `could not compare: ${error.message}`; });
  return { stop() { stopped = true; for (const c of charts) c.destroy(); } };
}
