/**
 * Chunk acquisition: the next chunk of a read asks the chunk sizer for a size, reserves it from
 * the memory budget, takes it from the rate limiter and pulls it through the cursor, into a
 * reused buffer when the consumer allows it. While the consumer has a chunk, the next one can be
 * prepared (`prepareNext`): its size and budget taken at once and its read started at the
 * source, so the consumer's work and the reader's own overlap the source's.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Clock from "effect/Clock"
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
  /** How long the consumer's pull waited for the bytes, in ms. */
  readonly readMs: number
}

/** Gives back what a chunk holds once the consumer is done with it: its share of the budget, and its buffer to `buffers`. */
export const releaseChunk = (buffers: BufferPool | undefined) => (chunk: ReadChunk): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (chunk.buffer !== undefined) buffers?.give(chunk.buffer)
    return chunk.reservation.release
  })

/** Where a read's chunks come from. */
export interface ChunkSupply {
  /** Reads the next chunk: size, budget, rate, then the bytes. `None` at the end of the source. */
  readonly next: Effect.Effect<Option.Option<ReadChunk>, ReadError>
  /** Gives back what a chunk holds: its share of the budget and its buffer. */
  readonly release: (chunk: ReadChunk) => Effect.Effect<void>
  /** Whether the source can start the next read on its own (see `prepareNext`). */
  readonly canPrepare: () => boolean
  /**
   * Starts the reads of the next chunks at the source (up to `readAheadChunks`) when that costs
   * no waiting: the size is the sizer's, the budget fits now and no rate cap applies. `next`
   * takes them in order.
   */
  readonly prepareNext: Effect.Effect<void>
  /** Gives back the budget and buffer of a prepared chunk the consumer never pulled. */
  readonly releasePrepared: Effect.Effect<void>
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
  /** The clock chunk latencies are measured with. */
  readonly clock: Clock.Clock
}

/** The budget and buffer of a chunk whose read the source has started. */
interface Prepared {
  readonly reservation: MemoryReservation
  readonly buffer: Uint8Array | undefined
}

/**
 * How many chunks a read prepares ahead of the one the consumer holds: the source reads them back
 * to back, the next one starting the moment the one before is done.
 */
export const readAheadChunks = 2

/** Makes the chunk supply of one read. */
export const makeChunkSupply = (context: ChunkSupplyContext): ChunkSupply => {
  const { buffers, clock, cursor, memory, metrics, sizing, source } = context
  let lastSize = context.initialSize
  /** Chunks whose reads the source has started or queued, oldest first. */
  const prepared: Array<Prepared> = []

  const nowMs = () => Number(clock.unsafeCurrentTimeNanos()) / 1e6

  const release = releaseChunk(buffers)

  // A source checked by its prefix digest keeps the bytes of unacknowledged chunks: no reuse.
  const bufferFor = (bytes: number) =>
    buffers !== undefined && cursor.prefixHash() === undefined ? buffers.take(bytes) : undefined

  /** Pulls `allowed` bytes covered by `reservation` and makes them the next chunk. */
  const read = (reservation: MemoryReservation, allowed: number, buffer: Uint8Array | undefined) => {
    const startedAt = nowMs()
    return cursor.pull(allowed, buffer).pipe(
      // Failed or interrupted: the budget goes back; the buffer, which a read may still be filling, is not reused.
      Effect.onError(() => reservation.release),
      Effect.flatMap((bytes) => {
        const readMs = nowMs() - startedAt
        const chunk: ReadChunk = { bytes, reservation, buffer, readMs }
        if (bytes.length === 0) return Effect.as(release(chunk), Option.none<ReadChunk>())
        lastSize = reservation.bytes
        metrics.unsafeRecordChunk(source, bytes.length, readMs)
        return Effect.as(
          sizing.observe({ bytes: bytes.length, latencyMs: readMs, asked: reservation.bytes }),
          Option.some(chunk)
        )
      })
    )
  }

  const readNew = Effect.gen(function*() {
    const size = yield* sizing.next
    const reservation = yield* memory.reserve(size)
    metrics.unsafeRecordBudget(memory.unsafeInUse())
    const allowed = yield* context.rate.take(reservation.bytes)
    return yield* read(reservation, allowed, bufferFor(reservation.bytes))
  })

  const next = Effect.suspend(() => {
    const ready = prepared.shift()
    return ready === undefined ? readNew : read(ready.reservation, ready.reservation.bytes, ready.buffer)
  })

  const prepareNext = Effect.suspend(() => {
    if (prepared.length >= readAheadChunks || context.rate.limited || !cursor.canPrefetch()) return Effect.void
    return Effect.map(sizing.next, (size) => {
      while (prepared.length < readAheadChunks) {
        // Beyond the first, a chunk is read ahead only while three quarters of the budget are free:
        // many reads at once share the throughput, and the memory they hold ahead would only grow.
        if (prepared.length > 0 && memory.unsafeInUse() + size > memory.limit / 4) return
        const reservation = memory.unsafeTryReserve(size)
        if (reservation === undefined) return
        metrics.unsafeRecordBudget(memory.unsafeInUse())
        const buffer = bufferFor(reservation.bytes)
        prepared.push({ reservation, buffer })
        cursor.prefetch(reservation.bytes, buffer)
      }
    })
  })

  // A prepared read may still be filling its buffer: the budget goes back, the buffer is not reused.
  const releasePrepared = Effect.suspend(() =>
    Effect.forEach(prepared.splice(0), (ready) => ready.reservation.release, { discard: true })
  )

  return {
    next,
    release,
    canPrepare: cursor.canPrefetch,
    prepareNext,
    releasePrepared,
    lastSize: () => lastSize
  }
}
