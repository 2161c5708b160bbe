// Getting started panel: while a sample dataset is being checked, reload the page every 2 s so
// its "Train a first model" button appears when it is ready — not while the user is typing in a
// form (no inline script: CSP).
(function () {
  "use strict";
  const panel = document.getElementById("getting-started");
  if (!panel || panel.dataset.ingesting !== "1") return;
  function busy() {
    const a = document.activeElement;
    if (a && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) return true;
    return Array.from(document.querySelectorAll("input[type=file]")).some((f) => f.files && f.files.length);
  }
  setInterval(function () { if (!document.hidden && !busy()) window.location.reload(); }, 2000);
})();
