// build/bundle.mjs picks the world from what the plugin keeps: node --test plugins/sdk-js/test/
// Needs the JavaScript toolchain (scripts/toolchain js); skipped when it is not installed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const sdk = dirname(dirname(fileURLToPath(import.meta.url)));
const root = dirname(dirname(sdk));
const toolchains = join(process.env.WEIR_CACHE ?? join(homedir(), '.cache', 'weir'), 'toolchains');
const toolchain = existsSync(toolchains) ? readdirSync(toolchains).find((d) => d.startsWith('js-componentize-js-')) : undefined;

function world(source) {
  const dir = mkdtempSync(join(tmpdir(), 'weir-world-'));
  try {
    writeFileSync(join(dir, 'plugin.js'), source);
    writeFileSync(join(dir, 'helpers.js'), "import { state } from 'weir-plugin';\nexport const load = () => state.get('x');\n");
    const args = [join(sdk, 'build', 'bundle.mjs'), join(toolchains, toolchain), join(root, 'wit'), join(dir, 'plugin.js'), join(dir, 'out.js')];
    return execFileSync('node', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const PLAIN = "import { Output } from 'weir-plugin';\nexport function handleEvent(event) { return []; }\n";

test('the world follows handleTimer and the use of state or timers', { skip: !toolchain && 'no JavaScript toolchain' }, () => {
  assert.equal(world(PLAIN), 'plugin');
  assert.equal(world(`${PLAIN}export function handleTimer(timer) { return []; }\n`), 'stateful-plugin');
  assert.equal(world(`${PLAIN}function onTimer() { return []; }\nexport { onTimer as handleTimer };\n`), 'stateful-plugin');
  assert.equal(world(`import { timers } from 'weir-plugin';\nexport function handleEvent(e) { timers.set('t', 1); return []; }\n`), 'stateful-plugin');
  assert.equal(world(`import * as weir from 'weir-plugin';\nexport function handleEvent(e) { weir.state.delete('a'); return []; }\n`), 'stateful-plugin');
  // Through a helper module the plugin uses.
  assert.equal(world(`import { load } from './helpers.js';\nexport function handleEvent(e) { load(); return []; }\n`), 'stateful-plugin');
  // Imported but never used: tree-shaken away, so plain.
  assert.equal(world(`import { state } from 'weir-plugin';\n${PLAIN.split('\n').slice(1).join('\n')}`), 'plugin');
  assert.equal(world(`import * as weir from 'weir-plugin';\nexport function handleEvent(e) { weir.log('info', 'state'); return []; }\n`), 'plugin');
  // Both worlds import span: using it changes nothing.
  assert.equal(world(`import { span } from 'weir-plugin';\nexport function handleEvent(e) { span.setAttribute('k', 'v'); return []; }\n`), 'plugin');
});
