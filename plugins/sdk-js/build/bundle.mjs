// Bundles a JavaScript plugin for componentize-js: one ES module made of the
// plugin, its relative imports, the SDK ('weir-plugin') and a small entry that
// exports the world's functions. `weir:plugin/*` stays an import, named with the
// package version of WIT_DIR/plugin.wit (componentize-js resolves it there).
//
//   node plugins/sdk-js/build/bundle.mjs TOOLCHAIN_DIR WIT_DIR PLUGIN_MAIN.js OUT.js
//
// It also picks the world, and prints it on stdout for --world-name: `stateful-plugin`
// when the plugin (after tree-shaking) exports handleTimer or imports `state` or
// `timers` from 'weir-plugin', else `plugin`. The reason goes to stderr. The entry
// imports `weir:plugin/span` in either world (both have it; componentize-js imports
// every interface of the world anyway), so `span` never changes the world.
import { createRequire } from 'node:module';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const [toolchain, wit, main, out] = process.argv.slice(2);
if (!out) {
  console.error('usage: bundle.mjs TOOLCHAIN_DIR WIT_DIR PLUGIN_MAIN.js OUT.js');
  process.exit(2);
}
const witText = await readFile(join(wit, 'plugin.wit'), 'utf8');
const version = /^\s*package\s+weir:plugin@([0-9A-Za-z.+-]+)\s*;/m.exec(witText)?.[1];
if (!version) {
  console.error(`bundle.mjs: no "package weir:plugin@VERSION;" in ${join(wit, 'plugin.wit')}`);
  process.exit(1);
}
const require = createRequire(join(resolve(toolchain), 'package.json'));
const { rolldown } = await import(pathToFileURL(require.resolve('rolldown')).href);
const { parseAst } = await import(pathToFileURL(require.resolve('rolldown/parseAst')).href);

const sdk = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'index.js');
const STATEFUL_NAMES = ['state', 'timers'];

/** Every node of an ESTree AST. */
function* nodes(node) {
  if (Array.isArray(node)) {
    for (const n of node) yield* nodes(n);
  } else if (node && typeof node === 'object') {
    if (typeof node.type === 'string') yield node;
    for (const [k, v] of Object.entries(node)) if (k !== 'type' && v && typeof v === 'object') yield* nodes(v);
  }
}

/**
 * Why the plugin needs the stateful-plugin world, or null. Reads the plugin bundled
 * on its own with the SDK left external, so that only what the plugin keeps counts.
 */
async function statefulReason() {
  const bundle = await rolldown({
    input: resolve(main),
    external: ['weir-plugin', /^weir-plugin\//, /^weir:/],
    platform: 'neutral',
    logLevel: 'silent',
  });
  const { output } = await bundle.generate({ format: 'esm', codeSplitting: false });
  await bundle.close();
  const [chunk] = output;
  if (chunk.exports.includes('handleTimer')) return 'it exports handleTimer';
  const namespaces = new Set();
  for (const node of nodes(parseAst(chunk.code).body)) {
    const fromSdk = node.source && node.source.value === 'weir-plugin';
    if (fromSdk && (node.type === 'ImportDeclaration' || node.type === 'ExportNamedDeclaration')) {
      for (const s of node.specifiers || []) {
        const name = s.type === 'ImportSpecifier' ? s.imported.name ?? s.imported.value : s.local && (s.local.name ?? s.local.value);
        if (s.type === 'ImportNamespaceSpecifier') namespaces.add(s.local.name);
        else if (STATEFUL_NAMES.includes(name)) return `it imports ${name} from 'weir-plugin'`;
      }
    }
  }
  for (const node of nodes(parseAst(chunk.code).body)) {
    if (node.type === 'MemberExpression' && node.object.type === 'Identifier' && namespaces.has(node.object.name)) {
      const name = node.property.name ?? node.property.value;
      if (STATEFUL_NAMES.includes(name)) return `it uses ${node.object.name}.${name} of 'weir-plugin'`;
    }
  }
  return null;
}

const work = await mkdtemp(join(tmpdir(), 'weir-js-'));
const entry = join(work, 'entry.js');
let failed = false;
try {
  const reason = await statefulReason();
  const world = reason ? 'stateful-plugin' : 'plugin';
  console.error(
    `bundle.mjs: world ${world} (${reason ?? "it exports no handleTimer and imports no state or timers from 'weir-plugin'"})`,
  );
  const imports = reason
    ? `import * as state from 'weir:plugin/state@${version}';
import * as timers from 'weir:plugin/timers@${version}';
const plugin = _component(app, log, { state, timers }, span);
export function handleTimer(timer) { return plugin.handleTimer(timer); }`
    : 'const plugin = _component(app, log, undefined, span);';
  await writeFile(
    entry,
    `import * as app from ${JSON.stringify(resolve(main))};
import { log } from 'weir:plugin/host@${version}';
import * as span from 'weir:plugin/span@${version}';
import { _component } from 'weir-plugin';
${imports}
export function init(config) { return plugin.init(config); }
export function handleEvent(event) { return plugin.handleEvent(event); }
`,
  );
  const bundle = await rolldown({
    input: entry,
    external: [/^weir:/],
    resolve: { alias: { 'weir-plugin': sdk } },
    platform: 'neutral',
    logLevel: 'warn',
  });
  await bundle.write({ file: resolve(out), format: 'esm', codeSplitting: false });
  await bundle.close();
  console.log(world);
} catch (e) {
  // rolldown's message is the formatted diagnostic; its stack is of no use here.
  console.error(e && e.message ? e.message : e);
  failed = true;
} finally {
  await rm(work, { recursive: true, force: true });
}
if (failed) process.exit(1);
