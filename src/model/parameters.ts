// What every model shares: its trainable tensors by checkpoint name (PyTorch layouts), created
// from values, listed in checkpoint order, read back, replaced, and freed.
import type { GpuContext } from '../gpu/context.ts';
import { type Tensor, parameter } from '../tensor.ts';

export class ParameterSet {
  /** By checkpoint name; each requires a gradient. */
  readonly params: Record<string, Tensor> = {};

  constructor(
    readonly ctx: GpuContext,
    /** Names the model in errors. */
    private readonly modelName: string,
    shapes: Record<string, number[]>,
    values: Record<string, Float32Array>,
  ) {
    for (const [name, shape] of Object.entries(shapes)) {
      const data = values[name];
      if (!data) throw new Error(`${modelName}: no values for parameter '${name}' [${shape.join(', ')}]`);
      this.params[name] = parameter(ctx, shape, data, name);
    }
  }

  /** The parameters in a fixed order (the checkpoint's). */
  parameterList(): Tensor[] {
    return Object.values(this.params);
  }

  /** Every parameter read back, by checkpoint name (PyTorch layouts). */
  async exportParams(): Promise<Record<string, Float32Array>> {
    const out: Record<string, Float32Array> = {};
    for (const [name, t] of Object.entries(this.params)) out[name] = await t.read();
    return out;
  }

  /** Replaces every parameter's values (same config); checks them all before changing any. */
  importParams(values: Record<string, Float32Array>): void {
    for (const [name, t] of Object.entries(this.params)) {
      const data = values[name];
      if (!data || data.length !== t.size) throw new Error(`${this.modelName}.importParams: '${name}' needs ${t.size} values, got ${data?.length ?? 'none'}`);
    }
    for (const [name, t] of Object.entries(this.params)) this.ctx.upload(t.buffer, values[name]);
  }

  dispose(): void {
    for (const t of Object.values(this.params)) t.dispose();
  }
}
