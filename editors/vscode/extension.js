// The strata extension: starts `strata lsp` (the language server) for .arch
// files and for the YAML specs the `strata.yamlFiles` glob names.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const config = vscode.workspace.getConfiguration("strata");
  const [command, ...args] = config.get("server.command", ["strata", "lsp"]);
  const serverOptions = { command, args, transport: TransportKind.stdio };
  const clientOptions = {
    documentSelector: [
      { scheme: "file", language: "strata" },
      { scheme: "file", language: "yaml", pattern: config.get("yamlFiles", "**/specs/**/*.{yaml,yml}") },
    ],
    initializationOptions: { inlayHints: config.get("inlayHints", false) },
  };
  client = new LanguageClient("strata", "strata", serverOptions, clientOptions);
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
