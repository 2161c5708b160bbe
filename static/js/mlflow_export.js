// Job page: "Push to MLflow". Posts the form to the API, then follows the push through the user
// socket ("trainyard:mlflow", from notify.js) with polling as a fallback, and lists the user's
// pushes of this job with their outcome (run, model version, or why it failed).
(function () {
  "use strict";
  const form = document.getElementById("mlflow-form");
  if (!form) return;
  const state = document.getElementById("mlflow-state");
  const list = document.getElementById("mlflow-exports");
  const button = document.getElementById("mlflow-button");
  const page = document.getElementById("job-page");
  const LABELS = { pending: "Queued", running: "Pushing…", done: "Done", failed: "Failed" };
  const exports = new Map();  // id -> export, newest first when drawn
  let timer = null;

  function csrf() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    if (m) return decodeURIComponent(m[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function item(e) {
    const li = document.createElement("li");
    li.dataset.id = e.id;
    li.dataset.status = e.status;
    const badge = document.createElement("span");
    badge.className = "badge " + (e.status === "done" ? "succeeded" : e.status === "failed" ? "failed" : "running");
    badge.textContent = LABELS[e.status] || e.status;
    li.append(badge, " " + e.experiment + " on " + e.tracking_uri);
    if (e.run_id) {
      li.append(" · run ");
      if (e.run_url && /^https?:\/\//.test(e.run_url)) {
        const a = document.createElement("a");
        a.href = e.run_url;
        a.rel = "noopener noreferrer";
        a.target = "_blank";
        a.textContent = e.run_id.slice(0, 12);
        li.append(a);
      } else {
        li.append(e.run_id.slice(0, 12));
      }
    }
    if (e.model_version) li.append(" · " + e.model_name + " version " + e.model_version);
    if (e.status === "done" && e.counts) {
      li.append(" · " + e.counts.metrics + " metric points, " + e.counts.params + " params, " + e.counts.artifacts + " files");
    }
    if (e.error) {
      const err = document.createElement("span");
      err.className = "error";
      err.textContent = " " + e.error;
      li.append(err);
    }
    return li;
  }

  function draw() {
    const rows = [...exports.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    list.replaceChildren(...rows.map(item));
    if (rows.some((e) => e.status === "pending" || e.status === "running")) poll(1500);
  }

  function update(e) {
    if (!e || e.job !== page.dataset.job) return;
    exports.set(e.id, e);
    draw();
  }

  async function load() {
    try {
      const resp = await fetch(form.dataset.url, { credentials: "same-origin" });
      if (!resp.ok) return;
      (await resp.json()).exports.forEach((e) => exports.set(e.id, e));
      draw();
    } catch (err) { /* the list stays as it was */ }
  }

  function poll(delay) {
    if (timer) return;
    timer = setTimeout(async () => { timer = null; await load(); }, delay);
  }

  document.addEventListener("trainyard:mlflow", (ev) => update(ev.detail));

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const body = { tracking_uri: data.get("tracking_uri"), experiment: data.get("experiment"),
                   register_model: data.get("register_model") === "on", model_name: data.get("model_name") };
    button.disabled = true;
    state.className = "";
    state.textContent = "Sending…";
    try {
      const resp = await fetch(form.dataset.url, {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf() }, body: JSON.stringify(body),
      });
      const answer = await resp.json().catch(() => ({ detail: "unexpected answer (HTTP " + resp.status + ")" }));
      if (!resp.ok) {
        state.className = "error";
        state.textContent = (answer.errors && Object.values(answer.errors)[0]) || answer.detail;
        return;
      }
      state.textContent = "Queued: a worker pushes the job now.";
      update(answer);
    } catch (err) {
      state.className = "error";
      state.textContent = "The server could not be reached.";
    } finally {
      button.disabled = false;
    }
  });
  load();
})();
