// Every op of the engine, by family.
export { add, mul, relu, sigmoid, sum, mean, copy, fill, addInto, reshape } from './elementwise.ts';
