// Builds src/main.ts (+ CSS) into dist/ with the pinned esbuild, and records a hash of the
// sources in dist/SOURCES.sha256, which a Rust unit test (src/serve/ui.rs) recomputes so a
// committed bundle that no longer matches its sources fails `cargo test`.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const here = new URL(".", import.meta.url).pathname;
const out = join(here, "dist");
mkdirSync(out, { recursive: true });

/** The files the bundle is made from, sorted: the same list and order as ui.rs' test. */
export function sources() {
  const files = ["build.mjs", "index.html", "package-lock.json", "package.json", "tsconfig.json"];
  for (const f of readdirSync(join(here, "src")).sort()) files.push(`src/${f}`);
  return files.sort();
}

export function sourcesHash() {
  const h = createHash("sha256");
  for (const f of sources()) {
    // line endings normalised so a checkout with CRLF still matches
    const text = readFileSync(join(here, f), "utf8").replace(/\r\n/g, "\n");
    h.update(f + "\0" + text + "\0");
  }
  return h.digest("hex");
}

if (process.argv[2] === "--hash") {
  console.log(sourcesHash());
} else {
  await build({
    entryPoints: { app: join(here, "src/main.ts") },
    bundle: true,
    minify: true,
    format: "esm",
    target: ["es2022"],
    outdir: out,
    legalComments: "none",
    logLevel: "warning",
  });
  copyFileSync(join(here, "index.html"), join(out, "index.html"));
  writeFileSync(join(out, "SOURCES.sha256"), sourcesHash() + "\n");
  for (const f of ["index.html", "app.js", "app.css"]) {
    console.log(`${f}\t${readFileSync(join(out, f)).length} bytes`);
  }
}
