// Small behaviours shared by the pages (no inline scripts: the CSP forbids them).
(function () {
  "use strict";

  // Confirm destructive forms.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (e) => { if (!confirm(form.dataset.confirm)) e.preventDefault(); });
  }

  // Upload form: show the options of the chosen kind only; with "detect", of the kind the server
  // detects from the chosen file's name and first 64 KB (its own rule, datasets:detect-kind), and
  // all of them until a file is chosen.
  const kind = document.getElementById("kind");
  if (kind) {
    const detectedEl = document.getElementById("kind-detected");
    const form = document.getElementById("upload-form");
    let detected = null;
    const syncKind = () => {
      const shown = kind.value !== "auto" ? kind.value : detected;
      for (const label of document.querySelectorAll("#upload-form [data-kinds]")) {
        label.hidden = shown !== null && !label.dataset.kinds.split(" ").includes(shown);
        // A hidden field is not sent: the server refuses another kind's option that has a value.
        for (const input of label.querySelectorAll("input, select")) input.disabled = label.hidden;
      }
      if (detectedEl) detectedEl.hidden = kind.value !== "auto" || !detectedEl.textContent;
    };
    const detect = async () => {
      const file = form && form.querySelector("input[type=file]").files[0];
      detected = null;
      if (detectedEl) detectedEl.textContent = "";
      syncKind();
      if (!file || !form.dataset.detectUrl) return;
      const body = new FormData();
      body.append("filename", file.name);
      body.append("head", file.slice(0, 64 * 1024), "head");
      try {
        const r = await fetch(form.dataset.detectUrl, { method: "POST", body, credentials: "same-origin",
          headers: { "X-CSRFToken": form.querySelector("input[name=csrfmiddlewaretoken]").value } });
        if (!r.ok) return;
        const d = await r.json();
        detected = d.kind;
        if (detectedEl) detectedEl.textContent = "Detected: " + d.label;
      } catch (e) { /* detected again by the server on upload */ }
      syncKind();
    };
    kind.addEventListener("change", syncKind);
    if (form) form.querySelector("input[type=file]").addEventListener("change", detect);
    syncKind();
    if (form && form.querySelector("input[type=file]").files.length) detect();
  }

  // Upload: send the file by tus (tus-js-client, vendored) in chunks below the request limit,
  // then submit the form with the upload's id instead of the file. tus-js-client keeps the upload's
  // URL in localStorage under the file's fingerprint (name, type, size, mtime), so after a reload or
  // a dropped connection choosing the same file again resumes where the server stopped.
  const uploadForm = document.getElementById("upload-form");
  if (uploadForm && window.tus) {
    const fileInput = uploadForm.querySelector("input[type=file]");
    const bar = document.getElementById("upload-progress");
    const barBox = document.getElementById("upload-progress-box");
    const barText = document.getElementById("upload-progress-text");
    const err = document.getElementById("upload-error");
    const note = document.getElementById("upload-resume");
    const button = document.getElementById("upload-button");
    const csrf = uploadForm.querySelector("input[name=csrfmiddlewaretoken]").value;
    const endpoint = uploadForm.dataset.tusUrl;
    const fail = (message) => { err.textContent = message; err.hidden = false; button.disabled = false; };
    const percent = (n) => Math.floor(100 * n) + "%";
    if (note && window.tus.defaultOptions.urlStorage) {
      window.tus.defaultOptions.urlStorage.findAllUploads().then((previous) => {
        const mine = previous.filter((p) => p.metadata && p.metadata.filename);
        if (!mine.length) return;
        note.textContent = "Interrupted upload: " + mine.map((p) => p.metadata.filename).join(", ") +
          ". Choose the same file again to resume where it stopped.";
        note.hidden = false;
      }).catch(() => {});
    }
    // Progress: percent and bytes; the bar eases toward the bytes sent (tus reports them as the
    // browser sends each chunk), so it moves smoothly instead of jumping.
    const bytes = (n) => n >= 2 ** 30 ? (n / 2 ** 30).toFixed(2) + " GB" : n >= 2 ** 20 ? (n / 2 ** 20).toFixed(1) + " MB"
      : n >= 1024 ? (n / 1024).toFixed(0) + " kB" : n + " B";
    let target = 0, shownAt = 0, totalBytes = 0, frame = null;
    const draw = () => {
      shownAt += (target - shownAt) * 0.2;
      if (Math.abs(target - shownAt) < 0.001) shownAt = target;
      bar.value = shownAt;
      barText.textContent = percent(shownAt) + " · " + bytes(Math.round(shownAt * totalBytes)) + " of " + bytes(totalBytes);
      frame = shownAt === target ? null : requestAnimationFrame(draw);
    };
    const progress = (sent, total) => {
      barBox.hidden = false;
      totalBytes = total;
      target = total ? sent / total : 0;
      bar.title = percent(target);
      if (frame === null) frame = requestAnimationFrame(draw);
    };
    uploadForm.addEventListener("submit", async (e) => {
      const file = fileInput.files[0];
      if (!file || document.getElementById("upload-id").value) return;
      e.preventDefault();
      err.hidden = true;
      button.disabled = true;
      let chunkSize = 8 * 1024 * 1024;
      try {
        const r = await fetch(endpoint, { method: "OPTIONS", credentials: "same-origin" });
        chunkSize = Number(r.headers.get("Trainyard-Chunk-Bytes")) || chunkSize;
      } catch (ex) { /* keep the default; the upload reports a real network error itself */ }
      const upload = new window.tus.Upload(file, {
        endpoint, chunkSize,
        retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
        metadata: { filename: file.name, filetype: file.type || "application/octet-stream" },
        headers: { "X-CSRFToken": csrf },
        storeFingerprintForResuming: true,
        removeFingerprintOnSuccess: true,
        onProgress: (sent, total) => progress(sent, total),
        onError: (ex) => {
          const body = ex.originalResponse ? ex.originalResponse.getBody() : "";
          let message = ex.message;
          try { message = JSON.parse(body).error || message; } catch (_) { /* not JSON */ }
          fail("The upload stopped: " + message + ". Choose the file again to resume.");
        },
        onSuccess: () => {
          progress(file.size, file.size);
          shownAt = target; draw();  // all sent: show it before the page moves on
          document.getElementById("upload-id").value = upload.url.replace(/\/$/, "").split("/").pop();
          fileInput.required = false;
          fileInput.disabled = true;  // the bytes are on the server already
          uploadForm.submit();
        },
      });
      const previous = await upload.findPreviousUploads().catch(() => []);
      if (previous.length) {
        upload.resumeFromPreviousUpload(previous[0]);
        if (note) { note.textContent = "Resuming the earlier upload of " + file.name + "."; note.hidden = false; }
      }
      upload.start();
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

  // New job: an HF architecture (and its method) brings the fine-tuning defaults into the
  // training fields the user has not edited; a zoo architecture brings the zoo's back.
  const defaultsEl = document.getElementById("train-defaults");
  // Attributes, not jobForm.dataset: the form's control named "dataset" shadows that property.
  const jobForm = document.getElementById("job-form");
  if (arch && defaultsEl && jobForm) {
    const defaults = JSON.parse(defaultsEl.textContent);
    const edited = new Set();
    jobForm.addEventListener("input", (e) => { if (e.target.name && e.target.name.startsWith("tc_")) edited.add(e.target.name); });
    const applyDefaults = () => {
      let values = defaults.zoo;
      if (arch.value.startsWith("hf_")) {
        const method = jobForm.querySelector(`[name="m_${arch.value}__method"]`);
        values = Object.assign({}, defaults.zoo, defaults.hf[method ? method.value : "full"]);
      }
      for (const [name, value] of Object.entries(values)) {
        const input = jobForm.querySelector(`[name="tc_${name}"]`);
        if (input && !edited.has(input.name) && input.type !== "checkbox") input.value = value;
      }
      jobForm.dispatchEvent(new Event("trainyard:settings"));  // jobform.js shows what applies now
    };
    arch.addEventListener("change", applyDefaults);
    jobForm.addEventListener("change", (e) => { if (e.target.name && e.target.name.endsWith("__method")) applyDefaults(); });
    if (jobForm.hasAttribute("data-fresh")) applyDefaults();  // never over a clone's or a refused form's values

    // Zoo architectures: the settings the user leaves alone get the defaults that fit the chosen
    // dataset and architecture (models_zoo/defaults.py, from /api/train-defaults/), shown with
    // their reason. They are sent as "auto" (the auto_fields list), so the server resolves them
    // itself: explicit values always win, and a field the user edits stops being auto.
    const autoInput = jobForm.querySelector("input[name=auto_fields]");
    const url = jobForm.getAttribute("data-defaults-url");
    if (autoInput && url && datasetSelect) {
      const auto = new Map();  // field name -> the value it was given
      // A clone's or a refused form's values are the user's own, except the fields it sent as auto.
      if (!jobForm.hasAttribute("data-fresh")) {
        const sentAuto = autoInput.value ? autoInput.value.split(",") : [];
        for (const input of jobForm.querySelectorAll("[name^=tc_]")) if (!sentAuto.includes(input.name.slice(3))) edited.add(input.name);
      }
      const reasonEl = (name) => jobForm.querySelector(`[data-reason-for="tc_${name}"]`);
      const clearReasons = () => { for (const el of jobForm.querySelectorAll("[data-reason-for]")) { el.textContent = ""; el.hidden = true; } };
      let token = 0;
      const refresh = async () => {
        const mine = ++token;
        if (!arch.value || arch.value.startsWith("hf_") || !datasetSelect.value) { auto.clear(); clearReasons(); return; }
        const params = new URLSearchParams({ dataset: datasetSelect.value, architecture: arch.value });
        const block = jobForm.querySelector(`[name="m_${arch.value}__block_size"]`);
        if (block && block.value) params.set("model.block_size", block.value);
        let body;
        try {
          const r = await fetch(url + "?" + params, { credentials: "same-origin", headers: { Accept: "application/json" } });
          if (!r.ok) return;
          body = await r.json();
        } catch (e) { return; }
        if (mine !== token) return;  // a newer choice is being fetched
        clearReasons();
        for (const name of auto.keys()) {  // another architecture's rule: back to the plain default
          const input = jobForm.querySelector(`[name="tc_${name}"]`);
          if (input && !(name in body.settings) && name in defaults.zoo) input.value = String(defaults.zoo[name]);
        }
        auto.clear();
        for (const [name, { value, reason }] of Object.entries(body.settings)) {
          const input = jobForm.querySelector(`[name="tc_${name}"]`);
          if (!input || edited.has(input.name)) continue;
          input.value = String(value);
          auto.set(name, input.value);
          const el = reasonEl(name);
          if (el) { el.textContent = `${input.type === "number" ? value : input.selectedOptions ? input.selectedOptions[0].textContent : value}: ${reason}`; el.hidden = false; }
        }
        jobForm.dispatchEvent(new Event("trainyard:settings"));
      };
      jobForm.addEventListener("input", (e) => {
        const name = e.target.name && e.target.name.startsWith("tc_") ? e.target.name.slice(3) : null;
        if (name && auto.has(name)) { auto.delete(name); const el = reasonEl(name); if (el) { el.textContent = ""; el.hidden = true; } }
      });
      jobForm.addEventListener("change", (e) => { if (e.target.name && e.target.name.endsWith("__block_size")) refresh(); });
      arch.addEventListener("change", refresh);
      datasetSelect.addEventListener("change", refresh);
      jobForm.addEventListener("submit", () => {
        autoInput.value = Array.from(auto).filter(([name, value]) => {
          const input = jobForm.querySelector(`[name="tc_${name}"]`);
          return input && input.value === value;
        }).map(([name]) => name).join(",");
      });
      refresh();
    }
  }

  // New job: the GPU memory estimate of a Hugging Face job, re-read as the settings change; it
  // fills the minimum GPU memory (unless the user typed one) when a registered worker has a GPU,
  // and a job no registered GPU can hold asks before it is queued.
  const estimateEl = document.getElementById("memory-estimate");
  if (arch && jobForm && estimateEl) {
    const warnEl = document.getElementById("memory-warning");
    const minGpu = document.getElementById("min-gpu-memory");
    let minEdited = Boolean(minGpu && minGpu.value !== "");
    let autoFilled = false;
    let timer = null;
    let current = null;
    if (minGpu) minGpu.addEventListener("input", () => { minEdited = true; });
    const show = (d) => {
      current = d;
      const gpu = d.largest_gpu ? "; largest registered GPU: " + d.largest_gpu.name + ", " + (d.largest_gpu.bytes / 2 ** 30).toFixed(0) + " GB"
                                : "; no registered worker has a GPU";
      estimateEl.textContent = d.available ? "Estimated GPU memory " + d.text + gpu : "No memory estimate: " + d.why;
      warnEl.textContent = d.warning || "";
      warnEl.hidden = !d.warning;
      if (minGpu && d.available && d.largest_gpu && !minEdited) { minGpu.value = d.min_gpu_memory_gb; autoFilled = true; }
    };
    const refresh = async () => {
      if (!arch.value.startsWith("hf_")) {
        current = null; estimateEl.textContent = ""; warnEl.hidden = true;
        if (minGpu && autoFilled && !minEdited) { minGpu.value = ""; autoFilled = false; }
        return;
      }
      const params = new URLSearchParams();
      for (const [k, v] of new FormData(jobForm)) if (k !== "csrfmiddlewaretoken" && typeof v === "string") params.append(k, v);
      try {
        const r = await fetch(estimateEl.dataset.url + "?" + params.toString(), { credentials: "same-origin" });
        if (r.ok) show(await r.json());
      } catch (e) { /* no estimate this time */ }
    };
    const later = () => { clearTimeout(timer); timer = setTimeout(refresh, 300); };
    jobForm.addEventListener("input", later);
    jobForm.addEventListener("change", later);
    refresh();
    jobForm.addEventListener("submit", (e) => {
      if (!current || !current.warning || jobForm.querySelector("[name=memory_confirmed]:checked")) return;
      if (!window.confirm(current.warning + " Queue it anyway?")) { e.preventDefault(); return; }
      const yes = document.createElement("input");  // asked here: the server does not ask again
      yes.type = "hidden"; yes.name = "memory_confirmed"; yes.value = "1";
      jobForm.append(yes);
    });
  }

  // Dataset page: reload when ingest finishes.
  const dsStatus = document.getElementById("dataset-status");
  if (dsStatus && dsStatus.dataset.status === "ingesting") {
    const poll = async () => {
      try {
        const r = await fetch(dsStatus.dataset.url, { credentials: "same-origin" });
        // 404: the file was refused and the dataset removed; the reload shows the reason.
        if (r.status === 404) { location.reload(); return; }
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

  // Jobs list: rows refresh from the list's own JSON (same filters and access rule as the page).
  // Status changes arrive at once on the user socket (notify.js dispatches "trainyard:job");
  // progress, ETA and best metric refresh every 2 s while a listed job is queued or running and
  // the tab is visible. Filters apply as you type, and stay in the address bar.
  const table = document.getElementById("jobs-table");
  if (table) {
    const body = table.tBodies[0];
    const filterForm = document.getElementById("job-filters");
    const showOwner = table.dataset.showOwner === "1";
    const showProject = table.dataset.showProject === "1";
    const fmtSeconds = (s) => {
      if (s == null || s === "" || !Number.isFinite(Number(s))) return "";
      s = Math.max(0, Math.round(Number(s)));
      const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
      return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
    };
    const fmtNum = (x) => (Math.abs(x) >= 1e4 || (x !== 0 && Math.abs(x) < 1e-3) ? x.toExponential(3) : x.toFixed(4));
    const cell = (label, child) => {
      const td = document.createElement("td");
      td.dataset.label = label;
      if (child) td.append(child);
      return td;
    };
    function newRow(j) {
      const tr = document.createElement("tr");
      tr.dataset.job = j.id;
      const box = Object.assign(document.createElement("input"), { type: "checkbox", name: "ids", value: j.id });
      box.setAttribute("aria-label", "select " + j.name);
      const link = Object.assign(document.createElement("a"), { href: j.url, textContent: j.name });
      link.dataset.field = "name";
      const nameCell = document.createElement("span");
      const tags = Object.assign(document.createElement("span"), { className: "tags" });
      tags.dataset.field = "tags";
      nameCell.append(link, " ", tags);
      const status = document.createElement("span");
      status.innerHTML = '<span class="badge" data-field="status"></span> <small data-field="queue"></small>';
      const prog = document.createElement("span");
      prog.innerHTML = '<progress max="1" data-field="progress"></progress> <small data-field="progress-text"></small>';
      prog.firstChild.setAttribute("aria-label", "progress of " + j.name);
      const cells = [cell("Select", box), cell("Name", nameCell), cell("Status", status), cell("Progress", prog),
                     cell("Worker"), cell("Best"), cell("Duration"), cell("Architecture", document.createTextNode(j.architecture)),
                     cell("Dataset", document.createTextNode(j.dataset_name || "(deleted)"))];
      cells[3].className = "progress-cell";
      cells[4].dataset.field = "worker";
      cells[5].dataset.field = "best"; cells[5].className = "nowrap";
      cells[6].dataset.field = "duration"; cells[6].className = "nowrap";
      if (showProject) cells.push(cell("Project", document.createTextNode(j.project_name || "personal")));
      if (showOwner) cells.push(cell("Owner", document.createTextNode(j.owner)));
      const time = Object.assign(document.createElement("time"), { dateTime: j.created_at, textContent: j.created_label });
      const created = cell("Created", time); created.className = "nowrap";
      cells.push(created);
      tr.append(...cells);
      return tr;
    }
    function fill(tr, j) {
      tr.dataset.status = j.status;
      const tags = tr.querySelector('[data-field="tags"]');
      if (tags && tags.textContent.trim() !== (j.tags || []).join(" ")) {
        tags.replaceChildren(...(j.tags || []).flatMap((t) => [Object.assign(document.createElement("span"), { className: "tag", textContent: t }), " "]));
      }
      const badge = tr.querySelector('[data-field="status"]');
      badge.textContent = j.status_label;
      badge.className = "badge " + j.status;
      tr.querySelector('[data-field="queue"]').textContent = j.queue_note || (j.cancel_requested ? "stopping…" : "");
      tr.querySelector('[data-field="progress"]').value = j.progress;
      let text = j.total_steps ? "epoch " + j.epoch + "/" + j.epochs : "";
      if (j.eta_seconds != null) text += " · ETA " + fmtSeconds(j.eta_seconds);
      tr.querySelector('[data-field="progress-text"]').textContent = text;
      tr.querySelector('[data-field="worker"]').textContent = j.worker || "";
      tr.querySelector('[data-field="best"]').textContent = j.best_value == null ? "" : j.best_metric + " " + fmtNum(j.best_value);
      const dur = tr.querySelector('[data-field="duration"]');
      dur.dataset.seconds = j.duration_seconds == null ? "" : String(j.duration_seconds);
      dur.dataset.since = String(Date.now());
      dur.textContent = fmtSeconds(j.duration_seconds);
    }
    // Running jobs' durations tick between refreshes.
    for (const d of table.querySelectorAll('[data-field="duration"]')) { d.dataset.since = String(Date.now()); d.textContent = fmtSeconds(d.dataset.seconds); }
    setInterval(() => {
      for (const tr of body.querySelectorAll('tr[data-status="running"]')) {
        const d = tr.querySelector('[data-field="duration"]');
        if (d.dataset.seconds) d.textContent = fmtSeconds(Number(d.dataset.seconds) + (Date.now() - Number(d.dataset.since)) / 1000);
      }
    }, 1000);

    const query = () => {
      const params = new URLSearchParams();
      for (const el of filterForm.elements) if (el.name && el.value) params.set(el.name, el.value);
      return params;
    };
    let inflight = false, again = false, timer = null;
    async function refresh() {
      if (inflight) { again = true; return; }
      inflight = true;
      try {
        const params = query();
        params.set("format", "json");
        const r = await fetch(table.dataset.url + "?" + params, { credentials: "same-origin", headers: { Accept: "application/json" } });
        const searchError = document.getElementById("search-error");
        if (r.status === 400) {  // a search that cannot be read: say why, keep the rows shown
          searchError.textContent = (await r.json()).error;
          searchError.hidden = false;
          return;
        }
        if (!r.ok) return;
        searchError.hidden = true;
        const data = await r.json();
        const rows = new Map(Array.from(body.querySelectorAll("tr[data-job]"), (tr) => [tr.dataset.job, tr]));
        let previous = null;
        for (const j of data.jobs) {  // newest first, as the server orders them
          let tr = rows.get(j.id);
          if (!tr) tr = newRow(j);
          rows.delete(j.id);
          fill(tr, j);
          const want = previous ? previous.nextSibling : body.firstChild;
          if (tr !== want) body.insertBefore(tr, want);
          previous = tr;
        }
        for (const tr of rows.values()) tr.remove();
        for (const tr of body.querySelectorAll("tr.empty")) tr.remove();
        if (!data.jobs.length) {
          const tr = document.createElement("tr"); tr.className = "empty";
          tr.append(Object.assign(document.createElement("td"), { colSpan: 11, className: "muted", textContent: "No jobs match these filters." }));
          body.append(tr);
        }
        const n = data.total;
        document.getElementById("jobs-count").textContent = n + " job" + (n === 1 ? "" : "s") + (data.pages > 1 ? ", page " + data.page + " of " + data.pages : "");
        const pager = document.getElementById("jobs-pager");
        pager.hidden = data.pages <= 1;
        for (const [id, href] of [["page-previous", data.previous], ["page-next", data.next]]) {
          const a = document.getElementById(id);
          a.hidden = !href;
          if (href) a.href = href;
        }
        document.getElementById("page-label").textContent = "Page " + data.page + " of " + data.pages;
        table.dataset.refreshed = String(Date.now());
      } catch (e) { /* try again later */ } finally {
        inflight = false;
        if (again) { again = false; refresh(); }
      }
    }
    function schedule() {
      clearTimeout(timer);
      const active = body.querySelector('tr[data-status="queued"], tr[data-status="running"]');
      timer = setTimeout(async () => { if (!document.hidden) await refresh(); schedule(); }, active ? 2000 : 10000);
    }
    schedule();
    document.addEventListener("trainyard:job", () => refresh());
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });

    let typing = null;
    const applyFilters = () => {
      document.getElementById("filter-page").value = "";  // a new search starts at its first page
      const params = query();
      history.replaceState(null, "", table.dataset.url + (params.toString() ? "?" + params : ""));
      document.getElementById("filter-clear").hidden = !params.toString();
      refresh();
    };
    filterForm.addEventListener("submit", (e) => { e.preventDefault(); applyFilters(); });
    filterForm.addEventListener("change", applyFilters);
    document.getElementById("filter-q").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(applyFilters, 250); });

    // Bulk actions on the ticked jobs (one form; Compare is a GET without the CSRF token).
    const bulk = document.getElementById("bulk-form");
    const all = document.getElementById("select-all");
    all.addEventListener("change", () => { for (const box of body.querySelectorAll("input[name=ids]")) box.checked = all.checked; });
    bulk.addEventListener("submit", (e) => {
      const button = e.submitter;
      if (!body.querySelector("input[name=ids]:checked")) { e.preventDefault(); alert("Tick the jobs first."); return; }
      if (button && button.dataset.confirm && !confirm(button.dataset.confirm)) { e.preventDefault(); return; }
      const extra = ["csrfmiddlewaretoken", "next", "tags"].map((n) => bulk.querySelector(`input[name=${n}]`));
      const compare = Boolean(button && button.id === "compare-button");
      for (const input of extra) input.disabled = compare;
      setTimeout(() => { for (const input of extra) input.disabled = false; }, 0);  // the form data is taken by then
      document.getElementById("bulk-next").value = location.pathname + location.search;
    });
  }
})();
