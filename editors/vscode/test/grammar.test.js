// Tokenizes specs with the TextMate grammar (vscode-textmate + oniguruma, what
// VS Code itself runs) and checks the scopes of the tokens that matter.
// Usage: node test/grammar.test.js [spec.arch | doc.md ...]   (exit 1 on a wrong scope)
// A Markdown file is checked by its ```arch code blocks: the same grammar
// highlights the docs (any TextMate-grammar highlighter, e.g. Shiki, takes it).
"use strict";

const fs = require("fs");
const path = require("path");
const vsctm = require("vscode-textmate");
const oniguruma = require("vscode-oniguruma");

const here = __dirname;
const wasm = fs.readFileSync(path.join(path.dirname(require.resolve("vscode-oniguruma")), "onig.wasm")).buffer;

const registry = new vsctm.Registry({
  onigLib: oniguruma.loadWASM(wasm).then(() => ({
    createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
    createOnigString: (s) => new oniguruma.OnigString(s),
  })),
  loadGrammar: async (scope) => {
    if (scope !== "source.strata") return null;
    const file = path.join(here, "..", "syntaxes", "strata.tmLanguage.json");
    return vsctm.parseRawGrammar(fs.readFileSync(file, "utf8"), file);
  },
});

// [line text, token text, a scope the token must have]
const EXPECT = [
  ["model gpt2 {", "model", "storage.type.model.strata"],
  ["model gpt2 {", "gpt2", "entity.name.type.model.strata"],
  ["  d     = 768", "d", "variable.other.definition.strata"],
  ["  d     = 768", "768", "constant.numeric.strata"],
  ["  block layer {", "layer", "entity.name.function.block.strata"],
  ["    residual { layernorm; attention(heads, causal=true, dropout=p); dropout(p) }", "residual", "keyword.control.construct.strata"],
  ["    residual { layernorm; attention(heads, causal=true, dropout=p); dropout(p) }", "layernorm", "entity.name.function.component.strata"],
  ["    residual { layernorm; attention(heads, causal=true, dropout=p); dropout(p) }", "attention", "entity.name.function.component.strata"],
  ["    residual { layernorm; attention(heads, causal=true, dropout=p); dropout(p) }", "causal", "variable.parameter.option.strata"],
  ["    residual { layernorm; attention(heads, causal=true, dropout=p); dropout(p) }", "true", "constant.language.strata"],
  ["    embedding(vocab, d) as wte", "wte", "variable.other.module.strata"],
  ["  stack decoder(tokens) {", "decoder", "entity.name.function.stack.strata"],
  ["    repeat(depth) layer as h", "repeat", "keyword.control.construct.strata"],
  ["# GPT-2 small (Radford et al., 2019)", "GPT-2 small (Radford et al., 2019)", "comment.line.number-sign.strata"],
  ['  quantize(int8_dynamic, on="decoder.h.*.mlp.*")', "decoder.h.*.mlp.*", "string.quoted.double.strata"],
  ["    lm_head(tie=encoder.embed)", "encoder", "variable.other.strata"],
  ["passes {", "passes", "storage.type.section.strata"],
  ['from "blocks.arch" import layer', "from", "keyword.control.import.strata"],
  ["model big extends gpt2 {", "gpt2", "entity.other.inherited-class.strata"],
  ["  window = 256 if i % 2 == 0 else none", "if", "keyword.control.conditional.strata"],
];

// [line text, token text, a scope the token must NOT have]: a digit of another
// script (Arabic-Indic 3, Bengali 4, fullwidth 8) is no number to the parser
// (its NUMBER is [0-9]), and Oniguruma's \d would match it.
const NOT = [
  ["  d = \u0663", "\u0663", "constant.numeric.strata"],
  ["  d = 4\u0663", "\u0663", "constant.numeric.strata"],
  ["  d = \u09EA", "\u09EA", "constant.numeric.strata"],
  ["  d = \uFF18", "\uFF18", "constant.numeric.strata"],
  ["  d = 1e\u0663", "\u0663", "constant.numeric.strata"],
];

function tokens(grammar, text) {
  let state = vsctm.INITIAL;
  const out = [];
  for (const line of text.split("\n")) {
    const r = grammar.tokenizeLine(line, state);
    for (const t of r.tokens) out.push({ line, text: line.slice(t.startIndex, t.endIndex), scopes: t.scopes });
    state = r.ruleStack;
  }
  return out;
}

// The ```arch fenced code blocks of a Markdown text.
function archBlocks(md) {
  return [...md.matchAll(/^```arch[ \t]*\n([\s\S]*?)^```[ \t]*$/gm)].map((m) => m[1]);
}

registry.loadGrammar("source.strata").then((grammar) => {
  let failed = 0;
  for (const [line, word, scope] of EXPECT) {
    const hits = tokens(grammar, line).filter((t) => t.text.includes(word) && t.text.trim().length > 0);
    if (!hits.some((t) => t.scopes.includes(scope))) {
      failed++;
      console.error(`FAIL ${JSON.stringify(line)}: ${JSON.stringify(word)} lacks ${scope}; got ` +
        JSON.stringify(hits.map((t) => [t.text, t.scopes.slice(1)])));
    }
  }
  for (const [line, word, scope] of NOT) {
    const hits = tokens(grammar, line).filter((t) => t.text.includes(word));
    if (hits.some((t) => t.scopes.includes(scope))) {
      failed++;
      console.error(`FAIL ${JSON.stringify(line)}: ${JSON.stringify(word)} has ${scope}`);
    }
  }
  // every spec (or docs code block) given tokenizes without an unscoped word
  // (only spaces may stay plain)
  let blocks = 0;
  for (const file of process.argv.slice(2)) {
    const text = fs.readFileSync(file, "utf8");
    const sources = file.endsWith(".md") ? archBlocks(text) : [text];
    blocks += sources.length;
    for (const t of sources.flatMap((s) => tokens(grammar, s))) {
      if (t.scopes.length === 1 && /\S/.test(t.text)) {
        failed++;
        console.error(`FAIL ${file}: ${JSON.stringify(t.text)} in ${JSON.stringify(t.line)} has no scope`);
      }
    }
  }
  console.log(failed ? `${failed} failed` : `ok: ${EXPECT.length + NOT.length} scopes, ${blocks} specs or code blocks`);
  process.exit(failed ? 1 : 0);
});
