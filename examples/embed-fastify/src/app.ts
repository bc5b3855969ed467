/**
 * An application's own fastify server that also serves an LLM: tsinfer's
 * routes (OpenAI API, /generate, /v1/loads, /metrics, ...) are mounted under
 * `/llm` next to the app's own routes. tsinfer's validation, error shape
 * and API key apply to its routes only; the app's routes are untouched.
 */
import { DEFAULT_SAMPLING, type Engine, TsinferHttp } from '@tsinfer/server';
import Fastify, { type FastifyInstance } from 'fastify';

export interface AppOptions {
  engine: Engine;
  /** Optional key for the /llm routes only. */
  llmApiKey?: string;
  logger?: boolean;
}

export async function buildApp(options: AppOptions): Promise<{ app: FastifyInstance; llm: TsinferHttp }> {
  const app = Fastify({ logger: options.logger ?? false });

  // The app's own routes.
  const todos: string[] = [];
  app.get('/', async () => ({ service: 'todo-app', llm: '/llm/v1/chat/completions' }));
  app.get('/todos', async () => ({ todos }));
  app.post<{ Body: { title: string } }>(
    '/todos',
    { schema: { body: { type: 'object', required: ['title'], properties: { title: { type: 'string' } } } } },
    async (req, reply) => {
      todos.push(req.body.title);
      return reply.code(201).send({ id: todos.length - 1, title: req.body.title });
    },
  );

  // An app route that uses the engine directly (no HTTP hop): summarize the todo list.
  app.get('/todos/summary', async () => {
    const prompt = `Summarize my todo list: ${todos.join('; ') || '(empty)'}\n`;
    let text = '';
    for await (const ev of options.engine.generate({
      prompt: { text: prompt },
      sampling: DEFAULT_SAMPLING,
      maxNewTokens: 16,
      stop: ['\n'],
      stopTokenIds: [],
      ignoreEos: false,
    })) {
      text += ev.text;
    }
    return { summary: text };
  });

  // tsinfer's routes, encapsulated under /llm.
  const llm = new TsinferHttp({ engine: options.engine, apiKey: options.llmApiKey ?? null });
  await app.register(llm.plugin, { prefix: '/llm' });

  // Drain the LLM routes, then stop the engine, when the app closes.
  app.addHook('preClose', async () => {
    llm.beginDrain();
  });
  app.addHook('onClose', async () => {
    await options.engine.shutdown({ timeoutMs: 10_000 });
  });
  return { app, llm };
}
