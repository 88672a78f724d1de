// The autograd tape, micrograd-style: each op that has an input requiring a gradient records a
// closure applying its local chain rule; backward() visits the graph in reverse topological order
// (an iterative depth-first search, so deep graphs cannot overflow the stack) and calls them.

import { type Tensor, untrack } from '../tensor.ts';
import { addInto, fill } from '../ops/elementwise.ts';

let gradEnabled = true;

/** Runs fn without recording anything on the tape (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const saved = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = saved;
  }
}

/** Marks `output` as made by an op, when any input needs a gradient. Returns output. */
export function record(output: Tensor, name: string, inputs: readonly Tensor[], backward: (gradOutput: Tensor) => void): Tensor {
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    output.requiresGrad = true;
    // The backward kernels are labelled with the layer the forward ran in (profiles, error messages).
    const scope = output.ctx.scope;
    output.creator = { name, inputs, backward: scope ? (g) => output.ctx.scoped(`${scope}:backward`, () => backward(g)) : backward };
  }
  return output;
}

/**
 * Adds `grad` into t.grad. Takes ownership of `grad` (a fresh tensor made by a backward closure):
 * it becomes t.grad, or is added in and disposed. Gradients belong to no scope.
 */
export function accumulateGrad(t: Tensor, grad: Tensor): void {
  if (!t.requiresGrad) {
    grad.dispose();
    return;
  }
  untrack(grad);
  if (t.grad === null) {
    t.grad = grad;
  } else {
    addInto(t.grad, grad);
    grad.dispose();
  }
}

/** Tensors reachable from `root` through ops, inputs before the tensors made from them. */
export function topologicalOrder(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: Array<[Tensor, boolean]> = [[root, false]];
  while (stack.length > 0) {
    const [t, inputsDone] = stack.pop()!;
    if (inputsDone) {
      order.push(t);
      continue;
    }
    if (visited.has(t)) continue;
    visited.add(t);
    stack.push([t, true]);
    for (const input of t.creator?.inputs ?? []) {
      if (input.isDisposed) {
        throw new Error(
          `backward: ${input.describe()}, an input of '${t.creator!.name}', was disposed before backward(); ` +
            'run the forward pass and backward() inside the same tidy()',
        );
      }
      if (input.requiresGrad && !visited.has(input)) stack.push([input, false]);
    }
  }
  return order;
}

/**
 * Back-propagates from `loss` (d loss / d loss = 1, or `seed` of loss's shape). Leaf tensors
 * (parameters) keep their .grad, accumulated over calls until zeroed; intermediate gradients are
 * freed as soon as they have been used, and the tape is cut so that saved tensors can be freed.
 */
export function backward(loss: Tensor, seed?: Tensor): void {
  if (!loss.requiresGrad) throw new Error(`backward: ${loss.describe()} does not depend on anything that requires a gradient`);
  const order = topologicalOrder(loss);
  const seedGrad = seed ?? fill(loss.ctx, loss.shape, 1);
  accumulateGrad(loss, seedGrad);
  for (let k = order.length - 1; k >= 0; k--) {
    const t = order[k];
    const op = t.creator;
    if (!op) continue; // a leaf: keeps its gradient
    const grad = t.grad;
    t.grad = null;
    t.creator = null;
    if (grad) {
      op.backward(grad);
      grad.dispose();
    }
  }
}
