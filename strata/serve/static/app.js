// The page of `strata serve`: one WebSocket to the server (see strata/serve/app.py).
// The server checks, lays out and draws; the page shows and sends clicks and edits.
(function () {
  const $ = (id) => document.getElementById(id);
  const state = {file: null, toggled: new Set(), after: false, info: {}, view: null, ws: null, editor: null, timer: null};

  function send(msg) { if (state.ws && state.ws.readyState === 1) state.ws.send(JSON.stringify(msg)); }
  function viewMsg(type) { return {type, toggled: [...state.toggled], after: state.after}; }
  function status(s) { $("status").textContent = s; }

  function connect() {
    const ws = new WebSocket(`ws://${location.host}/ws`);
    state.ws = ws;
    ws.onopen = () => { status("connected"); if (state.file) send({...viewMsg("open"), file: state.file}); if (state.runs) send({type: "run", names: state.runs}); };
    ws.onclose = () => { status("disconnected: is strata serve still running?"); setTimeout(connect, 1000); };
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === "text") onText(m);
      else if (m.type === "view") onView(m);
      else if (m.type === "runs") onRuns(m);
      else if (m.type === "sample") onSample(m);
      else if (m.type === "compare") onCompare(m);
      else if (m.type === "error") status(m.message);
    };
  }

  function onText(m) {
    if (!state.editor) {
      const lang = /\.ya?ml$/.test(m.file) ? "yaml" : "arch";
      state.editor = StrataEditor.create($("editor"), {doc: m.text, language: lang, onChange: (text) => {
        clearTimeout(state.timer);  // a burst of keys is one edit; the server checks only the newest
        state.timer = setTimeout(() => { status("checking…"); send({...viewMsg("edit"), text}); }, 50);
      }});
    } else StrataEditor.setText(state.editor, m.text);
  }

  function onView(m) {
    state.view = m;
    status(m.diagnostics.length ? `${m.diagnostics.length} problem(s)` : "ok");
    document.body.dataset.problems = m.diagnostics.length;
    if (state.editor) StrataEditor.showDiagnostics(state.editor, m.diagnostics);
    const ul = $("problems");
    ul.innerHTML = "";
    for (const d of m.diagnostics) {
      const li = document.createElement("li");
      li.className = d.severity;
      li.textContent = `${m.file}:${d.line}:${d.col}: ${d.severity}: ${d.message}`;
      li.onclick = () => StrataEditor.gotoLine(state.editor, d.line);
      ul.appendChild(li);
    }
    $("stale").hidden = m.ok;
    if (!m.ok) return;  // keep the last diagram, summary and badges that checked
    $("diagram").innerHTML = m.svg;
    state.info = m.info;
    const tb = $("summary").tBodies[0];
    tb.innerHTML = "";
    for (const r of m.rows) {
      const tr = tb.insertRow();
      for (const c of r) tr.insertCell().textContent = c;
    }
    const t = m.totals;
    $("totals").textContent = `parameters      ${t.parameters.toLocaleString("en-US")} (${t.parameters_human})\n` +
      `FLOPs per token ${t.flops_per_token} forward, ${t.training_flops_per_token} training (T=${t.seq_len})`;
    const p = $("passes");
    p.innerHTML = "";
    for (const x of m.passes) {
      const b = document.createElement("span");
      b.className = "badge" + (x.applied ? " applied" : "");
      b.dataset.pass = x.name;
      const opts = Object.entries(x.options).map(([k, v]) => `${k}=${v}`).join(", ");
      b.textContent = x.applied ? `✓ ${x.report || x.name}` : `${x.name}${opts ? "(" + opts + ")" : ""}`;
      b.title = x.applied ? "applied" : "listed in the spec; not applied in this view";
      p.appendChild(b);
    }
  }

  // ---------------------------------------------------------------- the diagram: fold, hover, jump
  $("diagram").addEventListener("click", (ev) => {
    const tog = ev.target.closest("[data-toggle]");
    const node = ev.target.closest(".node");
    if (tog && (tog.tagName !== "g" || tog.classList.contains("node"))) {
      const k = tog.dataset.toggle;
      state.toggled.has(k) ? state.toggled.delete(k) : state.toggled.add(k);
      send(viewMsg("view"));
      return;
    }
    if (node) {
      const info = state.info[node.dataset.key];
      if (info && info.line && state.editor) StrataEditor.gotoLine(state.editor, info.line);
    }
  });
  $("diagram").addEventListener("mousemove", (ev) => {
    const node = ev.target.closest(".node");
    const tip = $("tip");
    if (!node || !state.info[node.dataset.key]) { tip.hidden = true; return; }
    const info = state.info[node.dataset.key];
    tip.textContent = info.text.replace(/\*\*|`/g, "") + (info.line ? `\n\nspec line ${info.line} (click to go there)` : "");
    tip.hidden = false;
    tip.style.left = Math.min(ev.clientX + 14, innerWidth - 470) + "px";
    tip.style.top = Math.min(ev.clientY + 14, innerHeight - tip.offsetHeight - 8) + "px";
  });
  $("diagram").addEventListener("mouseleave", () => { $("tip").hidden = true; });

  $("after").addEventListener("change", (ev) => {
    state.after = ev.target.checked;
    send(viewMsg("view"));
    if (!$("compare-view").hidden) compare();
  });
  $("file").addEventListener("change", (ev) => openFile(ev.target.value));

  function openFile(name) {
    state.file = name;
    state.toggled.clear();
    if (state.editor) { state.editor.destroy(); state.editor = null; }
    history.replaceState(null, "", "?file=" + encodeURIComponent(name));
    send({...viewMsg("open"), file: name});
  }

  // ---------------------------------------------------------------- runs
  function showTab(which) {
    for (const t of ["spec", "compare", "runs"]) {
      $(t + "-view").hidden = t !== which;
      $("tab-" + t).classList.toggle("on", t === which);
    }
    if (which === "compare") compare();
  }
  $("tab-spec").onclick = () => showTab("spec");
  $("tab-compare").onclick = () => showTab("compare");
  $("tab-runs").onclick = () => showTab("runs");

  // ---------------------------------------------------------------- compare two specs
  function compare() { send({type: "compare", a: $("compare-a").value, b: $("compare-b").value, after: state.after}); }
  $("compare-a").onchange = compare;
  $("compare-b").onchange = compare;
  function onCompare(m) {
    const ths = $("compare-totals").tHead.rows[0].cells;
    ths[1].textContent = m.a.file; ths[2].textContent = m.b.file;
    const tt = $("compare-totals").tBodies[0], tr = $("compare-rows").tBodies[0];
    tt.innerHTML = ""; tr.innerHTML = "";
    $("compare-svg-a").innerHTML = m.a.ok ? m.a.svg : `<p class="error">${m.a.file}: ${m.a.diagnostics.length} problem(s)</p>`;
    $("compare-svg-b").innerHTML = m.b.ok ? m.b.svg : `<p class="error">${m.b.file}: ${m.b.diagnostics.length} problem(s)</p>`;
    if (!m.diff) return;
    const n = (x) => typeof x === "number" ? x.toLocaleString("en-US") : String(x);
    for (const t of m.diff.totals) {
      const r = tt.insertRow();
      for (const c of [t.name, n(t.a), n(t.b), t.ratio === null ? "" : t.ratio + "×"]) r.insertCell().textContent = c;
    }
    for (const row of m.diff.rows) {
      const r = tr.insertRow();
      r.className = row.status;
      r.insertCell().textContent = {same: "", changed: "≠", added: "+", removed: "−"}[row.status];
      for (const side of [row.a, row.b]) for (let i = 0; i < 4; i++) r.insertCell().textContent = side ? side[i] : "";
    }
  }

  function pickRuns() {
    state.runs = [...document.querySelectorAll("#run-list input:checked")].map((i) => i.value);
    send({type: "run", names: state.runs});
  }
  function onRuns(m) {
    drawChart($("chart"), m.runs);
    $("run-settings").textContent = m.runs.map((r) => `${r.name}\n${JSON.stringify(r.settings, null, 2)}`).join("\n\n");
  }

  $("sample-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    $("sample-out").textContent = "generating…";
    $("sample-out").className = "busy";
    send({type: "sample", run: $("sample-run").value, prompt: $("sample-prompt").value,
          tokens: +$("sample-tokens").value, temperature: +$("sample-temperature").value});
  });
  function onSample(m) {
    $("sample-out").className = m.error ? "error" : "done";
    $("sample-out").textContent = m.error ? `${m.run}: ${m.error}` : `${m.run} (${m.seconds} s):\n${m.text}`;
  }

  fetch("/api/files").then((r) => r.json()).then((f) => {
    const sel = $("file");
    for (const s of f.specs) sel.add(new Option(s, s));
    const list = $("run-list");
    f.runs.forEach((r, i) => {
      const l = document.createElement("label");
      l.innerHTML = `<input type="checkbox" value="">`;
      l.firstChild.value = r;
      l.firstChild.checked = i < 8;
      l.firstChild.onchange = pickRuns;
      l.append(" " + r);
      list.appendChild(l);
      $("sample-run").add(new Option(r, r));
    });
    const want = new URLSearchParams(location.search).get("file");
    const first = f.specs.includes(want) ? want : (f.file || f.specs[0]);
    if (first) { sel.value = first; state.file = first; }
    state.runs = f.runs.slice(0, 8);
    for (const id of ["compare-a", "compare-b"]) for (const x of f.specs) $(id).add(new Option(x, x));
    if (f.specs.length > 1) $("compare-b").value = f.specs[1];
    if (!first && f.runs.length) showTab("runs");
    connect();
  });
})();
