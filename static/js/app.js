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

  // Jobs list: refresh status and progress every few seconds.
  const table = document.getElementById("jobs-table");
  if (table) {
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
          }
        }
      } catch (e) { /* try again later */ }
      setTimeout(refresh, 3000);
    };
    setTimeout(refresh, 3000);
  }
})();
