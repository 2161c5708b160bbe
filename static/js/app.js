// Small behaviours shared by the pages (no inline scripts: the CSP forbids them).
(function () {
  "use strict";

  // Confirm destructive forms.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => { if (!confirm(form.dataset.confirm)) e.preventDefault(); });
  }

  // Upload form: show the options of the chosen kind only (all of them for "detect").
  const kind = document.getElementById("kind");
  if (kind) {
    const syncKind = () => {
      for (const label of document.querySelectorAll("#upload-form [data-kinds]")) {
        label.hidden = kind.value !== "auto" && !label.dataset.kinds.split(" ").includes(kind.value);
      }
    };
    kind.addEventListener("change", syncKind);
    syncKind();
  }

  // Upload: send the file in chunks (bounded request bodies, resumable after an error), then
  // submit the form with the upload's id instead of the file.
  const uploadForm = document.getElementById("upload-form");
  if (uploadForm) {
    const fileInput = uploadForm.querySelector("input[type=file]");
    const bar = document.getElementById("upload-progress");
    const err = document.getElementById("upload-error");
    const csrf = uploadForm.querySelector("input[name=csrfmiddlewaretoken]").value;
    const api = async (url, opts) => {
      const r = await fetch(url, { credentials: "same-origin", ...opts,
                                   headers: { "X-CSRFToken": csrf, ...(opts.headers || {}) } });
      const body = await r.json().catch(() => ({}));
      return { r, body };
    };
    uploadForm.addEventListener("submit", async (e) => {
      const file = fileInput.files[0];
      if (!file || document.getElementById("upload-id").value) return;
      e.preventDefault();
      err.hidden = true;
      document.getElementById("upload-button").disabled = true;
      try {
        let { r, body } = await api(uploadForm.dataset.uploadsUrl, {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ filename: file.name, size: file.size }) });
        if (!r.ok) throw new Error(body.error || "the upload could not start (HTTP " + r.status + ")");
        const session = body, url = uploadForm.dataset.uploadsUrl + session.id + "/";
        bar.hidden = false;
        let offset = 0, failures = 0;
        while (offset < file.size) {
          const end = Math.min(file.size, offset + session.chunk_bytes);
          ({ r, body } = await api(url, { method: "PUT", body: file.slice(offset, end), headers: {
            "Content-Type": "application/octet-stream", "Content-Range": "bytes " + offset + "-" + (end - 1) + "/" + file.size } }));
          if (r.ok || r.status === 409) { offset = body.received; failures = 0; }
          else if (r.status >= 500 && failures++ < 5) { await new Promise((res) => setTimeout(res, 1000 * failures)); }
          else throw new Error(body.error || "the upload failed (HTTP " + r.status + ")");
          bar.value = offset / file.size;
        }
        document.getElementById("upload-id").value = session.id;
        fileInput.required = false;
        fileInput.disabled = true;  // the bytes are on the server already
        uploadForm.submit();
      } catch (ex) {
        err.textContent = ex.message;
        err.hidden = false;
        document.getElementById("upload-button").disabled = false;
      }
    });
  }

  // New job: offer the architectures that accept the chosen dataset, show their settings only.
  const arch = document.getElementById("architecture");
  const datasetSelect = document.querySelector("#job-form select[name=dataset]");
  if (arch && datasetSelect) {
    const syncArchs = () => {
      const opt = datasetSelect.selectedOptions[0];
      const dsKind = opt ? opt.dataset.kind : null;
      for (const o of arch.options) o.hidden = o.disabled = dsKind !== null && !o.dataset.kinds.split(" ").includes(dsKind);
      if (arch.selectedOptions[0] && arch.selectedOptions[0].disabled) {
        const first = Array.from(arch.options).find((o) => !o.disabled);
        if (first) arch.value = first.value;
      }
    };
    datasetSelect.addEventListener("change", () => { syncArchs(); arch.dispatchEvent(new Event("change")); });
    syncArchs();
  }
  if (arch) {
    const sync = () => {
      for (const fs of document.querySelectorAll(".arch-fields")) {
        const on = fs.dataset.arch === arch.value;
        fs.hidden = !on;
        for (const input of fs.querySelectorAll("input, select")) input.disabled = !on;
      }
    };
    arch.addEventListener("change", sync);
    sync();
  }

  // Dataset page: reload when ingest finishes.
  const dsStatus = document.getElementById("dataset-status");
  if (dsStatus && dsStatus.dataset.status === "ingesting") {
    const poll = async () => {
      try {
        const r = await fetch(dsStatus.dataset.url, { credentials: "same-origin" });
        if (r.ok) {
          const d = await r.json();
          if (d.status !== "ingesting") { location.reload(); return; }
          const bar = document.getElementById("ingest-progress");
          if (bar) bar.value = d.progress;
        }
      } catch (e) { /* keep polling */ }
      setTimeout(poll, 1000);
    };
    setTimeout(poll, 1000);
  }

  // Jobs list: status changes arrive on the user socket (notify.js); a job this page does not
  // list yet (queued from another tab or the API) reloads it; progress refreshes every few seconds.
  const table = document.getElementById("jobs-table");
  if (table) {
    document.addEventListener("trainyard:job", (e) => {
      if (!table.querySelector('tr[data-job="' + e.detail.id + '"]')) location.reload();
    });
    const labels = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
    const refresh = async () => {
      try {
        const r = await fetch(table.dataset.url, { credentials: "same-origin" });
        if (r.ok) {
          const known = new Set();
          for (const j of (await r.json()).jobs) {
            const row = table.querySelector('tr[data-job="' + j.id + '"]');
            if (!row) continue;
            known.add(j.id);
            const badge = row.querySelector('[data-field="status"]');
            badge.textContent = labels[j.status] || j.status;
            badge.className = "badge " + j.status;
            row.querySelector('[data-field="progress"]').value = j.total_steps ? j.step / j.total_steps : 0;
            row.querySelector('[data-field="queue"]').textContent = j.queue_position == null ? "" : j.queue_position + " ahead";
          }
        }
      } catch (e) { /* try again later */ }
      setTimeout(refresh, 3000);
    };
    setTimeout(refresh, 3000);
  }
})();
