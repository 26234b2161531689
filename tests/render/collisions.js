// Geometry of a drawn diagram, in the browser: what a reader sees collide.
// Loaded into the page by measure.mjs; `strataCollisions(svg, renderer)` reads the
// rendered SVG (mermaid.js output, or Graphviz `dot -Tsvg` output) and returns
//   {items: {nodes, titles, labels, edges}, collisions: [{kind, a, b}]}
// kind is one of
//   node-node    two node boxes overlap
//   title-node   a cluster title (or the drawing's title) overlaps a node box
//   title-title  two titles overlap
//   edge-title   an edge's path passes through a title's text
//   label-node   an edge label sits on a node box
//   label-title  an edge label sits on a title
// All boxes are client rectangles (the browser's layout, fonts included), shrunk
// by SLACK px so that boxes that only touch do not count.
(() => {
  const SLACK = 1;
  const STEP = 3; // px between samples along an edge path

  const rect = (el) => {
    const r = el.getBoundingClientRect();
    return { x0: r.left, y0: r.top, x1: r.right, y1: r.bottom };
  };
  const empty = (r) => r.x1 - r.x0 < 1 || r.y1 - r.y0 < 1;
  const union = (rs) => rs.reduce((a, r) => ({ x0: Math.min(a.x0, r.x0), y0: Math.min(a.y0, r.y0),
                                              x1: Math.max(a.x1, r.x1), y1: Math.max(a.y1, r.y1) }));
  const overlap = (a, b) => a.x0 + SLACK < b.x1 - SLACK && b.x0 + SLACK < a.x1 - SLACK
    && a.y0 + SLACK < b.y1 - SLACK && b.y0 + SLACK < a.y1 - SLACK;
  const inside = (p, r) => p.x > r.x0 + SLACK && p.x < r.x1 - SLACK && p.y > r.y0 + SLACK
    && p.y < r.y1 - SLACK;
  const textOf = (el) => (el.textContent || "").replace(/\s+/g, " ").trim().slice(0, 60);

  // Points along a path, in client coordinates.
  function samples(path) {
    const m = path.getScreenCTM();
    const len = path.getTotalLength();
    const n = Math.max(2, Math.ceil(len / STEP));
    const out = [];
    for (let i = 0; i <= n; i++) {
      const p = path.getPointAtLength((len * i) / n);
      out.push(new DOMPoint(p.x, p.y).matrixTransform(m));
    }
    return out;
  }

  function mermaidItems(svg) {
    const nodes = [...svg.querySelectorAll("g.node")].map((g) => ({
      id: (g.id.match(/^flowchart-(.+)-\d+$/) || [null, g.id])[1], text: textOf(g), r: rect(g) }));
    const titles = [...svg.querySelectorAll("g.cluster")].map((g) => {
      const label = g.querySelector(".cluster-label .nodeLabel, .cluster-label text, .cluster-label");
      return { id: g.id, text: textOf(g.querySelector(".cluster-label") || g), r: rect(label) };
    });
    const heading = svg.querySelector("text.flowchartTitleText");
    if (heading) titles.push({ id: "title", text: textOf(heading), r: rect(heading) });
    const labels = [...svg.querySelectorAll("g.edgeLabel")].map((g) => {
      const inner = g.querySelector(".edgeLabel p, span.edgeLabel, text") || g;
      return { id: g.querySelector("[data-id]")?.getAttribute("data-id") || "", text: textOf(g),
               r: rect(inner) };
    });
    const edges = [...svg.querySelectorAll("path.flowchart-link")].map((p) => ({
      id: p.getAttribute("data-id") || p.id, path: p }));
    return { nodes, titles, labels, edges };
  }

  function graphvizItems(svg) {
    const title = (g) => textOf(g.querySelector(":scope > title"));
    const nodes = [...svg.querySelectorAll("g.node")].map((g) => {
      const shapes = [...g.querySelectorAll(":scope > path, :scope > polygon, :scope > ellipse")];
      const texts = [...g.querySelectorAll("text")];
      return { id: title(g), text: texts.map(textOf).join(" "),
               r: union([...shapes, ...texts].map(rect)) };
    });
    const titles = [...svg.querySelectorAll("g.cluster")].map((g) => {
      const texts = [...g.querySelectorAll(":scope > text")];
      return texts.length ? { id: title(g), text: texts.map(textOf).join(" "),
                              r: union(texts.map(rect)) } : null;
    }).filter(Boolean);
    const top = [...svg.querySelectorAll("g.graph > text")];
    if (top.length) titles.push({ id: "title", text: top.map(textOf).join(" "),
                                  r: union(top.map(rect)) });
    const labels = [];
    const edges = [];
    for (const g of svg.querySelectorAll("g.edge")) {
      const texts = [...g.querySelectorAll("text")];
      if (texts.length) labels.push({ id: title(g), text: texts.map(textOf).join(" "),
                                      r: union(texts.map(rect)) });
      for (const p of g.querySelectorAll(":scope > path")) edges.push({ id: title(g), path: p });
    }
    return { nodes, titles, labels, edges };
  }

  // A coarse grid over boxes, so that n boxes against m points is not n * m.
  function grid(boxes, cell = 64) {
    const cells = new Map();
    boxes.forEach((b, i) => {
      for (let x = Math.floor(b.r.x0 / cell); x <= Math.floor(b.r.x1 / cell); x++) {
        for (let y = Math.floor(b.r.y0 / cell); y <= Math.floor(b.r.y1 / cell); y++) {
          const k = `${x},${y}`;
          if (!cells.has(k)) cells.set(k, []);
          cells.get(k).push(i);
        }
      }
    });
    const near = (r) => {
      const out = new Set();
      for (let x = Math.floor(r.x0 / cell); x <= Math.floor(r.x1 / cell); x++) {
        for (let y = Math.floor(r.y0 / cell); y <= Math.floor(r.y1 / cell); y++) {
          for (const i of cells.get(`${x},${y}`) || []) out.add(i);
        }
      }
      return [...out];
    };
    return { near, at: (p) => near({ x0: p.x, y0: p.y, x1: p.x, y1: p.y }) };
  }

  window.strataCollisions = (svg, renderer) => {
    const items = renderer === "mermaid" ? mermaidItems(svg) : graphvizItems(svg);
    // nothing to collide with: an empty box, or a blank title (a subgraph whose title
    // strata draws as a node of its own)
    for (const k of ["nodes", "titles", "labels"]) {
      items[k] = items[k].filter((b) => !empty(b.r) && (k !== "titles" || b.text));
    }
    const collisions = [];
    const add = (kind, a, b) => collisions.push({ kind, a: a.text || a.id, b: b.text || b.id });
    const pairs = (kind, xs, ys, same) => {
      const idx = grid(ys);
      xs.forEach((a, i) => {
        for (const j of idx.near(a.r)) {
          if (same && j <= i) continue;
          if (overlap(a.r, ys[j].r)) add(kind, a, ys[j]);
        }
      });
    };
    pairs("node-node", items.nodes, items.nodes, true);
    pairs("title-node", items.titles, items.nodes, false);
    pairs("title-title", items.titles, items.titles, true);
    pairs("label-node", items.labels, items.nodes, false);
    pairs("label-title", items.labels, items.titles, false);
    const titleGrid = grid(items.titles);
    for (const e of items.edges) {
      const pr = rect(e.path);
      const touches = (r) => pr.x0 <= r.x1 && r.x0 <= pr.x1 && pr.y0 <= r.y1 && r.y0 <= pr.y1;
      if (!titleGrid.near(pr).some((j) => touches(items.titles[j].r))) {
        continue; // the path's bounding box misses every title: no need to sample it
      }
      const hit = new Set();
      for (const p of samples(e.path)) {
        for (const j of titleGrid.at(p)) {
          if (!hit.has(j) && inside(p, items.titles[j].r)) hit.add(j);
        }
      }
      for (const j of hit) add("edge-title", { text: `edge ${e.id}` }, items.titles[j]);
    }
    const strip = (b) => ({ id: b.id, text: b.text, r: b.r });
    return {
      items: { nodes: items.nodes.map(strip), titles: items.titles.map(strip),
               labels: items.labels.map(strip), edges: items.edges.length },
      collisions,
    };
  };
})();
