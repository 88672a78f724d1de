// The drawing pad: white ink on black (like MNIST) with the mouse, a finger or a pen (pointer
// events), or the keyboard (arrow keys move the pen, Space lowers or lifts it, Delete clears; the
// pen is shown on an overlay canvas only while the pad has focus). A test digit can be shown on it;
// the model then sees that digit's exact pixels until someone draws over it.

import { normalizeDrawing } from './preprocess.ts';

export interface PadImage {
  /** The model's input (28x28 in [0, 1]), or null when the pad is empty. */
  input: Float32Array | null;
  /** True when it is a test digit's exact pixels (not re-normalised). */
  exact: boolean;
}

export class DrawPad {
  private readonly g: CanvasRenderingContext2D;
  private readonly cursorG: CanvasRenderingContext2D;
  private drawing = false;
  /** The pointer drawing the current stroke: a second finger must not join its path to this one's. */
  private pointerId: number | null = null;
  private last: [number, number] | null = null;
  private exactImage: Float32Array | null = null;
  private inked = false;
  /** Keyboard pen. */
  private pen: [number, number];
  private penDown = false;
  penSize = 22;

  constructor(
    private readonly canvas: HTMLCanvasElement,
    private readonly cursor: HTMLCanvasElement,
    private readonly emptyHint: HTMLElement,
    /** Called when the image changed: `final` at the end of a stroke. */
    private readonly onChange: (final: boolean) => void,
  ) {
    this.g = canvas.getContext('2d', { willReadFrequently: true })!;
    this.cursorG = cursor.getContext('2d')!;
    this.pen = [canvas.width / 2, canvas.height / 2];
    this.clear(false);
    canvas.addEventListener('pointerdown', (e) => this.pointerDown(e));
    canvas.addEventListener('pointermove', (e) => this.pointerMove(e));
    canvas.addEventListener('pointerup', (e) => this.pointerUp(e));
    canvas.addEventListener('pointercancel', (e) => this.pointerUp(e));
    canvas.addEventListener('keydown', (e) => this.key(e));
    canvas.addEventListener('focus', () => this.drawCursor());
    canvas.addEventListener('blur', () => {
      this.cursorG.clearRect(0, 0, cursor.width, cursor.height);
      if (this.penDown) {
        this.penDown = false;
        this.onChange(true);
      }
    });
  }

  get isEmpty(): boolean {
    return !this.inked;
  }

  clear(notify = true): void {
    this.g.fillStyle = '#000';
    this.g.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.exactImage = null;
    this.inked = false;
    this.penDown = false;
    this.emptyHint.hidden = false;
    this.drawCursor();
    if (notify) this.onChange(true);
  }

  /** Shows an image (size x size, values in [0, 1]) scaled up smoothly; the model sees its exact pixels. */
  showImage(values: Float32Array, size = 28): void {
    const small = document.createElement('canvas');
    small.width = size;
    small.height = size;
    const sg = small.getContext('2d')!;
    const data = sg.createImageData(size, size);
    for (let k = 0; k < size * size; k++) {
      const b = Math.round(Math.min(1, Math.max(0, values[k])) * 255);
      data.data.set([b, b, b, 255], 4 * k);
    }
    sg.putImageData(data, 0, 0);
    this.g.imageSmoothingEnabled = true;
    this.g.imageSmoothingQuality = 'high';
    this.g.drawImage(small, 0, 0, this.canvas.width, this.canvas.height);
    this.exactImage = values;
    this.inked = true;
    this.emptyHint.hidden = true;
    this.onChange(true);
  }

  /** What the model should see now. */
  image(): PadImage {
    if (this.exactImage) return { input: this.exactImage, exact: true };
    if (!this.inked) return { input: null, exact: false };
    const { width, height } = this.canvas;
    const rgba = this.g.getImageData(0, 0, width, height).data;
    const grey = new Float32Array(width * height);
    for (let k = 0; k < grey.length; k++) grey[k] = rgba[4 * k] / 255;
    return { input: normalizeDrawing(grey, width, height), exact: false };
  }

