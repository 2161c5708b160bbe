// Job page: the "Export to ONNX" button. Starts the export, then follows it through the user
// socket ("trainyard:onnx", from notify.js) with polling as a fallback, and lists the new files.
(function () {
  "use strict";
  const page = document.getElementById("job-page");
  if (!page) return;
  // (Re)bound when the live page swaps in its outputs at the job's end (job.js, "trainyard:outputs").
  let box = null, button = null, state = null, list = null;
  let timer = null;

  function csrf() {
    const m = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    if (m) return decodeURIComponent(m[1]);
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function init() {
    clearTimeout(timer);
    box = document.getElementById("onnx-export");
    list = document.getElementById("artifacts");
    if (!box) return;
    button = document.getElementById("onnx-button");
    state = document.getElementById("onnx-state");
    button.addEventListener("click", start);
    if (box.dataset.status === "pending") poll(1000);
  }

  function showArtifacts(artifacts) {
    if (!artifacts || !list) return;
    list.replaceChildren();
    artifacts.forEach((a) => {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = page.dataset.artifactBase + encodeURIComponent(a.name);
      link.setAttribute("download", "");
      link.textContent = a.name;
      const meta = document.createElement("span");
      meta.className = "muted";
      meta.textContent = " " + (a.size_bytes / 1024).toFixed(1) + " KB · sha256 " + a.sha256.slice(0, 13) + "…";
      li.append(link);
      if (a.name === "MODEL_CARD.md" && page.dataset.modelCardUrl) {
        const read = document.createElement("a");
        read.href = page.dataset.modelCardUrl;
        read.id = "model-card-link";
        read.textContent = "read it";
        li.append(" ", read);
      }
      li.append(meta);
      list.append(li);
    });
  }

  function show(onnx, artifacts) {
    if (!onnx || !box) return;
    box.dataset.status = onnx.status;
    if (onnx.status === "pending") {
      state.textContent = "Exporting to ONNX…";
      button.hidden = true;
      return;
    }
    clearTimeout(timer);
    if (onnx.status === "done") {
      state.textContent = "ONNX checked in onnxruntime: largest difference from PyTorch " + Number(onnx.max_abs_diff).toPrecision(2);
      button.hidden = true;
      showArtifacts(artifacts);
    } else {
      state.textContent = "ONNX export failed: " + onnx.error;
      button.hidden = false;
    }
  }

  function poll(delay) {
    timer = setTimeout(async () => {
      try {
        const resp = await fetch(box.dataset.url, { credentials: "same-origin" });
        if (resp.ok) {
          const data = await resp.json();
          show(data.onnx, data.artifacts);
          if (data.onnx && data.onnx.status !== "pending") return;
        }
      } catch (e) { /* try again */ }
      poll(Math.min(5000, delay * 1.5));
    }, delay);
  }

  document.addEventListener("trainyard:onnx", (e) => {
    if (e.detail.job === page.dataset.job) show(e.detail, e.detail.artifacts);
  });

  async function start() {
    button.disabled = true;
    try {
      const resp = await fetch(box.dataset.url, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrf() } });
      const data = await resp.json().catch(() => ({ error: "unexpected answer (HTTP " + resp.status + ")" }));
      if (!resp.ok) { state.textContent = data.error; return; }
      show(data.onnx);
      poll(1000);
    } catch (e) {
      state.textContent = "The server could not be reached.";
    } finally {
      button.disabled = false;
    }
  }
  document.addEventListener("trainyard:outputs", init);
  init();
})();
