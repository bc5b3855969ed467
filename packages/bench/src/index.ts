/**
 * @tsinfer/bench: `tsinfer bench` (SGLang bench_serving's flags, metrics,
 * printed table and JSONL line) and `tsinfer bench report` (HTML charts).
 */
export {
  API_PATHS,
  BACKENDS,
  type Backend,
  buildPayload,
  defaultPort,
  LineSplitter,
  type PayloadOptions,
  type Protocol,
  parseNonStreamed,
  protocolOf,
  type RequestInput,
  type RequestOutput,
  StreamParser,
} from './backends.js';
export { type BenchFlags, parseBenchFlags, registerBench } from './cli.js';
export {
  baseVocabSize,
  computeRandomLens,
  DATASET_NAMES,
  type DatasetName,
  type DatasetRow,
  DEFAULT_SHAREGPT_PATH,
  loadShareGpt,
  numSpecialTokensToAdd,
  randomIdsRows,
  sampleRandomIdsRequests,
  sampleRandomRequests,
  sampleShareGptRequests,
} from './datasets.js';
export {
  buildDetails,
  buildResult,
  DETAIL_KEYS,
  defaultOutputFile,
  formatResultTable,
  RESULT_KEYS,
  type TableMeta,
} from './format.js';
export { HttpClient } from './http.js';
export { type LoadSample, parseLoads, type RankLoad, startLoadSampler } from './loads.js';
export { type BenchmarkMetrics, calculateMetrics, type MetricsResult } from './metrics.js';
export { parsePyJson, pyFixed, pyFloatRepr, pyJsonDumps } from './pyformat.js';
export { exponential, nextArrivalDelayMs, randint, shuffle } from './random.js';
export { buildCharts, buildReportHtml, type RunRecord, readRuns, renderSvg, writeReport } from './report.js';
export { sendRequest } from './request.js';
export {
  type BenchDeps,
  type BenchOptions,
  type BenchRunResult,
  DEFAULT_BENCH_OPTIONS,
  resolveBaseUrl,
  runBench,
  Semaphore,
} from './run.js';
export {
  DEFAULT_SIM_OPTIONS,
  formatSimStats,
  gammaUnit,
  nextSimArrivalDelayMs,
  parseSimFlags,
  registerSim,
  runSim,
  SIM_BACKEND,
  type SimDeps,
  type SimFlags,
  type SimOptions,
  type SimRunResult,
  type SimSchedulerOptions,
  type SimStats,
} from './sim/index.js';
export { mean, median, percentile, type Summary, std, summarize } from './stats.js';
export { type BenchTokenizer, ByteTokenizer, builtinTokenizer, resolveTokenizer } from './tokenizer.js';
