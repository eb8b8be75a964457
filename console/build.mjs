// Build the web console into hashed static assets (run by scripts/build_console_assets.py,
// i.e. `make setup`). Three steps, each failing the build:
//   1. every operation document in src/operations/*.graphql is valid against
//      schema.graphql (graphql-js `validate`), holds one operation named like its file;
//   2. TypeScript type-checks src/ (tsc --noEmit);
//   3. esbuild bundles src/main.tsx (and its CSS) minified, named by content hash, each
//      with a Brotli and a gzip copy, and writes manifest.json (name -> hashed file);
//      pages loaded on demand (the dashboard) are chunks, listed in the manifest too.
//
// Usage: node console/build.mjs [--out DIR] [--schema FILE] [--check-only]
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

import * as esbuild from "esbuild";
import { buildSchema, parse, validate, Kind } from "graphql";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..");
const OPERATIONS = join(HERE, "src", "operations");

function option(name, fallback) {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : fallback;
}

const schemaPath = resolve(option("--schema", join(ROOT, "schema.graphql")));
const outDir = resolve(option("--out", join(ROOT, "crm_graphql", "static", "console")));
const checkOnly = process.argv.includes("--check-only");

/** Problems of every operation document against the schema, as "file:line: message". */
function checkOperations(schemaText, directory = OPERATIONS) {
  const schema = buildSchema(schemaText);
  const problems = [];
  const files = readdirSync(directory).filter((f) => f.endsWith(".graphql")).sort();
  if (files.length === 0) problems.push(`${directory}: no operation documents`);
  for (const file of files) {
    const path = join(directory, file);
    const where = relative(ROOT, path);
    let document;
    try {
      document = parse(readFileSync(path, "utf8"));
    } catch (error) {
      problems.push(`${where}: ${error.message}`);
      continue;
    }
    const operations = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
    const expected = basename(file, ".graphql");
    if (operations.length !== 1 || operations[0].name?.value !== expected) {
      problems.push(`${where}: must hold exactly one operation, named ${expected}`);
    }
    for (const error of validate(schema, document)) {
      const line = error.locations?.[0]?.line ?? 1;
      problems.push(`${where}:${line}: ${error.message}`);
    }
  }
  return { count: files.length, problems };
}

function typecheck() {
  const tsc = join(ROOT, "node_modules", "typescript", "bin", "tsc");
  const result = spawnSync(process.execPath, [tsc, "--noEmit", "-p", join(HERE, "tsconfig.json")], {
    stdio: "inherit",
  });
  return result.status === 0;
}

function hashedName(name, content) {
  const dot = name.lastIndexOf(".");
  const digest = createHash("sha256").update(content).digest("hex").slice(0, 16);
  return `${name.slice(0, dot)}.${digest}${name.slice(dot)}`;
}

async function bundle() {
  const result = await esbuild.build({
    entryPoints: [join(HERE, "src", "main.tsx")],
    bundle: true,
    minify: true,
    format: "esm",
    // The dashboard (and Chart.js) is a chunk loaded when the page is opened, so the
    // first load of /app does not carry the charting library.
    splitting: true,
    chunkNames: "[name].[hash]",
    target: ["es2020"],
    jsx: "automatic",
    jsxImportSource: "preact",
    loader: { ".graphql": "text" },
    define: { "process.env.NODE_ENV": '"production"' },
    outdir: "out",
    write: false,
    logLevel: "warning",
  });
  mkdirSync(outDir, { recursive: true });
  const manifest = {};
  const keep = new Set(["manifest.json"]);
  const sizes = [];
  for (const file of result.outputFiles) {
    const name = basename(file.path); // main.js, main.css, or a chunk: dashboard.<hash>.js
    // A chunk keeps esbuild's name, content-hashed already: main.js imports it by it.
    const hashed = name.startsWith("main.") ? hashedName(name, file.contents) : name;
    manifest[name] = hashed;
    const brotli = brotliCompressSync(file.contents, {
      params: { [constants.BROTLI_PARAM_QUALITY]: 11 },
    });
    const gzip = gzipSync(file.contents, { level: 9 });
    writeFileSync(join(outDir, hashed), file.contents);
    writeFileSync(join(outDir, `${hashed}.br`), brotli);
    writeFileSync(join(outDir, `${hashed}.gz`), gzip);
    for (const suffix of ["", ".br", ".gz"]) keep.add(`${hashed}${suffix}`);
    sizes.push(`${hashed}: ${file.contents.length} B, gzip ${gzip.length} B, brotli ${brotli.length} B`);
  }
  writeFileSync(join(outDir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
  for (const extra of readdirSync(outDir)) {
    if (!keep.has(extra)) rmSync(join(outDir, extra), { recursive: true, force: true });
  }
  return sizes;
}

let checked;
try {
  checked = checkOperations(readFileSync(schemaPath, "utf8"));
} catch (error) {
  console.error(`console: cannot read ${schemaPath}: ${error.message}`);
  process.exit(1);
}
const { count, problems } = checked;
if (problems.length) {
  console.error(`console: ${problems.length} operation problem(s) against ${relative(ROOT, schemaPath)}:`);
  for (const problem of problems) console.error(`  ${problem}`);
  process.exit(1);
}
console.log(`console: ${count} operations valid against ${relative(ROOT, schemaPath)}`);
if (!checkOnly) {
  if (!typecheck()) {
    console.error("console: TypeScript errors (above)");
    process.exit(1);
  }
  for (const line of await bundle()) console.log(`console: ${line}`);
}