  private point(e: PointerEvent): [number, number] {
    const rect = this.canvas.getBoundingClientRect();
    return [((e.clientX - rect.left) / rect.width) * this.canvas.width, ((e.clientY - rect.top) / rect.height) * this.canvas.height];
  }

  private stroke(from: [number, number], to: [number, number]): void {
    const g = this.g;
    g.strokeStyle = '#fff';
    g.fillStyle = '#fff';
    g.lineWidth = this.penSize;
    g.lineCap = 'round';
    g.lineJoin = 'round';
    g.beginPath();
    if (from[0] === to[0] && from[1] === to[1]) {
      g.arc(to[0], to[1], this.penSize / 2, 0, 2 * Math.PI);
      g.fill();
    } else {
      g.moveTo(from[0], from[1]);
      g.lineTo(to[0], to[1]);
      g.stroke();
    }
    this.exactImage = null;
    this.inked = true;
    this.emptyHint.hidden = true;
  }

  private pointerDown(e: PointerEvent): void {
    if (e.button !== 0 && e.pointerType === 'mouse') return;
    e.preventDefault();
    if (this.drawing) return;
    this.canvas.setPointerCapture(e.pointerId);
    this.drawing = true;
    this.pointerId = e.pointerId;
    const p = this.point(e);
    this.stroke(p, p);
    this.last = p;
    this.onChange(false);
  }

  private pointerMove(e: PointerEvent): void {
    if (!this.drawing || !this.last || e.pointerId !== this.pointerId) return;
    e.preventDefault();
    // Coalesced events give the full path on fast strokes.
    const events = typeof e.getCoalescedEvents === 'function' ? e.getCoalescedEvents() : [];
    for (const ev of events.length > 0 ? events : [e]) {
      const p = this.point(ev);
      this.stroke(this.last, p);
      this.last = p;
    }
    this.onChange(false);
  }

  private pointerUp(e: PointerEvent): void {
    if (!this.drawing || e.pointerId !== this.pointerId) return;
    this.drawing = false;
    this.pointerId = null;
    this.last = null;
    if (this.canvas.hasPointerCapture(e.pointerId)) this.canvas.releasePointerCapture(e.pointerId);
    this.onChange(true);
  }

  private key(e: KeyboardEvent): void {
    const step = e.shiftKey ? 21 : 7;
    const moves: Record<string, [number, number]> = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    const move = moves[e.key];
    if (move) {
      e.preventDefault();
      const from = this.pen;
      const clamp = (v: number, max: number) => Math.min(max - 4, Math.max(4, v));
      this.pen = [clamp(from[0] + move[0], this.canvas.width), clamp(from[1] + move[1], this.canvas.height)];
      if (this.penDown) {
        this.stroke(from, this.pen);
        this.onChange(false);
      }
      this.drawCursor();
    } else if (e.key === ' ' || e.key === 'Enter') {
      e.preventDefault();
      this.penDown = !this.penDown;
      if (this.penDown) {
        this.stroke(this.pen, this.pen);
        this.onChange(false);
      } else {
        this.onChange(true);
      }
      this.drawCursor();
    } else if (e.key === 'Delete' || e.key === 'Backspace') {
      e.preventDefault();
      this.clear();
    }
  }

  private drawCursor(): void {
    const g = this.cursorG;
    g.clearRect(0, 0, this.cursor.width, this.cursor.height);
    if (document.activeElement !== this.canvas) return;
    const [x, y] = this.pen;
    g.lineWidth = 2;
    g.strokeStyle = this.penDown ? '#f59e0b' : '#818cf8';
    g.beginPath();
    g.arc(x, y, this.penSize / 2 + 3, 0, 2 * Math.PI);
    g.stroke();
    g.beginPath();
    g.moveTo(x - 4, y);
    g.lineTo(x + 4, y);
    g.moveTo(x, y - 4);
    g.lineTo(x, y + 4);
    g.stroke();
  }
}
