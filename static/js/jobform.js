// New job: show only the settings that apply. Each field whose schema has `applies_when`
// (models_zoo/schema.py) carries it as data-applies: {name: [allowed values]}, a name being
// another field of the same settings (the model's fieldset or the training one) or a context
// key: the chosen dataset's task and kind, and whether a live worker has CUDA (the form's
// data-cuda; empty = not known). A setting that does not apply is hidden and disabled, so it is
// not sent; the server applies the same rule (schema.settle) and stores only what applies.
(function () {
  "use strict";
  const form = document.getElementById("job-form");
  if (!form) return;
  const arch = document.getElementById("architecture");
  const datasetSelect = form.querySelector("select[name=dataset]");

  const context = () => {
    const opt = datasetSelect ? datasetSelect.selectedOptions[0] : null;
    const cuda = form.getAttribute("data-cuda");
    return {
      kind: opt ? opt.dataset.kind || null : null,
      task: opt ? opt.dataset.task || null : null,
      cuda: cuda === "true" ? true : cuda === "false" ? false : null,
    };
  };

  const fieldValue = (label, name) => {
    const fs = label.closest(".arch-fields");
    const input = form.querySelector(`[name="${fs ? "m_" + fs.dataset.arch + "__" : "tc_"}${name}"]`);
    if (!input) return undefined;
    return input.type === "checkbox" ? input.checked : input.value;
  };

  const applies = (label, ctx) => {
    const rule = JSON.parse(label.dataset.applies);
    return Object.entries(rule).every(([key, allowed]) => {
      const own = fieldValue(label, key);
      const value = own !== undefined ? own : ctx[key];
      return value === null || value === undefined || allowed.includes(value);
    });
  };

  function sync() {
    const ctx = context();
    for (const label of form.querySelectorAll("[data-applies]")) {
      const fs = label.closest(".arch-fields");
      const on = applies(label, ctx);
      label.hidden = !on;
      label.dataset.applicable = on ? "1" : "0";
      // A field of an architecture not chosen stays disabled (app.js); the chosen one's follow the rule.
      if (!fs || !fs.hidden) for (const input of label.querySelectorAll("input, select")) input.disabled = !on;
    }
  }

  // Image datasets start with a CNN (the kinds registry's default architecture), unless the user
  // picked an architecture, or the form holds a clone's or a refused request's choice.
  let archChosen = !form.hasAttribute("data-fresh");
  if (arch) arch.addEventListener("change", (e) => { if (e.isTrusted) archChosen = true; });
  const defaultArch = () => {
    const opt = datasetSelect ? datasetSelect.selectedOptions[0] : null;
    const want = opt ? opt.dataset.defaultArch : "";
    if (!arch || archChosen || !want || arch.value === want) return;
    const o = Array.from(arch.options).find((x) => x.value === want && !x.disabled);
    if (!o) return;
    arch.value = want;
    arch.dispatchEvent(new Event("change"));
  };
  if (datasetSelect) datasetSelect.addEventListener("change", () => { defaultArch(); sync(); });
  defaultArch();

  if (arch) arch.addEventListener("change", sync);  // a dispatched change does not bubble to the form
  form.addEventListener("change", sync);
  form.addEventListener("input", sync);
  // app.js sets adaptive defaults (an optimizer, a schedule) without input events: it says so.
  form.addEventListener("trainyard:settings", sync);
  sync();
})();
