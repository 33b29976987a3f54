// An in-memory labelled image set (u8 pixels, one channel) and its pixel statistics.

/** Images stored row-major as `count x height x width` u8 pixels, with one label each. */
export interface ImageDataset {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  height: number;
  width: number;
}

export interface PixelStats {
  /** Mean of all pixels scaled to [0, 1]. */
  mean: number;
  /** Population standard deviation of all pixels scaled to [0, 1]. */
  std: number;
}

/** Throws unless the lengths agree with count, height and width; `name` leads the message. */
export function checkImageDataset(ds: ImageDataset, name: string): void {
  const { count, height, width } = ds;
  for (const [field, v] of [['count', count], ['height', height], ['width', width]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) {
      throw new RangeError(`${name}: ${field} must be a non-negative integer, got ${v}`);
    }
  }
  if (ds.images.length !== count * height * width) {
    throw new RangeError(
      `${name}: images has ${ds.images.length} bytes, ` +
        `expected count x height x width = ${count}x${height}x${width} = ${count * height * width}`,
    );
  }
  if (ds.labels.length !== count) {
    throw new RangeError(`${name}: labels has ${ds.labels.length} entries, count is ${count}`);
  }
}

/**
 * Mean and standard deviation of every pixel in [0, 1]. Pixels are u8, so one pass fills a
 * 256-bin histogram of integer counts and the float sums have 256 terms, not millions.
 */
export function pixelStats(ds: ImageDataset): PixelStats {
  const n = ds.images.length;
  if (n === 0) throw new RangeError('pixelStats: the dataset has no pixels');
  const hist = new Float64Array(256);
  const px = ds.images;
  for (let i = 0; i < n; i++) hist[px[i]]++;
  let sum = 0;
  for (let v = 0; v < 256; v++) sum += hist[v] * (v / 255);
  const mean = sum / n;
  let sq = 0;
  for (let v = 0; v < 256; v++) sq += hist[v] * (v / 255 - mean) ** 2;
  return { mean, std: Math.sqrt(sq / n) };
}
