/**
 * Small statistics for the report: median, min, max, and the least-squares slope of a series.
 */

/** Bytes in the "MB" of every figure in the report (10^6, as the CLI's `mbPerSec`). */
export const MB = 1e6

/** Median of the values (mean of the middle two for an even count); `NaN` when empty. */
export const median = (values: ReadonlyArray<number>): number => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

/** The median, the smallest and the largest of some values. */
export interface Spread {
  readonly median: number
  readonly min: number
  readonly max: number
  readonly n: number
}

/** The median, min and max of the values (`NaN`s when empty). */
export const spread = (values: ReadonlyArray<number>): Spread => ({
  median: median(values),
  min: values.length === 0 ? Number.NaN : Math.min(...values),
  max: values.length === 0 ? Number.NaN : Math.max(...values),
  n: values.length
})

/** Least-squares slope of y over x (y units per x unit); 0 with fewer than two distinct x. */
export const slope = (points: ReadonlyArray<readonly [number, number]>): number => {
  const n = points.length
  if (n < 2) return 0
  let meanX = 0
  let meanY = 0
  for (const [x, y] of points) {
    meanX += x / n
    meanY += y / n
  }
  let covariance = 0
  let variance = 0
  for (const [x, y] of points) {
    covariance += (x - meanX) * (y - meanY)
    variance += (x - meanX) ** 2
  }
  return variance === 0 ? 0 : covariance / variance
}

/** MB/s of `bytes` moved in `ms` milliseconds. */
export const mbPerSec = (bytes: number, ms: number): number => bytes / MB / (ms / 1000)
