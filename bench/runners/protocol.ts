/**
 * What the orchestrator and its child runners say to each other: the job a runner is given
 * (one JSON argument) and the one result line it prints. No `effect` import here, so the
 * plain Node baselines do not pay for it.
 */

/** The prefix of the one line a runner prints on success. */
export const resultPrefix = "BENCH_RESULT "

/** The prefix of the one line a runner prints when its work failed. */
export const errorPrefix = "BENCH_ERROR "

/** Interval between two RSS samples, in milliseconds. */
export const sampleEveryMs = 50

/** One RSS sample: milliseconds since the work started and the RSS in bytes. */
export type RssPoint = readonly [number, number]

/** Per-chunk figures of our reader, from `ReaderMetrics.stats` (summed or maxed over sources). */
export interface ChunkFigures {
  readonly chunks: number
  readonly meanChunkBytes: number
  readonly maxChunkBytes: number
  readonly p50ChunkMs: number
  readonly p95ChunkMs: number
  readonly p99ChunkMs: number
}

/** What a runner measured, after start-up: bytes moved, time taken and memory. */
export interface RunnerResult {
  readonly bytes: number
  /** Time of the work alone, in milliseconds (imports and layer construction excluded). */
  readonly ms: number
  /** RSS right before the work started, in bytes. */
  readonly idleRss: number
  /** Highest RSS sampled while the work ran (every 50 ms, and once at its end), in bytes. */
  readonly peakRss: number
  /** When the work started and ended, in microseconds of the monotonic clock (as a `.cpuprofile`'s timestamps). */
  readonly windowUs: readonly [number, number]
  /** Reads completed (soak, concurrent and faulty runs). */
  readonly reads?: number
  /** Attempts the reader retried after a failure (faulty runs). */
  readonly retries?: number
  /** The RSS samples, when the job asked for them. */
  readonly series?: ReadonlyArray<RssPoint>
  /** The V8 heap and the ArrayBuffers right before and right after the first pass. */
  readonly memoryBefore?: HeapReading
  readonly memoryAfter?: HeapReading
  readonly chunks?: ChunkFigures
  /** RSS and heap after a full collection before and after the work (when run with `--expose-gc`). */
  readonly settled?: { readonly before: SettledReading; readonly after: SettledReading }
  /** The same work done a second time in the same process (JIT warm), when the job asked for it. */
  readonly warm?: WarmPass
}

/** The second pass of a job: its time, window and chunk figures. */
export interface WarmPass {
  readonly ms: number
  readonly windowUs: readonly [number, number]
  readonly chunks?: ChunkFigures
}

/** What `process.memoryUsage()` says of the JavaScript heap and the buffers, in bytes. */
export interface HeapReading {
  readonly heapUsed: number
  readonly arrayBuffers: number
}

/** RSS and heap right after a full collection. */
export interface SettledReading {
  readonly rss: number
  readonly heapUsed: number
}

/** Collects all garbage and reads RSS and heap; `undefined` unless node runs with `--expose-gc`. */
export const settledReading = (): SettledReading | undefined => {
  const gc = (globalThis as { readonly gc?: () => void }).gc
  if (gc === undefined) return undefined
  gc()
  const usage = process.memoryUsage()
  return { rss: usage.rss, heapUsed: usage.heapUsed }
}

/** The heap and buffers now. */
export const readHeap = (): HeapReading => {
  const usage = process.memoryUsage()
  return { heapUsed: usage.heapUsed, arrayBuffers: usage.arrayBuffers }
}

/** Jobs of the plain Node runner (`plain.ts`). */
export type PlainJob =
  & (
    | { readonly kind: "pipeline-copy"; readonly src: string; readonly out: string }
    | { readonly kind: "fh-read"; readonly src: string; readonly chunk: number }
    | { readonly kind: "fetch-read"; readonly url: string }
    | { readonly kind: "undici-read"; readonly url: string }
  )
  & WarmOption

/** Whether to do the work a second time in the same process and report that pass too. */
export interface WarmOption {
  readonly warm?: boolean
}

/** Which composition of the library a job runs on. */
export type StackName = "basic" | "enhanced"

/** Jobs of the Effect runner (`effect.ts`), on the built library in `dist/`. */
export type EffectJob =
  & (
    | {
      readonly kind: "copy"
      readonly stack: StackName
      readonly src: string
      readonly out: string
      readonly statePath: string
      readonly checkpointEvery?: number
    }
    | { readonly kind: "platform-read"; readonly src: string }
    | {
      readonly kind: "read"
      readonly stack: StackName
      readonly src: string
      readonly reuseBuffers: boolean
      readonly chunkSize?: number
      readonly maxChunk?: number
      /** The `segments` read option; the reader's default when absent. */
      readonly segments?: number
    }
    | { readonly kind: "concurrent"; readonly sources: ReadonlyArray<string> }
    | { readonly kind: "soak"; readonly sources: ReadonlyArray<string>; readonly durationMs: number }
  )
  & WarmOption

/** The job of the faulty-HTTP runner (`faulty.ts`): `reads` reads of one URL at once, each checked. */
export interface FaultyJob {
  readonly url: string
  readonly reads: number
  /** The object's size and sha256, which every read must match. */
  readonly size: number
  readonly sha256: string
  readonly retries: number
  readonly maxRetryDelayMs: number
}

/** Samples RSS every 50 ms from now until `stop`; keeps the series when asked. */
export const startSampler = (keepSeries: boolean) => {
  const startedAt = performance.now()
  const series: Array<RssPoint> = []
  let peak = 0
  const take = () => {
    const rss = process.memoryUsage.rss()
    if (rss > peak) peak = rss
    if (keepSeries) series.push([Math.round(performance.now() - startedAt), rss])
  }
  take()
  const timer = setInterval(take, sampleEveryMs)
  return {
    /** The highest RSS so far, sampling once more now. */
    peak: (): number => {
      take()
      return peak
    },
    stop: (): { readonly peakRss: number; readonly series: ReadonlyArray<RssPoint> } => {
      clearInterval(timer)
      take()
      return { peakRss: peak, series }
    }
  }
}

/** Now on the monotonic clock, in microseconds (the clock of `.cpuprofile` timestamps). */
export const monotonicUs = (): number => Number(process.hrtime.bigint() / 1000n)

/** Prints the result line and exits once it is written. */
export const emitResult = (result: RunnerResult): void => {
  process.stdout.write(`${resultPrefix}${JSON.stringify(result)}\n`, () => process.exit(0))
}

/** Prints the error line and exits with 1 once it is written. */
export const emitError = (error: unknown): void => {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  process.stdout.write(`${errorPrefix}${JSON.stringify({ error: text })}\n`, () => process.exit(1))
}

/** The job given as the runner's first argument. */
export const jobArgument = <A>(): A => JSON.parse(process.argv[2] ?? "null") as A
