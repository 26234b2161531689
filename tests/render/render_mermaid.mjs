// Render Mermaid diagrams with mermaid.js (v11) in headless Chromium, all in one
// browser launch.  Usage: node render_mermaid.mjs IN.json OUT.json [SVG_DIR]
// IN.json: [{"name": "...", "text": "..."}]; OUT.json: [{"name", "ok", "error", "svg_bytes"}].
// An entry is ok when mermaid.parse and mermaid.render succeed and the SVG is not
// mermaid's error diagram.
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(join(process.cwd(), "package.json"));
const { chromium } = require("playwright-core");
const mermaidJs = require.resolve("mermaid/dist/mermaid.min.js");

const [input, output, svgDir] = process.argv.slice(2);
const items = JSON.parse(readFileSync(input, "utf8"));
const profile = mkdtempSync(join(tmpdir(), "strata-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  await page.setContent("<!doctype html><html><body><div id='host'></div></body></html>");
  await page.addScriptTag({ path: mermaidJs });
  const results = await page.evaluate(async (items) => {
    mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
    const out = [];
    let i = 0;
    for (const it of items) {
      const r = { name: it.name, ok: false, error: null, svg_bytes: 0, svg: null };
      try {
        await mermaid.parse(it.text);
        const { svg } = await mermaid.render(`d${i++}`, it.text);
        r.svg_bytes = svg.length;
        if (svg.includes('aria-roledescription="error"') || svg.includes("Syntax error in text")) {
          r.error = "mermaid drew its error diagram";
        } else {
          r.ok = true;
          // mermaid returns HTML-serialized SVG (<br> unclosed); re-serialize as XML so
          // the file opens standalone.
          const host = document.createElement("div");
          host.innerHTML = svg;
          r.svg = new XMLSerializer().serializeToString(host.firstElementChild);
        }
      } catch (e) {
        r.error = String((e && e.message) || e);
      }
      out.push(r);
    }
    return out;
  }, items);
  if (svgDir) mkdirSync(svgDir, { recursive: true });
  for (const r of results) {
    if (svgDir && r.svg) writeFileSync(join(svgDir, r.name.replace(/[^\w.-]/g, "_") + ".svg"), r.svg);
    delete r.svg;
  }
  writeFileSync(output, JSON.stringify(results, null, 1));
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
