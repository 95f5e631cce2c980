// A form generated from the experiment's JSON Schema (pydantic's model_json_schema).
//
// The experiment mapping is the one source of truth: every input reads its value from it
// and writes back with ctx.set(path, value) (undefined deletes); ctx.changed() then
// refreshes the YAML. Structural edits (layers, sweeps, optional sections) re-render.
// Each field's element carries data-path="dotted.path", where Check shows problems.
import { h } from "./util.js";

// Fields whose values are names from the installed aihwkit (GET /api/schema "names").
const NAMED = { config: "dl-config", device: "dl-device", noise_model: "dl-noise_model", drift_compensation: "dl-drift_compensation" };

export function resolve(schema, root) {
  let s = schema || {};
  while (s.$ref) {
    const name = s.$ref.replace(/^#\/\$defs\//, "");
    const { $ref, ...rest } = s;
    s = { ...root.$defs[name], ...rest };
  }
  return s;
}

// anyOf [X, null] -> X, nullable; other anyOf are left for the text fallback.
function unwrap(schema, root) {
  let s = resolve(schema, root);
  let nullable = false;
  if (s.anyOf) {
    const options = s.anyOf.filter((o) => o.type !== "null");
    nullable = options.length < s.anyOf.length;
    if (options.length === 1) {
      const { anyOf, ...rest } = s;
      s = { ...resolve(options[0], root), ...rest };
    }
  }
  return { s, nullable };
}

// Short forms: `rpu: PCMPreset`, `noise_model: PCMLikeNoiseModel`, `- ReLU`.
function shorthandKey(path) {
  const last = path[path.length - 1];
  const parent = path[path.length - 2];
  if (last === "rpu" || parent === "sweep" || (parent === "layers" && path.includes("rpu"))) return "config";
  if (last === "noise_model") return "name";
  return "type";
}

export function getAt(root, path) {
  let node = root;
  for (let i = 0; i < path.length; i++) {
    if (typeof node === "string" && i > 0) node = { [shorthandKey(path.slice(0, i))]: node };
    if (node === null || typeof node !== "object") return undefined;
    node = node[path[i]];
  }
  return node;
}

export function setAt(root, path, value) {
  let node = root;
  for (let i = 0; i < path.length - 1; i++) {
    const key = path[i];
    let next = node[key];
    if (typeof next === "string") next = { [shorthandKey(path.slice(0, i + 1))]: next };
    if (next === null || typeof next !== "object") next = typeof path[i + 1] === "number" ? [] : {};
    node[key] = next;
    node = next;
  }
  const last = path[path.length - 1];
  if (value === undefined) {
    if (Array.isArray(node) && typeof last === "number") node.splice(last, 1);
    else delete node[last];
  } else node[last] = value;
}

function parseScalar(text) {
  const t = text.trim();
  if (t === "") return undefined;
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return Number(t);
  if (t === "true") return true;
  if (t === "false") return false;
  return t;
}

function flow(value) {
  if (value === undefined) return "";
  return window.jsyaml.dump(value, { flowLevel: 0, lineWidth: -1 }).trim();
}

export class SchemaForm {
  // ctx: {root (the schema), exp() (the mapping), set(path, v), changed(), rerender(), sweep(path, values)}
  constructor(ctx) {
    this.ctx = ctx;
  }

  field(schema, path, options = {}) {
    const { s, nullable } = unwrap(schema, this.ctx.root);
    const name = String(path[path.length - 1]);
    const dotted = path.join(".");
    if (s.const !== undefined) return null;
    if (dotted === "model.layers") return this.layers(s, path);
    if (dotted === "sweep") return this.sweepSection(path);
    const value = getAt(this.ctx.exp(), path);
    if (s.type === "object" && s.properties && !(NAMED[name] && (value === undefined || value === null || typeof value === "string"))) {
      return this.object(s, path, nullable || options.optional);
    }
    return this.scalar(s, path, value, options);
  }

  object(s, path, optional) {
    const value = getAt(this.ctx.exp(), path);
    const legend = h("legend", { title: s.description || "" }, String(path[path.length - 1] ?? "experiment"));
    const box = h("fieldset", { dataset: { path: path.join(".") } }, legend);
    const present = value !== undefined && value !== null;
    if (optional) {
      const toggle = h("input", { type: "checkbox", class: "section-toggle", checked: present });
      toggle.addEventListener("change", () => {
        this.ctx.set(path, toggle.checked ? {} : undefined);
        this.ctx.changed();
        this.ctx.rerender();
      });
      legend.prepend(toggle, " ");
      if (!present) return box;
    }
    for (const [key, sub] of Object.entries(s.properties)) {
      const el = this.field(sub, [...path, key], { required: (s.required || []).includes(key) });
      if (el) box.appendChild(el);
    }
    return box;
  }

  scalar(s, path, value, options) {
    const name = String(path[path.length - 1]);
    const id = `f-${path.join("-")}`;
    let input;
    let read;
    const isNamed = NAMED[name] && path.some((p) => p === "rpu" || p === "sweep");
    if (s.enum) {
      input = h("select", { id }, h("option", { value: "" }, s.default !== undefined ? `(default: ${s.default})` : ""),
        s.enum.map((e) => h("option", { value: String(e) }, String(e))));
      input.value = value === undefined || value === null ? "" : String(value);
      read = () => (input.value === "" ? undefined : input.value);
    } else if (s.type === "boolean") {
      input = h("select", { id }, h("option", { value: "" }, s.default !== undefined && s.default !== null ? `(default: ${s.default})` : ""),
        h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
      input.value = value === true ? "true" : value === false ? "false" : "";
      read = () => (input.value === "" ? undefined : input.value === "true");
    } else if ((s.type === "integer" || s.type === "number") && (value === undefined || typeof value === "number")) {
      input = h("input", { id, type: "number", step: s.type === "integer" ? "1" : "any", placeholder: s.default !== undefined && s.default !== null ? String(s.default) : "" });
      input.value = value === undefined || value === null ? "" : String(value);
      read = () => (input.value.trim() === "" ? undefined : Number(input.value));
    } else if ((s.type === "string" || isNamed) && (value === undefined || value === null || typeof value === "string")) {
      input = h("input", { id, type: "text", list: isNamed ? NAMED[name] : undefined, placeholder: s.default !== undefined && s.default !== null ? String(s.default) : "" });
      input.value = value ?? "";
      read = () => (input.value.trim() === "" ? undefined : input.value.trim());
    } else if (s.type === "array" && s.items && ["number", "string", "integer"].includes(resolve(s.items, this.ctx.root).type)
               && (value === undefined || (Array.isArray(value) && value.every((v) => typeof v !== "object")))) {
      input = h("input", { id, type: "text", placeholder: "comma-separated" });
      input.value = Array.isArray(value) ? value.join(", ") : "";
      read = () => {
        const items = input.value.split(",").map(parseScalar).filter((v) => v !== undefined);
        return items.length ? items : undefined;
      };
    } else {
      // Free mappings (device_params, forward, args, ...) and anything else: YAML flow text.
      input = h("textarea", { id, rows: 1, placeholder: "YAML, e.g. {out_noise: 0.0}" });
      input.value = flow(value);
      read = () => {
        if (input.value.trim() === "") return undefined;
        try { input.setCustomValidity(""); return window.jsyaml.load(input.value); } catch (error) {
          input.setCustomValidity(error.message);
          input.reportValidity();
          throw error;
        }
      };
    }
    const update = () => {
      let v;
      try { v = read(); } catch { return; }
      this.ctx.set(path, v);
      this.ctx.changed();
    };
    input.addEventListener("change", update);
    // Typed text shows in the YAML as it is typed (YAML flow text only once it is left).
    if (input.tagName === "INPUT") input.addEventListener("input", update);
    const label = h("label", { for: id, title: s.description || "" }, name, options.required ? " *" : "");
    const row = h("div", { class: "field", dataset: { path: path.join(".") } }, label, input);
    if (path[0] === "rpu" || path[0] === "sweep") row.appendChild(this.sweepButton(path, row));
    else row.appendChild(h("span"));
    return row;
  }

  // "Sweep": several values of one RPU field make a `sweep:` of labelled configurations.
  sweepButton(path, row) {
    const button = h("button", { type: "button", class: "sweep-toggle", title: "try several values of this field: one job each" }, "sweep…");
    button.addEventListener("click", () => {
      if (row.querySelector(".sweep-box")) return;
      const values = h("input", { type: "text", class: "sweep-values", placeholder: "values, comma-separated" });
      const apply = h("button", { type: "button", class: "sweep-apply" }, "Make sweep");
      apply.addEventListener("click", () => {
        const list = values.value.split(",").map((v) => v.trim()).filter(Boolean);
        if (list.length) this.ctx.sweep(path, list.map(parseScalar));
      });
      row.appendChild(h("div", { class: "sweep-box" }, values, apply));
      values.focus();
    });
    return button;
  }

  sweepSection(path) {
    const sweep = getAt(this.ctx.exp(), path);
    if (!sweep || typeof sweep !== "object") return null;
    const rpu = this.ctx.root.$defs.RPUSpec;
    const box = h("fieldset", { dataset: { path: "sweep" }, id: "sweep" }, h("legend", {}, "sweep: one job per configuration"));
    for (const label of Object.keys(sweep)) {
      const remove = h("button", { type: "button", class: "sweep-remove", onclick: () => {
        setAt(this.ctx.exp(), [...path, label], undefined);
        if (!Object.keys(getAt(this.ctx.exp(), path) || {}).length) setAt(this.ctx.exp(), path, undefined);
        this.ctx.changed();
        this.ctx.rerender();
      } }, "remove");
      const inner = this.object({ ...rpu, description: label }, [...path, label], false);
      inner.querySelector("legend").append(" ", remove);
      box.appendChild(inner);
    }
    return box;
  }

  layers(s, path) {
    const exp = this.ctx.exp();
    const layers = getAt(exp, path);
    const items = s.type === "array" ? resolve(s.items, this.ctx.root) : null;
    const mapping = (items && items.discriminator && items.discriminator.mapping) || {};
    const types = Object.keys(mapping).sort();
    const box = h("fieldset", { dataset: { path: path.join(".") }, id: "layers" }, h("legend", {}, "layers"));
    (Array.isArray(layers) ? layers : []).forEach((layer, i) => {
      const type = typeof layer === "string" ? layer : layer && layer.type;
      const select = h("select", { class: "layer-type" }, types.map((t) => h("option", { value: t }, t)));
      select.value = type || "";
      select.addEventListener("change", () => {
        const old = getAt(this.ctx.exp(), [...path, i]);
        const keep = typeof old === "object" && old ? old : {};
        const next = { type: select.value };
        const def = resolve({ $ref: mapping[select.value] }, this.ctx.root);
        for (const key of Object.keys(def.properties || {})) if (key !== "type" && keep[key] !== undefined) next[key] = keep[key];
        setAt(this.ctx.exp(), [...path, i], Object.keys(next).length === 1 ? select.value : next);
        this.ctx.changed();
        this.ctx.rerender();
      });
      const body = h("div", { class: "layer-body" });
      const def = mapping[type] ? resolve({ $ref: mapping[type] }, this.ctx.root) : null;
      if (def) {
        for (const [key, sub] of Object.entries(def.properties || {})) {
          if (key === "type") continue;
          const el = this.field(sub, [...path, i, key], { required: (def.required || []).includes(key) });
          if (el) body.appendChild(el);
        }
      }
      const move = (delta) => {
        const list = getAt(this.ctx.exp(), path);
        const j = i + delta;
        if (j < 0 || j >= list.length) return;
        [list[i], list[j]] = [list[j], list[i]];
        this.ctx.changed();
        this.ctx.rerender();
      };
      const row = h("div", { class: "layer", dataset: { path: [...path, i].join(".") } },
        h("span", { class: "muted" }, String(i)), select, body,
        h("button", { type: "button", title: "move up", onclick: () => move(-1) }, "↑"),
        h("button", { type: "button", class: "layer-remove", title: "remove", onclick: () => {
          setAt(this.ctx.exp(), [...path, i], undefined);
          this.ctx.changed();
          this.ctx.rerender();
        } }, "✕"));
      box.appendChild(row);
    });
    const add = h("select", { id: "layer-add-type" }, types.map((t) => h("option", { value: t }, t)));
    add.value = "Linear";
    box.appendChild(h("div", { class: "toolbar" }, add, h("button", { type: "button", id: "layer-add", onclick: () => {
      const list = getAt(this.ctx.exp(), path);
      const def = resolve({ $ref: mapping[add.value] }, this.ctx.root);
      const entry = (def.required || []).length ? { type: add.value } : add.value;
      if (Array.isArray(list)) list.push(entry); else setAt(this.ctx.exp(), path, [entry]);
      this.ctx.changed();
      this.ctx.rerender();
    } }, "Add layer")));
    return box;
  }
}
