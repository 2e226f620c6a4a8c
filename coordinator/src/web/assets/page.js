// fanfold status pages: live refresh and sortable tables. Plain JavaScript, no libraries; the
// pages are complete without it.
"use strict";

(function () {
  // Remembered per table id across refreshes: [column, ascending].
  const sorted = {};

  function cellValue(row, column) {
    const cell = row.cells[column];
    if (!cell) return "";
    const v = cell.getAttribute("data-v");
    if (v !== null) return Number(v);
    const text = cell.textContent.trim();
    const n = Number(text);
    return text !== "" && !Number.isNaN(n) ? n : text.toLowerCase();
  }

  function sortTable(table, column, ascending) {
    const body = table.tBodies[0];
    if (!body) return;
    const rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      const x = cellValue(a, column);
      const y = cellValue(b, column);
      const order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.from(table.tHead.rows[0].cells).forEach(function (th, i) {
      th.setAttribute("aria-sort", i === column ? (ascending ? "ascending" : "descending") : "none");
    });
  }

  function makeSortable(root) {
    root.querySelectorAll("table.sortable").forEach(function (table) {
      if (!table.tHead) return;
      Array.from(table.tHead.rows[0].cells).forEach(function (th, column) {
        th.addEventListener("click", function () {
          const before = sorted[table.id];
          const ascending = !(before && before[0] === column && before[1]);
          sorted[table.id] = [column, ascending];
          sortTable(table, column, ascending);
        });
      });
      const again = sorted[table.id];
      if (again) sortTable(table, again[0], again[1]);
    });
  }

  // Swaps in a fresh <main> once a second until the page says its job is final.
  function refresh() {
    const main = document.getElementById("main");
    if (!main || main.getAttribute("data-live") !== "true" || main.getAttribute("data-final") === "true") {
      return;
    }
    const url = new URL(window.location.href);
    url.searchParams.set("part", "main");
    fetch(url, { headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        const template = document.createElement("template");
        template.innerHTML = html.trim();
        const fresh = template.content.firstElementChild;
        if (!fresh || fresh.id !== "main") throw new Error("no main in the refresh");
        const count = Number(main.getAttribute("data-refreshes") || "0") + 1;
        fresh.setAttribute("data-refreshes", String(count));
        main.replaceWith(fresh);
        makeSortable(fresh);
      })
      .catch(function () { /* the coordinator may be restarting: try again */ })
      .finally(function () { window.setTimeout(refresh, 1000); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    makeSortable(document);
    window.setTimeout(refresh, 1000);
  });
})();
