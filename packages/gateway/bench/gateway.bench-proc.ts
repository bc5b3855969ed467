/**
 * The gateway under benchmark, in its own process: argv[2] is a JSON
 * GatewayConfigInput. Prints one line of JSON with its URL.
 */
import { createGateway, type GatewayConfigInput } from '../src/index.js';

const input = JSON.parse(process.argv[2] ?? '{}') as GatewayConfigInput;
const app = await createGateway({ logLevel: 'silent', ...input });
const url = await app.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(`${JSON.stringify({ url })}\n`);
process.once('SIGTERM', () => {
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
