// What the library offers on every platform (Node and the browser); the entry points add the
// platform's acquireGpu. Keep this list small and stable: it is the public API.
export { GpuContext, f32, i32 } from './gpu/context.ts';
export type { AdapterSummary, KernelSpec, Param } from './gpu/context.ts';
export {
  GpuUnavailableError,
  GpuValidationError,
  GpuOutOfMemoryError,
  GpuDeviceLostError,
  ShapeError,
} from './gpu/errors.ts';
export { Tensor, empty, zeros, fromArray, parameter, tidy, untrack } from './tensor.ts';
export { backward, noGrad } from './autograd/tape.ts';
export * as ops from './ops/index.ts';
export { CapsNet, initialParameters, oneHotTargets, twoDigitLoss, evaluateTwoDigits } from './model/capsnet.ts';
export type { CapsNetOutput, CapsNetPrediction, CapsNetLoss, CapsNetMultiLoss, ReconstructionTarget, LayerTap, TwoDigitLoss, TwoDigitEvaluation } from './model/capsnet.ts';
export { topKCorrect } from './ops/losses.ts';
export { PAPER_CONFIG, CONFIG_PRESETS, presetConfig, makeConfig, parameterShapes, parameterCount, geometry } from './model/config.ts';
export type { CapsNetConfig, PresetName } from './model/config.ts';
export { BaselineCNN, makeBaselineConfig, baselineParameterShapes, BASELINE_PAPER_CONFIG, BASELINE_OFFICIAL_OVERRIDES } from './model/baseline.ts';
export type { BaselineConfig } from './model/baseline.ts';
export { Adam } from './optim/adam.ts';
export type { AdamOptions, AdamState } from './optim/adam.ts';
export { ParameterEma, emaDecayAt } from './optim/ema.ts';
export type { EmaState } from './optim/ema.ts';
export { staircaseDecay, learningRate, constantLr } from './optim/schedule.ts';
export type { LrSchedule, StaircaseOptions } from './optim/schedule.ts';
export { encodeCheckpoint, decodeCheckpoint, decodeAnyCheckpoint, CheckpointError } from './io/checkpoint.ts';
export { averageCheckpoints } from './io/checkpoint-average.ts';
export type { AverageMember } from './io/checkpoint-average.ts';
export type { Checkpoint, BaselineCheckpoint, AnyCheckpoint, OptimizerState, EncodeOptions, ModelKind } from './io/checkpoint.ts';
export { Trainer, evaluate, NonFiniteError, TooManySkipsError } from './train/trainer.ts';
export type {
  BatchSource, TrainableModel, TrainerOptions, TrainHooks, StepRecord, SkippedStep, StartupReport, NonFinitePolicy, Evaluation,
} from './train/trainer.ts';
export { TrainingBatches } from './train/batches.ts';
// Data: a Dataset holds 8-bit images and labels; IDX bytes (MNIST's format) parse into one anywhere,
// fillBatch writes a batch (pixel / 255, optionally shifted) as the models and evaluate() take it.
export type { Dataset, BatchOptions } from './data/dataset.ts';
export { fillBatch, subset, splitValidation } from './data/dataset.ts';
export { parseImages, parseLabels, pairDataset } from './data/idx.ts';
// The data generators of the paper's other experiments (issue 8), each a pure function of a seed.
export { CanvasBatches, AFFNIST_TRAIN, CIFAR10_CROPS, AFFNIST_STYLE, fillCentred, fillAffineTest } from './data/affine.ts';
export type { CanvasOptions, AffineRanges } from './data/affine.ts';
export { MultiMnistBatches, MultiMnistTestSet, MULTIMNIST_PAPER, MULTIMNIST_SHIFT6, createMultiMnistBatch } from './data/multimnist.ts';
export type { MultiMnistBatch, MultiMnistOptions } from './data/multimnist.ts';
export { parseCifarBatch, CIFAR10_LABEL_NAMES } from './data/cifar.ts';
