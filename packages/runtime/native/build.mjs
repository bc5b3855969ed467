#!/usr/bin/env node
/**
 * Builds the native backend (build/Release/tsinfer_native.node).
 *
 *   node packages/runtime/native/build.mjs            # build; exit 1 on failure
 *   node packages/runtime/native/build.mjs --optional # build; on failure record why and exit 0
 *
 * Inputs, all resolved here (nothing vendored):
 * - onnxruntime 1.29.0's C/C++ headers: the npm package
 *   com.github.asus4.onnxruntime@0.4.9 (its iOS framework's Headers/), fetched
 *   with `npm pack` and cached in packages/runtime/node_modules/.cache/tsinfer-native/;
 * - libonnxruntime.so.1 of the installed onnxruntime-node 1.29.0 (linked, and
 *   its folder put on the addon's rpath);
 * - node-addon-api: the installed dependency, else `npm pack node-addon-api@8` into the cache;
 * - node-gyp: the installed dependency, else the copy bundled with npm;
 * - Node's headers: from the running Node's prefix when present (offline), else node-gyp's download.
 *
 * On failure the reason is written to build/build-error.txt; the runtime's
 * loader reports it (and the JS backend keeps working).
 */
import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ORT_VERSION = '1.29.0';
const ORT_API_VERSION = 29;
const HEADERS_PKG = 'com.github.asus4.onnxruntime@0.4.9';
const HEADERS_PATH = 'package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers';
const NAPI_PKG = 'node-addon-api@8';

const here = dirname(fileURLToPath(import.meta.url));
const runtimeDir = resolve(here, '..');
// node_modules/.cache: ignored by git, biome and tsc alike; a fresh install simply fetches again.
const cacheDir = join(runtimeDir, 'node_modules', '.cache', 'tsinfer-native');
const buildDir = join(here, 'build');
const errorFile = join(buildDir, 'build-error.txt');
const optional = process.argv.includes('--optional');
const require = createRequire(join(runtimeDir, 'package.json'));

function log(msg) {
  process.stderr.write(`[tsinfer native] ${msg}\n`);
}

function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', ...opts });
  } catch (err) {
    const stderr = String(err.stderr ?? '')
      .split('\n')
      .filter((l) => l.trim() !== '' && !l.includes('Unknown user config'))
      .slice(-4)
      .join(' | ');
    throw new Error(`\`${cmd} ${args.join(' ')}\` failed${stderr ? `: ${stderr}` : ''}`);
  }
}

function npmPack(spec, dest) {
  mkdirSync(dest, { recursive: true });
  const out = run('npm', ['pack', spec, '--loglevel=error', '--pack-destination', dest])
    .trim()
    .split('\n')
    .pop();
  return join(dest, out);
}

function ortLibDir() {
  if (process.platform !== 'linux')
    throw new Error(`the native backend builds on Linux only (this is ${process.platform})`);
  let pkg;
  try {
    pkg = dirname(require.resolve('onnxruntime-node/package.json'));
  } catch {
    throw new Error('onnxruntime-node is not installed (run pnpm install)');
  }
  const version = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).version;
  if (version !== ORT_VERSION)
    throw new Error(`onnxruntime-node ${version} is installed; the native backend needs ${ORT_VERSION}`);
  const dir = join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
  if (!existsSync(join(dir, 'libonnxruntime.so.1')))
    throw new Error(`libonnxruntime.so.1 not found in ${dir}`);
  return dir;
}

function ortHeaders() {
  const dir = join(cacheDir, `onnxruntime-headers-${ORT_VERSION}`);
  const marker = join(dir, 'onnxruntime_cxx_api.h');
  if (!existsSync(marker)) {
    log(`fetching onnxruntime ${ORT_VERSION} headers (npm pack ${HEADERS_PKG})`);
    const tmp = mkdtempSync(join(tmpdir(), 'tsinfer-ort-headers-'));
    try {
      const tgz = npmPack(HEADERS_PKG, tmp);
      run('tar', ['-xzf', tgz, '-C', tmp, '--wildcards', `${HEADERS_PATH}/*`]);
      const src = join(tmp, HEADERS_PATH);
      mkdirSync(dir, { recursive: true });
      for (const f of readdirSync(src)) writeFileSync(join(dir, f), readFileSync(join(src, f)));
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  const api = /#define ORT_API_VERSION (\d+)/.exec(readFileSync(join(dir, 'onnxruntime_c_api.h'), 'utf8'));
  if (!api || Number(api[1]) !== ORT_API_VERSION)
    throw new Error(
      `headers in ${dir} are ORT API ${api?.[1]}, expected ${ORT_API_VERSION} (onnxruntime ${ORT_VERSION})`,
    );
  return dir;
}

function napiInclude() {
  try {
    return dirname(require.resolve('node-addon-api/package.json'));
  } catch {
    // Not a dependency yet: fetch it like the headers.
  }
  const dir = join(cacheDir, 'node-addon-api');
  if (!existsSync(join(dir, 'napi.h'))) {
    log(`fetching ${NAPI_PKG} (npm pack)`);
    const tmp = mkdtempSync(join(tmpdir(), 'tsinfer-napi-'));
    try {
      const tgz = npmPack(NAPI_PKG, tmp);
      mkdirSync(dir, { recursive: true });
      run('tar', ['-xzf', tgz, '-C', dir, '--strip-components=1']);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return dir;
}

function nodeGyp() {
  try {
    return require.resolve('node-gyp/bin/node-gyp.js');
  } catch {
    // fall through
  }
  const bundled = join(
    dirname(process.execPath),
    '..',
    'lib',
    'node_modules',
    'npm',
    'node_modules',
    'node-gyp',
    'bin',
    'node-gyp.js',
  );
  if (existsSync(bundled)) return bundled;
  try {
    const npmRoot = run('npm', ['root', '-g']).trim();
    const p = join(npmRoot, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
    if (existsSync(p)) return p;
  } catch {
    // fall through
  }
  throw new Error('node-gyp not found (add it as a devDependency or install npm)');
}

function main() {
  rmSync(errorFile, { force: true });
  const libDir = ortLibDir();
  const include = ortHeaders();
  const napi = napiInclude();
  const gyp = nodeGyp();
  const args = [gyp, 'rebuild', '--directory', here, `--jobs=max`];
  const prefix = resolve(dirname(process.execPath), '..');
  if (existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
  log(`node-gyp rebuild (headers ${include}, lib ${libDir})`);
  const t0 = Date.now();
  execFileSync(process.execPath, args, {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: {
      ...process.env,
      TSINFER_ORT_INCLUDE: include,
      TSINFER_ORT_LIB_DIR: libDir,
      TSINFER_NAPI_INCLUDE: napi,
    },
  });
  log(
    `built ${join(buildDir, 'Release', 'tsinfer_native.node')} in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
}

try {
  main();
} catch (err) {
  const reason = err instanceof Error ? err.message : String(err);
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(errorFile, `${reason}\n`);
  log(`build failed: ${reason}`);
  process.exit(optional ? 0 : 1);
}
