// Canvas drawings of the live panel: the loss curve, the prototype-usage histogram and the
// grid of images grouped by assigned prototype. Plain 2-D canvas, no library.

import type { LiveImages } from './live.js';

const INK = '#222';
const FAINT = '#999';
const LINE = '#1f6feb';
const FONT = '12px system-ui, sans-serif';

function clear(canvas: HTMLCanvasElement): CanvasRenderingContext2D {
  const g = canvas.getContext('2d')!;
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.font = FONT;
  return g;
}

function note(g: CanvasRenderingContext2D, canvas: HTMLCanvasElement, text: string): void {
  g.fillStyle = FAINT;
  g.textAlign = 'center';
  g.fillText(text, canvas.width / 2, canvas.height / 2);
  g.textAlign = 'left';
}

/** Loss against step, with the range of the y axis written at its ends. */
export function drawLossChart(canvas: HTMLCanvasElement, losses: readonly number[]): void {
  const g = clear(canvas);
  if (losses.length === 0) return note(g, canvas, 'no steps yet');
  const left = 56;
  const bottom = canvas.height - 20;
  const top = 10;
  const right = canvas.width - 10;
  const finite = losses.filter(Number.isFinite);
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  if (hi - lo < 1e-12) {
    lo -= 0.5;
    hi += 0.5;
  }
  g.strokeStyle = FAINT;
  g.beginPath();
  g.moveTo(left, top);
  g.lineTo(left, bottom);
  g.lineTo(right, bottom);
  g.stroke();
  g.fillStyle = INK;
  g.fillText(hi.toPrecision(4), 4, top + 10);
  g.fillText(lo.toPrecision(4), 4, bottom);
  g.fillText(`step ${losses.length}`, right - 70, canvas.height - 4);
  const span = Math.max(losses.length - 1, 1);
  const xOf = (i: number) => left + (right - left) * (losses.length === 1 ? 0.5 : i / span);
  const yOf = (v: number) => bottom - (bottom - top) * ((v - lo) / (hi - lo));
  g.strokeStyle = LINE;
  g.lineWidth = 1.5;
  g.beginPath();
  losses.forEach((v, i) => {
    if (!Number.isFinite(v)) return;
    if (i === 0) g.moveTo(xOf(i), yOf(v));
    else g.lineTo(xOf(i), yOf(v));
  });
  g.stroke();
  g.lineWidth = 1;
}

/** How many images each prototype got; a flat histogram means no collapse. */
export function drawHistogram(canvas: HTMLCanvasElement, counts: ArrayLike<number>): void {
  const g = clear(canvas);
  if (counts.length === 0) return note(g, canvas, 'no assignments yet');
  const bottom = canvas.height - 20;
  const w = canvas.width / counts.length;
  let max = 1;
  let used = 0;
  for (let k = 0; k < counts.length; k++) {
    max = Math.max(max, counts[k]);
    if (counts[k] > 0) used++;
  }
  g.fillStyle = LINE;
  for (let k = 0; k < counts.length; k++) {
    const h = (bottom - 14) * (counts[k] / max);
    g.fillRect(k * w + (w > 3 ? 0.5 : 0), bottom - h, Math.max(w - 1, 0.5), h);
  }
  g.fillStyle = INK;
  g.fillText(`${used} of ${counts.length} prototypes used; tallest bar ${max}`, 4, 12);
  g.fillText('prototype', 4, canvas.height - 4);
}

/** Counts of each prototype in 0..k-1 among `assignments`. */
export function countAssignments(assignments: Int32Array, k: number): Int32Array {
  const counts = new Int32Array(k);
  for (const a of assignments) if (a >= 0 && a < k) counts[a]++;
  return counts;
}

/**
 * One row per prototype among the `rows` most used ones, each showing up to `perRow` of the
 * images assigned to it, labelled with the prototype's number.
 */
export function drawGroups(canvas: HTMLCanvasElement, images: LiveImages | undefined,
  assignments: Int32Array, k: number, rows = 8, perRow = 12): void {
  const g = clear(canvas);
  if (!images || images.count === 0) return note(g, canvas, 'no images yet');
  const counts = countAssignments(assignments, k);
  const order = [...counts.keys()].filter((p) => counts[p] > 0)
    .sort((a, b) => counts[b] - counts[a]).slice(0, rows);
  const label = 44;
  const cell = Math.floor(Math.min((canvas.width - label) / perRow,
    canvas.height / Math.max(rows, 1)));
  const { width: iw, height: ih } = images;
  const tile = g.createImageData(iw, ih);
  const scratch = document.createElement('canvas');
  scratch.width = iw;
  scratch.height = ih;
  const sg = scratch.getContext('2d')!;
  g.imageSmoothingEnabled = false;
  order.forEach((p, r) => {
    g.fillStyle = INK;
    g.fillText(`#${p}`, 2, r * cell + cell / 2 + 4);
    let col = 0;
    for (let i = 0; i < assignments.length && i < images.count && col < perRow; i++) {
      if (assignments[i] !== p) continue;
      const px = images.pixels.subarray(i * iw * ih, (i + 1) * iw * ih);
      for (let j = 0; j < px.length; j++) {
        // Fashion-MNIST is white on black; drawn dark on light to match the page.
        const v = 255 - px[j];
        tile.data[4 * j] = v;
        tile.data[4 * j + 1] = v;
        tile.data[4 * j + 2] = v;
        tile.data[4 * j + 3] = 255;
      }
      sg.putImageData(tile, 0, 0);
      g.drawImage(scratch, label + col * cell, r * cell, cell - 2, cell - 2);
      col++;
    }
  });
}
