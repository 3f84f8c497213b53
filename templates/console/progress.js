// A policy's live progress: while its messages are on their way, the counts per channel and status
// are fetched from the page's JSON endpoint every few seconds and written into the table. Once
// nothing moves any more the page reloads once, to show the final deliveries list. Without this
// script the page refreshes itself (a <noscript> meta refresh) for as long as the fan-out runs.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const section = document.querySelector("[data-progress-url]");
  if (!section || section.dataset.running !== "true") return;
  const url = section.dataset.progressUrl;
  const every = 2000;

  function write(prefix, counts) {
    for (const [channel, byStatus] of Object.entries(counts)) {
      for (const [status, n] of Object.entries(byStatus)) {
        const cell = section.querySelector(`[data-count="${prefix}${channel}:${status}"]`);
        if (cell) cell.textContent = String(n);
      }
    }
  }

  async function poll() {
    let body;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      // Signed out meanwhile (a redirect to the sign-in page) or refused: stop, the page says why on reload.
      if (!response.ok || !(response.headers.get("Content-Type") || "").includes("json")) return;
      body = await response.json();
    } catch {
      window.setTimeout(poll, every * 3); // the network blinked: try again later
      return;
    }
    write("", body.deliveries);
    for (const [seq, counts] of Object.entries(body.notices)) write(`${seq}:`, counts);
    const matched = section.querySelector("[data-matched]");
    if (matched) matched.textContent = String(body.matched);
    const status = document.querySelector("[data-policy-status]");
    if (status) status.textContent = body.status_label;
    if (body.running) {
      window.setTimeout(poll, every);
    } else {
      window.location.reload();
    }
  }

  window.setTimeout(poll, every);
});
