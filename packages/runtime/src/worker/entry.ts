/** Worker-thread entry of WorkerRunner: serves an OnnxRunner. */
import { parentPort } from 'node:worker_threads';
import { OnnxRunner } from '../execution/onnx-runner.js';
import { serveRunner } from './serve.js';

if (parentPort === null) throw new Error('worker/entry must run in a worker thread');
serveRunner(parentPort, (options) => OnnxRunner.create(options));
