#!/bin/sh
# Rebuild strata/serve/static/editor.js (CodeMirror 6, bundled and minified)
# from editor.js and the versions pinned in package-lock.json.
set -e
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npx esbuild editor.js --bundle --minify --format=iife --global-name=StrataEditor \
  --outfile=../static/editor.js
