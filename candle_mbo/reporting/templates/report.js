(function () {
  "use strict";
  var table = document.getElementById("runs");
  if (!table) { return; }
  var body = table.tBodies[0];
  var headers = table.tHead.rows[0].cells;
  var rows = Array.prototype.slice.call(body.rows);
  var filter = document.getElementById("filter");
  var statusFilter = document.getElementById("status-filter");
  var shown = document.getElementById("shown");
  var showAll = document.getElementById("show-all");
  var page = parseInt(table.getAttribute("data-page"), 10) || rows.length;  // rows shown at most, until asked
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});
  rows.forEach(function (row) { row.searchText = row.textContent.toLowerCase(); });

  function sortKey(row, column, numeric) {
    var cell = row.cells[column];
    var value = cell.getAttribute("data-v");
    if (value === null) { value = cell.textContent.trim(); }
    if (value === "") { return null; }
    if (numeric) {
      var number = parseFloat(value);
      return isNaN(number) ? null : number;
    }
    return value;
  }

  function sortBy(column) {
    var header = headers[column];
    var numeric = header.getAttribute("data-type") === "num";
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    for (var i = 0; i < headers.length; i++) { headers[i].removeAttribute("aria-sort"); }
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var keyed = rows.map(function (row, index) { return [sortKey(row, column, numeric), index, row]; });
    keyed.sort(function (a, b) {
      if (a[0] === null || b[0] === null) {  // empty cells last, in either direction
        return a[0] === b[0] ? a[1] - b[1] : (a[0] === null ? 1 : -1);
      }
      var order = numeric ? a[0] - b[0] : collator.compare(a[0], b[0]);
      return (ascending ? order : -order) || a[1] - b[1];
    });
    rows = keyed.map(function (item) { return item[2]; });
    var fragment = document.createDocumentFragment();
    rows.forEach(function (row) { fragment.appendChild(row); });
    body.appendChild(fragment);
    applyFilter();
  }

  function applyFilter() {
    var words = filter.value.toLowerCase().split(/\s+/).filter(function (w) { return w.length > 0; });
    var status = statusFilter.value;
    var matching = 0;
    var visible = 0;
    rows.forEach(function (row) {
      var rowStatus = row.getAttribute("data-status");
      var match = status === "all" || rowStatus === status || (status === "not-ok" && rowStatus !== "ok");
      for (var i = 0; match && i < words.length; i++) {
        match = row.searchText.indexOf(words[i]) >= 0;
      }
      if (match) { matching += 1; }
      var show = match && visible < page;
      if (show) { visible += 1; }
      if (row.hidden === show) { row.hidden = !show; }
    });
    var text = matching === rows.length ? "all " + rows.length + " runs" : matching + " of " + rows.length + " runs";
    if (visible < matching) { text += " (the first " + visible + " shown)"; }
    shown.textContent = text;
    showAll.hidden = visible >= matching;
  }

  showAll.addEventListener("click", function () { page = rows.length; applyFilter(); });
  Array.prototype.forEach.call(headers, function (header, column) {
    var button = header.querySelector("button");
    if (button) { button.addEventListener("click", function () { sortBy(column); }); }
  });
  filter.addEventListener("input", applyFilter);
  statusFilter.addEventListener("change", applyFilter);
  applyFilter();
})();
