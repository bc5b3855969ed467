#!/usr/bin/env node
/**
 * The `tsinfer` command line. Each subcommand lives in its own module and
 * registers itself here.
 */
import { registerBench } from '@tsinfer/bench';
import { TsinferError } from '@tsinfer/core';
import { registerGateway } from '@tsinfer/gateway';
import { Command } from 'commander';
import { registerCalibrate } from './calibrate.js';
import { registerMakeModel } from './make-model.js';
import { registerServe } from './serve.js';

export function createProgram(): Command {
  const program = new Command('tsinfer')
    .description('tsinfer: an LLM serving runtime for Node.js')
    .showHelpAfterError()
    .configureHelp({ sortSubcommands: true });
  registerBench(program);
  registerCalibrate(program);
  registerGateway(program);
  registerMakeModel(program);
  registerServe(program);
  return program;
}

export async function main(argv: readonly string[] = process.argv): Promise<void> {
  try {
    await createProgram().parseAsync([...argv]);
  } catch (err) {
    if (err instanceof TsinferError) {
      console.error(`error ${err.code}: ${err.message}`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
}

await main();
