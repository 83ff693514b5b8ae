/* The MSO dashboard: KPI tiles, a trend chart per KPI and the sites against the MSO median.
   Hand-written SVG, no library, nothing fetched but the report itself: it works offline.
   The report is either inlined in the page (hub report kpis --format html) or fetched from
   /api/v1/reports/kpis with an analyst key the user types in (hub serve). */
(function () {
  "use strict";
  var API = "/api/v1/reports/kpis?by=site,month";
  var KEY_STORE = "hub-analyst-key";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var state = { report: null, months: [], from: null, to: null, site: "", index: null, key: null };

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function svgEl(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function num(value) {
    if (value === null || value === undefined || value === "") { return null; }
    var n = Number(value);
    return isFinite(n) ? n : null;
  }

  function format(value, unit) {
    var n = num(value);
    if (n === null) { return "\u2014"; }
    if (unit === "ratio") { return (n * 100).toFixed(1) + "%"; }
    if (unit === "usd") { return "$" + Math.round(n).toLocaleString("en-US"); }
    if (unit === "days") { return n.toFixed(1) + " d"; }
    if (unit === "minutes") { return Math.round(n) + " min"; }
    return (Math.round(n * 10) / 10).toLocaleString("en-US");
  }

  function monthLabel(month) {
    var names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    var parts = month.split("-");
    return names[Number(parts[1]) - 1] + " " + parts[0].slice(2);
  }

  // ------------------------------------------------------------------ the report, indexed
  function indexReport(report) {
    var index = { site: {}, total: {}, median: {} };
    var months = {};
    (report.rows || []).forEach(function (row) {
      var site = row.slice.site, month = row.slice.month;
      if (!site || !month) { return; }
      months[month] = true;
      (index.site[site] = index.site[site] || {})[month] = row.values || {};
    });
    (report.total || []).forEach(function (row) {
      if (row.slice.month) { months[row.slice.month] = true; index.total[row.slice.month] = row.values || {}; }
    });
    (report.site_median || []).forEach(function (row) {
      if (row.slice.month) { index.median[row.slice.month] = row.values || {}; }
    });
    state.index = index;
    state.months = Object.keys(months).sort();
  }

  function valueOf(scope, month, kpi) {
    var table = scope === "" ? state.index.total : (state.index.site[scope] || {});
    var values = table[month];
    return values ? num(values[kpi]) : null;
  }

  function medianOf(month, kpi) {
    var values = state.index.median[month];
    return values ? num(values[kpi]) : null;
  }

  function selectedMonths() {
    return state.months.filter(function (m) { return m >= state.from && m <= state.to; });
  }

  function siteName(slug) {
    var site = (state.report.sites || []).filter(function (s) { return s.slug === slug; })[0];
    return site ? site.name : slug;
  }

  // ------------------------------------------------------------------ filters
  function fillFilters() {
    var from = $("from"), to = $("to"), site = $("site");
    [from, to, site].forEach(function (s) { s.textContent = ""; });
    state.months.forEach(function (m) {
      from.appendChild(el("option", { value: m }, monthLabel(m)));
      to.appendChild(el("option", { value: m }, monthLabel(m)));
    });
    site.appendChild(el("option", { value: "" }, "All sites (MSO total)"));
    (state.report.sites || []).forEach(function (s) {
      site.appendChild(el("option", { value: s.slug }, s.name + (s.status && s.status !== "live" ? " (" + s.status + ")" : "")));
    });
    var last = state.months.length - 1;
    var opening = state.months.indexOf(state.report.default_period || "");  // the last complete month
    if (opening >= 0) { last = opening; }
    state.to = state.months[last];
    state.from = state.months[Math.max(0, last - 11)];
    from.value = state.from; to.value = state.to; site.value = state.site;
    from.onchange = function () { state.from = from.value; if (state.from > state.to) { state.to = state.from; to.value = state.to; } render(); };
    to.onchange = function () { state.to = to.value; if (state.to < state.from) { state.from = state.to; from.value = state.from; } render(); };
    site.onchange = function () { state.site = site.value; render(); };
  }

  // the period's entry in the report (complete, in_progress or future; maturing KPIs), null when unknown
  function periodOf(month) {
    return (state.report.periods || []).filter(function (p) { return p.period === month; })[0] || null;
  }

  function partial(month) {
    var info = periodOf(month);
    return !!(info && !info.complete);
  }

  // why a site has no figure for a KPI (its feeds do not carry the inputs), or null
  function noData(site, kpi) {
    var sites = (state.report.left_out || {})[kpi];
    return site && sites && sites[site] ? sites[site] : null;
  }

  function periodNote(info) {
    if (!info || info.complete) { return ""; }
    return info.state === "future" ? " (ahead: bookings only)" : " (month to date, through " + info.through + ")";
  }

  // ------------------------------------------------------------------ tiles
  function change(definition, current, previous) {
    if (current === null || previous === null) { return { text: "no previous figure", cls: "same" }; }
    var delta = current - previous;
    var text;
    if (definition.unit === "ratio") {
      text = (delta >= 0 ? "+" : "\u2212") + Math.abs(delta * 100).toFixed(1) + " pts";
    } else if (previous !== 0) {
      text = (delta >= 0 ? "+" : "\u2212") + Math.abs(delta / previous * 100).toFixed(1) + "%";
    } else {
      text = (delta >= 0 ? "+" : "\u2212") + format(Math.abs(delta), definition.unit);
    }
    var cls = "same";
    if (Math.abs(delta) > 1e-9) {
      cls = (delta > 0) === (definition.higher_is_better !== false) ? "better" : "worse";
    }
    return { text: (delta > 0 ? "\u25B2 " : delta < 0 ? "\u25BC " : "") + text, cls: cls };
  }

  function renderTiles() {
    var tiles = $("tiles");
    tiles.textContent = "";
    var i = state.months.indexOf(state.to);
    var previous = i > 0 ? state.months[i - 1] : null;
    var info = periodOf(state.to), open = partial(state.to);
    $("tiles-title").textContent = monthLabel(state.to) + periodNote(info) +
      (state.site ? " \u00B7 " + siteName(state.site) : " \u00B7 all sites") +
      (previous && !open ? " (change against " + monthLabel(previous) + ")" : "");
    state.report.definitions.forEach(function (d) {
      var current = valueOf(state.site, state.to, d.id);
      var before = previous ? valueOf(state.site, previous, d.id) : null;
      var why = noData(state.site, d.id);
      // an unfinished month is not compared with a whole one (docs/reports.md, "Periods")
      var delta = why ? { text: why, cls: "same" } : open ? { text: "not comparable yet", cls: "same" } : change(d, current, before);
      var tile = el("div", { "class": "tile", "data-kpi": d.id, title: d.formula || d.name });
      tile.appendChild(el("div", { "class": "name" }, d.name));
      tile.appendChild(el("div", { "class": "value" + (why ? " nodata" : "") }, why ? "no data" : format(current, d.unit)));
      tile.appendChild(el("div", { "class": "change " + delta.cls }, delta.text));
      if (info && (info.maturing || []).indexOf(d.id) >= 0) {
        tile.appendChild(el("div", { "class": "maturing" }, "still maturing: its inputs arrive weeks after the month"));
      }
      if (state.site) { drillable(tile, d, state.site, state.to); }
      tiles.appendChild(tile);
    });
  }

  // ------------------------------------------------------------------ trend charts
  function niceMax(value) {
    if (value <= 0) { return 1; }
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) { if (value <= steps[i] * power) { return steps[i] * power; } }
    return 10 * power;
  }

  function linePath(points) {
    var d = "", pen = false;
    points.forEach(function (p) {
      if (p === null) { pen = false; return; }
      d += (pen ? "L" : "M") + p[0].toFixed(1) + "," + p[1].toFixed(1);
      pen = true;
    });
    return d;
  }

  function drawChart(definition, months) {
    var W = 320, H = 170, left = 52, right = 10, top = 10, bottom = 24;
    var main = months.map(function (m) { return valueOf(state.site, m, definition.id); });
    var median = months.map(function (m) { return medianOf(m, definition.id); });
    var all = main.concat(median).filter(function (v) { return v !== null; });
    var max = niceMax(all.length ? Math.max.apply(null, all) : 1);
    var chart = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "class": "trend",
      "data-kpi": definition.id, "aria-label": definition.name + " by month" });
    var x = function (i) { return left + (months.length > 1 ? i * (W - left - right) / (months.length - 1) : (W - left - right) / 2); };
    var y = function (v) { return top + (H - top - bottom) * (1 - v / max); };
    for (var g = 0; g <= 4; g++) {
      var gv = max * g / 4;
      chart.appendChild(svgEl("line", { x1: left, x2: W - right, y1: y(gv), y2: y(gv), stroke: "#e3e7ec", "stroke-width": 1 }));
      chart.appendChild(svgEl("text", { x: left - 6, y: y(gv) + 4, "text-anchor": "end", "font-size": 10, fill: "#5f6b7a" },
        format(gv, definition.unit)));
    }
    var ticks = months.length <= 6 ? months.map(function (_, i) { return i; }) :
      [0, Math.floor((months.length - 1) / 2), months.length - 1];
    ticks.forEach(function (i) {
      // the first and last labels hang inward so the chart's edges do not cut them
      var anchor = months.length > 1 && i === months.length - 1 ? "end" : (months.length > 1 && i === 0 ? "start" : "middle");
      chart.appendChild(svgEl("text", { x: x(i), y: H - 6, "text-anchor": anchor, "font-size": 10, fill: "#5f6b7a" },
        monthLabel(months[i])));
    });
    var toPoints = function (values) { return values.map(function (v, i) { return v === null ? null : [x(i), y(v)]; }); };
    chart.appendChild(svgEl("path", { d: linePath(toPoints(median)), fill: "none", stroke: "#9aa5b1",
      "stroke-width": 2, "stroke-dasharray": "5 4", "class": "median-line" }));
    var points = toPoints(main);
    // the line joins complete months only: an unfinished month is a hollow dot, not a drop
    chart.appendChild(svgEl("path", { d: linePath(points.map(function (p, i) { return partial(months[i]) ? null : p; })),
      fill: "none", stroke: "#2364aa", "stroke-width": 2.5, "class": "series-line" }));
    points.forEach(function (p, i) {
      if (p === null) { return; }
      var open = partial(months[i]);
      var dot = svgEl("circle", { cx: p[0], cy: p[1], r: 3, fill: open ? "#ffffff" : "#2364aa", stroke: "#2364aa",
        "class": open ? "partial" : "" });
      dot.appendChild(svgEl("title", {}, monthLabel(months[i]) + periodNote(periodOf(months[i])) + ": " +
        format(main[i], definition.unit)));
      chart.appendChild(dot);
    });
    return chart;
  }

  function renderCharts() {
    var charts = $("charts");
    charts.textContent = "";
    var months = selectedMonths();
    state.report.definitions.forEach(function (d) {
      var box = el("div", { "class": "chart" });
      box.appendChild(el("h3", {}, d.name));
      box.appendChild(drawChart(d, months));
      var legend = el("div", { "class": "legend" });
      legend.appendChild(el("i", { style: "background:#2364aa" }));
      legend.appendChild(document.createTextNode(state.site ? siteName(state.site) : "MSO total"));
      legend.appendChild(el("i", { style: "background:#9aa5b1" }));
      legend.appendChild(document.createTextNode("site median"));
      box.appendChild(legend);
      charts.appendChild(box);
    });
  }

  // ------------------------------------------------------------------ sites against the median
  function renderTable() {
    var table = $("sites");
    table.textContent = "";
    $("table-title").textContent = "Sites against the MSO median, " + monthLabel(state.to) + periodNote(periodOf(state.to));
    var head = el("tr");
    head.appendChild(el("th", {}, "Site"));
    state.report.definitions.forEach(function (d) { head.appendChild(el("th", { title: d.formula || "" }, d.name)); });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el("tbody");
    (state.report.sites || []).forEach(function (s) {
      var tr = el("tr", { "data-site": s.slug });
      if (state.site === s.slug) { tr.style.fontWeight = "600"; }
      var name = el("td", {}, s.name);
      if (s.status && s.status !== "live") { name.appendChild(el("span", { "class": "badge" }, s.status)); }
      tr.appendChild(name);
      state.report.definitions.forEach(function (d) {
        var v = valueOf(s.slug, state.to, d.id), m = medianOf(state.to, d.id);
        var why = noData(s.slug, d.id);
        var cls = "same";
        if (v !== null && m !== null && Math.abs(v - m) > 1e-9) {
          cls = (v > m) === (d.higher_is_better !== false) ? "better" : "worse";
        }
        var cell = el("td", why ? { "class": "nodata", title: why } : { "class": cls }, why ? "no data (" + why + ")" : format(v, d.unit));
        drillable(cell, d, s.slug, state.to);
        tr.appendChild(cell);
      });
      body.appendChild(tr);
    });
    var median = el("tr", { "class": "median" });
    median.appendChild(el("td", {}, "MSO site median"));
    state.report.definitions.forEach(function (d) { median.appendChild(el("td", {}, format(medianOf(state.to, d.id), d.unit))); });
    body.appendChild(median);
    table.appendChild(body);
  }

  // ------------------------------------------------------------------ drill-down (live dashboard only)
  // A tile (a site chosen) or a table cell opens the records behind its figure, from the audited
  // /api/v1/reports/kpis/{kpi}/records call; a message id links to the console, which shows content to admins.
  var DATE_FIELDS = ["start", "visit_date", "service_date", "received_on"];

  function drillable(node, definition, site, month) {
    if (!state.key || !site || !month) { return; }
    node.classList.add("drillable");
    node.setAttribute("tabindex", "0");
    node.setAttribute("data-site", site);
    node.setAttribute("data-kpi", definition.id);
    node.onclick = function () { openDrill(definition, site, month); };
    node.onkeydown = function (event) { if (event.key === "Enter") { openDrill(definition, site, month); } };
  }

  function recordTable(title, records) {
    var box = el("div");
    box.appendChild(el("h3", {}, title + " (" + records.length + ")"));
    var table = el("table", { "class": "records" });
    var head = el("tr");
    ["Record", "Date", "Status", "Provider", "Service line", "Share", "Messages"].forEach(function (h) {
      head.appendChild(el("th", {}, h));
    });
    table.appendChild(head);
    records.forEach(function (r) {
      var tr = el("tr", { "data-source-id": r.source_id });
      var day = DATE_FIELDS.map(function (f) { return r[f]; }).filter(function (v) { return v; })[0] || "";
      var share = r.amount !== undefined ? "$" + r.amount : (r.minutes !== undefined ? r.minutes + " min" : "");
      [r.kind + " " + r.source_id, String(day).slice(0, 16), r.status || (r.denied ? "denied" : ""),
       r.provider || "", r.service_line || "", share].forEach(function (v) { tr.appendChild(el("td", {}, v)); });
      var links = el("td");
      (r.messages || []).forEach(function (id) {
        links.appendChild(el("a", { href: "/console/messages/" + id, target: "_blank", rel: "noopener" }, "#" + id));
        links.appendChild(document.createTextNode(" "));
      });
      tr.appendChild(links);
      table.appendChild(tr);
    });
    box.appendChild(table);
    return box;
  }

  function openDrill(definition, site, month) {
    var panel = $("drill"), body = $("drill-body");
    $("drill-title").textContent = definition.name + " · " + siteName(site) + " · " + monthLabel(month);
    $("drill-error").textContent = "";
    body.textContent = "Loading…";
    panel.hidden = false;
    $("drill-close").onclick = function () { panel.hidden = true; };
    var url = "/api/v1/reports/kpis/" + encodeURIComponent(definition.id) + "/records?site=" +
      encodeURIComponent(site) + "&month=" + encodeURIComponent(month);
    fetch(url, { headers: { Authorization: "Bearer " + state.key, Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (data) { return { ok: response.ok, data: data }; });
      })
      .then(function (answer) {
        body.textContent = "";
        if (!answer.ok) { $("drill-error").textContent = answer.data.detail || "The hub refused the list."; return; }
        var data = answer.data;
        body.appendChild(el("p", {}, "Figure: " + format(data.value, definition.unit)));
        body.appendChild(recordTable(data.denominator ? "Numerator: " + definition.numerator : "Records",
                                     data.numerator || []));
        if (data.denominator) {
          body.appendChild(recordTable("Denominator: " + definition.denominator, data.denominator));
        }
      })
      .catch(function () { body.textContent = ""; $("drill-error").textContent = "The hub cannot be reached."; });
  }

  function render() {
    renderTiles();
    renderCharts();
    renderTable();
  }

  // KPIs without a single figure in the report (say, costs nobody imported) get no tile, chart or column
  function withFigures(report) {
    var seen = {};
    ["rows", "total", "site_median"].forEach(function (part) {
      (report[part] || []).forEach(function (row) {
        Object.keys(row.values || {}).forEach(function (k) { if (num(row.values[k]) !== null) { seen[k] = true; } });
      });
    });
    var shown = (report.definitions || []).filter(function (d) { return seen[d.id]; });
    return Object.assign({}, report, { definitions: shown });
  }

  // how current the figures are: the rollups are refreshed in the background, never by this request
  function freshness(report) {
    if (!report.as_of) { return ""; }
    var when = String(report.as_of).replace("T", " ").replace(/:\d\dZ$/, " UTC");
    var pending = report.pending_cells || 0;
    return "Figures as of " + when + (pending ? " \u00B7 " + pending + " practice-month" + (pending === 1 ? "" : "s") +
      " changed since, waiting for the refresh" : " \u00B7 up to date");
  }

  function show(fetched) {
    var report = withFigures(fetched);
    state.report = report;
    indexReport(report);
    $("login").hidden = true;
    $("bar").hidden = false;
    $("board").hidden = false;
    $("meta").textContent = "Figures " + report.from + " to " + report.to + " \u00B7 generated " + report.generated_at;
    $("freshness").textContent = freshness(report);
    $("definitions-note").textContent = "Hover a tile or a column for its formula. Green: better than the comparison; red: worse.";
    if (!state.months.length) {
      $("tiles").textContent = "No figures for this period yet.";
      return;
    }
    fillFilters();
    render();
  }

  // ------------------------------------------------------------------ loading
  function askForKey(message) {
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("login-form").onsubmit = function (event) {
      event.preventDefault();
      var key = $("key").value.trim();
      if (key) { fetchReport(key); }
    };
  }

  function fetchReport(key) {
    fetch(API, { headers: { Authorization: "Bearer " + key, Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          sessionStorage.removeItem(KEY_STORE);
          askForKey(response.status === 401 ? "That key is not valid." : "That key may not read reports (analyst or admin keys can).");
          return null;
        }
        if (!response.ok) { askForKey("The hub answered " + response.status + "."); return null; }
        sessionStorage.setItem(KEY_STORE, key);
        state.key = key;
        return response.json();
      })
      .then(function (report) { if (report) { show(report); } })
      .catch(function () { askForKey("The hub cannot be reached."); });
  }

  function start() {
    var inline = JSON.parse($("report-data").textContent || "null");
    if (inline) { show(inline); return; }
    var key = sessionStorage.getItem(KEY_STORE);
    if (key) { fetchReport(key); } else { askForKey(""); }
  }

  window.hubDashboard = { state: state, show: show, openDrill: openDrill };
  start();
}());
