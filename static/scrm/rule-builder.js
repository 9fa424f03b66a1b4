/* The auto-tag rule builder: a visual editor of the rule language (customers/conditions) that keeps a hidden JSON
   field in sync and fires "rule-change" on it after every edit (the form's hx-trigger turns that into a preview).
   Plain JavaScript, no build step, no dependencies.

   <div data-rule-builder data-config="ID of a json_script" data-input="ID of the hidden input"
        data-issues="selectors of the boxes whose [data-issue-path] items are marked on the nodes they concern">

   The configuration comes from the server (tags.views._builder_config): fields with their types, operators,
   tags, channels, and every word of the interface in the user's language. Groups are all / any / none of their
   children (none = {"not": {"any": [...]}}, or {"not": child} for one child); a node the builder has no editor
   for is kept and shown as JSON, so opening and saving a rule never loses part of it. */
(function () {
  "use strict";

  const DAYS_MODES = ["anniversary_within_days", "more_than_days_ago", "less_than_days_ago"];
  const DEFAULTS = {
    attribute: () => ({ predicate: "attribute", field: "city", op: "eq", value: "" }),
    date_relative: () => ({ predicate: "date_relative", field: "birthday", anniversary_within_days: 7 }),
    channel: () => ({ predicate: "channel", in: [] }),
    orders_count: () => ({ predicate: "orders_count", op: "gte", value: 2, window: { last_days: 365 } }),
    orders_sum: () => ({ predicate: "orders_sum", op: "gt", value: 1000, window: { last_days: 365 } }),
    avg_order_value: () => ({ predicate: "avg_order_value", op: "gte", value: 300, window: { last_days: 365 } }),
    bought: () => ({ predicate: "bought", categories: [], window: { last_days: 90 } }),
    days_since_last_order: () => ({ predicate: "days_since_last_order", op: "gt", value: 90 }),
    event_count: () => ({
      predicate: "event_count", type: "content_view", op: "gte", value: 3, window: { last_days: 30 },
    }),
    days_since_last_event: () => ({ predicate: "days_since_last_event", type: "content_view", op: "lte", value: 7 }),
    has_tag: () => ({ predicate: "has_tag", tags: [], match: "any" }),
    lacks_tag: () => ({ predicate: "lacks_tag", tags: [] }),
  };

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) if (child) node.append(child);
    return node;
  }

  function toNumber(text) {
    const trimmed = String(text).trim();
    if (trimmed === "") return "";
    const number = Number(trimmed);
    return Number.isFinite(number) ? number : trimmed;
  }

  function splitList(text) {
    return String(text).split(/[,，、;；]/).map((part) => part.trim()).filter(Boolean);
  }

  function isoDate(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  }

  // ------------------------------------------------------------------------------------------ tree <-> JSON

  function parse(value) {
    if (isObject(value)) {
      const keys = Object.keys(value);
      if (keys.length === 1 && (keys[0] === "all" || keys[0] === "any") && Array.isArray(value[keys[0]])) {
        return { kind: "group", mode: keys[0], children: value[keys[0]].map(parse) };
      }
      if (keys.length === 1 && keys[0] === "not") {
        const inner = value.not;
        if (isObject(inner) && Object.keys(inner).length === 1 && Array.isArray(inner.any)) {
          return { kind: "group", mode: "none", children: inner.any.map(parse) };
        }
        return { kind: "group", mode: "none", children: [parse(inner)] };
      }
      if (typeof value.predicate === "string" && DEFAULTS[value.predicate]) return { kind: "condition", node: value };
    }
    return { kind: "raw", node: value === undefined ? null : value };
  }

  function parseRoot(value) {
    const tree = parse(value === null || value === undefined ? { all: [] } : value);
    return tree.kind === "group" ? tree : { kind: "group", mode: "all", children: [tree] };
  }

  // The rule as JSON; every item learns its path in it (the paths validation issues are reported at).
  function serialize(item, path) {
    item.path = path;
    if (item.kind !== "group") return item.node;
    if (item.mode === "none") {
      if (item.children.length === 1) return { not: serialize(item.children[0], `${path}.not`) };
      return { not: { any: item.children.map((child, i) => serialize(child, `${path}.not.any[${i}]`)) } };
    }
    return { [item.mode]: item.children.map((child, i) => serialize(child, `${path}.${item.mode}[${i}]`)) };
  }

  function walk(item, visit) {
    visit(item);
    if (item.kind === "group") item.children.forEach((child) => walk(child, visit));
  }

  function covers(itemPath, issuePath) {
    return issuePath === itemPath || issuePath.startsWith(`${itemPath}.`) || issuePath.startsWith(`${itemPath}[`);
  }

  // ------------------------------------------------------------------------------------------------ builder

  class RuleBuilder {
    constructor(root) {
      this.root = root;
      this.config = JSON.parse(document.getElementById(root.dataset.config).textContent);
      this.words = this.config.labels;
      this.input = document.getElementById(root.dataset.input);
      this.fieldTypes = Object.fromEntries(this.config.fields.map((field) => [field.value, field.type]));
      const numberOps = this.config.operators.number;
      this.daysOperators = this.config.countOperators.concat(
        numberOps.filter(([op]) => op === "is_set" || op === "not_set"),
      );
      let initial = null;
      try {
        initial = JSON.parse(this.input.value || "null");
      } catch (error) {
        initial = null;
      }
      this.tree = parseRoot(initial);
      this.render(false);
      this.markIssues(this.issueBoxes());
      // Enter in a value must not submit (save) the rule.
      root.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && event.target.tagName === "INPUT") event.preventDefault();
      });
      document.body.addEventListener("htmx:afterSwap", (event) => {
        if (this.issueBoxes().includes(event.detail.target)) this.markIssues([event.detail.target]);
      });
    }

    issueBoxes() {
      const selectors = this.root.dataset.issues;
      return selectors ? Array.from(document.querySelectorAll(selectors)) : [];
    }

    render(notify = true) {
      const json = serialize(this.tree, "$");
      this.root.replaceChildren(this.renderGroup(this.tree, null));
      this.input.value = JSON.stringify(json);
      if (notify) this.notify();
    }

    // A value changed: the structure (and so every path) is the same, only the JSON is written again.
    changed() {
      this.input.value = JSON.stringify(serialize(this.tree, "$"));
      this.notify();
    }

    notify() {
      this.input.dispatchEvent(new Event("rule-change", { bubbles: true }));
    }

    remove(parent, item) {
      parent.children.splice(parent.children.indexOf(item), 1);
      this.render();
    }

    markIssues(boxes) {
      this.root.querySelectorAll("[data-role=issue]").forEach((node) => node.remove());
      this.root.querySelectorAll(".rule-invalid").forEach((node) => node.classList.remove("rule-invalid"));
      const items = [];
      walk(this.tree, (item) => items.push(item));
      for (const box of boxes) {
        for (const issue of box.querySelectorAll("[data-issue-path]")) {
          const path = issue.dataset.issuePath;
          let best = null;
          for (const item of items) {
            if (item.element && covers(item.path, path) && (!best || item.path.length > best.path.length)) best = item;
          }
          if (!best) continue;
          best.element.classList.add("rule-invalid");
          best.issueSlot.append(el("div", { class: "rule-issue", "data-role": "issue", text: issue.dataset.issueMessage }));
        }
      }
    }

    // ---------------------------------------------------------------------------------------------- groups

    renderGroup(item, parent) {
      const w = this.words;
      const mode = this.select(
        [["all", w.all], ["any", w.any], ["none", w.none]], item.mode,
        (value) => { item.mode = value; this.render(); }, w.combine, "group-mode",
      );
      mode.classList.add("w-auto", "fw-semibold");
      const header = el("div", { class: "d-flex flex-wrap align-items-center gap-2 mb-2" }, mode,
        parent && el("button", {
          type: "button", class: "btn btn-sm btn-link link-danger ms-auto", text: w.removeGroup,
          "data-role": "remove-group", onclick: () => this.remove(parent, item),
        }));
      const children = item.children.length
        ? item.children.map((child) => (child.kind === "group" ? this.renderGroup(child, item) : this.renderCondition(child, item)))
        : [el("div", { class: "text-secondary small mb-2", text: w.empty })];
      const footer = el("div", { class: "d-flex gap-2" },
        el("button", {
          type: "button", class: "btn btn-sm btn-outline-primary", text: `+ ${w.addCondition}`, "data-role": "add-condition",
          onclick: () => { item.children.push({ kind: "condition", node: DEFAULTS.attribute() }); this.render(); },
        }),
        el("button", {
          type: "button", class: "btn btn-sm btn-outline-secondary", text: `+ ${w.addGroup}`, "data-role": "add-group",
          onclick: () => {
            item.children.push({ kind: "group", mode: "any", children: [{ kind: "condition", node: DEFAULTS.attribute() }] });
            this.render();
          },
        }));
      const element = el("div", { class: "rule-group", "data-kind": "group", "data-path": item.path },
        header, el("div", { class: "rule-children" }, children), footer);
      item.element = element;
      item.issueSlot = header;
      return element;
    }

    // ------------------------------------------------------------------------------------------ conditions

    renderCondition(item, parent) {
      const w = this.words;
      const isKnown = item.kind === "condition";
      const choices = isKnown ? this.config.predicates : [["", w.json], ...this.config.predicates];
      const picker = this.select(choices, isKnown ? item.node.predicate : "", (value) => {
        if (!value) return;
        item.kind = "condition";
        item.node = DEFAULTS[value]();
        this.render();
      }, w.condition, "predicate");
      picker.classList.add("fw-semibold");
      const inputs = isKnown ? this.editor(item.node) : this.rawEditor(item);
      const remove = el("button", {
        type: "button", class: "btn btn-sm btn-link link-danger ms-auto text-decoration-none", text: "×",
        title: w.remove, "aria-label": w.remove, "data-role": "remove", onclick: () => this.remove(parent, item),
      });
      const element = el("div", {
        class: "rule-condition d-flex flex-wrap align-items-center gap-2", "data-kind": "condition",
        "data-path": item.path, "data-predicate": isKnown ? item.node.predicate : "",
      }, picker, inputs, remove);
      item.element = element;
      item.issueSlot = element;
      return element;
    }

    rawEditor(item) {
      const w = this.words;
      const message = el("div", { class: "rule-issue d-none", text: w.invalidJson });
      const area = el("textarea", {
        class: "form-control form-control-sm font-monospace", rows: 2, cols: 60, "aria-label": w.json, "data-role": "json",
        oninput: (event) => {
          try {
            item.node = JSON.parse(event.target.value);
            message.classList.add("d-none");
            this.changed();
          } catch (error) {
            message.classList.remove("d-none");
          }
        },
      });
      area.value = JSON.stringify(item.node);
      return [area, message];
    }

    editor(node) {
      const w = this.words;
      const config = this.config;
      switch (node.predicate) {
        case "attribute": {
          const type = this.fieldTypes[node.field] || "text";
          const field = this.select(config.fields.map((f) => [f.value, f.label]), node.field, (value) => {
            const newType = this.fieldTypes[value] || "text";
            node.field = value;
            if (newType !== type) {
              node.op = "eq";
              node.value = newType === "boolean" ? true : "";
            }
            this.render();
          }, w.field, "field");
          return [field, ...this.comparison(node, type, config.operators[type])];
        }
        case "date_relative": {
          const mode = DAYS_MODES.find((m) => m in node) || DAYS_MODES[0];
          const dateFields = config.fields.filter(
            (f) => !f.value.startsWith("attributes.") && (f.type === "date" || f.type === "datetime"),
          );
          return [
            this.select(dateFields.map((f) => [f.value, f.label]), node.field,
              (value) => { node.field = value; this.changed(); }, w.field, "field"),
            this.select(
              [[DAYS_MODES[0], w.anniversary], [DAYS_MODES[1], w.moreThanDaysAgo], [DAYS_MODES[2], w.lessThanDaysAgo]], mode,
              (value) => { const days = node[mode]; delete node[mode]; node[value] = days; this.render(); }, w.window, "days-mode",
            ),
            this.withUnit(this.number(node[mode], (value) => { node[mode] = value; this.changed(); }, "days", w.days,
              { min: 0, max: 3650 }), w.days),
          ];
        }
        case "channel":
          return [this.multiSelect(config.channels.map((c) => ({ value: c.code, text: c.name })), node.in || [],
            (values) => { node.in = values; this.changed(); }, w.channels, "channels")];
        case "orders_count":
        case "orders_sum":
        case "avg_order_value": {
          const inputs = [...this.comparison(node, "number", config.countOperators), ...this.windowInputs(node)];
          if (node.predicate !== "avg_order_value") {
            inputs.push(this.listField(node, "products", w.products), this.listField(node, "categories", w.categories));
          }
          return inputs;
        }
        case "bought":
          return [this.listField(node, "products", w.products), this.listField(node, "categories", w.categories),
            ...this.windowInputs(node)];
        case "days_since_last_order":
          return this.comparison(node, "number", this.daysOperators);
        case "event_count":
          return [this.eventType(node), this.properties(node), ...this.comparison(node, "number", config.countOperators),
            ...this.windowInputs(node)];
        case "days_since_last_event":
          return [this.eventType(node), this.properties(node), ...this.comparison(node, "number", this.daysOperators)];
        case "has_tag":
          return [this.tagSelect(node), this.select([["any", w.matchAny], ["all", w.matchAll]], node.match || "any",
            (value) => { node.match = value; this.changed(); }, w.tags, "match")];
        case "lacks_tag":
          return [this.tagSelect(node)];
        default:
          return [];
      }
    }

    comparison(node, type, operators) {
      const op = this.select(operators, node.op, (value) => {
        node.op = value;
        this.reshapeValue(node, type);
        this.render();
      }, this.words.operator, "op");
      return [op, ...this.valueInputs(node, type)];
    }

    // The value's shape follows the operator: none, a list (in), a pair (between) or one value.
    reshapeValue(node, type) {
      const first = Array.isArray(node.value) ? node.value[0] : node.value;
      if (node.op === "is_set" || node.op === "not_set") delete node.value;
      else if (node.op === "in" || node.op === "not_in") {
        node.value = Array.isArray(node.value) ? node.value : (first === undefined || first === "" ? [] : [first]);
      } else if (node.op === "between") {
        node.value = Array.isArray(node.value) && node.value.length === 2 ? node.value : [first === undefined ? "" : first, ""];
      } else node.value = first === undefined ? (type === "boolean" ? true : "") : first;
    }

    valueInputs(node, type) {
      const w = this.words;
      if (node.op === "is_set" || node.op === "not_set") return [];
      if (node.op === "in" || node.op === "not_in") {
        const read = type === "number" ? toNumber : (text) => text;
        return [this.text((node.value || []).join(", "), (text) => {
          node.value = splitList(text).map(read);
          this.changed();
        }, "value", w.listHint, { placeholder: w.listHint, size: 24 })];
      }
      if (node.op === "between") {
        const pair = Array.isArray(node.value) ? node.value : ["", ""];
        return [
          this.scalar(pair[0], type, (value) => { node.value = [value, node.value[1]]; this.changed(); }, "value-from"),
          el("span", { class: "small text-secondary", text: w.to }),
          this.scalar(pair[1], type, (value) => { node.value = [node.value[0], value]; this.changed(); }, "value-to"),
        ];
      }
      return [this.scalar(node.value, type, (value) => { node.value = value; this.changed(); }, "value")];
    }

    scalar(value, type, onChange, role) {
      const w = this.words;
      if (type === "boolean") {
        return this.select([["true", w.yes], ["false", w.no]], String(value !== false),
          (text) => onChange(text === "true"), w.value, role);
      }
      if (type === "number") return this.number(value, onChange, role, w.value);
      const inputType = { date: "date", datetime: "datetime-local" }[type] || "text";
      return this.text(value, onChange, role, w.value, { type: inputType });
    }

    windowInputs(node) {
      const w = this.words;
      const current = node.window;
      const mode = isObject(current) ? ("last_days" in current ? "last" : "range") : "ever";
      const picker = this.select([["ever", w.ever], ["last", w.lastDays], ["range", w.dateRange]], mode, (value) => {
        if (value === "ever") delete node.window;
        else if (value === "last") node.window = { last_days: 365 };
        else {
          const today = new Date();
          node.window = { since: isoDate(new Date(today.getFullYear(), 0, 1)), until: isoDate(today) };
        }
        this.render();
      }, w.window, "window");
      if (mode === "last") {
        return [picker, this.withUnit(this.number(current.last_days, (value) => {
          node.window = { last_days: value };
          this.changed();
        }, "last-days", w.days, { min: 1, max: 3650 }), w.days)];
      }
      if (mode === "range") {
        const bound = (key) => this.text(current[key] || "", (text) => {
          if (text) node.window[key] = text;
          else delete node.window[key];
          this.changed();
        }, key, key === "since" ? w.from : w.to, { type: "date" });
        return [picker, bound("since"), el("span", { class: "small text-secondary", text: "–" }), bound("until")];
      }
      return [picker];
    }

    listField(node, key, label) {
      return this.text((node[key] || []).join(", "), (text) => {
        const values = splitList(text);
        if (values.length) node[key] = values;
        else delete node[key];
        this.changed();
      }, key, label, { placeholder: label, title: label, size: 16 });
    }

    eventType(node) {
      return this.text(node.type || "", (text) => { node.type = text.trim(); this.changed(); }, "event-type",
        this.words.eventType, { placeholder: this.words.eventType, size: 16 });
    }

    properties(node) {
      const shown = Object.entries(node.properties || {}).map(([key, value]) => `${key}=${value}`).join("; ");
      return this.text(shown, (text) => {
        const properties = {};
        for (const pair of text.split(/[;；\n]/)) {
          const at = pair.indexOf("=");
          if (at > 0) properties[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
        }
        if (Object.keys(properties).length) node.properties = properties;
        else delete node.properties;
        this.changed();
      }, "properties", this.words.properties, { placeholder: this.words.properties, size: 22 });
    }

    tagSelect(node) {
      const options = this.config.tags.map((tag) => ({ value: String(tag.id), text: tag.name, group: tag.group }));
      return this.multiSelect(options, (node.tags || []).map(String), (values) => {
        node.tags = values.map(Number);
        this.changed();
      }, this.words.tags, "tags");
    }

    // ---------------------------------------------------------------------------------------------- inputs

    select(options, value, onChange, label, role) {
      const select = el("select", {
        class: "form-select form-select-sm", "aria-label": label, "data-role": role,
        onchange: (event) => onChange(event.target.value),
      }, options.map(([optionValue, text]) => el("option", { value: optionValue, text })));
      const current = value === undefined || value === null ? "" : String(value);
      if (current && !options.some(([optionValue]) => optionValue === current)) {
        select.append(el("option", { value: current, text: current }));  // e.g. a field no longer offered
      }
      select.value = current;
      return select;
    }

    multiSelect(options, selected, onChange, label, role) {
      const chosen = new Set(selected.map(String));
      const select = el("select", {
        class: "form-select form-select-sm", multiple: true, size: Math.min(6, Math.max(3, options.length)),
        "aria-label": label, "data-role": role,
        onchange: (event) => onChange(Array.from(event.target.selectedOptions, (option) => option.value)),
      });
      let group = null;
      for (const option of options) {
        const element = el("option", { value: option.value, text: option.text });
        element.selected = chosen.has(String(option.value));
        if (option.group) {
          if (!group || group.label !== option.group) {
            group = el("optgroup", { label: option.group });
            select.append(group);
          }
          group.append(element);
        } else select.append(element);
      }
      for (const value of chosen) {
        if (!options.some((option) => String(option.value) === value)) {
          const element = el("option", { value, text: `#${value}` });  // e.g. a tag deleted since
          element.selected = true;
          select.append(element);
        }
      }
      return select;
    }

    text(value, onChange, role, label, attrs) {
      const input = el("input", {
        class: "form-control form-control-sm", "aria-label": label, "data-role": role,
        oninput: (event) => onChange(event.target.value), ...attrs,
      });
      input.value = value === undefined || value === null ? "" : String(value);
      return input;
    }

    withUnit(input, unit) {
      return el("div", { class: "input-group input-group-sm w-auto flex-nowrap" }, input,
        el("span", { class: "input-group-text", text: unit }));
    }

    number(value, onChange, role, label, attrs) {
      const input = this.text(value, (text) => onChange(toNumber(text)), role, label, { type: "number", step: "any", ...attrs });
      input.style.width = "7.5rem";
      return input;
    }
  }

  document.querySelectorAll("[data-rule-builder]").forEach((root) => new RuleBuilder(root));

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });
})();
