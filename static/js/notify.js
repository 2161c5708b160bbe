// Every signed-in page: a socket for the user's own job changes. Shows a toast when a job
// finishes or fails, and keeps the jobs list (when open) up to date without reloading.
"use strict";
// At most `n` characters, cut at a word boundary (never mid-word), with an ellipsis.
function shorten(text, n) {
  if (text.length <= n) return text;
  const cut = text.slice(0, n - 1);
  const space = cut.search(/\s\S*$/);
  return (space > n * 0.6 ? cut.slice(0, space) : cut).replace(/[\s,;:.]+$/, "") + "…";
}

if (typeof module === "object" && module.exports) module.exports = { shorten };

(function () {
  if (typeof document === "undefined" || !document.body.dataset.user) return;
  const FINAL = { succeeded: "finished", failed: "failed", cancelled: "was cancelled" };
  const labels = { queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed", cancelled: "Cancelled" };
  let retries = 0;
  let lastSeq = null;  // the user stream's number: on a reconnect, ask for what came after it
  const toasted = new Set();  // job id + status: a replayed change does not toast twice

  const region = document.createElement("div");
  region.className = "toasts";
  region.setAttribute("role", "status");
  region.setAttribute("aria-live", "polite");
  document.body.append(region);

  function toast(job) {
    const key = job.id + ":" + job.status;
    if (toasted.has(key)) return;
    toasted.add(key);
    const a = document.createElement("a");
    a.href = "/jobs/" + job.id + "/";
    a.className = "toast " + job.status;
    const full = "Job “" + job.name + "” " + FINAL[job.status] + (job.error ? ": " + job.error : "");
    a.textContent = shorten(full, 160);
    if (a.textContent !== full) a.title = full;  // the whole message on hover; the job page has it too
    region.append(a);
    setTimeout(() => a.remove(), 8000);
  }

  function updateRow(job) {
    const row = document.querySelector('#jobs-table tr[data-job="' + job.id + '"]');
    if (!row) return;
    const badge = row.querySelector('[data-field="status"]');
    badge.textContent = labels[job.status] || job.status;
    badge.className = "badge " + job.status;
    row.querySelector('[data-field="progress"]').value = job.total_steps ? job.step / job.total_steps : 0;
  }

  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/user/");
    ws.onopen = () => { retries = 0; document.body.dataset.notify = "live"; };
    ws.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.type === "hello") {
        if (lastSeq !== null && data.seq > lastSeq) ws.send(JSON.stringify({ after: lastSeq }));
        else lastSeq = data.seq;
        return;
      }
      if (data.type === "error") {
        if (data.retry_after) setTimeout(() => ws.readyState === 1 && ws.send(JSON.stringify({ after: lastSeq || 0 })),
                                         1000 * data.retry_after);
        return;
      }
      if (data.type === "job" && data.seq) lastSeq = Math.max(lastSeq || 0, data.seq);
      if (data.type !== "job") {  // try-the-model answers, ONNX exports: for the page that asked
        document.dispatchEvent(new CustomEvent("trainyard:" + data.type, { detail: data[data.type] }));
        return;
      }
      updateRow(data.job);
      if (data.job.status in FINAL) toast(data.job);
      document.dispatchEvent(new CustomEvent("trainyard:job", { detail: data.job }));
    };
    ws.onclose = (e) => {
      document.body.dataset.notify = "off";
      if (e.code === 4401) return;
      setTimeout(connect, Math.min(15000, 500 * 2 ** retries++));
    };
  }
  connect();
})();
