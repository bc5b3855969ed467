#!/usr/bin/env node
/**
 * Installs onnxruntime's CUDA execution provider beside onnxruntime-node's
 * binding (`pnpm gpu:install`).
 *
 * onnxruntime-node ships only the CPU binary (its postinstall would fetch the
 * CUDA build from NuGet, which pnpm does not run). The npm package
 * com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9 carries
 * libonnxruntime_providers_cuda.so and libonnxruntime_providers_shared.so
 * for onnxruntime 1.29.0 (CUDA 13): this script `npm pack`s it into a temp
 * dir (~180 MB download), checks that it is built for the same onnxruntime
 * version as the installed onnxruntime-node, and copies the two libraries
 * into node_modules/onnxruntime-node/bin/napi-v6/linux/x64/.
 *
 * Options:
 *   --from <file.tgz>  use an already downloaded tarball (offline hosts)
 *   --force            reinstall even when both files are present
 *   --dry-run          say what would be done, change nothing
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

const GPU_PACKAGE = 'com.github.asus4.onnxruntime.linux-x64-gpu';
const GPU_VERSION = '0.4.9';
const INNER_DIR = 'package/Plugins/Linux/x64';
const LIBS = ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'];

const args = process.argv.slice(2);
const force = args.includes('--force');
const dryRun = args.includes('--dry-run');
const fromIdx = args.indexOf('--from');
const from = fromIdx >= 0 ? args[fromIdx + 1] : undefined;

function fail(message) {
  console.error(`gpu:install: ${message}`);
  process.exit(1);
}

if (process.platform !== 'linux' || process.arch !== 'x64') {
  fail(`the CUDA provider package is for linux-x64; this is ${process.platform}-${process.arch}`);
}

const require = createRequire(import.meta.url);
let ortPkgPath;
try {
  ortPkgPath = require.resolve('onnxruntime-node/package.json');
} catch {
  fail('onnxruntime-node is not installed (run pnpm install first)');
}
const ortVersion = JSON.parse(readFileSync(ortPkgPath, 'utf8')).version;
const bindingDir = join(dirname(ortPkgPath), 'bin', 'napi-v6', 'linux', 'x64');
if (!existsSync(join(bindingDir, 'onnxruntime_binding.node')))
  fail(`no onnxruntime binding in ${bindingDir}`);

const present = LIBS.filter((f) => existsSync(join(bindingDir, f)));
if (present.length === LIBS.length && !force) {
  console.log(`gpu:install: already installed in ${bindingDir} (${LIBS.join(', ')}); --force to reinstall`);
  process.exit(0);
}

const work = mkdtempSync(join(tmpdir(), 'tsinfer-gpu-install-'));
try {
  let tgz;
  if (from !== undefined) {
    tgz = resolve(from);
    if (!existsSync(tgz)) fail(`--from ${from}: no such file`);
    console.log(`gpu:install: using ${tgz}`);
  } else {
    console.log(`gpu:install: npm pack ${GPU_PACKAGE}@${GPU_VERSION} (about 180 MB) ...`);
    if (dryRun) {
      console.log(
        `gpu:install: --dry-run: would download, verify onnxruntime ${ortVersion}, copy ${LIBS.join(', ')} to ${bindingDir}`,
      );
      process.exit(0);
    }
    execFileSync('npm', ['pack', `${GPU_PACKAGE}@${GPU_VERSION}`, '--pack-destination', work, '--silent'], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const packed = readdirSync(work).find((f) => f.endsWith('.tgz'));
    if (!packed) fail('npm pack produced no tarball');
    tgz = join(work, packed);
  }
  execFileSync(
    'tar',
    [
      'xzf',
      tgz,
      '-C',
      work,
      'package/package.json',
      'package/README.md',
      ...LIBS.map((f) => `${INNER_DIR}/${f}`),
    ],
    {
      stdio: 'inherit',
    },
  );
  const pkg = JSON.parse(readFileSync(join(work, 'package', 'package.json'), 'utf8'));
  if (pkg.name !== GPU_PACKAGE) fail(`tarball is ${pkg.name}, expected ${GPU_PACKAGE}`);
  const readme = readFileSync(join(work, 'package', 'README.md'), 'utf8');
  const m = /ONNX Runtime:\s*\[(\d+\.\d+\.\d+)\]/.exec(readme);
  if (!m)
    fail(
      `${pkg.name}@${pkg.version}: cannot tell which onnxruntime version it is built for (no "ONNX Runtime: [x.y.z]" in its README)`,
    );
  if (m[1] !== ortVersion) {
    fail(
      `${pkg.name}@${pkg.version} is built for onnxruntime ${m[1]}, but onnxruntime-node is ${ortVersion}; ` +
        'the provider must match the core library exactly',
    );
  }
  if (dryRun) {
    console.log(
      `gpu:install: --dry-run: verified onnxruntime ${m[1]}; would copy ${LIBS.join(', ')} to ${bindingDir}`,
    );
    process.exit(0);
  }
  for (const f of LIBS) {
    const src = join(work, INNER_DIR, f);
    const dst = join(bindingDir, f);
    copyFileSync(src, dst);
    chmodSync(dst, 0o755);
    console.log(`gpu:install: ${f} (${(statSync(dst).size / 2 ** 20).toFixed(1)} MiB) -> ${dst}`);
  }
  console.log(
    `gpu:install: done: CUDA provider of ${pkg.name}@${pkg.version} for onnxruntime ${m[1]}. ` +
      'At run time put the CUDA 13 and cuDNN 9 libraries on LD_LIBRARY_PATH and start with --device cuda (fp16 models).',
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
