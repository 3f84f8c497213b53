// The console works without this file; it only makes a few things nicer. Served from this site
// (the CSP allows scripts from here only), no inline handlers.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // A form whose button says what it will do asks first (data-confirm holds the question).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  // A one-time secret (a new password or key) can be copied with one click.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", () => {
      const source = document.getElementById(button.dataset.copy);
      if (source && navigator.clipboard) navigator.clipboard.writeText(source.textContent.trim());
    });
  }
});
