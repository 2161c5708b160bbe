// Admin → Workers: refresh the list / a worker's page every 5 s so the GPU bars, heartbeats and
// running jobs stay live, unless the admin is selecting rows or has a control focused (no inline
// script: CSP).
(function () {
  "use strict";
  function busy() {
    if (document.querySelector("#changelist-form input.action-select:checked")) return true;
    var a = document.activeElement;
    return a && /^(INPUT|SELECT|TEXTAREA|BUTTON)$/.test(a.tagName);
  }
  setInterval(function () { if (!busy() && !document.hidden) window.location.reload(); }, 5000);
})();
