// Compare two versions side by side from data.js, in the page: no server, no network.
// Every value is set as text (textContent), never as HTML: names and values are user data.
(function () {
  "use strict";
  var data = window.leptonVersions;
  var form = document.getElementById("pick");
  var result = document.getElementById("result");
  if (!data || !form || !result) { return; }
  var byName = {};
  ["a", "b"].forEach(function (k) {
    var select = document.getElementById(k);
    data.versions.forEach(function (v) {
      var o = document.createElement("option");
      o.value = v.version;
      o.textContent = v.version;
      select.appendChild(o);
    });
  });
  data.versions.forEach(function (v) { byName[v.version] = v; });
  // Newest first: B is the newest version, A the one before it, unless the address says.
  if (data.versions.length > 1) { document.getElementById("a").value = data.versions[1].version; }
  var params = new URLSearchParams(window.location.search);
  ["a", "b"].forEach(function (k) {
    var want = params.get(k);
    if (want && byName[want]) { document.getElementById(k).value = want; }
  });

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined) { e.textContent = text; }
    if (cls) { e.className = cls; }
    return e;
  }
  function fmt(x) {
    if (x === undefined || x === null) { return "\u2014"; }
    return typeof x === "number" ? String(Number(x.toPrecision(6))) : JSON.stringify(x);
  }
  function table(caption, a, b, rows, numeric) {
    var t = el("table");
    t.appendChild(el("caption", caption));
    var head = el("tr");
    ["name", a.version, b.version, numeric ? "change" : "same?"].forEach(function (h) {
      var th = el("th", h); th.scope = "col"; head.appendChild(th);
    });
    var thead = el("thead"); thead.appendChild(head); t.appendChild(thead);
    var body = el("tbody");
    rows.forEach(function (r) {
      var tr = el("tr");
      var th = el("th", r[0]); th.scope = "row"; tr.appendChild(th);
      tr.appendChild(el("td", fmt(r[1]), numeric ? "right" : ""));
      tr.appendChild(el("td", fmt(r[2]), numeric ? "right" : ""));
      var change = "";
      if (numeric) {
        if (typeof r[1] === "number" && typeof r[2] === "number") {
          var d = r[2] - r[1];
          change = (d > 0 ? "\u25b2 +" : d < 0 ? "\u25bc " : "= ") + String(Number(d.toPrecision(6)));
        }
      } else {
        change = JSON.stringify(r[1]) === JSON.stringify(r[2]) ? "same" : "differs";
      }
      tr.appendChild(el("td", change, numeric ? "right" : ""));
      body.appendChild(tr);
    });
    t.appendChild(body);
    return t;
  }
  // Own properties only: a metric may be named `__proto__`, `constructor` or `toString`.
  function own(o, n) { return Object.prototype.hasOwnProperty.call(o, n) ? o[n] : undefined; }
  function rows(a, b) {
    var names = Object.keys(a).concat(Object.keys(b).filter(function (n) {
      return !Object.prototype.hasOwnProperty.call(a, n);
    })).sort();
    return names.map(function (n) { return [n, own(a, n), own(b, n)]; });
  }
  function show() {
    var a = byName[document.getElementById("a").value];
    var b = byName[document.getElementById("b").value];
    result.replaceChildren();
    if (!a || !b) { return; }
    var h = el("h2", a.version + " and " + b.version);
    h.id = "compared";
    result.appendChild(h);
    result.appendChild(table("Metrics", a, b, rows(a.metrics, b.metrics), true));
    result.appendChild(table("Parameters", a, b, rows(a.params, b.params), false));
  }
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    show();
    var q = "?a=" + encodeURIComponent(document.getElementById("a").value) +
      "&b=" + encodeURIComponent(document.getElementById("b").value);
    try { window.history.replaceState(null, "", q); } catch (e) { /* file:// may refuse */ }
  });
  show();
})();
