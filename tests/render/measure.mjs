// Draw diagrams in headless Chromium as a reader sees them and measure their
// collisions (collisions.js), all in one browser launch.
//   node measure.mjs IN.json OUT.json
// IN.json:  [{"name", "renderer": "mermaid" | "graphviz", "text", "png": path | null}]
//           text: Mermaid source (drawn by mermaid.js), or the SVG `dot -Tsvg` wrote.
// OUT.json: [{"name", "ok", "error", "ms", "items", "collisions"}]; ms is the time the
//           browser took to draw it (mermaid.render and insertion; insertion alone for SVG).
import { appendFileSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(join(process.cwd(), "package.json"));
const { chromium } = require("playwright-core");
const mermaidJs = require.resolve("mermaid/dist/mermaid.min.js");
const checker = join(dirname(fileURLToPath(import.meta.url)), "collisions.js");

const [input, output] = process.argv.slice(2);
const items = JSON.parse(readFileSync(input, "utf8"));
const profile = mkdtempSync(join(tmpdir(), "strata-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1600, height: 1200 },
  deviceScaleFactor: 2, // PNGs for print; measurements are in CSS px either way
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  await page.setContent("<!doctype html><html><body style='margin:0;background:white'>" +
                        "<div id='host' style='display:inline-block;padding:8px'></div></body></html>");
  await page.addScriptTag({ path: mermaidJs });
  await page.addScriptTag({ path: checker });
  await page.evaluate(() => mermaid.initialize({ startOnLoad: false, securityLevel: "strict" }));
  const results = [];
  let i = 0;
  for (const it of items) {
    const r = await page.evaluate(async ({ it, i }) => {
      const host = document.getElementById("host");
      host.innerHTML = "";
      const t0 = performance.now();
      try {
        let svgText = it.text;
        if (it.renderer === "mermaid") {
          svgText = (await mermaid.render(`d${i}`, it.text)).svg;
          if (svgText.includes('aria-roledescription="error"')) {
            return { ok: false, error: "mermaid drew its error diagram" };
          }
        }
        host.innerHTML = svgText;
        const svg = host.querySelector("svg");
        if (it.renderer === "mermaid") {
          // mermaid sizes the SVG to its container (width 100%): draw it at its own size.
          const vb = svg.viewBox.baseVal;
          svg.removeAttribute("style");
          svg.setAttribute("width", vb.width);
          svg.setAttribute("height", vb.height);
        }
        svg.getBoundingClientRect(); // lay it out before the clock stops
        const ms = performance.now() - t0;
        return { ok: true, ms, ...window.strataCollisions(svg, it.renderer) };
      } catch (e) {
        return { ok: false, error: String((e && e.message) || e) };
      }
    }, { it, i: i++ });
    if (r.ok && it.png) await page.locator("#host").screenshot({ path: it.png });
    results.push({ name: it.name, error: null, ...r });
    // progress, for a long batch: STRATA_MEASURE_LOG=FILE
    if (process.env.STRATA_MEASURE_LOG) {
      appendFileSync(process.env.STRATA_MEASURE_LOG, `${it.name} ${r.ms?.toFixed(0)} ms\n`);
    }
  }
  writeFileSync(output, JSON.stringify(results));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
