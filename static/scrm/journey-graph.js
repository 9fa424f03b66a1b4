/* The journey builder's flow, drawn with ECharts from the positions the server computed (journeys/views/builder_graph.py,
   graph()): a top-down graph of the steps, links labelled with their way out. Clicking a step opens its form in the
   editor panel, clicking a link opens "add a step here" (both HTMX). Also: the builder forms' fields that show only
   for some values of another field (data-when-field / data-when-values), and confirmations (data-confirm). */
(function () {
  "use strict";

  var COLOURS = {
    trigger: "#0d6efd", wait: "#6c757d", branch: "#6f42c1", message: "#198754", action: "#0aa2c0",
    exit: "#dc3545", end: "#212529"
  };
  var PROBLEM = "#dc3545";
  var charts = [];

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }

  // ECharts' rich text reads {style|text}: keep braces and bars out of the words it draws.
  function plain(text) {
    return String(text || "").replace(/[{}|]/g, " ");
  }

  // Lines of at most `width` units (a Chinese character is two), at most `count` of them, the last one cut with "…".
  // (ECharts ignores the line breaks of rich text it wraps itself, so the node's words are wrapped here.)
  function wrap(text, width, count) {
    var lines = [""], used = 0;
    Array.from(plain(text)).forEach(function (character) {
      var size = character.charCodeAt(0) > 0x2e80 ? 2 : 1;
      if (used + size > width) {
        lines.push("");
        used = 0;
      }
      lines[lines.length - 1] += character;
      used += size;
    });
    if (lines.length > count) {
      lines = lines.slice(0, count);
      lines[count - 1] = lines[count - 1].slice(0, -1) + "…";
    }
    return lines;
  }

  function node(item) {
    var colour = COLOURS[item.family] || COLOURS.action;
    var styled = {
      name: item.id, x: item.x, y: item.y, family: item.family,
      title: item.title, text: item.text, tooltip: item.tooltip, url: item.url,
      itemStyle: {color: "#fff", borderColor: colour, borderWidth: 2},
      label: {}
    };
    if (item.family === "trigger") styled.itemStyle.color = "#e7f1ff";
    if (item.family === "end") {
      styled.symbol = "circle";
      styled.symbolSize = 14;
      styled.itemStyle = {color: colour};
      styled.label = {show: false};
    }
    if (item.problems) {
      styled.itemStyle.borderColor = PROBLEM;
      styled.itemStyle.borderWidth = 3;
      styled.itemStyle.color = "#fff5f5";
    }
    return styled;
  }

  // Two invisible points around the drawing, at least 200 wide. ECharts stretches the nodes' box to the chart (less
  // its margins), which the page sizes to the drawing (GRAPH_* in journeys/views/builder_graph.py), so nothing is squashed;
  // a box of no width (a journey in one straight line) would not be drawn at all.
  function frame(nodes) {
    var xs = nodes.map(function (item) { return item.x; });
    var ys = nodes.map(function (item) { return item.y; });
    var left = Math.min.apply(null, xs), right = Math.max.apply(null, xs);
    var half = Math.max((right - left) / 2 + 1, 100), centre = (left + right) / 2;
    return [[centre - half, Math.min.apply(null, ys) - 1], [centre + half, Math.max.apply(null, ys) + 1]].map(
      function (point, index) {
        return {name: "frame:" + index, x: point[0], y: point[1], symbolSize: 0, label: {show: false},
                tooltip: {show: false}, itemStyle: {opacity: 0}};
      });
  }

  function draw(element) {
    if (element.dataset.ready || typeof echarts === "undefined") return;
    var source = document.getElementById(element.dataset.journeyGraph);
    if (!source) return;
    element.dataset.ready = "1";
    var data = JSON.parse(source.textContent);
    var addHere = element.dataset.addLabel || "+";
    var chart = echarts.init(element);
    chart.setOption({
      tooltip: {
        confine: true,
        formatter: function (params) {
          if (params.dataType === "edge" || params.data.family === "end") {
            return escapeHtml((params.data.text ? params.data.text + " · " : "") + addHere);
          }
          return escapeHtml(params.data.tooltip || "").replace(/\n/g, "<br>");
        }
      },
      series: [{
        type: "graph", layout: "none", roam: true, left: 115, right: 115, top: 40, bottom: 40,
        symbol: "roundRect", symbolSize: [210, 62], edgeSymbol: ["none", "arrow"], edgeSymbolSize: 8,
        autoCurveness: true,
        label: {
          show: true, lineHeight: 15,
          formatter: function (params) {
            var title = "{t|" + wrap(params.data.title, 32, 1)[0] + "}";
            var text = params.data.text ? wrap(params.data.text, 34, 2) : [];
            return [title].concat(text.map(function (line) { return "{d|" + line + "}"; })).join("\n");
          },
          rich: {t: {fontWeight: "bold", fontSize: 12, color: "#212529"}, d: {fontSize: 11, color: "#495057"}}
        },
        edgeLabel: {
          // On the middle of the link, level, over the line (not above it, where a short link has its node).
          show: true, fontSize: 11, color: "#343a40", backgroundColor: "#fff", padding: [1, 3], rotate: 0,
          distance: 0, align: "center", verticalAlign: "middle",
          formatter: function (params) { return plain(params.data.text); }
        },
        lineStyle: {color: "#adb5bd", width: 1.5, opacity: 1},
        emphasis: {focus: "adjacency", lineStyle: {width: 2.5}},
        data: data.nodes.map(node).concat(frame(data.nodes)),
        links: data.links.map(function (link) {
          return {source: link.source, target: link.target, url: link.url, text: link.label,
                  label: {show: Boolean(link.label), rotate: 0, distance: 0, align: "center", verticalAlign: "middle"}};
        })
      }]
    });
    chart.on("click", function (params) {
      var url = params.data && params.data.url;
      if (!url) return;
      var editor = document.querySelector(element.dataset.editor);
      htmx.ajax("GET", url, {target: editor, swap: "innerHTML"});
    });
    charts.push(chart);
  }

  function controlValue(form, name) {
    var control = form.elements[name];
    if (!control) return "";
    if (control.type === "checkbox") return control.checked ? "on" : "";
    return control.value;  // a select, an input, or the checked one of radio buttons
  }

  function applyWhen(form) {
    form.querySelectorAll("[data-when-field]").forEach(function (element) {
      var values = element.dataset.whenValues.split(" ");
      element.hidden = values.indexOf(controlValue(form, element.dataset.whenField)) < 0;
    });
  }

  function scan(root) {
    (root || document).querySelectorAll("[data-journey-graph]").forEach(draw);
    (root || document).querySelectorAll("form").forEach(applyWhen);
  }

  document.addEventListener("change", function (event) {
    var form = event.target.closest("form");
    if (form) applyWhen(form);
  });
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });
  document.addEventListener("DOMContentLoaded", function () { scan(document); });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target.id === "journey-editor") event.detail.target.scrollIntoView({block: "nearest"});
  });
  // Content swapped in by HTMX (the editor panel, and the flow swapped out of band after a change).
  document.addEventListener("htmx:afterSettle", function () { scan(document); });
  window.addEventListener("resize", function () {
    charts = charts.filter(function (chart) {
      if (chart.getDom().isConnected) {
        chart.resize();
        return true;
      }
      chart.dispose();
      return false;
    });
  });
})();
