// Every op of the engine, by family.
export { add, mul, relu, sigmoid, sum, mean, copy, fill, addInto, reshape } from './elementwise.ts';
export { conv2d } from './conv2d.ts';
export type { Conv2dOptions } from './conv2d.ts';
export { squash, primaryCaps, capsPredict, routing, capsuleLengths, longestCapsule, maskCapsules } from './capsules.ts';
export type { RoutingOptions } from './capsules.ts';
export { dense } from './dense.ts';
export type { Activation } from './dense.ts';
export { marginLoss, reconstructionLoss, softmaxCrossEntropy } from './losses.ts';
export { dropout, dropoutSeed } from './dropout.ts';
export { maxPool2d } from './pool.ts';
