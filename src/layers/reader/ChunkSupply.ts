/**
 * Chunk acquisition: the next chunk of a read asks the chunk sizer for a size, reserves it from
 * the memory budget, takes it from the rate limiter and pulls it through the cursor, into a
 * reused buffer when the consumer allows it.
 */
import { Clock, Effect, Option } from "effect"
import type { MemoryReservation } from "../../services/AdaptiveMemoryManager.js"
import type { AdaptiveMemoryManagerShape } from "../../services/AdaptiveMemoryManager.js"
import type { ChunkSizing } from "../../services/AdaptiveChunkSizer.js"
import type { StreamRateLimiter } from "../../services/AdaptiveRateLimiter.js"
import type { ReaderMetricsShape } from "../../services/ReaderMetrics.js"
import type { ReadError } from "../../services/StreamingReader.js"
import type { BufferPool } from "../BufferPool.js"
import type { ReadCursor } from "./ReadCursor.js"

/** A chunk read from the source with what it holds until the consumer is done with it. */
export interface ReadChunk {
  readonly bytes: Uint8Array
  readonly reservation: MemoryReservation
  /** The reused buffer the bytes are a view of, returned to the free list on release. */
  readonly buffer: Uint8Array | undefined
  readonly readMs: number
}

/** Where a read's chunks come from. */
export interface ChunkSupply {
  /** Reads the next chunk: size, budget, rate, then the bytes. `None` at the end of the source. */
  readonly next: Effect.Effect<Option.Option<ReadChunk>, ReadError>
  /** Gives back what a chunk holds: its share of the budget and its buffer. */
  readonly release: (chunk: ReadChunk) => Effect.Effect<void>
  /** The size of the last chunk read. */
  readonly lastSize: () => number
}

/** What a read's chunk supply is made of. */
export interface ChunkSupplyContext {
  readonly source: string
  readonly cursor: ReadCursor
  readonly sizing: ChunkSizing
  readonly memory: AdaptiveMemoryManagerShape
  readonly rate: StreamRateLimiter
  readonly metrics: ReaderMetricsShape
  /** Reused buffers, when the consumer is done with each chunk before it pulls the next. */
  readonly buffers: BufferPool | undefined
  readonly initialSize: number
}

const empty = new Uint8Array(0)

const nowMs = Effect.map(Clock.currentTimeNanos, (nanos) => Number(nanos) / 1e6)

/** Makes the chunk supply of one read. */
export const makeChunkSupply = (context: ChunkSupplyContext): ChunkSupply => {
  const { buffers, cursor, memory, metrics, sizing, source } = context
  let lastSize = context.initialSize

  const release = (chunk: ReadChunk) =>
    Effect.suspend(() => {
      if (chunk.buffer !== undefined) buffers?.give(chunk.buffer)
      return chunk.reservation.release
    })

  const next = Effect.gen(function*() {
    const size = yield* sizing.next
    const reservation = yield* memory.reserve(size)
    yield* Effect.flatMap(memory.inUse, metrics.budgetInUse)
    const allowed = yield* context.rate.take(reservation.bytes)
    // A source checked by its prefix digest keeps the bytes of unacknowledged chunks: no reuse.
    const buffer = buffers !== undefined && cursor.prefixHash() === undefined
      ? buffers.take(reservation.bytes)
      : undefined
    const startedAt = yield* nowMs
    const bytes = yield* cursor.pull(allowed, buffer).pipe(
      // Failed or interrupted (a read ahead cut short when the read ends): give the bytes back.
      Effect.onError(() => release({ bytes: empty, reservation, buffer, readMs: 0 }))
    )
    const readMs = (yield* nowMs) - startedAt
    const chunk: ReadChunk = { bytes, reservation, buffer, readMs }
    if (bytes.length === 0) {
      yield* release(chunk)
      return Option.none<ReadChunk>()
    }
    lastSize = reservation.bytes
    yield* sizing.observe({ bytes: bytes.length, latencyMs: readMs })
    yield* metrics.chunk(source, bytes.length, readMs)
    return Option.some(chunk)
  })

  return { next, release, lastSize: () => lastSize }
}
