/**
 * E5's transformers.js side, in its own process: transformers.js brings its
 * own onnxruntime-node, whose native library cannot share a process with the
 * one tsinfer's runtime loads. Reads a job (JSON file given as argv[2]),
 * writes the per-request records (the bench's RequestOutput fields, seconds)
 * to argv[3]. Plain JavaScript, run with `node`.
 *
 * transformers.js is imported as a package when resolvable from here, else
 * from E5_TRANSFORMERS_DIR (default /tmp/e5).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

async function load() {
  try {
    return { mod: await import('@huggingface/transformers'), source: 'workspace dependency' };
  } catch {
    const dir = process.env.E5_TRANSFORMERS_DIR ?? '/tmp/e5';
    const req = createRequire(join(dir, 'package.json'));
    const mod = await import(pathToFileURL(req.resolve('@huggingface/transformers')).href);
    const ver = async (p) =>
      JSON.parse(await readFile(join(dir, 'node_modules', p, 'package.json'), 'utf8')).version;
    return {
      mod,
      source: `${dir} (npm install --prefix, outside the repo): @huggingface/transformers ${await ver('@huggingface/transformers')}, onnxruntime-node ${await ver('onnxruntime-node')}`,
    };
  }
}

const job = JSON.parse(await readFile(process.argv[2], 'utf8'));
const { mod: tjs, source } = await load();
tjs.env.allowRemoteModels = false;
tjs.env.localModelPath = job.localModelPath;
const model = await tjs.AutoModelForCausalLM.from_pretrained(job.modelId, { dtype: 'fp32', device: 'cpu' });
const { Tensor } = tjs;

async function generate(batch, outputLen) {
  const b = batch.length;
  const L = batch[0].length;
  const ids = new BigInt64Array(b * L);
  for (let i = 0; i < b; i++) {
    for (let j = 0; j < L; j++) ids[i * L + j] = BigInt(batch[i][j]);
  }
  const start = performance.now();
  const times = [];
  let puts = 0;
  const streamer = {
    put: () => {
      if (puts++ > 0) times.push(performance.now());
    },
    end: () => {},
  };
  const out = await model.generate({
    input_ids: new Tensor('int64', ids, [b, L]),
    attention_mask: new Tensor('int64', new BigInt64Array(b * L).fill(1n), [b, L]),
    max_new_tokens: outputLen,
    min_new_tokens: outputLen,
    do_sample: false,
    streamer,
  });
  return { start, times, generated: out.dims[1] - L, data: out.data, L };
}

async function run(prompts, outputLen, conc, mode) {
  const t0 = performance.now();
  const outputs = new Array(prompts.length);
  const one = async (idx) => {
    const g = await generate(
      idx.map((i) => prompts[i]),
      outputLen,
    );
    const itl = [];
    for (let k = 1; k < g.times.length; k++) itl.push((g.times[k] - g.times[k - 1]) / 1000);
    for (const p of idx) {
      const ok = g.generated === outputLen;
      outputs[p] = {
        generatedText: '',
        success: ok,
        latency: (g.times[g.times.length - 1] - g.start) / 1000,
        ttft: (g.times[0] - g.start) / 1000,
        itl,
        textChunks: [],
        promptLen: g.L,
        error: ok ? '' : `generated ${g.generated} tokens, asked ${outputLen}`,
        outputLen: g.generated,
        startTime: (g.start - t0) / 1000,
      };
    }
  };
  if (mode === 'batch') {
    for (let i = 0; i < prompts.length; i += conc)
      await one(Array.from({ length: Math.min(conc, prompts.length - i) }, (_, k) => i + k));
  } else {
    let next = 0;
    const worker = async () => {
      while (next < prompts.length) await one([next++]);
    };
    await Promise.all(Array.from({ length: conc }, worker));
  }
  return { duration: (performance.now() - t0) / 1000, outputs };
}

const probe = await generate([job.probeIds], job.probeNew);
const probeTokens = Array.from(probe.data, Number).slice(job.probeIds.length);
const runs = [];
for (const r of job.runs) {
  await run(r.prompts.slice(0, 2), Math.min(r.outputLen, 32), 2, 'calls'); // warm-up, as the bench does
  const res = await run(r.prompts, r.outputLen, r.conc, r.mode);
  runs.push({ conc: r.conc, mode: r.mode, ...res });
  console.log(`transformers.js ${job.modelId} ${r.mode} c=${r.conc}: ${res.duration.toFixed(2)} s`);
}
await writeFile(process.argv[3], JSON.stringify({ source, probeTokens, runs }));
