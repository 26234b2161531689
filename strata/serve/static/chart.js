// Loss curves as a hand-written SVG: step on x, loss on y, one colour per run,
// train solid, validation dashed with dots.  drawChart(element, runs) where
// runs = [{name, train: [[step, loss]...], val: [[step, loss]...]}].
(function () {
  const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
  const W = 720, H = 380, L = 56, R = 16, T = 16, B = 40;

  function ticks(lo, hi, n) {
    const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n || 1)));
    const s = [1, 2, 5, 10].map((m) => m * step).find((x) => (hi - lo) / x <= n) || step * 10;
    const out = [];
    for (let v = Math.ceil(lo / s) * s; v <= hi + 1e-12; v += s) out.push(+v.toPrecision(6));
    return out;
  }

  window.drawChart = function (el, runs) {
    const pts = runs.flatMap((r) => r.train.concat(r.val));
    if (!pts.length) { el.innerHTML = "<p>no metrics yet: the chart grows as metrics.jsonl does</p>"; return; }
    let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
    let y0 = Math.min(...pts.map((p) => p[1])), y1 = Math.max(...pts.map((p) => p[1]));
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
    const X = (v) => L + (v - x0) / (x1 - x0) * (W - L - R);
    const Y = (v) => T + (1 - (v - y0) / (y1 - y0)) * (H - T - B);
    const parts = [`<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="${W}" height="${H}">`];
    for (const v of ticks(y0, y1, 6)) parts.push(`<line x1="${L}" x2="${W - R}" y1="${Y(v)}" y2="${Y(v)}" stroke="#eee"/><text x="${L - 6}" y="${Y(v) + 4}" text-anchor="end" font-size="11">${v}</text>`);
    for (const v of ticks(x0, x1, 8)) parts.push(`<text x="${X(v)}" y="${H - B + 16}" text-anchor="middle" font-size="11">${v}</text>`);
    parts.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#999"/>`);
    parts.push(`<text x="${(L + W) / 2}" y="${H - 6}" text-anchor="middle" font-size="12">step</text>`);
    parts.push(`<text transform="translate(14 ${(T + H - B) / 2}) rotate(-90)" text-anchor="middle" font-size="12">loss</text>`);
    runs.forEach((r, i) => {
      const c = COLOURS[i % COLOURS.length];
      const line = (ps) => ps.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
      if (r.train.length) parts.push(`<path class="curve train" data-run="${r.name}" data-points="${r.train.length}" d="${line(r.train)}" stroke="${c}" fill="none" stroke-width="1.5"/>`);
      if (r.val.length) {
        parts.push(`<path class="curve val" data-run="${r.name}" data-points="${r.val.length}" d="${line(r.val)}" stroke="${c}" fill="none" stroke-dasharray="5 3" stroke-width="1.5"/>`);
        for (const p of r.val) parts.push(`<circle cx="${X(p[0])}" cy="${Y(p[1])}" r="2.5" fill="${c}"/>`);
      }
      parts.push(`<text x="${W - R - 8}" y="${T + 16 + 15 * i}" text-anchor="end" font-size="11" fill="${c}">${r.name.replace(/[<&]/g, "")} — train, - - val</text>`);
    });
    parts.push("</svg>");
    el.innerHTML = parts.join("");
  };
})();
