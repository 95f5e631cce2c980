// The Composer: a template or a blank page, the schema form and the YAML side by side
// (each edits the other), Check (the validator's problems at their fields), Submit.
import { api, h, clear, toast, yamlDump } from "./util.js";
import { SchemaForm, getAt, setAt } from "./form.js";

const BLANK = { name: "untitled", dataset: { name: "digits" }, model: { convert: "all", layers: ["Flatten", { type: "Linear", out_features: 10 }] } };

function label(value) {
  const text = String(value).replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^[^A-Za-z0-9]+/, "");
  return (text || "v").slice(0, 64);
}

export function composeView(main, params) {
  let exp = structuredClone(BLANK);
  let schema = null;
  let stopped = false;
  let yamlTimer = null;

  const templatesBox = h("div", { class: "templates", id: "templates" });
  const formBox = h("div", { id: "form" });
  const yamlArea = h("textarea", { class: "yaml", id: "yaml", spellcheck: "false" });
  const yamlError = h("div", { class: "problem", id: "yaml-error" });
  const problemsBox = h("div", { id: "problems" });
  const priority = h("input", { type: "number", id: "priority", value: "0", step: "1", style: "width: 5em" });
  const checkButton = h("button", { id: "check", onclick: () => check() }, "Check");
  const submitButton = h("button", { id: "submit", class: "primary", onclick: () => submit() }, "Submit");
  const datalists = h("div");

  main.append(
    h("h1", {}, "Composer"),
    templatesBox,
    h("div", { class: "toolbar" }, checkButton, h("label", { for: "priority" }, "priority"), priority, submitButton),
    problemsBox,
    h("div", { class: "composer" }, formBox, h("div", {}, h("h2", {}, "YAML"), yamlArea, yamlError)),
    datalists,
  );

  const ctx = {
    root: null,
    exp: () => exp,
    set: (path, value) => setAt(exp, path, value),
    changed: () => { writeYaml(); },
    rerender: () => renderForm(),
    sweep: (path, values) => makeSweep(path, values),
  };

  function writeYaml() {
    yamlArea.value = yamlDump(exp);
    yamlError.textContent = "";
  }

  function renderForm() {
    if (!schema) return;
    const form = new SchemaForm(ctx);
    const box = h("div");
    for (const [key, sub] of Object.entries(schema.properties)) {
      const el = form.field(sub, [key], { required: (schema.required || []).includes(key) });
      if (el) box.appendChild(el);
    }
    clear(formBox).appendChild(box);
    formBox.dataset.ready = "1";
  }

  function load(experiment) {
    exp = structuredClone(experiment);
    clearProblems();
    renderForm();
    writeYaml();
  }

  // Several values of one RPU field: `rpu` (or each sweep entry) becomes one labelled
  // configuration per value.
  function makeSweep(path, values) {
    const fromSweep = path[0] === "sweep";
    const base = fromSweep ? path[1] : "";
    const config = fromSweep ? exp.sweep[base] : exp.rpu === undefined || exp.rpu === null ? {} : exp.rpu;
    const sub = fromSweep ? path.slice(2) : path.slice(1);
    const sweep = {};
    for (const [name, entry] of Object.entries(fromSweep ? exp.sweep : {})) {
      if (name !== base) sweep[name] = entry;
    }
    for (const value of values) {
      const entry = structuredClone(typeof config === "string" ? { config } : config);
      setAt(entry, sub, value);
      sweep[base ? `${base}-${label(value)}` : label(value)] = entry;
    }
    exp.sweep = sweep;
    delete exp.rpu;
    clearProblems();
    renderForm();
    writeYaml();
  }

  yamlArea.addEventListener("input", () => {
    clearTimeout(yamlTimer);
    yamlTimer = setTimeout(() => {
      try {
        const parsed = window.jsyaml.load(yamlArea.value);
        if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("an experiment is one mapping");
        exp = parsed;
        yamlError.textContent = "";
        renderForm();
      } catch (error) {
        yamlError.textContent = `YAML: ${error.message}`;
      }
    }, 250);
  });

  function clearProblems() {
    clear(problemsBox);
    for (const el of formBox.querySelectorAll(".invalid")) el.classList.remove("invalid");
    for (const el of formBox.querySelectorAll(".problem")) el.remove();
  }

  // Each problem at its field: the element whose data-path is the field, or its nearest
  // enclosing one; all of them listed above the form too.
  function showProblems(problems) {
    clearProblems();
    if (!problems.length) {
      problemsBox.appendChild(h("p", { class: "ok-msg", id: "check-ok" }, "No problems: ready to submit."));
      return;
    }
    const list = h("ul", { class: "problems" });
    for (const p of problems) {
      const field = p.field || "";
      list.appendChild(h("li", {}, field ? `${field}: ` : "", p.message || ""));
      const parts = field.split(".").filter(Boolean);
      let target = null;
      while (parts.length && !target) {
        target = formBox.querySelector(`[data-path="${CSS.escape(parts.join("."))}"]`);
        parts.pop();
      }
      if (target) {
        target.classList.add("invalid");
        const note = h("div", { class: "problem", dataset: { field } }, p.message || "");
        if (target.tagName === "FIELDSET") target.querySelector("legend").after(note);
        else if (target.classList.contains("layer")) target.querySelector(".layer-body").prepend(note);
        else target.appendChild(note);
      }
    }
    problemsBox.appendChild(list);
    const first = formBox.querySelector(".invalid");
    if (first) first.scrollIntoView({ block: "center" });
  }

  async function check() {
    checkButton.disabled = true;
    try {
      const { body } = await api("/api/check", { method: "POST", body: { experiment: exp }, accept: [400, 422] });
      showProblems(body.problems || (body.error ? [{ field: body.field, message: body.error }] : []));
      return body;
    } catch (error) {
      showProblems([{ field: error.body.field, message: error.message }]);
      return null;
    } finally {
      checkButton.disabled = false;
    }
  }

  async function submit() {
    submitButton.disabled = true;
    try {
      const { status, body } = await api("/api/jobs", { method: "POST", body: { experiment: exp, priority: Number(priority.value || 0) }, accept: [400, 422] });
      if (status >= 400) {
        showProblems(body.problems || [{ field: body.field, message: body.error }]);
        return;
      }
      toast(`queued ${body.job.id}`);
      window.aifNavigate(`/jobs/${encodeURIComponent(body.job.id)}`);
    } catch (error) {
      showProblems([{ field: error.body.field, message: error.message }]);
    } finally {
      submitButton.disabled = false;
    }
  }

  async function start() {
    const [schemaReply, templatesReply] = await Promise.all([api("/api/schema"), api("/api/templates")]);
    if (stopped) return;
    schema = schemaReply.body.schema;
    ctx.root = schema;
    const names = schemaReply.body.names || {};
    const lists = {
      "dl-config": [...(names.families || []), ...(names.presets || [])],
      "dl-device": names.devices || [],
      "dl-noise_model": names.noise_models || [],
      "dl-drift_compensation": ["none", ...(names.drift_compensations || [])],
    };
    for (const [id, values] of Object.entries(lists)) {
      datalists.appendChild(h("datalist", { id }, values.map((v) => h("option", { value: v }))));
    }
    const templates = templatesReply.body.templates || [];
    const byId = new Map(templates.map((t) => [t.id, t]));
    const select = h("select", { id: "template-select" }, h("option", { value: "" }, "Blank: an MLP on digits to build on"),
      templates.map((t) => h("option", { value: t.id }, `${t.title || t.id}${t.needs_data ? " (needs its data set)" : ""}`)));
    const about = h("span", { class: "muted", id: "template-description" });
    select.addEventListener("change", () => { about.textContent = (byId.get(select.value) || {}).description || ""; });
    const use = h("button", { id: "template-start", onclick: () => load(byId.has(select.value) ? byId.get(select.value).experiment : BLANK) }, "Start");
    templatesBox.append(h("label", { for: "template-select" }, "Start from "), select, use, about);
    const wanted = templates.find((t) => t.id === params.get("template"));
    load(wanted ? wanted.experiment : BLANK);
  }

  start().catch((error) => { formBox.textContent = `could not load the schema: ${error.message}`; });
  return { stop() { stopped = true; clearTimeout(yamlTimer); } };
}

export { getAt };
