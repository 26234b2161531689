// The editor of `strata serve`: CodeMirror 6 with a .arch mode and YAML, and
// the checker's diagnostics shown inline.  Bundled by build.sh into
// ../static/editor.js (global `StrataEditor`); the page never loads a CDN.
import {EditorState} from "@codemirror/state";
import {EditorView, keymap, lineNumbers, highlightActiveLine} from "@codemirror/view";
import {defaultKeymap, history, historyKeymap} from "@codemirror/commands";
import {StreamLanguage, syntaxHighlighting, defaultHighlightStyle, bracketMatching} from "@codemirror/language";
import {yaml} from "@codemirror/legacy-modes/mode/yaml";
import {setDiagnostics, lintGutter} from "@codemirror/lint";

// .arch: keywords, component calls, numbers, strings, comments.  A stream
// mode (one line at a time) is enough for colouring; the checker parses.
const KEYWORDS = new Set(["model", "block", "stack", "repeat", "residual", "parallel", "seq",
  "branch", "as", "passes", "train", "import", "from", "extends", "true", "false", "on"]);
const arch = {
  name: "arch",
  token(stream) {
    if (stream.eatSpace()) return null;
    if (stream.match("#")) { stream.skipToEnd(); return "comment"; }
    if (stream.match(/^"(?:[^"\\]|\\.)*"?/) || stream.match(/^'(?:[^'\\]|\\.)*'?/)) return "string";
    // [0-9]: the parser's NUMBER is ASCII digits only (the TextMate grammar says the same)
    if (stream.match(/^[0-9][0-9_]*(\.[0-9]+)?(e[+-]?[0-9]+)?/i)) return "number";
    const w = stream.match(/^[A-Za-z_][A-Za-z0-9_]*/);
    if (w) {
      if (KEYWORDS.has(w[0])) return "keyword";
      if (stream.peek() === "(") return "variableName.function";
      return "variableName";
    }
    if (stream.match(/^[{}()\[\]]/)) return "bracket";
    stream.next();
    return "operator";
  },
};

export function create(parent, {doc, language, onChange}) {
  const mode = language === "yaml" ? yaml : arch;
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        lineNumbers(), highlightActiveLine(), EditorView.lineWrapping, history(), bracketMatching(), lintGutter(),
        keymap.of([...defaultKeymap, ...historyKeymap]),
        StreamLanguage.define(mode), syntaxHighlighting(defaultHighlightStyle),
        EditorView.updateListener.of((u) => {
          if (u.docChanged && !u.transactions.some((t) => t.annotation(remote))) onChange(u.state.doc.toString());
        }),
      ],
    }),
  });
  return view;
}

import {Annotation} from "@codemirror/state";
const remote = Annotation.define();  // a change that came from disk: not echoed back

export function setText(view, text) {
  if (view.state.doc.toString() === text) return;
  view.dispatch({changes: {from: 0, to: view.state.doc.length, insert: text}, annotations: remote.of(true)});
}

// diags: [{line, col, end_line, end_col, severity, message}] 1-based, from the checker
export function showDiagnostics(view, diags) {
  const doc = view.state.doc;
  const pos = (line, col) => {
    const l = doc.line(Math.min(Math.max(line, 1), doc.lines));
    return Math.min(l.from + Math.max(col - 1, 0), l.to);
  };
  const out = diags.map((d) => {
    const from = pos(d.line, d.col);
    let to = d.end_line ? pos(d.end_line, d.end_col) : from;
    if (to <= from) to = Math.min(from + 1, doc.lineAt(from).to);
    return {from, to: Math.max(to, from), severity: d.severity, message: d.message};
  });
  view.dispatch(setDiagnostics(view.state, out));
}

export function gotoLine(view, line) {
  const l = view.state.doc.line(Math.min(Math.max(line, 1), view.state.doc.lines));
  view.dispatch({selection: {anchor: l.from}, scrollIntoView: true});
  view.focus();
}
