/* GradLab graph viewer: draws a graph payload (gradlab.viewer.payload) and steps
 * through the backward pass, all in the browser. Plain JavaScript, no library.
 *
 *   const view = GradLabViewer.mount(element, payload, {onSelect: fn, ...});
 *
 * Every string that comes from a program or a model is put in the page as text
 * (textContent or a canvas fillText), never parsed as HTML.
 * Small graphs are drawn in SVG; big ones on a canvas, culled to the view and
 * drawn without text when zoomed out, so pan and zoom stay fluid.
 */
(function () {
  "use strict";
  if (window.GradLabViewer && window.GradLabViewer.version === 1) return; // loaded twice: keep one
  var SVG_NS = "http://www.w3.org/2000/svg";
  var CANVAS_FROM = 100; // nodes: above, SVG repaints cost more than a canvas redraw
  var SPEEDS = { "0.5×": 1600, "1×": 800, "2×": 400, "4×": 200 };
  var instances = [];
  var active = null; // the viewer the keys go to: the last one touched, or the last mounted

  // the element an event started on, also inside a shadow root (where ev.target is the host)
  function origin(ev) {
    var path = ev.composedPath ? ev.composedPath() : null;
    return path && path.length ? path[0] : ev.target;
  }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVG_NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function button(label, title, onClick) {
    var b = el("button", "glv-btn", label);
    b.type = "button";
    b.title = title;
    b.addEventListener("click", function (ev) {
      onClick(ev);
    });
    return b;
  }

  // viridis, in 5 stops
  var VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function viridis(t) {
    t = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
    var i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i;
    var a = VIRIDIS[i], b = VIRIDIS[i + 1];
    return "rgb(" + [0, 1, 2].map(function (j) { return Math.round(a[j] + (b[j] - a[j]) * f); }).join(",") + ")";
  }
  var SEVERITY = { error: "#d62728", warning: "#ff7f0e", info: "#1f77b4" };
  // Text that stays readable on a fill: white on dark colours (the low end of viridis).
  function dark(fill) {
    var c = String(fill || ""), rgb;
    var m = c.match(/^rgb\((\d+),\s*(\d+),\s*(\d+)\)$/);
    if (m) rgb = [+m[1], +m[2], +m[3]];
    else if (/^#[0-9a-f]{6}$/i.test(c)) rgb = [1, 3, 5].map(function (i) { return parseInt(c.slice(i, i + 2), 16); });
    else return false;
    var lin = rgb.map(function (v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2] < 0.18;
  }

  function Viewer(root, data, options) {
    this.root = root;
    this.data = data;
    this.opts = options || {};
    this.nodes = data.nodes || [];
    this.edges = data.edges || [];
    this.steps = data.steps || [];
    this.byId = {};
    for (var i = 0; i < this.nodes.length; i++) this.byId[this.nodes[i].id] = i;
    var start = this.opts.step === "end" ? this.steps.length - 1 :
      (typeof this.opts.step === "number" ? this.opts.step : -1);
    this.k = Math.max(-1, Math.min(this.steps.length - 1, start));
    this.predict = !!this.opts.predict;
    this.revealed = false;
    this.color = this.opts.color || "kind";
    this.selected = null;
    this.hover = null;
    this.timer = null;
    this.view = { s: 1, x: 0, y: 0 };
    this.renderer = (this.opts.renderer && this.opts.renderer !== "auto") ? this.opts.renderer :
      (this.nodes.length > CANVAS_FROM ? "canvas" : "svg");
    this.outline = {}; // node index -> colour
    var self = this;
    (data.highlight || []).forEach(function (i) { self.outline[i] = SEVERITY.error; });
    (data.findings || []).forEach(function (f) {
      f.nodes.forEach(function (id, j) {
        var i = self.byId[id];
        if (i !== undefined && !(i in self.outline && self.outline[i] === SEVERITY.error))
          self.outline[i] = j === 0 ? (SEVERITY[f.severity] || SEVERITY.warning) : SEVERITY.warning;
      });
    });
    this.build();
    this.applyColor();
    this.draw();
    this.fit();
    var focus = data.focus;
    if (focus !== null && focus !== undefined) this.centerOn(this.nodes[focus].id, true);
    else if (this.k >= 0 && this.renderer === "canvas") this.centerOn(this.nodes[this.steps[this.k].node].id, false);
  }

  Viewer.prototype.build = function () {
    var self = this, d = this.data;
    var root = this.root;
    root.classList.add("glv");
    root.tabIndex = 0;
    root.setAttribute("data-renderer", this.renderer);
    while (root.firstChild) root.removeChild(root.firstChild);

    var bar = el("div", "glv-bar");
    if (d.title) bar.appendChild(el("span", "glv-title", d.title));
    var stepping = this.steps.length > 0;
    this.btnPrev = button("◀ Prev", "Previous step (← or PageUp)", function () { self.go(self.k - 1); });
    this.btnNext = button("Next ▶", "Next step (→, Space or PageDown)", function () { self.go(self.k + 1); });
    this.btnPlay = button("Play", "Play the backward pass step by step", function () { self.togglePlay(); });
    this.speed = el("select", "glv-speed");
    this.speed.title = "Play speed";
    Object.keys(SPEEDS).forEach(function (k) {
      var o = el("option", null, k); o.value = k; if (k === "1×") o.selected = true; self.speed.appendChild(o);
    });
    this.btnReset = button("Reset", "Back to before backward (Home)", function () { self.stop(); self.go(-1); });
    this.btnEnd = button("End", "Every step done (End)", function () { self.stop(); self.go(self.steps.length - 1); });
    this.progress = el("span", "glv-progress");
    var predictLabel = el("label", "glv-check");
    this.predictBox = el("input"); this.predictBox.type = "checkbox"; this.predictBox.checked = this.predict;
    predictLabel.appendChild(this.predictBox); predictLabel.appendChild(document.createTextNode(" Predict first"));
    this.predictBox.addEventListener("change", function () { self.setPredict(self.predictBox.checked); self.refocus(); });
    this.btnReveal = button("Reveal", "Show what this step sent (R or Enter)", function () { self.reveal(); });
    if (stepping) {
      [this.btnReset, this.btnPrev, this.btnNext, this.btnPlay, this.speed, this.btnEnd, this.progress,
        predictLabel, this.btnReveal].forEach(function (e) { bar.appendChild(e); });
    } else if (d.printed || d.caption) {
      bar.appendChild(predictLabel); bar.appendChild(this.btnReveal);
    }
    this.colorSel = el("select", "glv-color");
    this.colorSel.title = "Colour the nodes by";
    [["kind", "Colour: kind"], ["grad", "Colour: ‖grad‖"], ["value", "Colour: ‖value‖"]].forEach(function (c) {
      var o = el("option", null, c[1]); o.value = c[0]; if (c[0] === self.color) o.selected = true; self.colorSel.appendChild(o);
    });
    this.colorSel.addEventListener("change", function () { self.color = self.colorSel.value; self.applyColor(); self.draw(); self.refocus(); });
    this.speed.addEventListener("change", function () { if (self.timer) { self.stop(); self.togglePlay(); } self.refocus(); });
    bar.appendChild(this.colorSel);
    bar.appendChild(button("−", "Zoom out", function () { self.zoomBy(1 / 1.25); }));
    bar.appendChild(button("+", "Zoom in", function () { self.zoomBy(1.25); }));
    bar.appendChild(button("Fit", "Show the whole graph", function () { self.fit(true); }));
    this.btnPresent = button("Presenter", "Fill the window: the graph and the step panel, big", function () { self.setPresenter(!self.presenter); });
    bar.appendChild(this.btnPresent);
    bar.appendChild(button("Full screen", "Full screen (Esc leaves it)", function () { self.fullscreen(); }));
    root.appendChild(bar);

    var main = el("div", "glv-main");
    this.stage = el("div", "glv-stage");
    this.tip = el("div", "glv-tip");
    this.legend = el("div", "glv-legend");
    var side = el("div", "glv-side");
    this.side = side;
    main.appendChild(this.stage);
    main.appendChild(side);
    root.appendChild(main);

    this.stepBox = el("section", "glv-step");
    this.stepTitle = el("div", "glv-step-title");
    this.arrived = el("div", "glv-lines");
    this.sent = el("div", "glv-lines glv-sent");
    this.hiddenNote = el("div", "glv-hidden", "Predict what this step sends, then press Reveal.");
    this.stepBox.appendChild(this.stepTitle);
    this.stepBox.appendChild(this.arrived);
    this.stepBox.appendChild(this.sent);
    this.stepBox.appendChild(this.hiddenNote);
    if (stepping) side.appendChild(this.stepBox);

    this.card = el("section", "glv-card");
    side.appendChild(this.card);
    this.findingsBox = el("section", "glv-findings");
    if ((d.findings || []).length) {
      this.findingsBox.appendChild(el("h3", null, "Findings"));
      d.findings.forEach(function (f) {
        var item = el("button", "glv-finding glv-" + f.severity, f.title || f.kind);
        item.type = "button";
        item.addEventListener("click", function () {
          if (f.nodes.length && self.byId[f.nodes[0]] !== undefined) { self.select(f.nodes[0]); self.centerOn(f.nodes[0], true); }
          self.refocus();
        });
        self.findingsBox.appendChild(item);
      });
      side.appendChild(this.findingsBox);
    }
    this.printedBox = el("section", "glv-printed");
    if (d.printed) {
      this.printedBox.appendChild(el("h3", null, "Printed"));
      this.printedBox.appendChild(el("pre", null, d.printed));
      side.appendChild(this.printedBox);
    }
    this.captionBox = el("section", "glv-caption");
    if (d.caption) { this.captionBox.appendChild(el("p", null, d.caption)); side.appendChild(this.captionBox); }

    if (this.renderer === "svg") this.buildSvg(); else this.buildCanvas();
    this.stage.appendChild(this.legend);
    this.stage.appendChild(this.tip);
    this.bindPointer();
    root.addEventListener("pointerdown", function () { active = self; }, true);
    // a click on a control leaves the keys with the viewer, not the control
    bar.addEventListener("click", function (ev) {
      var t = origin(ev);
      if (t && t.tagName !== "SELECT" && t.tagName !== "INPUT") self.refocus();
    });
    if (typeof ResizeObserver !== "undefined") {
      this.resizer = new ResizeObserver(function () { self.resize(); });
      this.resizer.observe(this.stage);
    }
  };

  Viewer.prototype.refocus = function () {
    var scope = this.root.getRootNode ? this.root.getRootNode() : document;
    var a = scope.activeElement || document.activeElement;
    if (a && a !== this.root && this.root.contains(a) && a.blur) a.blur();
    try { this.root.focus({ preventScroll: true }); } catch (e) { this.root.focus(); }
  };

  // -- what shows at the current step -------------------------------------------------

  Viewer.prototype.gradShown = function (i) {
    var n = this.nodes[i];
    if (!this.steps.length || n.reach === null || n.reach === undefined) return true;
    if (n.reach < this.k) return true;
    if (n.reach > this.k) return false;
    var current = this.steps[this.k] && this.steps[this.k].node === i;
    return current || !this.predict || this.revealed;
  };
  Viewer.prototype.edgeShown = function (e) {
    if (!this.steps.length || e.at === null || e.at === undefined) return true;
    if (e.at < this.k) return true;
    if (e.at > this.k) return false;
    return !this.predict || this.revealed;
  };
  Viewer.prototype.nodeLines = function (i) {
    var n = this.nodes[i], lines = n.lines.slice();
    if (!this.gradShown(i)) lines[lines.length - 1] = "grad ?";
    return lines;
  };

  Viewer.prototype.applyColor = function () {
    var key = this.color === "grad" ? "gnorm" : "vnorm";
    this.fills = this.nodes.map(function (n) { return n.fill; });
    while (this.legend.firstChild) this.legend.removeChild(this.legend.firstChild);
    if (this.color === "kind") {
      var fill = this.data.fill || {}, seen = {}, legend = this.legend;
      this.nodes.forEach(function (n) { seen[n.kind] = true; });
      [["leaf", "leaf"], ["op", "op"], ["output", "output"], ["module", "module"]].forEach(function (k) {
        if (!seen[k[0]] || !fill[k[0]]) return;
        var sw = el("span", "glv-swatch");
        sw.style.background = fill[k[0]];
        legend.appendChild(sw);
        legend.appendChild(el("span", null, k[1]));
      });
      this.legend.style.display = "";
      return;
    }
    var vals = this.nodes.map(function (n) { return n[key]; }).filter(function (v) { return v !== null && v !== undefined; });
    var lo = Math.min.apply(null, vals.length ? vals : [0]), hi = Math.max.apply(null, vals.length ? vals : [1]);
    this.fills = this.nodes.map(function (n) {
      var v = n[key];
      return v === null || v === undefined ? "#e4e4e4" : viridis(hi > lo ? (v - lo) / (hi - lo) : 0.5);
    });
    this.legend.style.display = "";
    this.legend.appendChild(el("span", null, "log₁₀ ‖" + (key === "gnorm" ? "grad" : "value") + "‖  " + lo.toFixed(1)));
    var bar = el("span", "glv-legend-bar");
    this.legend.appendChild(bar);
    this.legend.appendChild(el("span", null, hi.toFixed(1)));
  };

  // -- stepping -------------------------------------------------------------------------

  Viewer.prototype.go = function (k) {
    if (!this.steps.length) return;
    k = Math.max(-1, Math.min(this.steps.length - 1, k));
    if (k !== this.k) this.revealed = false;
    this.k = k;
    this.draw();
    if (k >= 0 && this.renderer === "canvas") this.keepInView(this.nodes[this.steps[k].node].id);
    if (k >= this.steps.length - 1) this.stop();
  };
  Viewer.prototype.togglePlay = function () {
    var self = this;
    if (this.timer) { this.stop(); return; }
    if (this.k >= this.steps.length - 1) this.go(-1);
    this.btnPlay.textContent = "Pause";
    this.timer = setInterval(function () { self.go(self.k + 1); }, SPEEDS[this.speed.value] || 800);
  };
  Viewer.prototype.stop = function () {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.btnPlay) this.btnPlay.textContent = "Play";
  };
  Viewer.prototype.reveal = function () { this.revealed = true; this.draw(); };
  Viewer.prototype.setPredict = function (on) {
    this.predict = !!on; this.revealed = false; this.predictBox.checked = this.predict; this.draw();
  };

  Viewer.prototype.drawPanel = function () {
    var s = this.steps[this.k], hide = this.predict && !this.revealed;
    var total = this.steps.length;
    this.root.setAttribute("data-step", String(this.k));
    this.root.setAttribute("data-predict", this.predict ? "1" : "0");
    this.root.setAttribute("data-revealed", this.revealed ? "1" : "0");
    this.progress.textContent = total ? (this.k + 1) + " / " + total : "";
    this.btnReveal.style.display = this.predict ? "" : "none";
    this.btnReveal.disabled = !hide;
    var clear = function (e) { while (e.firstChild) e.removeChild(e.firstChild); };
    clear(this.arrived); clear(this.sent);
    if (!s) {
      this.stepTitle.textContent = total ? (this.k < 0 ? "Before backward: " + total + " steps to go. Press → or Next." : "") : "";
      this.hiddenNote.style.display = "none";
    } else {
      this.stepTitle.textContent = s.title;
      var self = this;
      s.arrived.forEach(function (line) { self.arrived.appendChild(el("div", null, line)); });
      s.sent.forEach(function (line) { self.sent.appendChild(el("div", null, line)); });
      this.sent.style.display = hide ? "none" : "";
      this.hiddenNote.style.display = hide ? "" : "none";
    }
    this.printedBox.style.display = hide ? "none" : "";
    this.captionBox.style.display = hide ? "none" : "";
    if (this.selected !== null) this.drawCard();
  };

  // -- the node card ----------------------------------------------------------------------

  Viewer.prototype.select = function (id) {
    var i = this.byId[id];
    this.selected = i === undefined ? null : i;
    this.root.setAttribute("data-selected", this.selected === null ? "" : id);
    this.drawCard();
    this.draw();
    if (this.opts.onSelect) {
      var n = this.selected === null ? null : this.nodes[this.selected];
      this.opts.onSelect(n ? { id: n.id, kind: n.kind, label: n.label, name: n.name, module: n.module } : null);
    }
  };
  Viewer.prototype.drawCard = function () {
    var c = this.card, self = this;
    while (c.firstChild) c.removeChild(c.firstChild);
    if (this.selected === null) { c.style.display = "none"; return; }
    c.style.display = "";
    var n = this.nodes[this.selected], known = this.gradShown(this.selected);
    var head = el("div", "glv-card-head");
    head.appendChild(el("h3", null, n.kind === "op" && n.name ? n.label + " → " + n.name : n.label));
    head.appendChild(button("×", "Close the card", function () { self.select(null); self.refocus(); }));
    c.appendChild(head);
    (n.details || []).forEach(function (pair) {
      if (pair[0] === "Gradient" && !known) {
        c.appendChild(el("h4", null, pair[0]));
        c.appendChild(el("p", "glv-hidden", self.predict && !self.revealed && n.reach === self.k ?
          "Hidden until Reveal." : "Not computed yet at this step."));
        return;
      }
      c.appendChild(el("h4", null, pair[0]));
      c.appendChild(el("pre", null, pair[1]));
    });
    if (n.card || n.nocard) {
      c.appendChild(el("h4", null, "Chain rule"));
      if (!known && n.card) c.appendChild(el("p", "glv-hidden", "Shown once this node's gradient is known."));
      else c.appendChild(el(n.card ? "pre" : "p", n.card ? "glv-chain" : "glv-hidden", n.card || n.nocard));
    }
    // the card sits beside the graph: scroll the side panel (never the page) to its top
    var top = c.getBoundingClientRect().top - this.side.getBoundingClientRect().top;
    if (top < 0 || top > this.side.clientHeight - 80) this.side.scrollTop += top - 8;
  };

  // -- drawing ------------------------------------------------------------------------------

  Viewer.prototype.draw = function () {
    this.drawPanel();
    if (this.renderer === "svg") this.drawSvg(); else this.requestCanvas();
    this.drawn = (this.drawn || 0) + 1;
    this.root.setAttribute("data-drawn", String(this.drawn));
  };

  Viewer.prototype.currentNode = function () {
    var s = this.steps[this.k];
    return s ? s.node : -1;
  };

  Viewer.prototype.buildSvg = function () {
    var self = this;
    this.svg = svg("svg", { "class": "glv-svg", width: "100%", height: "100%" });
    var defs = svg("defs", {});
    var marker = svg("marker", { id: "glv-arrow-" + this.uid, viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "9", markerHeight: "9", markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" });
    marker.appendChild(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#777" }));
    defs.appendChild(marker);
    this.svg.appendChild(defs);
    this.world = svg("g", {});
    this.svg.appendChild(this.world);
    var ge = svg("g", { "class": "glv-edges" }), gn = svg("g", { "class": "glv-nodes" });
    this.world.appendChild(ge); this.world.appendChild(gn);
    this.edgeEls = this.edges.map(function (e) {
      var u = self.nodes[e.u], v = self.nodes[e.v];
      var x0 = u.x, y0 = u.y + u.h / 2, x1 = v.x, y1 = v.y - v.h / 2, my = (y0 + y1) / 2;
      var g = svg("g", {});
      var p = svg("path", { d: "M" + x0 + "," + y0 + " C" + x0 + "," + my + " " + x1 + "," + my + " " + x1 + "," + y1,
        "class": "glv-edge", "marker-end": "url(#glv-arrow-" + self.uid + ")" });
      g.appendChild(p);
      var label = svg("text", { x: (x0 + x1) / 2 + 6, y: my, "class": "glv-edge-label" });
      g.appendChild(label);
      if (e.count > 1) {
        var mult = svg("text", { x: (x0 + x1) / 2 - 6, y: my - 4, "class": "glv-mult", "text-anchor": "end" });
        mult.textContent = "×" + e.count;
        g.appendChild(mult);
      }
      ge.appendChild(g);
      return { path: p, label: label };
    });
    this.nodeEls = this.nodes.map(function (n, i) {
      var g = svg("g", { transform: "translate(" + (n.x - n.w / 2) + "," + (n.y - n.h / 2) + ")", "class": "glv-node glv-" + n.kind });
      g.setAttribute("data-node", n.id);
      var r = svg("rect", { width: n.w, height: n.h, rx: 6, ry: 6 });
      g.appendChild(r);
      var texts = n.lines.map(function (line, j) {
        var t = svg("text", { x: 10, y: 6 + (j + 0.78) * (self.data.line || 17), "class": j === 0 ? "glv-l0" : "glv-l" });
        t.textContent = line;
        g.appendChild(t);
        return t;
      });
      gn.appendChild(g);
      void i;
      return { g: g, rect: r, texts: texts };
    });
    this.stage.appendChild(this.svg);
  };

  Viewer.prototype.drawSvg = function () {
    var self = this, cur = this.currentNode(), step = this.steps[this.k];
    var receivers = {};
    if (step) step.receivers.forEach(function (i) { receivers[i] = true; });
    // touch only what changed since the last draw: a step changes a handful of nodes
    this.nodeEls.forEach(function (ne, i) {
      var lines = self.nodeLines(i), grad = lines[lines.length - 1];
      var stroke = "#555", width = 1;
      if (self.outline[i]) { stroke = self.outline[i]; width = 4; }
      if (i === cur) { stroke = "#1f6feb"; width = 5; }
      if (i === self.selected) { stroke = "#7b2cbf"; width = 5; }
      var receiver = !!receivers[i] && self.edgesRevealed(), pending = !self.gradShown(i);
      var key = grad + "|" + self.fills[i] + "|" + stroke + width + "|" + receiver + pending;
      if (ne.key === key) return;
      ne.key = key;
      ne.texts[ne.texts.length - 1].textContent = grad;
      ne.rect.setAttribute("fill", self.fills[i]);
      ne.g.classList.toggle("glv-dark", dark(self.fills[i]));
      ne.rect.style.stroke = stroke;
      ne.rect.style.strokeWidth = width + "px";
      ne.g.classList.toggle("glv-receiver", receiver);
      ne.g.classList.toggle("glv-pending", pending);
    });
    this.edges.forEach(function (e, j) {
      var ee = self.edgeEls[j], now = !!step && e.v === step.node;  // sent by this step
      var text = now && e.grad && self.edgeShown(e) ? e.grad : "";
      var key = now + "|" + text;
      if (ee.key === key) return;
      ee.key = key;
      ee.path.classList.toggle("glv-now", now);
      ee.label.textContent = text;
    });
    this.applyView();
  };
  Viewer.prototype.edgesRevealed = function () { return !this.predict || this.revealed; };

  Viewer.prototype.buildCanvas = function () {
    this.canvas = el("canvas", "glv-canvas");
    this.stage.appendChild(this.canvas);
    this.ctx = this.canvas.getContext("2d");
    this.resize();
  };
  Viewer.prototype.requestCanvas = function () {
    var self = this;
    if (this.frame) return;
    this.frame = requestAnimationFrame(function () { self.frame = null; self.drawCanvas(); });
  };
  Viewer.prototype.drawCanvas = function () {
    var started = performance.now();
    var c = this.canvas, ctx = this.ctx, dpr = window.devicePixelRatio || 1;
    var W = c.width / dpr, H = c.height / dpr, v = this.view, self = this;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, W, H);
    ctx.setTransform(dpr * v.s, 0, 0, dpr * v.s, dpr * v.x, dpr * v.y);
    var x0 = -v.x / v.s, y0 = -v.y / v.s, x1 = x0 + W / v.s, y1 = y0 + H / v.s;
    var cur = this.currentNode(), nodes = this.nodes;
    var text = v.s * (this.data.font || 13) >= 6, line = this.data.line || 17, tiny = v.s < 0.02;
    ctx.lineWidth = 1 / v.s;
    ctx.strokeStyle = "#999";
    ctx.beginPath();
    var now = [];
    for (var j = 0; j < this.edges.length; j++) {
      var e = this.edges[j], u = nodes[e.u], w = nodes[e.v];
      var ey0 = u.y + u.h / 2, ey1 = w.y - w.h / 2;
      if (Math.max(ey0, ey1) < y0 || Math.min(ey0, ey1) > y1 || Math.max(u.x, w.x) < x0 || Math.min(u.x, w.x) > x1) continue;
      if (cur >= 0 && e.v === cur) { now.push(e); continue; }
      // zoomed far out an edge shorter than a pixel is hidden under its boxes anyway
      if (tiny && Math.abs(w.x - u.x) * v.s < 1 && Math.abs(ey1 - ey0) * v.s < 1) continue;
      ctx.moveTo(u.x, ey0); ctx.lineTo(w.x, ey1);
    }
    ctx.stroke();
    if (now.length) {
      ctx.strokeStyle = "#e8590c"; ctx.lineWidth = 3 / v.s; ctx.beginPath();
      now.forEach(function (e) { var u = nodes[e.u], w = nodes[e.v]; ctx.moveTo(u.x, u.y + u.h / 2); ctx.lineTo(w.x, w.y - w.h / 2); });
      ctx.stroke();
    }
    ctx.font = "bold " + (this.data.font || 13) + "px " + MONO;
    ctx.textBaseline = "alphabetic";
    if (!text) {
      // zoomed out: one path per fill colour, one stroke, then the marked boxes on top
      var groups = {}, marked = [], seen = {};
      for (var q = 0; q < nodes.length; q++) {
        var m = nodes[q];
        if (m.x + m.w / 2 < x0 || m.x - m.w / 2 > x1 || m.y + m.h / 2 < y0 || m.y - m.h / 2 > y1) continue;
        if (this.outline[q] || q === cur || q === this.selected) marked.push(q);
        if (tiny) {  // boxes of a pixel or two: one per pixel and colour is enough
          var cell = Math.round(m.x * v.s) + "," + Math.round(m.y * v.s) + this.fills[q];
          if (seen[cell]) continue;
          seen[cell] = true;
        }
        (groups[this.fills[q]] = groups[this.fills[q]] || []).push(m);
      }
      ctx.strokeStyle = "#555";
      ctx.lineWidth = 1 / v.s;
      var all = new Path2D();
      Object.keys(groups).forEach(function (colour) {
        var path = new Path2D();
        groups[colour].forEach(function (m) { path.rect(m.x - m.w / 2, m.y - m.h / 2, m.w, m.h); });
        ctx.fillStyle = colour;
        ctx.fill(path);
        all.addPath(path);
      });
      if (!tiny) ctx.stroke(all);  // at a pixel a box, outlines would paint everything grey
      marked.forEach(function (q) {
        var m = nodes[q], colour = q === self.selected ? "#7b2cbf" : q === cur ? "#1f6feb" : self.outline[q];
        ctx.strokeStyle = colour;
        ctx.lineWidth = 4 / v.s;
        ctx.strokeRect(m.x - m.w / 2, m.y - m.h / 2, m.w, m.h);
      });
    }
    for (var i = 0; text && i < nodes.length; i++) {
      var n = nodes[i];
      if (n.x + n.w / 2 < x0 || n.x - n.w / 2 > x1 || n.y + n.h / 2 < y0 || n.y - n.h / 2 > y1) continue;
      var bx = n.x - n.w / 2, by = n.y - n.h / 2;
      ctx.fillStyle = this.fills[i];
      ctx.fillRect(bx, by, n.w, n.h);
      var stroke = "#555", width = 1;
      if (this.outline[i]) { stroke = this.outline[i]; width = 4; }
      if (i === cur) { stroke = "#1f6feb"; width = 5; }
      if (i === this.selected) { stroke = "#7b2cbf"; width = 5; }
      ctx.strokeStyle = stroke;
      ctx.lineWidth = width;
      ctx.strokeRect(bx, by, n.w, n.h);
      var lines = this.nodeLines(i);
      ctx.fillStyle = dark(this.fills[i]) ? "#fff" : "#111";
      for (var l = 0; l < lines.length; l++) {
        ctx.font = (l === 0 ? "bold " : "") + (this.data.font || 13) + "px " + MONO;
        ctx.fillText(lines[l], bx + 10, by + 6 + (l + 0.78) * line);
      }
    }
    if (text && now.length) {
      ctx.font = "12px " + MONO; ctx.fillStyle = "#b03030";
      now.forEach(function (e) {
        if (!e.grad || !self.edgeShown(e)) return;
        var u = nodes[e.u], w = nodes[e.v];
        ctx.fillText(e.grad, (u.x + w.x) / 2 + 6, (u.y + u.h / 2 + w.y - w.h / 2) / 2);
      });
    }
    this.drawMs = performance.now() - started;
    this.root.setAttribute("data-painted", String((this.painted = (this.painted || 0) + 1)));
  };
  var MONO = "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace";

  // -- view: pan, zoom, fit, centre ------------------------------------------------------

  Viewer.prototype.bounds = function () {
    var b = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
    this.nodes.forEach(function (n) {
      b.x0 = Math.min(b.x0, n.x - n.w / 2); b.x1 = Math.max(b.x1, n.x + n.w / 2);
      b.y0 = Math.min(b.y0, n.y - n.h / 2); b.y1 = Math.max(b.y1, n.y + n.h / 2);
    });
    if (!this.nodes.length) b = { x0: 0, y0: 0, x1: 1, y1: 1 };
    return b;
  };
  Viewer.prototype.size = function () {
    return { w: this.stage.clientWidth || 600, h: this.stage.clientHeight || 400 };
  };
  Viewer.prototype.fit = function (whole) {
    var b = this.bounds(), sz = this.size(), pad = 24;
    var s = Math.min((sz.w - 2 * pad) / (b.x1 - b.x0), (sz.h - 2 * pad) / (b.y1 - b.y0), 2.2);
    if (s < 0.3 && !whole) {
      // too big to read whole: a readable scale, centred on the output end
      s = 0.8;
      this.view = { s: s, x: sz.w / 2 - ((b.x0 + b.x1) / 2) * s, y: sz.h - pad - b.y1 * s };
    } else {
      this.view = { s: s, x: sz.w / 2 - ((b.x0 + b.x1) / 2) * s, y: sz.h / 2 - ((b.y0 + b.y1) / 2) * s };
    }
    this.applyView();
  };
  Viewer.prototype.centerOn = function (id, zoom) {
    var i = this.byId[id];
    if (i === undefined) return false;
    var n = this.nodes[i], sz = this.size();
    if (zoom && this.view.s < 0.8) this.view.s = 1;
    this.view.x = sz.w / 2 - n.x * this.view.s;
    this.view.y = sz.h / 2 - n.y * this.view.s;
    this.applyView();
    return true;
  };
  Viewer.prototype.keepInView = function (id) {
    var n = this.nodes[this.byId[id]], sz = this.size(), v = this.view;
    var sx = n.x * v.s + v.x, sy = n.y * v.s + v.y;
    if (sx < 40 || sx > sz.w - 40 || sy < 40 || sy > sz.h - 40) this.centerOn(id, false);
  };
  Viewer.prototype.zoomBy = function (f, cx, cy) {
    var sz = this.size(), v = this.view;
    if (cx === undefined) { cx = sz.w / 2; cy = sz.h / 2; }
    var s = Math.max(0.0005, Math.min(8, v.s * f));
    v.x = cx - (cx - v.x) * (s / v.s);
    v.y = cy - (cy - v.y) * (s / v.s);
    v.s = s;
    this.applyView();
  };
  Viewer.prototype.panBy = function (dx, dy) { this.view.x += dx; this.view.y += dy; this.applyView(); };
  Viewer.prototype.applyView = function () {
    var v = this.view;
    if (this.renderer === "svg") {
      this.world.setAttribute("transform", "translate(" + v.x + "," + v.y + ") scale(" + v.s + ")");
    } else this.requestCanvas();
  };
  Viewer.prototype.resize = function () {
    if (this.canvas) {
      var sz = this.size(), dpr = window.devicePixelRatio || 1;
      this.canvas.width = Math.round(sz.w * dpr); this.canvas.height = Math.round(sz.h * dpr);
      this.canvas.style.width = sz.w + "px"; this.canvas.style.height = sz.h + "px";
      this.requestCanvas();
    }
  };
  Viewer.prototype.setPresenter = function (on) {
    this.presenter = !!on;
    this.root.classList.toggle("glv-presenter", this.presenter);
    this.btnPresent.textContent = this.presenter ? "Exit presenter" : "Presenter";
    this.root.setAttribute("data-presenter", this.presenter ? "1" : "0");
    var self = this;
    this.resize();
    this.fit();
    requestAnimationFrame(function () { self.resize(); self.fit(); });
  };
  Viewer.prototype.fullscreen = function () {
    var self = this;
    if (document.fullscreenElement) { document.exitFullscreen(); return; }
    if (this.root.requestFullscreen) {
      this.root.requestFullscreen().then(function () { self.resize(); self.fit(); }, function () { self.setPresenter(true); });
    } else this.setPresenter(true);
  };

  Viewer.prototype.nodeAt = function (clientX, clientY) {
    var r = this.stage.getBoundingClientRect(), v = this.view;
    var x = (clientX - r.left - v.x) / v.s, y = (clientY - r.top - v.y) / v.s;
    for (var i = this.nodes.length - 1; i >= 0; i--) {
      var n = this.nodes[i];
      if (Math.abs(x - n.x) <= n.w / 2 && Math.abs(y - n.y) <= n.h / 2) return i;
    }
    return -1;
  };

  Viewer.prototype.bindPointer = function () {
    var self = this, stage = this.stage, drag = null;
    stage.addEventListener("wheel", function (ev) {
      ev.preventDefault();
      var r = stage.getBoundingClientRect();
      self.zoomBy(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    stage.addEventListener("pointerdown", function (ev) {
      drag = { x: ev.clientX, y: ev.clientY, moved: 0 };
      self.refocus();
    });
    window.addEventListener("pointermove", function (ev) {
      if (drag) {
        var dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
        drag.moved += Math.abs(dx) + Math.abs(dy);
        drag.x = ev.clientX; drag.y = ev.clientY;
        if (drag.moved > 3) { self.panBy(dx, dy); stage.classList.add("glv-dragging"); }
        return;
      }
      if (!stage.contains(origin(ev))) { self.tip.style.display = "none"; return; }
      var i = self.nodeAt(ev.clientX, ev.clientY);
      if (i < 0) { self.tip.style.display = "none"; return; }
      var r = stage.getBoundingClientRect();
      while (self.tip.firstChild) self.tip.removeChild(self.tip.firstChild);
      self.nodeLines(i).forEach(function (line) { self.tip.appendChild(el("div", null, line)); });
      var n = self.nodes[i];
      if (n.module && n.kind !== "module") self.tip.appendChild(el("div", "glv-dim", "module " + n.module + (n.module_type ? " (" + n.module_type + ")" : "")));
      self.tip.appendChild(el("div", "glv-dim", "click for its card"));
      self.tip.style.display = "block";
      self.tip.style.left = Math.min(ev.clientX - r.left + 14, r.width - 260) + "px";
      self.tip.style.top = (ev.clientY - r.top + 14) + "px";
    });
    window.addEventListener("pointerup", function (ev) {
      if (!drag) return;
      var click = drag.moved <= 3;
      drag = null;
      stage.classList.remove("glv-dragging");
      if (click && stage.contains(origin(ev))) {
        var i = self.nodeAt(ev.clientX, ev.clientY);
        if (i >= 0) self.select(self.nodes[i].id);
      }
    });
  };

  Viewer.prototype.key = function (ev) {
    var t = origin(ev), tag = t && t.tagName;
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    if (tag === "INPUT" && t.type !== "checkbox" || tag === "TEXTAREA" || tag === "SELECT" || (t && t.isContentEditable)) return;
    var k = ev.key, handled = true;
    if (tag === "BUTTON" && (k === "Enter" || k === " ")) return; // a button reached by Tab clicks
    if (!this.steps.length && k !== "Escape" && k !== "r" && k !== "R") return;
    if (k === "ArrowRight" || k === "PageDown" || (k === " " && !ev.shiftKey)) this.go(this.k + 1);
    else if (k === "ArrowLeft" || k === "PageUp" || (k === " " && ev.shiftKey)) this.go(this.k - 1);
    else if (k === "Home") { this.stop(); this.go(-1); }
    else if (k === "End") { this.stop(); this.go(this.steps.length - 1); }
    else if ((k === "r" || k === "R" || k === "Enter") && this.predict) this.reveal();
    else if (k === "Escape" && this.presenter) this.setPresenter(false);
    else handled = false;
    if (handled) { ev.preventDefault(); ev.stopPropagation(); }
  };

  document.addEventListener("keydown", function (ev) {
    var target = active && active.root.isConnected ? active : null;
    if (!target) {
      for (var i = instances.length - 1; i >= 0; i--) if (instances[i].root.isConnected) { target = instances[i]; break; }
    }
    if (target) target.key(ev);
  });

  var uid = 0;
  function mount(element, payload, options) {
    if (!element) throw new Error("GradLabViewer.mount: no element to mount in");
    if (typeof payload === "string") payload = JSON.parse(payload);
    var view = Object.create(Viewer.prototype);
    view.uid = ++uid;
    Viewer.call(view, element, payload, options);
    instances.push(view);
    active = view;
    var api = {
      next: function () { view.go(view.k + 1); },
      prev: function () { view.go(view.k - 1); },
      reset: function () { view.stop(); view.go(-1); },
      goTo: function (k) { view.go(k); },
      play: function () { if (!view.timer) view.togglePlay(); },
      pause: function () { view.stop(); },
      reveal: function () { view.reveal(); },
      setPredict: function (on) { view.setPredict(on); },
      setPresenter: function (on) { view.setPresenter(on); },
      setColor: function (c) { view.color = c; view.colorSel.value = c; view.applyColor(); view.draw(); },
      select: function (id) { view.select(id); },
      centerOn: function (id) { return view.centerOn(id, true); },
      // the whole graph; a graph too big to read whole opens at a readable zoom unless `whole`
      fit: function (whole) { view.fit(!!whole); },
      panBy: function (dx, dy) { view.panBy(dx, dy); },
      zoomBy: function (f) { view.zoomBy(f); },
      state: function () {
        return { step: view.k, steps: view.steps.length, predict: view.predict, revealed: view.revealed,
          selected: view.selected === null ? null : view.nodes[view.selected].id, presenter: !!view.presenter,
          renderer: view.renderer, view: { s: view.view.s, x: view.view.x, y: view.view.y },
          drawMs: view.drawMs === undefined ? null : view.drawMs };
      },
      destroy: function () {
        view.stop();
        if (view.resizer) view.resizer.disconnect();
        while (element.firstChild) element.removeChild(element.firstChild);
        instances = instances.filter(function (v) { return v !== view; });
        if (active === view) active = null;
      },
    };
    element.glv = api;
    return api;
  }

  window.GradLabViewer = { mount: mount, version: 1, instances: function () { return instances.slice(); } };
})();
