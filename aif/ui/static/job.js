// One job: live training curves, drift curves, log, AIMs, experiment, controls.
import { api, h, clear, pct, stateBadge, progressText, toMillis, toast, yamlDump } from "./util.js";
import { LineChart, color, driftSeries } from "./charts.js";

const ACTIVE = new Set(["queued", "held", "starting", "running", "suspended", "stopping"]);
const MAX_LOG_CHARS = 500_000;

// Every chart update of a live epoch is recorded here (benchmarks/ui.py reads it).
window.__aifEpochs = window.__aifEpochs || [];

export function jobView(main, id) {
  let stopped = false;
  let source = null;
  let reloadTimer = null;
  let lastSeq = 0;
  let metrics = [];
  let job = null;
  const path = `/api/jobs/${encodeURIComponent(id)}`;

  const title = h("h1", {}, h("span", { id: "job-name" }, id), " ", h("span", { id: "job-state" }));
  const meta = h("div", { class: "muted", id: "job-meta" });
  const control = (verb) => h("button", { id: `job-${verb}`, onclick: () => act(verb) }, verb[0].toUpperCase() + verb.slice(1));
  const buttons = { suspend: control("suspend"), resume: control("resume"), cancel: control("cancel") };
  const download = h("a", { id: "job-results", href: `${path}/results.zip`, download: `${id}-results.zip` }, "Download results");
  const trainingEl = h("div", { class: "chart", id: "chart-training" });
  const driftEl = h("div", { class: "chart", id: "chart-drift" });
  const resultsBody = h("tbody", { id: "job-results-table" });
  const aimsBody = h("tbody", { id: "job-aims" });
  const logEl = h("pre", { class: "log", id: "job-log" });
  const experimentEl = h("pre", { class: "code", id: "job-experiment" });

  main.append(
    title, meta,
    h("div", { class: "toolbar" }, buttons.suspend, buttons.resume, buttons.cancel, download),
    h("div", { class: "grid2" },
      h("div", { class: "card" }, h("h2", {}, "Training"), trainingEl),
      h("div", { class: "card" }, h("h2", {}, "Accuracy after drift"), driftEl)),
    h("h2", {}, "Results"),
    h("table", {}, h("thead", {}, h("tr", {}, ["job", "status", "accuracy", "drift (without / with compensation)", "error"].map((c) => h("th", {}, c)))), resultsBody),
    h("h2", {}, "Log"), logEl,
    h("h2", {}, "AIMs"),
    h("table", {}, h("thead", {}, h("tr", {}, ["name", "type", "instance", "host", "state", "capabilities"].map((c) => h("th", {}, c)))), aimsBody),
    h("h2", {}, "Experiment"), experimentEl,
  );

  const training = new LineChart(trainingEl, { x: "epoch", y: "accuracy", y2: "loss", series: [] });
  const drift = new LineChart(driftEl, { x: "time after programming", xlog: true, timeAxis: true, y: "accuracy", series: [] });

  function trainingSeries() {
    const jobs = [...new Set(metrics.map((m) => m.job ?? ""))];
    const series = [];
    jobs.forEach((name, i) => {
      const rows = metrics.filter((m) => (m.job ?? "") === name).sort((a, b) => a.epoch - b.epoch);
      const label = name || "job";
      series.push({ label: `${label} accuracy`, x: rows.map((r) => r.epoch), y: rows.map((r) => r.accuracy), color: color(i) });
      series.push({ label: `${label} loss`, x: rows.map((r) => r.epoch), y: rows.map((r) => r.loss), color: color(i), dash: true, axis2: true });
    });
    return series;
  }

  function showJob(record) {
    job = record;
    clear(document.getElementById("job-state") || title).appendChild(stateBadge(record.state));
    document.getElementById("job-name").textContent = record.name || record.id;
    const bits = [`id ${record.id}`];
    if (record.queue) bits.push(`queue ${record.queue}`);
    if (record.instance) bits.push(`instance ${record.instance}`);
    if (record.priority !== undefined) bits.push(`priority ${record.priority}`);
    const progress = progressText(record.progress);
    if (progress) bits.push(progress);
    if (record.best_accuracy !== null && record.best_accuracy !== undefined) bits.push(`best ${pct(record.best_accuracy)}`);
    if (record.detail) bits.push(record.detail);
    meta.textContent = bits.join(" · ");
    const state = record.state;
    buttons.suspend.disabled = !["running", "starting"].includes(state);
    buttons.resume.disabled = state !== "suspended";
    buttons.cancel.disabled = !ACTIVE.has(state);
    main.dataset.state = state;
  }

  function showResults(results) {
    clear(resultsBody);
    const series = [];
    results.forEach((r, i) => {
      const times = r.drift_times || [];
      const fmt = (xs) => (Array.isArray(xs) ? xs.map(pct).join(" ") : "");
      resultsBody.appendChild(h("tr", {},
        h("td", {}, r.job ?? ""), h("td", {}, r.status ?? ""), h("td", { class: "num" }, pct(r.accuracy)),
        h("td", {}, times.length ? `${fmt(r.drift_mean)} / ${fmt(r.drift_mean_compensated)}` : ""),
        h("td", { class: "error" }, r.error ?? "")));
      series.push(...driftSeries(r, r.job ?? `job ${i}`, i));
    });
    drift.set(series);
  }

  function showAims(aims) {
    clear(aimsBody);
    for (const a of aims) {
      const caps = a.capabilities;
      aimsBody.appendChild(h("tr", {},
        h("td", {}, a.name ?? ""), h("td", {}, a.type ?? ""), h("td", {}, a.instance ?? ""),
        h("td", {}, a.host ?? ""), h("td", {}, a.state ?? ""),
        h("td", { class: "caps" }, caps === undefined || caps === null ? "" : typeof caps === "string" ? caps : JSON.stringify(caps))));
    }
  }

  // Epochs and log lines that arrive together are drawn once, in the next frame: a burst
  // of a thousand events costs one redraw, and a single epoch waits at most a frame.
  let metricIndex = new Map();
  let pendingEpochs = [];
  let pendingLog = [];
  let painting = false;
  function schedulePaint() {
    if (painting) return;
    painting = true;
    requestAnimationFrame(paint);
  }
  function paint() {
    painting = false;
    if (stopped) return;
    if (pendingEpochs.length) {
      training.set(trainingSeries());
      const drawn = Date.now();
      for (const e of pendingEpochs) window.__aifEpochs.push({ ...e, drawn });
      pendingEpochs = [];
    }
    if (pendingLog.length) {
      const atBottom = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 4;
      logEl.appendChild(document.createTextNode(pendingLog.join("")));
      pendingLog = [];
      while (logEl.childNodes.length > 1 && logEl.textContent.length > MAX_LOG_CHARS) logEl.removeChild(logEl.firstChild);
      if (atBottom) logEl.scrollTop = logEl.scrollHeight;
    }
  }

  function logLine(entry) {
    const when = toMillis(entry.time);
    const stamp = when === null ? "" : new Date(when).toISOString().slice(11, 19);
    const text = entry.text ?? entry.message ?? JSON.stringify(entry.data ?? entry);
    const line = `${stamp} ${entry.source ?? ""} ${entry.topic ?? ""} ${text}\n`;
    pendingLog.push(line);
    schedulePaint();
  }

  async function load() {
    const { body } = await api(path);
    if (stopped) return;
    showJob(body.job);
    metrics = body.metrics || [];
    metricIndex = new Map(metrics.map((m, i) => [`${m.job ?? ""}\u0000${m.epoch}`, i]));
    training.set(trainingSeries());
    showResults(body.results || []);
    showAims(body.aims || []);
    const experiments = body.experiments || [];
    experimentEl.textContent = experiments.length ? experiments.map(yamlDump).join("---\n") : "";
    return body;
  }

  // A reload of the whole job: soon after a state change, at most once a second while
  // epochs stream (a later request never postpones one already due).
  let reloadDue = Infinity;
  function scheduleReload(ms = 200) {
    const due = Date.now() + ms;
    if (due >= reloadDue) return;
    clearTimeout(reloadTimer);
    reloadDue = due;
    reloadTimer = setTimeout(() => {
      reloadDue = Infinity;
      if (!stopped) load().catch(() => scheduleReload(1000));
    }, ms);
  }

  // An epoch's numbers straight from the event, so the curve moves without a round trip.
  function epochFrom(topic, data) {
    const d = data && typeof data.data === "object" && data.data !== null ? { ...data, ...data.data } : data;
    if (!d || typeof d !== "object") return null;
    const epoch = d.epoch ?? d.step;
    if (typeof epoch !== "number" || (typeof d.accuracy !== "number" && typeof d.loss !== "number")) return null;
    return { job: d.job ?? "", epoch, epochs: d.epochs ?? d.total, loss: d.loss, accuracy: d.accuracy, time: d.time ?? data.time };
  }

  function onEvent(topic, event) {
    let data = null;
    try { data = JSON.parse(event.data); } catch { data = { text: event.data }; }
    const seq = Number(event.lastEventId);
    if (Number.isFinite(seq) && seq > lastSeq) lastSeq = seq;
    if (topic === "end") {
      source.close();
      scheduleReload(0);
      return;
    }
    const row = epochFrom(topic, data);
    if (row) {
      const key = `${row.job}\u0000${row.epoch}`;
      if (!metricIndex.has(key)) {
        metricIndex.set(key, metrics.length);
        metrics.push(row);
        pendingEpochs.push({ job: id, epoch: row.epoch, eventTime: row.time ?? null, received: Date.now() });
      } else metrics[metricIndex.get(key)] = row;
      schedulePaint();
    }
    const entry = data && typeof data === "object" ? data : {};
    if (topic !== "metrics") logLine({ time: entry.time, source: entry.source, topic: entry.topic ?? topic, text: entry.text ?? entry.message ?? (entry.data ? JSON.stringify(entry.data) : JSON.stringify(entry)) });
    if (topic === "state" || topic === "result") scheduleReload(100);
    else if (topic === "progress" || topic === "metrics") scheduleReload(1000);
  }

  function follow() {
    source = new EventSource(`${path}/events?after=${lastSeq}`);
    for (const topic of ["progress", "metrics", "log", "state", "result", "end"]) {
      source.addEventListener(topic, (event) => onEvent(topic, event));
    }
    source.onmessage = (event) => onEvent("message", event);
    // Reconnect ourselves, from the last event seen (the browser's own retry would reuse
    // the first address, and its ``after``).
    source.onerror = () => {
      source.close();
      if (!stopped) setTimeout(() => { if (!stopped) follow(); }, 1000);
    };
  }

  async function act(verb) {
    buttons[verb].disabled = true;
    try {
      const { body } = await api(`${path}/${verb}`, { method: "POST" });
      if (body && body.job) showJob(body.job);
      toast(`${verb}: ${body && body.job ? body.job.state : "sent"}`);
    } catch (error) {
      toast(`${verb} refused: ${error.message}`);
    }
    scheduleReload(300);
  }

  async function first() {
    for (;;) {
      try { return await load(); } catch (error) {
        meta.textContent = `could not load job ${id}: ${error.message} (trying again)`;
        if (error.status === 404) throw error;
        await new Promise((resolve) => setTimeout(resolve, 1000));
        if (stopped) return null;
      }
    }
  }

  first().then((body) => {
    if (stopped || !body) return;
    for (const entry of body.log || []) {
      logLine(entry);
      if (typeof entry.seq === "number" && entry.seq > lastSeq) lastSeq = entry.seq;
    }
    follow();
  }).catch((error) => { meta.textContent = `could not load job ${id}: ${error.message}`; });

  return {
    stop() {
      stopped = true;
      clearTimeout(reloadTimer);
      if (source) source.close();
      training.destroy();
      drift.destroy();
    },
  };
}
