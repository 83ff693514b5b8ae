/* The MSO dashboard: KPI tiles grouped in sections, a trend chart per KPI, the sites against the MSO
   median and, on the live page, the providers. Filters: period, site, provider, service line, kept in
   the URL's query (?from=&to=&site=&provider=&service_line=) so a view can be linked.
   Hand-written SVG, no library, nothing fetched but the report itself: it works offline.
   The report is either inlined in the page (hub report kpis --format html: by site and month only) or
   fetched from /api/v1/reports/kpis with an analyst key the user types in (hub serve), one slicing per
   filter combination (by=site[,provider][,service_line],month), each fetched once. */
(function () {
  "use strict";
  var API = "/api/v1/reports/kpis";
  var BASE_BY = "site,month";
  var KEY_STORE = "hub-analyst-key";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var NONE = "(none)";  // the filter value of the records that carry no provider or service line
  var PHONE = "(max-width: 480px)";
  var state = { report: null, base: null, months: [], from: null, to: null, site: "", provider: "", line: "",
                index: null, key: null, reports: {}, loading: {}, openGroups: null, tableGroup: null,
                open: {}, defs: [] };

  function $(id) { return document.getElementById(id); }

  function phone() { return !!(window.matchMedia && window.matchMedia(PHONE).matches); }

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
    if (unit === "rvu") { return n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }); }
    return (Math.round(n * 10) / 10).toLocaleString("en-US");
  }

  function monthLabel(month) {
    var names = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    var parts = month.split("-");
    return names[Number(parts[1]) - 1] + " " + parts[0].slice(2);
  }

  function median(values) {
    var v = values.filter(function (x) { return x !== null; }).sort(function (a, b) { return a - b; });
    if (!v.length) { return null; }
    var mid = Math.floor(v.length / 2);
    return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  }

  // ------------------------------------------------------------------ KPI sections
  // Sections come from what each KPI reads (its source kinds), so a plugin's KPI finds its place too.
  var GROUPS = [["access", "Visits and access"], ["productivity", "Provider productivity"], ["referrals", "Referrals"],
                ["revenue", "Revenue cycle"], ["payer", "Payer mix"], ["margin", "Costs and margin"],
                ["other", "Other KPIs"]];

  function groupOf(definition) {
    var kinds = definition.source_kinds || [];
    var has = function (pattern) { return kinds.some(function (k) { return pattern.test(k); }); };
    if (/^payer_mix_/.test(definition.id)) { return "payer"; }
    if (/rvu/.test(definition.id) || has(/rvu/)) { return "productivity"; }
    if (has(/^costs?$/)) { return "margin"; }
    if (has(/^referral$/)) { return "referrals"; }
    if (has(/^(charge|remittance)$/)) { return "revenue"; }
    if (has(/^(appointment|encounter|slot|patient)$/)) { return "access"; }
    return "other";
  }

  function groupsOf(definitions) {
    return GROUPS.map(function (g) {
      return { id: g[0], name: g[1], defs: definitions.filter(function (d) { return groupOf(d) === g[0]; }) };
    }).filter(function (g) { return g.defs.length; });
  }

  // ------------------------------------------------------------------ the URL: a view can be linked
  function readUrl() {
    var q = new URLSearchParams(window.location.search);
    return { from: q.get("from"), to: q.get("to"), site: q.get("site") || "", provider: q.get("provider") || "",
             line: q.get("service_line") || "" };
  }

  function writeUrl() {
    var q = new URLSearchParams();
    [["from", state.from], ["to", state.to], ["site", state.site], ["provider", state.provider],
     ["service_line", state.line]].forEach(function (p) { if (p[1]) { q.set(p[0], p[1]); } });
    try {
      window.history.replaceState(null, "", window.location.pathname + "?" + q.toString());
    } catch (e) { /* a page opened from a file may not rewrite its address: the view still works */ }
  }

  // ------------------------------------------------------------------ the reports: one per slicing
  function activeBy() {
    return ["site"].concat(state.provider ? ["provider"] : [], state.line ? ["service_line"] : [], ["month"]).join(",");
  }

  function providersBy() {
    return "site,provider" + (state.line ? ",service_line" : "") + ",month";
  }

  function live() { return !!state.key; }

  // the report of a slicing: at once when held, else fetched (live page only) and render() called again
  function reportFor(by) {
    if (state.reports[by]) { return state.reports[by]; }
    if (!live() || state.loading[by]) { return null; }
    state.loading[by] = true;
    fetch(API + "?by=" + encodeURIComponent(by), { headers: { Authorization: "Bearer " + state.key, Accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (data) { return { ok: response.ok, data: data }; });
      })
      .then(function (answer) {
        state.loading[by] = false;
        if (!answer.ok) { $("scope-note").textContent = answer.data.detail || "The hub refused that view."; return; }
        state.reports[by] = withFigures(answer.data);
        fillChoices();
        render();
      })
      .catch(function () { state.loading[by] = false; $("scope-note").textContent = "The hub cannot be reached."; });
    return null;
  }

  function norm(value) { return value === null || value === undefined || value === "" ? NONE : String(value); }

  // does a row belong to the selected provider and service line (where its report slices by them)?
  function matches(slice) {
    if ("provider" in slice && state.provider && norm(slice.provider) !== state.provider) { return false; }
    if ("service_line" in slice && state.line && norm(slice.service_line) !== state.line) { return false; }
    return true;
  }

  // ------------------------------------------------------------------ the report, indexed
  // by site and month, and the scope's total and site median, for the selected provider and service line
  function indexReport(report) {
    var index = { site: {}, total: {}, median: {}, siteMedian: {}, compare: { site: {}, total: {} } };
    (report.rows || []).forEach(function (row) {
      var site = row.slice.site, month = row.slice.month;
      if (!site || !month || !matches(row.slice)) { return; }
      (index.site[site] = index.site[site] || {})[month] = row.values || {};
      if (row.compare && row.compare.values) {  // the month in progress: the same days of the month before
        (index.compare.site[site] = index.compare.site[site] || {})[month] = row.compare;
      }
    });
    (report.total || []).forEach(function (row) {
      if (row.slice.month && matches(row.slice)) { index.total[row.slice.month] = row.values || {}; }
      if (row.slice.month && matches(row.slice) && row.compare && row.compare.values) {
        index.compare.total[row.slice.month] = row.compare;
      }
    });
    (report.site_median || []).forEach(function (row) {
      if (row.slice.month && matches(row.slice)) { index.median[row.slice.month] = row.values || {}; }
    });
    index.siteMedian = index.median;  // the site table's comparison, always the sites
    if (state.provider && !state.site) {
      index.median = providerMedians(report);  // one provider is compared with the providers, not the sites
    }
    state.index = index;
  }

  // the median across providers (those with a figure) of each KPI and month, within the service line
  function providerMedians(report) {
    var seen = {}, out = {};
    (report.total || []).forEach(function (row) {
      if (norm(row.slice.provider) === NONE || !row.slice.month) { return; }
      if ("service_line" in row.slice && state.line && norm(row.slice.service_line) !== state.line) { return; }
      var month = (seen[row.slice.month] = seen[row.slice.month] || {});
      Object.keys(row.values || {}).forEach(function (k) { (month[k] = month[k] || []).push(num(row.values[k])); });
    });
    Object.keys(seen).forEach(function (m) {
      out[m] = {};
      Object.keys(seen[m]).forEach(function (k) { out[m][k] = median(seen[m][k]); });
    });
    return out;
  }

  function comparedWith() {
    return state.provider && !state.site ? "provider median" : "site median";
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

  function siteMedianOf(month, kpi) {
    var values = state.index.siteMedian[month];
    return values ? num(values[kpi]) : null;
  }

  function selectedMonths() {
    return state.months.filter(function (m) { return m >= state.from && m <= state.to; });
  }

  function siteName(slug) {
    var site = (state.base.sites || []).filter(function (s) { return s.slug === slug; })[0];
    return site ? site.name : slug;
  }

  // the roster name of a provider where a report gives one (a "providers" list or map), else none
  function rosterName(id) {
    var found = null;
    [state.report, state.reports[providersBy()], state.base].forEach(function (report) {
      var roster = report && report.providers;
      if (found || !roster) { return; }
      var entry = Array.isArray(roster) ? roster.filter(function (p) {
        return [p.id, p.provider, p.npi, p.key, p.value].indexOf(id) >= 0;
      })[0] : roster[id];
      if (typeof entry === "string") { found = entry; } else if (entry) {
        found = entry.name || entry.display_name || [entry.given_name, entry.family_name].filter(Boolean).join(" ") || null;
      }
    });
    return found;
  }

  function providerLabel(id) {
    if (id === NONE) { return "no provider recorded"; }
    var name = rosterName(id);
    return name ? name + " (" + providerCode(id) + ")" : providerCode(id);
  }

  function providerCode(id) { return /^\d{10}$/.test(id) ? "NPI " + id : id; }

  function lineLabel(line) { return line === NONE ? "no service line recorded" : line; }

  function scopeLabel() {
    var parts = [state.site ? siteName(state.site) : "all sites"];
    if (state.provider) { parts.push(providerLabel(state.provider)); }
    if (state.line) { parts.push(lineLabel(state.line)); }
    return parts.join(" \u00B7 ");
  }

  // ------------------------------------------------------------------ filters
  function fillFilters(wanted) {
    var from = $("from"), to = $("to"), site = $("site");
    [from, to, site].forEach(function (s) { s.textContent = ""; });
    state.months.forEach(function (m) {
      from.appendChild(el("option", { value: m }, monthLabel(m)));
      to.appendChild(el("option", { value: m }, monthLabel(m)));
    });
    site.appendChild(el("option", { value: "" }, "All sites (MSO total)"));
    (state.base.sites || []).forEach(function (s) {
      site.appendChild(el("option", { value: s.slug }, s.name + (s.status && s.status !== "live" ? " (" + s.status + ")" : "")));
    });
    var last = state.months.length - 1;
    var opening = state.months.indexOf(state.base.default_period || "");  // the last complete month
    if (opening >= 0) { last = opening; }
    state.to = state.months[last];
    state.from = state.months[Math.max(0, last - 11)];
    // a linked view: its months and site when the report has them, its provider and line on the live page
    if (state.months.indexOf(wanted.to) >= 0) { state.to = wanted.to; }
    if (state.months.indexOf(wanted.from) >= 0 && wanted.from <= state.to) { state.from = wanted.from; }
    if (state.from > state.to) { state.from = state.to; }
    if ((state.base.sites || []).some(function (s) { return s.slug === wanted.site; })) { state.site = wanted.site; }
    if (live()) { state.provider = wanted.provider; state.line = wanted.line; }
    $("provider-filter").hidden = !live();
    $("line-filter").hidden = !live();
    fillChoices();
    from.value = state.from; to.value = state.to; site.value = state.site;
    from.onchange = function () { state.from = from.value; if (state.from > state.to) { state.to = state.from; to.value = state.to; } render(); };
    to.onchange = function () { state.to = to.value; if (state.to < state.from) { state.from = state.to; from.value = state.from; } render(); };
    site.onchange = function () { state.site = site.value; render(); };
    $("provider").onchange = function () { state.provider = $("provider").value; render(); };
    $("line").onchange = function () { state.line = $("line").value; render(); };
  }

  // the provider and service line choices: the values the provider and service-line slicings hold
  function valuesOf(by, dim) {
    var report = state.reports[by], seen = {};
    ((report && report.total) || []).forEach(function (row) { seen[norm(row.slice[dim])] = true; });
    return Object.keys(seen);
  }

  function fillChoices() {
    if (!live()) { return; }
    var providers = valuesOf("site,provider,month", "provider"), lines = valuesOf("site,service_line,month", "service_line");
    [[$("provider"), "All providers", providers, state.provider, providerLabel],
     [$("line"), "All service lines", lines, state.line, lineLabel]].forEach(function (f) {
      var select = f[0], values = f[2].slice();
      if (f[3] && values.indexOf(f[3]) < 0) { values.push(f[3]); }  // a linked value the lists do not hold (yet)
      var labels = values.map(function (v) { return [v, f[4](v)]; }).sort(function (a, b) {
        return (a[0] === NONE) - (b[0] === NONE) || a[1].localeCompare(b[1]);
      });
      select.textContent = "";
      select.appendChild(el("option", { value: "" }, f[1]));
      labels.forEach(function (p) { select.appendChild(el("option", { value: p[0] }, p[1])); });
      select.value = f[3];
    });
  }

  // the period's entry in the report (complete, in_progress or future; maturing KPIs), null when unknown
  function periodOf(month) {
    return (state.base.periods || []).filter(function (p) { return p.period === month; })[0] || null;
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

  // the month in progress through today ("current") and the same days of the month before ("values"), from the
  // report rows' "compare", or null
  function compareOf(scope, month, kpi, side) {
    var table = scope === "" ? state.index.compare.total : (state.index.compare.site[scope] || {});
    var values = table[month] && table[month][side || "values"];
    return values ? num(values[kpi]) : null;
  }

  function sameDays(info) {
    var c = info && !info.complete && info.comparison;
    return c && c.basis === "same_days" && c.comparable ? c : null;
  }

  function periodNote(info) {
    if (!info || info.complete) { return ""; }
    return info.state === "future" ? " (ahead: bookings only)" : " (month to date, through " + info.through + ")";
  }

  // ------------------------------------------------------------------ tiles, in sections
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

  function tileOf(d, previous, info, open) {
    var same = sameDays(info);
    var why = noData(state.site, d.id);
    var unkept = same && (same.not_compared || {})[d.id];
    // like for like: the month to date without its bookings ahead, against the same days of the month before
    var current = same && !unkept ? compareOf(state.site, state.to, d.id, "current") : valueOf(state.site, state.to, d.id);
    var before = same ? compareOf(state.site, state.to, d.id) : previous ? valueOf(state.site, previous, d.id) : null;
    // an unfinished month is compared with the same days of the one before, never a whole one (docs/reports.md, "Periods")
    var delta = why ? { text: why, cls: "same" } : unkept ? { text: "not comparable by day", cls: "same" } :
      open && !same ? { text: "not comparable yet", cls: "same" } : change(d, current, before);
    var tile = el("div", { "class": "tile", "data-kpi": d.id, title: d.formula || d.name, tabindex: "0",
                           "aria-expanded": "false" });
    tile.appendChild(el("div", { "class": "name" }, d.name));
    tile.appendChild(el("div", { "class": "value" + (why ? " nodata" : "") }, why ? "no data" : format(current, d.unit)));
    tile.appendChild(el("div", { "class": "change " + delta.cls }, delta.text));
    if (same && !why && !unkept) {
      tile.appendChild(el("div", { "class": "basis" }, "vs same days of " + monthLabel(same.against)));
    }
    if (info && (info.maturing || []).indexOf(d.id) >= 0) {
      tile.appendChild(el("div", { "class": "maturing" }, "still maturing: its inputs arrive weeks after the month"));
    }
    var drill = state.site && live();
    if (drill && !phone()) {
      drillable(tile, d, state.site, state.to);  // a pointer: a click opens the records, hovering shows the formula
    } else {
      // a tap shows the formula (and, on a phone, the KPI's trend and a way to its records)
      tile.onclick = function () { toggleTile(tile, d); };
      tile.onkeydown = function (event) { if (event.key === "Enter") { toggleTile(tile, d); } };
    }
    if (state.open[d.id]) { toggleTile(tile, d); }
    return tile;
  }

  function toggleTile(tile, d) {
    var shown = tile.querySelector(".formula");
    if (shown) {
      tile.removeChild(shown);
      tile.classList.remove("open");
      tile.setAttribute("aria-expanded", "false");
      delete state.open[d.id];
      return;
    }
    var box = el("div", { "class": "formula" });
    box.appendChild(el("div", { "class": "expr" }, d.formula || ""));
    box.appendChild(el("div", {}, d.denominator ? "Numerator: " + d.numerator + ". Denominator: " + d.denominator + "."
                                                  : "Counts: " + d.numerator + "."));
    if (d.note) { box.appendChild(el("div", { "class": "note" }, d.note)); }
    if (phone()) {
      box.appendChild(drawChart(d, selectedMonths()));
      if (state.site && live()) {
        var records = el("button", { type: "button", "class": "records" }, "Show the records");
        records.onclick = function (event) { event.stopPropagation(); openDrill(d, state.site, state.to); };
        box.appendChild(records);
      }
    }
    tile.appendChild(box);
    tile.classList.add("open");
    tile.setAttribute("aria-expanded", "true");
    state.open[d.id] = true;
  }

  function renderTiles() {
    var groups = $("tiles");
    groups.textContent = "";
    var i = state.months.indexOf(state.to);
    var previous = i > 0 ? state.months[i - 1] : null;
    var info = periodOf(state.to), open = partial(state.to), same = sameDays(info);
    $("tiles-title").textContent = monthLabel(state.to) + periodNote(info) + " \u00B7 " + scopeLabel() +
      (same ? " (change against the same days of " + monthLabel(same.against) + ", 1\u2013" + same.through_day + ")" :
        previous && !open ? " (change against " + monthLabel(previous) + ")" : "");
    $("scope-note").textContent = (phone() ? "Tap a tile for its formula and trend." :
      "Each section: the month's figures, then their trends") + " (" + (state.site ? siteName(state.site) :
      state.provider ? "the provider" : "MSO total") + " against the " + comparedWith() + ").";
    var sections = groupsOf(state.defs);
    if (state.openGroups === null) {  // at first: every section open, on a phone the first only
      state.openGroups = {};
      sections.forEach(function (g, n) { state.openGroups[g.id] = !phone() || n === 0; });
    }
    sections.forEach(function (g) {
      var section = el("details", { "class": "group", "data-group": g.id });
      if (state.openGroups[g.id] !== false) { section.open = true; }
      section.addEventListener("toggle", function () { state.openGroups[g.id] = section.open; });
      var summary = el("summary");
      summary.appendChild(el("span", { "class": "group-name" }, g.name));
      summary.appendChild(el("span", { "class": "note" }, " " + g.defs.length + " KPI" + (g.defs.length === 1 ? "" : "s")));
      section.appendChild(summary);
      var tiles = el("div", { "class": "tiles" });
      g.defs.forEach(function (d) { tiles.appendChild(tileOf(d, previous, info, open)); });
      section.appendChild(tiles);
      var charts = el("div", { "class": "charts" });
      g.defs.forEach(function (d) { charts.appendChild(chartBox(d)); });
      section.appendChild(charts);
      groups.appendChild(section);
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

  function chartBox(d) {
    var box = el("div", { "class": "chart" });
    box.appendChild(el("h3", {}, d.name));
    box.appendChild(drawChart(d, selectedMonths()));
    var legend = el("div", { "class": "legend" });
    legend.appendChild(el("i", { style: "background:#2364aa" }));
    legend.appendChild(document.createTextNode(state.site ? siteName(state.site) : state.provider ? "the provider" : "MSO total"));
    legend.appendChild(el("i", { style: "background:#9aa5b1" }));
    legend.appendChild(document.createTextNode(comparedWith()));
    box.appendChild(legend);
    return box;
  }

  // ------------------------------------------------------------------ sites against the median
  function tableDefs() {
    var sections = groupsOf(state.defs), select = $("table-group");
    if (state.tableGroup === null) { state.tableGroup = phone() && sections.length ? sections[0].id : ""; }
    select.textContent = "";
    select.appendChild(el("option", { value: "" }, "All KPIs"));
    sections.forEach(function (g) { select.appendChild(el("option", { value: g.id }, g.name)); });
    if (!sections.some(function (g) { return g.id === state.tableGroup; })) { state.tableGroup = ""; }
    select.value = state.tableGroup;
    select.onchange = function () { state.tableGroup = select.value; renderTable(); };
    return state.defs.filter(function (d) { return !state.tableGroup || groupOf(d) === state.tableGroup; });
  }

  function cellClass(d, v, m) {
    if (v === null || m === null || Math.abs(v - m) <= 1e-9) { return "same"; }
    return (v > m) === (d.higher_is_better !== false) ? "better" : "worse";
  }

  function renderTable() {
    var table = $("sites");
    table.textContent = "";
    var defs = tableDefs();
    $("table-title").textContent = "Sites against the MSO median, " + monthLabel(state.to) + periodNote(periodOf(state.to)) +
      (state.provider || state.line ? " \u00B7 " + [state.provider ? providerLabel(state.provider) : "",
                                                    state.line ? lineLabel(state.line) : ""].filter(Boolean).join(" \u00B7 ") : "");
    var head = el("tr");
    head.appendChild(el("th", {}, "Site"));
    defs.forEach(function (d) { head.appendChild(el("th", { title: d.formula || "" }, d.name)); });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el("tbody");
    (state.base.sites || []).forEach(function (s) {
      var tr = el("tr", { "data-site": s.slug });
      if (state.site === s.slug) { tr.style.fontWeight = "600"; }
      var name = el("td", {}, s.name);
      if (s.status && s.status !== "live") { name.appendChild(el("span", { "class": "badge" }, s.status)); }
      tr.appendChild(name);
      defs.forEach(function (d) {
        var v = valueOf(s.slug, state.to, d.id), why = noData(s.slug, d.id);
        var cell = el("td", why ? { "class": "nodata", title: why, "data-kpi": d.id } :
                      { "class": cellClass(d, v, siteMedianOf(state.to, d.id)), "data-kpi": d.id },
                      why ? "no data (" + why + ")" : format(v, d.unit));
        drillable(cell, d, s.slug, state.to);
        tr.appendChild(cell);
      });
      body.appendChild(tr);
    });
    var middle = el("tr", { "class": "median" });
    middle.appendChild(el("td", {}, "MSO site median"));
    defs.forEach(function (d) { middle.appendChild(el("td", {}, format(siteMedianOf(state.to, d.id), d.unit))); });
    body.appendChild(middle);
    table.appendChild(body);
  }

  // ------------------------------------------------------------------ providers (live dashboard)
  // Every provider of the scope (all sites or one, the service line if chosen) in the last month of the
  // period, grouped as the report groups them (across practices by NPI), with the productivity KPIs the
  // catalog has: visits and charges, and work RVUs when the MSO imports an RVU table.
  // visits first (the rows' order), then the productivity section's KPIs (work RVUs), then the money
  var PROVIDER_KPIS = ["visit_volume", "*productivity", "gross_charges", "charges_per_visit", "new_patient_visits",
                       "payments"];

  function providerDefs(report) {
    var rank = function (d) {
      var at = PROVIDER_KPIS.indexOf(d.id);
      return at >= 0 ? at : groupOf(d) === "productivity" ? PROVIDER_KPIS.indexOf("*productivity") : -1;
    };
    return report.definitions.filter(function (d) { return rank(d) >= 0; })
      .map(function (d, i) { return [rank(d), i, d]; })
      .sort(function (a, b) { return a[0] - b[0] || a[1] - b[1]; })
      .map(function (x) { return x[2]; });
  }

  function renderProviders() {
    var view = $("provider-view");
    view.hidden = !live();
    if (!live()) { return; }
    var report = reportFor(providersBy()), table = $("providers");
    $("providers-title").textContent = "Providers, " + monthLabel(state.to) + periodNote(periodOf(state.to)) + " \u00B7 " +
      (state.site ? siteName(state.site) : "all sites") + (state.line ? " \u00B7 " + lineLabel(state.line) : "");
    if (!report) { table.textContent = ""; $("providers-note").textContent = "Loading\u2026"; return; }
    $("providers-note").textContent = "A provider is one person across practices (by NPI). Choose a row to see " +
      "every KPI of that provider above.";
    var defs = providerDefs(report);
    var rows = (state.site ? (report.rows || []).filter(function (r) { return r.slice.site === state.site; }) : report.total || [])
      .filter(function (r) {
        return r.slice.month === state.to && (!state.line || norm(r.slice.service_line) === state.line);
      });
    var sortBy = defs.length ? defs[0].id : null;
    rows.sort(function (a, b) { return (num(b.values[sortBy]) || 0) - (num(a.values[sortBy]) || 0); });
    table.textContent = "";
    var head = el("tr");
    head.appendChild(el("th", {}, "Provider"));
    defs.forEach(function (d) { head.appendChild(el("th", { title: d.formula || "", "data-kpi": d.id }, d.name)); });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el("tbody");
    rows.forEach(function (r) {
      var id = norm(r.slice.provider);
      var tr = el("tr", { "data-provider": id, "class": "pick" + (id === state.provider ? " chosen" : "") });
      var who = el("td", { title: providerLabel(id) }, id === NONE ? providerLabel(id) : rosterName(id) || providerCode(id));
      if (id !== NONE && rosterName(id)) { who.appendChild(el("div", { "class": "note" }, providerCode(id))); }
      tr.appendChild(who);
      defs.forEach(function (d) { tr.appendChild(el("td", { "data-kpi": d.id }, format(r.values[d.id], d.unit))); });
      tr.onclick = function () {
        state.provider = id === state.provider ? "" : id;
        render();
        window.scrollTo(0, 0);
      };
      body.appendChild(tr);
    });
    if (!rows.length) {
      var empty = el("tr");
      empty.appendChild(el("td", { colspan: String(defs.length + 1), "class": "nodata" }, "no provider figures for this month"));
      body.appendChild(empty);
    }
    table.appendChild(body);
  }

  // ------------------------------------------------------------------ drill-down (live dashboard only)
  // A tile (a site chosen) or a table cell opens the records behind its figure, from the audited
  // /api/v1/reports/kpis/{kpi}/records call; a message id links to the console, which shows content to admins.
  var DATE_FIELDS = ["start", "visit_date", "service_date", "received_on"];

  function drillable(node, definition, site, month) {
    // "no provider recorded" and "no service line recorded" are no filter the records call takes
    if (!state.key || !site || !month || state.provider === NONE || state.line === NONE) { return; }
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
    $("drill-title").textContent = definition.name + " \u00B7 " + [siteName(site)].concat(
      state.provider ? [providerLabel(state.provider)] : [], state.line ? [lineLabel(state.line)] : []).join(" \u00B7 ") +
      " \u00B7 " + monthLabel(month);
    $("drill-error").textContent = "";
    body.textContent = "Loading…";
    panel.hidden = false;
    $("drill-close").onclick = function () { panel.hidden = true; };
    var url = "/api/v1/reports/kpis/" + encodeURIComponent(definition.id) + "/records?site=" +
      encodeURIComponent(site) + "&month=" + encodeURIComponent(month);
    // the view's provider and service line narrow the list as they narrow the figure
    if (state.provider) { url += "&provider=" + encodeURIComponent(state.provider); }
    if (state.line) { url += "&service_line=" + encodeURIComponent(state.line); }
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

  // draws the view the filters name: with the report of its slicing when held, else once it arrives
  function render() {
    writeUrl();
    var report = state.provider || state.line ? reportFor(activeBy()) : state.base;
    if (live()) { reportFor("site,provider,month"); reportFor("site,service_line,month"); }  // the filters' choices
    if (!report) {
      $("tiles-title").textContent = monthLabel(state.to) + " \u00B7 " + scopeLabel() + ": loading\u2026";
      $("board").setAttribute("data-showing", "");
      return;
    }
    state.report = report;
    state.defs = report.definitions;
    indexReport(report);
    renderTiles();
    renderTable();
    renderProviders();
    $("board").setAttribute("data-showing", report === state.base ? BASE_BY : activeBy());
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
    state.base = state.report = state.reports[BASE_BY] = report;
    var months = {};
    (report.total || []).concat(report.rows || []).forEach(function (row) { if (row.slice.month) { months[row.slice.month] = true; } });
    state.months = Object.keys(months).sort();
    $("login").hidden = true;
    $("bar").hidden = false;
    $("board").hidden = false;
    $("meta").textContent = "Figures " + report.from + " to " + report.to + " \u00B7 generated " + report.generated_at;
    $("freshness").textContent = freshness(report);
    $("definitions-note").textContent = (phone() ? "Tap a tile for its formula; " : "Hover a tile or a column for its formula; ") +
      "a section's title opens or closes it. Green: better than the comparison; red: worse.";
    if (!state.months.length) {
      $("tiles").textContent = "No figures for this period yet.";
      return;
    }
    fillFilters(readUrl());
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
    fetch(API + "?by=" + BASE_BY, { headers: { Authorization: "Bearer " + key, Accept: "application/json" } })
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
