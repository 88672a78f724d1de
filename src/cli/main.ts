// The `capsnet` command line. Exit codes: 0 done, 1 failed (the message says why and what to do),
// 2 bad usage (a flag or a file argument is wrong; nothing was written).
import { GpuUnavailableError } from '../gpu/errors.ts';
import { resolveBackend } from '../gpu/node.ts';
import { UsageError, parseFlags } from './args.ts';
import { doctor } from './doctor.ts';

const HELP = `capsnet: Capsule Networks on WebGPU

usage: capsnet <command> [flags]

commands:
  doctor [--backend B] [--all]   show the WebGPU adapter in use, its limits and features, and
                                 check that a kernel computes correct numbers on it
                                 (--all: try every backend: default, vulkan, opengl)
  help                           this text

common flags:
  --backend auto|default|vulkan|opengl   which Dawn backend to use in Node (env CAPSNET_BACKEND)

Without a GPU, WebGPU runs on Mesa's software drivers: \`npm run setup-gpu\` installs them.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'doctor': {
      const { values } = parseFlags('doctor', rest, { backend: { type: 'string' }, all: { type: 'boolean' } });
      return doctor(values.backend === undefined ? undefined : resolveBackend(values.backend), values.all ?? false);
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(HELP);
      return 0;
    default:
      throw new UsageError(`capsnet: unknown command '${command}'; try \`capsnet help\``);
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) {
    console.error(error.message);
    process.exitCode = 2;
  } else if (error instanceof GpuUnavailableError) {
    console.error(`capsnet: ${error.message}`);
    process.exitCode = error.message.startsWith('--backend') ? 2 : 1;
  } else {
    console.error(`capsnet: ${(error as Error).stack ?? error}`);
    process.exitCode = 1;
  }
}
