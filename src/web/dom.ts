// Small DOM helpers for the app (no framework).

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no element #${id}`);
  return node as T;
}

type Attrs = Record<string, string | number | boolean | ((event: Event) => void) | undefined>;

/** An element with attributes (on* keys become listeners) and children. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (typeof value === 'function') node.addEventListener(key.replace(/^on/, ''), value);
    else if (key === 'text') node.textContent = String(value);
    else if (key === 'className') node.className = String(value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) node.append(child);
  return node;
}

/** Grey values in [0, 1] (w x h, row-major) into a canvas of that size. */
export function drawGray(canvas: HTMLCanvasElement, values: ArrayLike<number>, w: number, h: number): void {
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
  const g = canvas.getContext('2d')!;
  const image = g.createImageData(w, h);
  for (let k = 0; k < w * h; k++) {
    const v = values[k];
    const b = v > 0 ? (v < 1 ? Math.round(v * 255) : 255) : 0;
    image.data[4 * k] = b;
    image.data[4 * k + 1] = b;
    image.data[4 * k + 2] = b;
    image.data[4 * k + 3] = 255;
  }
  g.putImageData(image, 0, 0);
}

/** Offers bytes as a file download. */
export function downloadBytes(bytes: Uint8Array, name: string): void {
  const blob = new Blob([bytes as Uint8Array<ArrayBuffer>], { type: 'application/octet-stream' });
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Lets the browser paint and handle input: the next animation frame, or 50 ms in a hidden tab. */
export function breathe(): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        resolve();
      }
    };
    requestAnimationFrame(finish);
    setTimeout(finish, 50);
  });
}

export function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

export function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

export function formatBytes(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MB` : `${Math.max(1, Math.round(n / 1024))} KB`;
}

/** "step 5 is lost" or "steps 4 to 9 are lost": the steps after `kept` up to `reached`. */
export function stepsLost(kept: number, reached: number): string {
  return reached === kept + 1 ? `step ${reached} is lost` : `steps ${kept + 1} to ${reached} are lost`;
}

export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
