// Try the model: send the form, then wait for the answer pushed on the user socket
// (notify.js turns it into a "trainyard:prediction" event), polling as a fallback.
(function () {
  "use strict";
  const form = document.getElementById("try-form");
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
})();
