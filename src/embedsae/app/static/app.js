// embedsae web app: sliders, label search, charts. Served from the package; no request leaves the server.
(function () {
  "use strict";

  function fmt(x) { return Number(x).toFixed(3); }

  // ---- search: slider read-outs, reset, add a feature by label
  document.addEventListener("input", function (e) {
    if (e.target.matches(".slider input[type=range]")) {
      var out = e.target.parentNode.querySelector("output");
      if (out) out.textContent = fmt(e.target.value);
    }
  });
  document.addEventListener("click", function (e) {
    var add = e.target.closest("button.add[data-feature]");
    if (add) {
      var form = document.getElementById("steer-form");
      var id = add.dataset.feature;
      if (!form || document.getElementById("f" + id)) return;
      var first = form.querySelector("input[type=range]");
      var max = first ? first.max : "1";
      var row = document.createElement("div");
      row.className = "slider"; row.dataset.feature = id;
      var label = document.createElement("label");
      label.htmlFor = "f" + id; label.textContent = add.dataset.label + " #" + id;
      var input = document.createElement("input");
      input.type = "range"; input.id = "f" + id; input.name = "f" + id; input.min = "0"; input.max = max;
      input.step = String(Number(max) / 200); input.value = "0"; input.dataset.original = "0";
      var out = document.createElement("output"); out.textContent = fmt(0);
      row.append(label, input, out); form.appendChild(row);
      add.remove();
      return;
    }
    if (e.target.id === "reset-sliders") {
      var steer = document.getElementById("steer-form");
      steer.querySelectorAll("input[type=range]").forEach(function (r) {
        r.value = r.dataset.original; r.parentNode.querySelector("output").textContent = fmt(r.value);
      });
      steer.dispatchEvent(new Event("change", { bubbles: true }));
    }
  });

  // ---- feature page: activation histogram (log y)
  var hist = document.getElementById("histogram");
  if (hist && window.Plotly) {
    var counts = JSON.parse(hist.dataset.counts), edges = JSON.parse(hist.dataset.edges);
    var mids = counts.map(function (_, i) { return (edges[i] + edges[i + 1]) / 2; });
    // log axis ticks: 1, 2, 5, 10, 20, 50 ... over a small range, one a decade over a large one (never overlapping)
    var top = Math.max.apply(null, counts.concat([1])), ticks = [];
    for (var d = 1; d <= top * 1.5; d *= 10) {
      ticks.push(d);
      if (top < 1000) { if (2 * d <= top * 1.5) ticks.push(2 * d); if (5 * d <= top * 1.5) ticks.push(5 * d); }
    }
    Plotly.newPlot(hist, [{ type: "bar", x: mids, y: counts, marker: { color: "#2459c4" } }],
      { margin: { t: 24, r: 10, b: 40, l: 50 }, title: { text: "activation histogram", font: { size: 13 } },
        xaxis: { title: { text: "activation" } }, yaxis: { type: "log", tickvals: ticks, ticktext: ticks.map(String), title: { text: "documents" } } },
      { displaylogo: false, responsive: true });
  }

  // ---- families: sunburst
  var famData = document.getElementById("families-data");
  var sun = document.getElementById("sunburst");
  if (famData && sun && window.Plotly) {
    var data = JSON.parse(famData.textContent);
    var ids = [], parents = [], labels = [], fids = [];
    data.families.forEach(function (f, i) {
      var root = "fam" + i + "/" + f.parent;
      ids.push(root); parents.push(""); labels.push(data.labels[f.parent]); fids.push(f.parent);
      f.children.forEach(function (c, j) {
        var tp = f.tree_parent[j];
        ids.push("fam" + i + "/" + c); parents.push("fam" + i + "/" + tp); labels.push(data.labels[c]); fids.push(c);
      });
    });
    Plotly.newPlot(sun, [{ type: "sunburst", ids: ids, parents: parents, labels: labels, customdata: fids,
      hovertemplate: "%{label} (#%{customdata})<extra></extra>", maxdepth: 3, insidetextorientation: "radial" }],
      { margin: { t: 10, r: 10, b: 10, l: 10 } }, { displaylogo: false, responsive: true });
    sun.on("plotly_click", function (ev) {
      var p = ev.points && ev.points[0];
      if (p && ev.event && ev.event.shiftKey) window.location = data.base + p.customdata + data.query;
    });
  }

  // ---- map
  var mapForm = document.getElementById("map-form");
  if (mapForm && window.Plotly) {
    var mapDiv = document.getElementById("map"), status = document.getElementById("map-status");
    var ws = mapForm.dataset.ws, sae = mapForm.dataset.sae, current = null;
    var stored = mapForm.dataset.maps ? mapForm.dataset.maps.split(",") : [];  // the layouts the map stage stored
    function draw() {
      var fd = new FormData(mapForm), q = new URLSearchParams({ dims: fd.get("dims") });
      if (stored.indexOf(String(fd.get("dims"))) < 0) {  // no request that can only answer 409
        status.textContent = "This workspace has no " + fd.get("dims") + "-D map yet.";
        offerMapJob(); return;
      }
      var groupsText = String(fd.get("groups") || "").trim();
      if (groupsText) { /* coloured by the concept groups below */ }
      else if (fd.get("feature")) q.set("feature", fd.get("feature"));
      else if (fd.get("column")) q.set("column", fd.get("column"));
      if (sae) q.set("sae", sae);
      status.textContent = "loading…";
      missing.hidden = true;
      function parse(r) {
        return r.json().then(function (body) {
          if (!r.ok) { var err = new Error(body.message); err.stage = body.stage; throw err; }
          return body;
        });
      }
      fetch("/api/v1/workspaces/" + ws + "/map?" + q.toString()).then(parse).then(function (m) {
        if (!groupsText) return m;
        return fetch("/api/v1/workspaces/" + ws + "/map/groups", { method: "POST",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify({ groups: groupsText }) })
          .then(parse).then(function (g) {
            m.color = g.color; m.color_by = { groups: g.color_by.groups, missing: g.missing }; return m;
          });
      }).then(function (m) {
        current = m;
        var three = m.dims === 3, n = m.ids.length;
        var trace = { type: three ? "scatter3d" : "scattergl", mode: "markers", x: m.coords[0], y: m.coords[1],
          text: m.titles, hovertemplate: "%{text}<extra></extra>", marker: { size: three ? 2 : 4, opacity: 0.8 } };
        if (three) trace.z = m.coords[2];
        var traces = [trace];
        if (m.color && m.color_by && (m.color_by.column || m.color_by.groups)) {
          var groups = {};
          m.color.forEach(function (g, i) { (groups[g] = groups[g] || []).push(i); });
          var names = Object.keys(groups).sort(function (a, b) { return (a === "other") - (b === "other") || groups[b].length - groups[a].length; });
          traces = names.slice(0, 40).map(function (g) {
            var idx = groups[g], t = Object.assign({}, trace, { name: g + " (" + idx.length + ")", customdata: idx });
            t.x = idx.map(function (i) { return m.coords[0][i]; }); t.y = idx.map(function (i) { return m.coords[1][i]; });
            if (three) t.z = idx.map(function (i) { return m.coords[2][i]; });
            t.text = idx.map(function (i) { return m.titles[i]; }); t.marker = Object.assign({}, trace.marker);
            if (g === "other") { t.marker.color = "#b4bac4"; t.marker.opacity = 0.5; }
            else if (groups.other) { t.marker.size = three ? 4 : 7; t.marker.opacity = 0.95; }  // the groups stand out
            return t;
          });
        } else if (m.color) {
          trace.marker.color = m.color; trace.marker.colorscale = "Viridis"; trace.marker.showscale = true;
          trace.marker.colorbar = { title: { text: "#" + m.color_by.feature } };
        }
        traces.forEach(function (t) { if (!t.customdata) t.customdata = Array.from({ length: n }, function (_, i) { return i; }); });
        Plotly.react(mapDiv, traces, { margin: { t: 10, r: 10, b: 10, l: 10 }, showlegend: traces.length > 1,
          hovermode: "closest" }, { displaylogo: false, responsive: true });
        var by = m.color_by;
        status.textContent = n + " documents" + (!by ? "" : by.feature !== undefined ? " coloured by feature #" + by.feature + " " + by.label
          : by.groups ? " coloured by " + by.groups.length + " concept groups" + (by.missing && by.missing.length ? " (not found: " + by.missing.slice(0, 8).join(", ") + ")" : "")
          : " coloured by " + by.column);
        mapDiv.removeAllListeners && mapDiv.removeAllListeners("plotly_click");
        mapDiv.on("plotly_click", function (ev) { var p = ev.points[0]; if (p) showDoc(p.customdata); });
      }).catch(function (err) {
        if (err.stage === "map") { status.textContent = err.message; offerMapJob(); return; }
        status.textContent = "cannot draw the map: " + err.message;
      });
    }
    // ---- no stored map: offer the map job, follow its progress, draw when it is done
    var missing = document.getElementById("map-missing"), startBtn = document.getElementById("map-start");
    var bar = document.getElementById("map-progress"), jobText = document.getElementById("map-job");
    function follow(job) {
      bar.hidden = false; startBtn.disabled = true;
      var events = new EventSource("/api/v1/jobs/" + job.id + "/events");
      events.onmessage = function (ev) {
        var j = JSON.parse(ev.data), p = j.progress;
        bar.value = p.fraction;
        jobText.textContent = "job " + j.id + " " + j.state + (p.message ? ": " + p.message : "") +
          (p.total ? " (" + p.done + "/" + p.total + " " + p.unit + ")" : "");
        if (j.state === "done") { events.close(); missing.hidden = true; stored = ["2", "3"]; draw(); }
        else if (j.state === "failed" || j.state === "cancelled") {
          events.close(); startBtn.disabled = false; jobText.textContent = "job " + j.id + " " + j.state + (j.error ? ": " + j.error : "");
        }
      };
      events.onerror = function () { events.close(); startBtn.disabled = false; };
    }
    function offerMapJob() {
      missing.hidden = false;
      fetch("/api/v1/jobs?workspace=" + encodeURIComponent(ws)).then(function (r) { return r.json(); }).then(function (jobs) {
        var running = jobs.filter(function (j) { return j.kind === "map" && (j.state === "running" || j.state === "queued"); })[0];
        if (running) follow(running);
      });
    }
    startBtn.addEventListener("click", function () {
      startBtn.disabled = true;
      fetch("/api/v1/workspaces/" + ws + "/jobs", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ kind: "map" }) }).then(function (r) {
        return r.json().then(function (body) { if (!r.ok) throw new Error(body.message); return body; });
      }).then(follow).catch(function (err) { startBtn.disabled = false; jobText.textContent = err.message; });
    });
    function showDoc(row) {
      var box = document.getElementById("map-doc");
      fetch("/api/v1/workspaces/" + ws + "/documents/" + row + (sae ? "?sae=" + sae : "")).then(function (r) { return r.json(); })
        .then(function (d) {
          box.innerHTML = "";
          var h = document.createElement("h3"); h.textContent = d.title; box.appendChild(h);
          var p = document.createElement("p"); p.className = "muted"; p.textContent = (d.text || "").slice(0, 400); box.appendChild(p);
          var ul = document.createElement("ol");
          (d.features || []).slice(0, 10).forEach(function (f) {
            var li = document.createElement("li"), a = document.createElement("a");
            a.href = "/w/" + ws + "/features/" + f.id + (sae ? "?sae=" + sae : ""); a.textContent = (f.label || "feature " + f.id) + " #" + f.id;
            li.append(a, " " + fmt(f.activation)); ul.appendChild(li);
          });
          box.appendChild(ul);
        });
    }
    mapForm.addEventListener("submit", function (e) { e.preventDefault(); draw(); });
    mapForm.querySelector("[name=find]").addEventListener("input", function (e) {
      if (!current) return;
      var needle = e.target.value.toLowerCase();
      var sel = needle ? current.titles.map(function (t, i) { return t.toLowerCase().indexOf(needle) >= 0 ? i : -1; }).filter(function (i) { return i >= 0; }) : null;
      Plotly.restyle(mapDiv, { selectedpoints: [sel] }, [0]);
    });
    draw();
  }
})();
