// Line charts on uPlot. A chart takes series of its own x values; they are joined on one
// x axis here (uPlot wants aligned columns), gaps spanned.

const COLORS = ["#2457c5", "#d1495b", "#2a9d8f", "#e9a03b", "#7b4fb8", "#3d7d2a", "#c2185b", "#546e7a"];

export function color(i) { return COLORS[i % COLORS.length]; }

function join(series) {
  const xs = new Set();
  for (const s of series) for (const x of s.x) if (x !== null && x !== undefined) xs.add(x);
  const xvals = [...xs].sort((a, b) => a - b);
  const index = new Map(xvals.map((x, i) => [x, i]));
  const columns = [xvals];
  for (const s of series) {
    const col = new Array(xvals.length).fill(null);
    s.x.forEach((x, i) => {
      const y = s.y[i];
      if (index.has(x)) col[index.get(x)] = typeof y === "number" && Number.isFinite(y) ? y : null;
    });
    columns.push(col);
  }
  return columns;
}

function fmtSeconds(s) {
  if (s < 60) return `${+s.toPrecision(3)}s`;
  if (s < 3600) return `${+(s / 60).toPrecision(3)}min`;
  if (s < 86400) return `${+(s / 3600).toPrecision(3)}h`;
  if (s < 86400 * 365) return `${+(s / 86400).toPrecision(3)}d`;
  return `${+(s / 86400 / 365).toPrecision(3)}y`;
}

// spec: {title, x: label, xlog, timeAxis, y: label, y2: label, series: [{label, x, y, dash, axis2, color}]}
export class LineChart {
  constructor(el, spec) {
    this.el = el;
    this.spec = spec;
    this.plot = null;
    this.labels = "";
    this.set(spec.series);
    this.onResize = () => this.resize();
    window.addEventListener("resize", this.onResize);
  }

  build(series) {
    const spec = this.spec;
    const width = Math.max(300, this.el.clientWidth || 600);
    const scales = { x: spec.xlog ? { time: false, distr: 3 } : { time: false } };
    const axes = [
      { label: spec.x, values: spec.timeAxis ? (u, vals) => vals.map((v) => (v == null ? "" : fmtSeconds(v))) : undefined },
      { label: spec.y, scale: "y" },
    ];
    if (series.some((s) => s.axis2)) {
      scales.y2 = {};
      axes.push({ label: spec.y2, scale: "y2", side: 1, grid: { show: false } });
    }
    const opts = {
      title: spec.title,
      width,
      height: 240,
      scales,
      axes,
      series: [
        { label: spec.x },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color || color(i),
          width: 2,
          dash: s.dash ? [6, 4] : undefined,
          scale: s.axis2 ? "y2" : "y",
          spanGaps: true,
          points: { show: true, size: 5 },
        })),
      ],
    };
    if (this.plot) this.plot.destroy();
    this.el.textContent = "";
    this.plot = new window.uPlot(opts, join(series), this.el);
  }

  // Replace the series; the chart is rebuilt only when the set of series changes.
  set(series) {
    this.series = series;
    const labels = series.map((s) => `${s.label}|${!!s.axis2}|${!!s.dash}`).join("\n");
    const data = join(series);
    if (!this.plot || labels !== this.labels) {
      this.labels = labels;
      this.build(series);
    } else {
      this.plot.setData(data);
    }
    this.el.dataset.points = String(series.reduce((n, s) => n + s.y.filter((y) => typeof y === "number").length, 0));
    this.el.dataset.xmax = String(data[0].length ? data[0][data[0].length - 1] : "");
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: Math.max(300, this.el.clientWidth || 600), height: 240 });
  }

  destroy() {
    window.removeEventListener("resize", this.onResize);
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

// Series of accuracy against drift time for one result: without and with compensation.
export function driftSeries(result, label, i) {
  const out = [];
  const times = (result.drift_times || []).map(Number);
  if (!times.length) return out;
  if (Array.isArray(result.drift_mean)) {
    out.push({ label: `${label} without compensation`, x: times, y: result.drift_mean, color: color(i) });
  }
  if (Array.isArray(result.drift_mean_compensated)) {
    out.push({ label: `${label} with compensation`, x: times, y: result.drift_mean_compensated, color: color(i), dash: true });
  }
  return out;
}
