// The compose form, nicer with a script (it works without one): targeting rows are added and
// removed in place, a value field offers the chosen attribute's values, and the reach is asked
// for as the clerk edits (POST <form data-reach>, the form's own fields and CSRF token, nothing
// saved). Served from this site; the CSP allows no inline script.
"use strict";
(() => {
  const form = document.getElementById("compose");
  if (!form) return;
  const rows = document.getElementById("clause-rows");

  function nextIndex() {
    let max = -1;
    for (const li of rows ? rows.querySelectorAll("li.clause") : []) max = Math.max(max, Number(li.dataset.row));
    return max + 1;
  }

  function linkChoices(li) {
    const select = li.querySelector("select[name$='.attr']");
    const input = li.querySelector("input[name$='.value']");
    if (!select || !input) return;
    const update = () => {
      const option = select.selectedOptions[0];
      const list = option ? option.dataset.list : "";
      if (list) input.setAttribute("list", list); else input.removeAttribute("list");
    };
    select.addEventListener("change", update);
    update();
  }

  function wireRemove(li) {
    const button = li.querySelector("button[value^='remove.']");
    if (!button) return;
    button.addEventListener("click", (event) => {
      event.preventDefault();
      if (rows.querySelectorAll("li.clause").length > 1) {
        li.remove();
      } else {  // the last row is emptied rather than removed, so there is one to fill in
        for (const field of li.querySelectorAll("input, select")) {
          if (field.type === "checkbox") field.checked = false; else field.value = field.tagName === "SELECT" && field.name.endsWith(".op") ? "eq" : "";
        }
      }
      refreshSoon();
    });
  }

  if (rows) {
    for (const li of rows.querySelectorAll("li.clause")) { linkChoices(li); wireRemove(li); }
    const add = document.getElementById("add-clause");
    if (add) {
      add.addEventListener("click", (event) => {
        const last = rows.querySelector("li.clause:last-of-type");
        if (!last) return;  // no row to copy: let the form do it
        event.preventDefault();
        const n = nextIndex(), old = last.dataset.row;
        const li = last.cloneNode(true);
        li.dataset.row = String(n);
        for (const el of li.querySelectorAll("[name], [id], [for], [aria-describedby]")) {
          for (const attr of ["name", "id", "for", "aria-describedby"]) {
            const value = el.getAttribute(attr);
            if (value) el.setAttribute(attr, value.replace(`clause.${old}.`, `clause.${n}.`).replace(`clause-${old}-`, `clause-${n}-`));
          }
          el.removeAttribute("aria-invalid");
        }
        for (const error of li.querySelectorAll(".field-error")) error.remove();
        for (const field of li.querySelectorAll("input, select")) {
          if (field.type === "checkbox") field.checked = false; else field.value = field.name.endsWith(".op") ? "eq" : "";
        }
        const button = li.querySelector("button[value^='remove.']");
        if (button) button.value = `remove.${n}`;
        rows.appendChild(li);
        linkChoices(li);
        wireRemove(li);
        li.querySelector("select").focus();
      });
    }
  }

  // -- the reach, as typed --------------------------------------------------------------------
  const url = form.dataset.reach;
  const section = document.getElementById("reach");
  let timer = null, asked = 0;

  const labels = section && section.dataset.labels ? JSON.parse(section.dataset.labels) : {};

  function table(caption, counts) {
    const t = document.createElement("table");
    t.createCaption().textContent = caption;
    for (const [key, n] of Object.entries(counts)) {
      const tr = t.insertRow();
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = labels[key] || key;
      tr.appendChild(th);
      tr.insertCell().textContent = String(n);
    }
    return t;
  }

  function show(reach) {
    const words = section.dataset;
    const heading = section.querySelector("h2");
    section.replaceChildren(heading);
    const p = document.createElement("p");
    if (!reach) {
      p.className = "muted";
      p.textContent = words.incomplete;
      section.appendChild(p);
      return;
    }
    p.className = "reach-total";
    p.textContent = words.total.replace("%(n)s", String(reach.total));
    const tables = document.createElement("div");
    tables.className = "reach-tables";
    tables.append(table(words.byAudience, reach.by_audience), table(words.byChannel, reach.by_channel));
    section.append(p, tables);
  }

  async function refresh() {
    const mine = ++asked;
    const body = new URLSearchParams();
    for (const [name, value] of new FormData(form)) if (name !== "action") body.append(name, String(value));
    try {
      const response = await fetch(url, {method: "POST", body, credentials: "same-origin",
                                         headers: {"Accept": "application/json"}});
      if (mine !== asked) return;  // a later edit asked again meanwhile
      show(response.ok ? await response.json() : null);
    } catch (error) {
      // Offline or refused: the reach shown stays; saving shows it again.
    }
  }

  function refreshSoon() {
    if (!url || !section) return;
    clearTimeout(timer);
    timer = setTimeout(refresh, 600);
  }

  form.addEventListener("input", refreshSoon);
  form.addEventListener("change", refreshSoon);
})();
