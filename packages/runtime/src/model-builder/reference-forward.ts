/**
 * A plain float64 forward pass of a built model (full recompute, no cache),
 * reading the weights back from the model files. The independent check the
 * tests hold ONNX Runtime's results against; slow, meant for tiny models.
 */
import { dirname } from 'node:path';
import { findInitializer, loadModel, readFloatTensor } from '../onnx/index.js';
import type { ModelShape } from './presets.js';

export interface ReferenceModel {
  readonly shape: ModelShape;
  readonly vocabSize: number;
  /** Logits of every position of `tokens`, row-major [tokens.length, vocabSize]. */
  forward(tokens: readonly number[]): Float64Array;
}

interface LayerWeights {
  ln: Float32Array;
  qkv: Float32Array;
  o: Float32Array;
  post: Float32Array;
  gateUp: Float32Array;
  down: Float32Array;
}

/** Loads the weights of `modelPath` (a built model.onnx) for a reference forward. */
export async function loadReferenceModel(
  modelPath: string,
  shape: ModelShape,
  vocabSize: number,
): Promise<ReferenceModel> {
  const model = await loadModel(modelPath);
  const dir = dirname(modelPath);
  const w = async (name: string): Promise<Float32Array> => {
    const t = findInitializer(model, name);
    if (!t) throw new Error(`no initializer ${name}`);
    return readFloatTensor(t, dir);
  };
  const embed = await w('model.embed_tokens.weight');
  const layers: LayerWeights[] = [];
  for (let l = 0; l < shape.numLayers; l++) {
    const p = `model.layers.${l}`;
    layers.push({
      ln: await w(`${p}.input_layernorm.weight`),
      qkv: await w(`${p}.self_attn.qkv_proj.weight`),
      o: await w(`${p}.self_attn.o_proj.weight`),
      post: await w(`${p}.post_attention_layernorm.weight`),
      gateUp: await w(`${p}.mlp.gate_up_proj.weight`),
      down: await w(`${p}.mlp.down_proj.weight`),
    });
  }
  const finalNorm = await w('model.norm.weight');
  const lmHead = await w('lm_head.weight');
  const forward = (tokens: readonly number[]): Float64Array =>
    referenceForward(shape, vocabSize, { embed, layers, finalNorm, lmHead }, tokens);
  return { shape, vocabSize, forward };
}

/** x[1×n] · W[n×m] (row-major) */
function matvec(x: Float64Array, w: Float32Array, n: number, m: number): Float64Array {
  const out = new Float64Array(m);
  for (let i = 0; i < n; i++) {
    const xi = x[i] as number;
    if (xi === 0) continue;
    const row = i * m;
    for (let j = 0; j < m; j++) out[j] = (out[j] as number) + xi * (w[row + j] as number);
  }
  return out;
}

function rmsNorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * inv * (w[i] as number));
}

function referenceForward(
  s: ModelShape,
  V: number,
  wts: { embed: Float32Array; layers: LayerWeights[]; finalNorm: Float32Array; lmHead: Float32Array },
  tokens: readonly number[],
): Float64Array {
  const H = s.hiddenSize;
  const I = s.intermediateSize;
  const hd = s.headDim;
  const half = hd / 2;
  const nq = s.numHeads;
  const nkv = s.numKvHeads;
  const group = nq / nkv;
  const qkvW = (nq + 2 * nkv) * hd;
  const S = tokens.length;
  const invFreq = Array.from({ length: half }, (_, i) => s.ropeTheta ** (-(2 * i) / hd));
  const rope = (vec: Float64Array, off: number, pos: number): void => {
    for (let i = 0; i < half; i++) {
      const c = Math.cos(pos * (invFreq[i] as number));
      const sn = Math.sin(pos * (invFreq[i] as number));
      const x1 = vec[off + i] as number;
      const x2 = vec[off + half + i] as number;
      vec[off + i] = x1 * c - x2 * sn;
      vec[off + half + i] = x2 * c + x1 * sn;
    }
  };
  let hs: Float64Array[] = tokens.map((t) => Float64Array.from(wts.embed.subarray(t * H, (t + 1) * H)));
  for (const L of wts.layers) {
    const qs: Float64Array[] = [];
    const ks: Float64Array[] = [];
    const vs: Float64Array[] = [];
    for (let t = 0; t < S; t++) {
      const qkv = matvec(rmsNorm(hs[t] as Float64Array, L.ln, s.rmsNormEps), L.qkv, H, qkvW);
      const q = qkv.slice(0, nq * hd);
      const k = qkv.slice(nq * hd, (nq + nkv) * hd);
      const v = qkv.slice((nq + nkv) * hd);
      for (let h = 0; h < nq; h++) rope(q, h * hd, t);
      for (let h = 0; h < nkv; h++) rope(k, h * hd, t);
      qs.push(q);
      ks.push(k);
      vs.push(v);
    }
    const next: Float64Array[] = [];
    for (let t = 0; t < S; t++) {
      const ctx = new Float64Array(nq * hd);
      const q = qs[t] as Float64Array;
      for (let h = 0; h < nq; h++) {
        const kvh = Math.floor(h / group);
        const scores = new Float64Array(t + 1);
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j <= t; j++) {
          const k = ks[j] as Float64Array;
          let dot = 0;
          for (let d = 0; d < hd; d++) dot += (q[h * hd + d] as number) * (k[kvh * hd + d] as number);
          scores[j] = dot / Math.sqrt(hd);
          max = Math.max(max, scores[j] as number);
        }
        let sum = 0;
        for (let j = 0; j <= t; j++) {
          scores[j] = Math.exp((scores[j] as number) - max);
          sum += scores[j] as number;
        }
        for (let j = 0; j <= t; j++) {
          const p = (scores[j] as number) / sum;
          const v = vs[j] as Float64Array;
          for (let d = 0; d < hd; d++)
            ctx[h * hd + d] = (ctx[h * hd + d] as number) + p * (v[kvh * hd + d] as number);
        }
      }
      const o = matvec(ctx, L.o, nq * hd, H);
      const h1 = (hs[t] as Float64Array).map((x, i) => x + (o[i] as number));
      const gu = matvec(rmsNorm(h1, L.post, s.rmsNormEps), L.gateUp, H, 2 * I);
      const act = new Float64Array(I);
      for (let i = 0; i < I; i++) {
        const g = gu[i] as number;
        act[i] = (g / (1 + Math.exp(-g))) * (gu[I + i] as number);
      }
      const d = matvec(act, L.down, I, H);
      next.push(h1.map((x, i) => x + (d[i] as number)));
    }
    hs = next;
  }
  const out = new Float64Array(S * V);
  for (let t = 0; t < S; t++)
    out.set(matvec(rmsNorm(hs[t] as Float64Array, wts.finalNorm, s.rmsNormEps), wts.lmHead, H, V), t * V);
  return out;
}
