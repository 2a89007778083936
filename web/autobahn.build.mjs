// Builds web/vendor/autobahn.min.js from npm's `autobahn` (AutobahnJS) with esbuild:
// one classic script that defines the global `autobahn`, as the prebuilt autobahn-browser
// bundle did, so `<script src="vendor/autobahn.min.js">` and web/sandbar.js stay as they are.
// Run by `make install` (node web/autobahn.build.mjs OUT); versions are pinned in package-lock.json.
//
// AutobahnJS is written for Node and the browser alike. The browser has WebSocket and
// crypto.getRandomValues natively; what its serializers need from Node (msgpack5 and cbor
// are built on Buffer and streams) comes from the browser ports of those modules, and the
// rest is a few lines below. JSON, msgpack and CBOR all work, as they did in the old bundle.
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

// Node modules the bundled code requires, given what it uses of them in a browser.
const SHIMS = {
  // msgpack5 asserts its extension codecs are well formed; nothing else uses `assert`.
  assert: "module.exports = function assert(ok, message) { if (!ok) throw new Error(message); };",
  // msgpack5 uses util.inherits only; readable-stream takes util.debuglog and util.inspect
  // when they are there, and does without them (its browser build maps `util` to nothing).
  util: 'exports.inherits = require("inherits");',
  // AutobahnJS writes a trace file when process.env.AUTOBAHN_TRACE is set: Node only.
  fs: "module.exports = {};",
  // readable-stream (under cbor and msgpack5) defers callbacks with process.nextTick.
  process:
    "export const process = { env: {}, browser: true," +
    " nextTick: (fn, ...args) => queueMicrotask(() => fn(...args)) };",
};
const NAMESPACE = "sandbar-shim";
const HERE = dirname(fileURLToPath(import.meta.url)); // import.meta.dirname needs Node 20.11
// when.js (AutobahnJS's optional promises, exported as `autobahn.when` as before) hands
// `require` to an AMD-style factory, which no bundler can follow: take its own browser
// build, one self-contained file.
const WHEN = createRequire(import.meta.url).resolve("when/dist/browser/when.js");

const shims = {
  name: "node-shims",
  setup(build) {
    const filter = new RegExp(`^(${Object.keys(SHIMS).join("|")})$`);
    build.onResolve({ filter }, (args) => ({ path: args.path, namespace: NAMESPACE }));
    build.onResolve({ filter: /^when$/ }, () => ({ path: WHEN }));
    build.onLoad({ filter: /.*/, namespace: NAMESPACE }, (args) => ({
      contents: SHIMS[args.path],
      resolveDir: HERE, // the shims' own requires resolve in the project's node_modules
      loader: "js",
    }));
  },
};

const out = process.argv[2];
if (!out) {
  console.error("usage: node web/autobahn.build.mjs OUTFILE (make install runs it)");
  process.exit(2);
}

await esbuild.build({
  entryPoints: ["autobahn"],
  outfile: out,
  bundle: true,
  platform: "browser",
  format: "iife",
  globalName: "autobahn", // `var autobahn = ...` at the top of a classic script: a global
  target: "es2020",
  minify: true,
  legalComments: "eof",
  define: { global: "globalThis" },
  alias: { stream: "readable-stream" },
  inject: ["process"],
  plugins: [shims],
  logLevel: "warning",
});
