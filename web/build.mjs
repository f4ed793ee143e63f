// Builds the page into dist/: src/app.ts bundled with the SDK's sources
// (sdk/js, whose node_modules must be installed: npm ci there first), and
// the static files beside it.
import { build } from "esbuild";
import { cpSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
mkdirSync(dist, { recursive: true });
await build({
  entryPoints: [join(here, "src/app.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  sourcemap: true,
  outfile: join(dist, "app.js"),
  alias: { "@inboxd/sdk": join(here, "../sdk/js/src/index.ts") },
  logLevel: "warning",
});
for (const f of ["index.html", "style.css"]) cpSync(join(here, "src", f), join(dist, f));
