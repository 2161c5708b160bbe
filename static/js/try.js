// Try the model: send the form, then wait for the answer pushed on the user socket
// (notify.js turns it into a "trainyard:prediction" event), polling as a fallback.
(function () {
  "use strict";
  const form = document.getElementById("try-form");
  batch();
  if (!form) return;
  const state = document.getElementById("try-state");
  const errorBox = document.getElementById("try-error");
  const out = document.getElementById("try-result");
  const button = document.getElementById("try-submit");
  let waiting = null;  // id of the prediction we wait for
  let pollTimer = null;

  function csrf() {
    const input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = false;
    // The answer shown was for the earlier input: it must not pass for this one's.
    out.replaceChildren();
    delete out.dataset.type;
    state.textContent = "";
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function render(p) {
    if (p.id !== waiting) return;
    waiting = null;
    clearTimeout(pollTimer);
    button.disabled = false;
    state.textContent = p.seconds != null ? "answered in " + (p.seconds * 1000).toFixed(0) + " ms (model time)" : "";
    out.replaceChildren();
    if (p.status === "failed") { showError(p.error); return; }
    const r = p.result;
    out.dataset.type = r.type;
    if (r.type === "classes") {
      const list = el("ol", "top-classes");
      list.id = "try-top";
      r.top.forEach((c) => {
        const li = el("li");
        li.append(el("strong", "label", c.label), " ", el("span", "muted", (100 * c.confidence).toFixed(1) + " %"));
        const bar = el("meter");
        bar.min = 0; bar.max = 1; bar.value = c.confidence;
        bar.setAttribute("aria-label", c.label + " confidence");
        li.append(" ", bar);
        list.append(li);
      });
      out.append(list);
    } else if (r.type === "value") {
      const v = el("p", "big-value", String(Number(r.value.toPrecision(6))));
      v.id = "try-value";
      out.append(v);
    } else if (r.type === "text") {
      const pre = el("pre", "generated");
      pre.id = "try-generated";
      pre.append(el("span", "prompt", r.prompt), el("span", "completion", r.generated));
      out.append(pre);
    }
    (r.notes || []).forEach((n) => out.append(el("p", "muted small", n)));
  }

  function poll(id, delay) {
    pollTimer = setTimeout(async () => {
      if (waiting !== id) return;
      try {
        const resp = await fetch(form.dataset.resultUrl + "?id=" + encodeURIComponent(id), { credentials: "same-origin" });
        if (resp.ok) {
          const p = (await resp.json()).prediction;
          if (p.status !== "pending") { render(p); return; }
        }
      } catch (e) { /* network blip: poll again */ }
      poll(id, Math.min(5000, delay * 1.5));
    }, delay);
  }

  // A language model's answer while it is generated: pieces of text at a character offset; a
  // piece that does not continue what is shown (a dropped frame) is skipped, and the final
  // answer replaces it all.
  function streamed(t) {
    if (t.id !== waiting) return;
    let pre = document.getElementById("try-generated");
    if (!pre || pre.dataset.streaming !== t.id) {
      out.replaceChildren();
      out.dataset.type = "streaming";
      pre = el("pre", "generated");
      pre.id = "try-generated";
      pre.dataset.streaming = t.id;
      const prompt = form.querySelector("[name=prompt]");
      pre.append(el("span", "prompt", prompt ? prompt.value : ""), el("span", "completion", ""));
      out.append(pre);
      state.textContent = "generating…";
    }
    const completion = pre.querySelector(".completion");
    if (t.offset !== completion.textContent.length) return;
    completion.textContent += t.text;
  }

  // Table models: fill the fields from a validation row, or from one pasted CSV row (in the
  // columns' order; quotes as in CSV).
  const featureInputs = Array.from(form.querySelectorAll("[name^='f:']"));
  const setField = (input, value) => {
    if (input.tagName === "SELECT" && !Array.from(input.options).some((o) => o.value === value)) return false;
    input.value = value;
    return true;
  };
  const examplesEl = document.getElementById("try-examples");
  const exampleSelect = document.getElementById("try-example");
  if (examplesEl && exampleSelect) {
    const examples = JSON.parse(examplesEl.textContent);
    exampleSelect.addEventListener("change", () => {
      const row = examples[Number(exampleSelect.value)];
      if (!row || exampleSelect.value === "") return;
      for (const input of featureInputs) setField(input, row.values[input.name.slice(2)] ?? "");
    });
  }
  const parseCsvRow = (line) => {
    const cells = [];
    let cell = "", quoted = false;
    for (let i = 0; i < line.length; i++) {
      const ch = line[i];
      if (quoted) {
        if (ch === '"' && line[i + 1] === '"') { cell += '"'; i++; } else if (ch === '"') quoted = false; else cell += ch;
      } else if (ch === '"' && cell.trim() === "") { quoted = true; cell = ""; } else if (ch === "," || ch === "\t" || ch === ";") {
        cells.push(cell.trim()); cell = "";
      } else cell += ch;
    }
    cells.push(cell.trim());
    return cells;
  };
  const paste = document.getElementById("try-paste");
  const pasteError = document.getElementById("try-paste-error");
  if (paste) {
    const fillFromPaste = () => {
      pasteError.hidden = true;
      const text = paste.value.trim().split(/\r?\n/)[0];
      if (!text) return;
      const cells = parseCsvRow(text);
      if (cells.length !== featureInputs.length) {
        pasteError.textContent = "expected " + featureInputs.length + " values, got " + cells.length;
        pasteError.hidden = false;
        return;
      }
      const bad = featureInputs.filter((input, i) => !setField(input, cells[i])).map((input) => input.name.slice(2));
      if (bad.length) { pasteError.textContent = "not one of the training values for: " + bad.join(", "); pasteError.hidden = false; }
    };
    paste.addEventListener("input", fillFromPaste);
    paste.addEventListener("change", fillFromPaste);
  }

  // Image models: a preview of the chosen file (a blob: URL; the CSP allows it for images).
  const imageInput = document.getElementById("try-image");
  const previewBox = document.getElementById("try-preview-box");
  if (imageInput && previewBox) {
    const img = document.getElementById("try-preview");
    let url = null;
    imageInput.addEventListener("change", () => {
      if (url) URL.revokeObjectURL(url);
      const file = imageInput.files[0];
      previewBox.hidden = !file;
      if (!file) return;
      url = URL.createObjectURL(file);
      img.src = url;
      document.getElementById("try-preview-caption").textContent = file.name + " · " + Math.ceil(file.size / 1024) + " kB";
    });
  }

  document.addEventListener("trainyard:prediction", (e) => render(e.detail));
  document.addEventListener("trainyard:prediction_tokens", (e) => streamed(e.detail));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    errorBox.hidden = true;
    button.disabled = true;
    state.textContent = "running…";
    let resp;
    try {
      resp = await fetch(form.action, { method: "POST", body: new FormData(form), credentials: "same-origin",
                                        headers: { "X-CSRFToken": csrf() } });
    } catch (err) {
      button.disabled = false; state.textContent = ""; showError("The server could not be reached."); return;
    }
    const data = await resp.json().catch(() => ({ error: "unexpected answer (HTTP " + resp.status + ")" }));
    if (!resp.ok) { button.disabled = false; state.textContent = ""; showError(data.error); return; }
    waiting = data.prediction.id;
    poll(waiting, 1000);  // the socket usually answers first
    const id = waiting;
    setTimeout(() => {
      if (waiting === id) state.textContent = "still waiting for an inference worker (queue “infer”)…";
    }, 15000);
  });

  // Try many: upload the file, then follow the batch (pushed on the user socket as
  // "trainyard:batch", polled as well) until its CSV can be downloaded.
  function batch() {
    const bform = document.getElementById("batch-form");
    if (!bform) return;
    const list = document.getElementById("batch-list");
    const bstate = document.getElementById("batch-state");
    const bar = document.getElementById("batch-progress");
    const berr = document.getElementById("batch-error");
    const bbutton = document.getElementById("batch-submit");
    let current = null, timer = null;
    const statusUrl = (id) => list.dataset.statusUrl.replace("00000000-0000-0000-0000-000000000000", id);
    const item = (b) => {
      let li = list.querySelector(`[data-batch="${b.id}"]`);
      if (!li) {
        li = document.createElement("li");
        li.dataset.batch = b.id;
        const name = document.createElement("strong");
        name.textContent = b.filename;
        const st = document.createElement("span");
        st.dataset.field = "state";
        li.append(name, " ", st);
        list.prepend(li);
      }
      return li;
    };
    const show = (b) => {
      const li = item(b);
      li.dataset.status = b.status;
      let text = b.status_label;
      if (b.status === "running" && b.rows_total) text += ": " + b.rows_done + " of " + b.rows_total;
      if (b.status === "done") text += ": " + b.rows_total + " predictions" + (b.rows_failed ? ", " + b.rows_failed + " could not be read" : "");
      if (b.status === "failed") text += ": " + b.error;
      li.querySelector('[data-field="state"]').textContent = text;
      if (b.download && !li.querySelector('[data-field="download"]')) {
        const a = document.createElement("a");
        a.href = b.download; a.textContent = "download CSV"; a.dataset.field = "download";
        li.append(" ", a);
      }
      if (b.problems && b.problems.length && !li.querySelector(".problems")) {
        const ul = document.createElement("ul");
        ul.className = "problems small";
        for (const p of b.problems) { const x = document.createElement("li"); x.textContent = p; ul.append(x); }
        li.append(ul);
      }
      if (b.id !== current) return;
      bar.hidden = false;
      bar.value = b.rows_total ? b.rows_done / b.rows_total : 0;
      bstate.textContent = text;
      if (b.status === "done" || b.status === "failed") {
        current = null; clearTimeout(timer); bbutton.disabled = false; bar.value = b.status === "done" ? 1 : bar.value;
        if (b.status === "failed") { berr.textContent = b.error; berr.hidden = false; }
      }
    };
    const poll = (id, delay) => {
      timer = setTimeout(async () => {
        if (current !== id) return;
        try {
          const r = await fetch(statusUrl(id), { credentials: "same-origin" });
          if (r.ok) show((await r.json()).batch);
        } catch (e) { /* poll again */ }
        if (current === id) poll(id, Math.min(3000, delay * 1.3));
      }, delay);
    };
    document.addEventListener("trainyard:batch", (e) => show(e.detail));
    bform.addEventListener("submit", async (e) => {
      e.preventDefault();
      berr.hidden = true;
      bbutton.disabled = true;
      bstate.textContent = "uploading…";
      let resp;
      try {
        resp = await fetch(bform.action, { method: "POST", body: new FormData(bform), credentials: "same-origin",
                                           headers: { "X-CSRFToken": bform.querySelector("input[name=csrfmiddlewaretoken]").value } });
      } catch (err) { bbutton.disabled = false; bstate.textContent = ""; berr.textContent = "The server could not be reached."; berr.hidden = false; return; }
      const data = await resp.json().catch(() => ({ error: "unexpected answer (HTTP " + resp.status + ")" }));
      if (!resp.ok) { bbutton.disabled = false; bstate.textContent = ""; berr.textContent = data.error; berr.hidden = false; return; }
      current = data.batch.id;
      show(data.batch);
      poll(current, 700);
    });
  }
})();
