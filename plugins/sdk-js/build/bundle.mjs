// Bundles a JavaScript plugin for componentize-js: one ES module made of the
// plugin, its relative imports, the SDK ('weir-plugin') and a small entry that
// exports the world's `init` and `handleEvent`. `weir:plugin/*` stays an import, named
// with the package version of WIT_DIR/plugin.wit (componentize-js resolves it there).
//
//   node plugins/sdk-js/build/bundle.mjs TOOLCHAIN_DIR WIT_DIR PLUGIN_MAIN.js OUT.js
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

const sdk = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'index.js');
const work = await mkdtemp(join(tmpdir(), 'weir-js-'));
const entry = join(work, 'entry.js');
await writeFile(
  entry,
  `import * as app from ${JSON.stringify(resolve(main))};
import { log } from 'weir:plugin/host@${version}';
import { _component } from 'weir-plugin';
const plugin = _component(app, log);
export function init(config) { return plugin.init(config); }
export function handleEvent(event) { return plugin.handleEvent(event); }
`,
);
let failed = false;
try {
  const bundle = await rolldown({
    input: entry,
    external: [/^weir:/],
    resolve: { alias: { 'weir-plugin': sdk } },
    platform: 'neutral',
    logLevel: 'warn',
  });
  await bundle.write({ file: resolve(out), format: 'esm', codeSplitting: false });
  await bundle.close();
} catch (e) {
  // rolldown's message is the formatted diagnostic; its stack is of no use here.
  console.error(e && e.message ? e.message : e);
  failed = true;
} finally {
  await rm(work, { recursive: true, force: true });
}
if (failed) process.exit(1);
