/**
 * ReaderMetrics: Effect `Metric`s for reads, labelled by source, and a summary of one source's figures.
 */
import * as Context from "effect/Context"
import type * as Effect from "effect/Effect"

/** The figures of one source's reads so far. */
export interface ReadStats {
  readonly bytes: number
  readonly chunks: number
  readonly retries: number
  readonly recoveries: number
  readonly p50ChunkMs: number
  readonly p95ChunkMs: number
  readonly p99ChunkMs: number
  /** Mean (bytes / chunks) and largest chunk size delivered, in bytes. */
  readonly meanChunkBytes: number
  readonly maxChunkBytes: number
  /** The most segments (connections) one read of the source used at once; 1 for a read over one connection. */
  readonly maxSegments: number
}

/** Records and reports read metrics. */
export interface ReaderMetricsShape {
  /**
   * Records one chunk delivered: its size and how long the consumer waited for it. Synchronous,
   * with no Effect to allocate: it runs once per chunk.
   */
  readonly unsafeRecordChunk: (source: string, bytes: number, latencyMs: number) => void
  /** Records one failed attempt that will be retried. */
  readonly retry: (source: string) => Effect.Effect<void>
  /** Records one resume after a failure. */
  readonly recovery: (source: string) => Effect.Effect<void>
  /** Records how a read ended. */
  readonly outcome: (source: string, succeeded: boolean) => Effect.Effect<void>
  /** Records how many segments of a read over several are fetching now. */
  readonly unsafeRecordSegments: (source: string, active: number) => void
  /** Records the budget in use; synchronous, as it runs once per chunk. */
  readonly unsafeRecordBudget: (bytes: number) => void
  /** The figures of one source's reads so far. */
  readonly stats: (source: string) => Effect.Effect<ReadStats>
  /** Every metric of the process in the Prometheus text exposition format. */
  readonly prometheus: Effect.Effect<string>
}

/** Records and reports read metrics. */
export class ReaderMetrics extends Context.Tag("streaming-reader/ReaderMetrics")<ReaderMetrics, ReaderMetricsShape>() {}
