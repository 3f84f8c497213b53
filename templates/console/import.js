// The import page's progress bar: asks for the progress every second and moves the bar, then loads
// the page again for the summary once the import is done. (Without JavaScript the page's meta
// refresh reloads it every few seconds; with it, the bar moves in between.)
(function () {
  "use strict";
  var box = document.getElementById("import-progress");
  if (!box) { return; }
  var bar = document.getElementById("bar");
  var percent = document.getElementById("percent");
  var rows = document.getElementById("rows");
  function poll() {
    fetch(box.getAttribute("data-progress-url"), { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (state) {
        if (!state) { window.setTimeout(poll, 3000); return; }
        bar.value = state.percent;
        bar.textContent = state.percent + "%";
        percent.textContent = state.percent + "%";
        rows.textContent = rows.textContent.replace(/\d+(\D+)\d+/, state.done + "$1" + state.total);
        if (state.status === "done") { window.location.assign(box.getAttribute("data-done-url")); return; }
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 500);
}());
