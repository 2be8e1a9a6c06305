/**
 * Segments: one HTTP(S) object fetched over several ranged connections at once. Each connection
 * runs a segment worker: it claims a range from the plan (`SegmentPlan.ts`), reads it through
 * its own cursor (its own retries, the read's version sent as `If-Range` / `If-Match`, so
 * another version fails the read with `SourceChanged`), and hands each chunk over with its
 * offset. The chunks are taken in source order (the library's one ordered stream: chunks ahead
 * of the consumer wait in a reorder window inside the memory budget) or as they come (the file
 * copy, which writes each at its offset). A worker that finishes its range takes half of the
 * largest range left, so one slow connection does not hold up the end, unless the consumer is
 * what holds the read up.
 */
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Option from "effect/Option"
import type * as Clock from "effect/Clock"
import type * as Scope from "effect/Scope"
import type { ChunkSizing } from "../../services/AdaptiveChunkSizer.js"
import type { MemoryReservation } from "../../services/AdaptiveMemoryManager.js"
import type { AdaptiveMemoryManagerShape } from "../../services/AdaptiveMemoryManager.js"
import type { StreamRateLimiter } from "../../services/AdaptiveRateLimiter.js"
import type { SourceHandle, SourceIdentity } from "../../services/ByteSource.js"
import { resumableAtOffset } from "../../services/ByteSource.js"
import type { ByteRange } from "../../services/CheckpointStore.js"
import type { ReaderMetricsShape } from "../../services/ReaderMetrics.js"
import type { ReadOptions } from "../../services/ReadOptions.js"
import type { ReadError } from "../../services/StreamingReader.js"
import type { RetryPolicy } from "../../services/StreamRecoveryManager.js"
import type { BufferPool } from "../BufferPool.js"
import type { ReadChunk } from "./ChunkSupply.js"
import { releaseChunk } from "./ChunkSupply.js"
import type { ReadCursor } from "./ReadCursor.js"
import { makeReadCursor } from "./ReadCursor.js"
import type { Segment, SegmentPlan } from "./SegmentPlan.js"
import { makeSegmentPlan } from "./SegmentPlan.js"

/** A chunk a segment read, with its offset in the source. */
export interface SegmentChunk extends ReadChunk {
  readonly offset: number
}

/**
 * Chunks ahead of the consumer (in source order) may hold the budget only up to this share of
 * it: the rest stays for the chunk the consumer waits for, and for other reads.
 */
export const aheadShare = 1 / 2

/**
 * Chunks taken as they come wait for a consumer that writes one at a time: each connection may
 * have this many fetched and not yet taken before it waits, so memory stays a few chunks per connection.
 */
export const waitingPerConnection = 2

/** What the segments of one read need. */
export interface SegmentsContext {
  readonly handle: SourceHandle
  readonly options: ReadOptions
  /** The read's scope: the workers and their connections live in it. */
  readonly scope: Scope.Scope
  /** The version every segment must read. */
  readonly identity: SourceIdentity
  /**
   * The ranges to fetch, sorted and disjoint, the first starting where `first` stands: taken in
   * order, every byte from the start; as they come, only what a resume does not hold yet.
   */
  readonly gaps: (ordered: boolean) => ReadonlyArray<ByteRange>
  /** Connections to use, the first included. */
  readonly connections: number
  /** The read's cursor, connected at the first gap's start; its end follows `setFirstEnd`. */
  readonly first: ReadCursor
  /** Gives the first cursor the segment it reads (its end moves when another worker takes half). */
  readonly setFirstSegment: (segment: Segment) => void
  /** A retry policy for one segment. */
  readonly policy: Effect.Effect<RetryPolicy>
  /** A chunk sizing for one connection. */
  readonly sizing: Effect.Effect<ChunkSizing>
  readonly memory: AdaptiveMemoryManagerShape
  /** Reused buffers for the chunks, when the consumer is done with each before it takes the next. */
  readonly buffers: BufferPool | undefined
  /** The read's rate limiter: its cap holds for all segments together. */
  readonly rate: StreamRateLimiter
  readonly metrics: ReaderMetricsShape
  readonly clock: Clock.Clock
  /** Takes one connection to the host for an extra worker, if one is free; releases it with the effect given. */
  readonly extraConnection: <A, E>(work: Effect.Effect<A, E>) => Effect.Effect<Option.Option<A>, E>
  /** The offset the consumer acknowledged, reported with `RetriesExhausted`. */
  readonly acknowledged: () => number
}

/** The segments of one read, taken in order or as they come. */
export interface Segments {
  /**
   * The next chunk: with `ordered`, the one at `offset` (the end of the chunk before), else any
   * that is ready. `None` once every range is fetched and taken. The first call starts the workers.
   */
  readonly next: (ordered: boolean, offset: number) => Effect.Effect<Option.Option<SegmentChunk>, ReadError>
  /**
   * Starts the workers before the consumer's first pull, which then takes the chunks either way:
   * for a read whose ranges are the same in order and as they come (no ranges held from before).
   * Until then the chunks fetched wait as for a consumer in order.
   */
  readonly startEarly: Effect.Effect<void>
  /** Gives back what a chunk holds once the consumer is done with it: its budget and its buffer. */
  readonly release: (chunk: ReadChunk) => Effect.Effect<void>
  /** Stops every connection's worker and waits until they are done (the read ends); a chunk they fetched stays in the window. */
  readonly stop: Effect.Effect<void>
  /** Gives back every chunk fetched and not taken (the read ends, after `stop`). */
  readonly releaseAll: Effect.Effect<void>
}

/**
 * How many connections a read may fetch `identity` over from `startOffset`: 0 unless its size is
 * known, a strong validator vouches for it and its first answer was the range asked for (or
 * nothing is left to read); else the ranges the plan starts with, at most `segments`.
 */
export const connectionsFor = (
  options: ReadOptions,
  identity: SourceIdentity,
  ranged: boolean,
  startOffset: number
): number =>
  identity.size === undefined || !ranged || !resumableAtOffset(identity) || startOffset >= identity.size
    ? 0
    : makeSegmentPlan([{ start: startOffset, end: identity.size }], options.segments, options.minSegmentSize).planned

/** A wake-up that waiters take before they check again; firing wakes every one waiting. */
const makeSignal = () => {
  let current = Deferred.unsafeMake<void>(FiberId.none)
  return {
    /** The wait for the next firing; take it before checking what it guards. */
    current: () => current,
    fire: () => {
      const fired = current
      current = Deferred.unsafeMake<void>(FiberId.none)
      Deferred.unsafeDone(fired, Exit.void)
    }
  }
}

/** Makes the segments of a read; nothing runs until `startEarly` or the first `next`. */
export const makeSegments = (context: SegmentsContext): Segments => {
  const { clock, handle, memory, metrics, options, rate } = context
  const source = handle.source
  let plan: SegmentPlan | undefined
  const nowMs = () => Number(clock.unsafeCurrentTimeNanos()) / 1e6
  /** Chunks fetched and not taken: by offset (in order), and in the order they came. */
  const window = new Map<number, SegmentChunk>()
  const arrivals: Array<SegmentChunk> = []
  const arrived = makeSignal()
  const taken = makeSignal()
  let ordered = true
  let started = false
  /** Whether the consumer has pulled: until then a read started early has not chosen how it takes its chunks. */
  let chosen = false
  let running = 0
  let active = 0
  /** Why a worker failed: the read fails with it. */
  let failure: Cause.Cause<ReadError> | undefined
  /** The offset the consumer (in order) waits for. */
  let wanted = 0

  /**
   * Workers waiting for a consumer that takes the chunks as they come: while any does, the
   * consumer is the bottleneck. (In order, a wait for the window says that the chunk wanted is
   * slow to come, not the consumer.)
   */
  let waitingForConsumer = 0
  const awaitTaken = (wait: Deferred.Deferred<void>) =>
    Effect.suspend(() => {
      waitingForConsumer++
      return Effect.ensuring(
        Deferred.await(wait),
        Effect.sync(() => {
          waitingForConsumer--
        })
      )
    })

  /** Budget for a chunk at `offset`: the one wanted may wait for it; one ahead only while the window has room. */
  const reserveFor = (offset: number, bytes: number): Effect.Effect<MemoryReservation> =>
    Effect.suspend(() => {
      if (!ordered || offset === wanted) return memory.reserve(bytes)
      const wait = taken.current()
      if (memory.unsafeInUse() + bytes <= memory.limit * aheadShare) {
        const reservation = memory.unsafeTryReserve(bytes)
        if (reservation !== undefined) return Effect.succeed(reservation)
      }
      return Effect.zipRight(Deferred.await(wait), reserveFor(offset, bytes))
    })

  const deliver = (chunk: SegmentChunk) => {
    if (ordered) {
      window.set(chunk.offset, chunk)
      // In order, the consumer waits only for the chunk it wants.
      if (chunk.offset === wanted) arrived.fire()
    } else {
      arrivals.push(chunk)
      arrived.fire()
    }
  }

  /** Taken as they come: waits while the consumer has enough chunks waiting for it. */
  const roomToWait: Effect.Effect<void> = Effect.suspend(() => {
    if (ordered || arrivals.length < waitingPerConnection * context.connections) return Effect.void
    return Effect.zipRight(awaitTaken(taken.current()), roomToWait)
  })

  /** Reads `segment` to its end through `cursor`, which may end before (another worker took the rest). */
  const fetch = (segment: Segment, cursor: ReadCursor, sizing: ChunkSizing): Effect.Effect<void, ReadError> =>
    Effect.suspend(() => {
      if (segment.position >= segment.end) return Effect.void
      return Effect.gen(function*() {
        yield* roomToWait
        const size = yield* sizing.next
        const reservation = yield* reserveFor(segment.position, Math.min(size, segment.end - segment.position))
        metrics.unsafeRecordBudget(memory.unsafeInUse())
        const allowed = yield* Effect.onError(rate.take(reservation.bytes), () => reservation.release)
        const asked = Math.min(allowed, segment.end - segment.position)
        const buffer = context.buffers?.take(asked)
        const startedAt = nowMs()
        const bytes = yield* cursor.pull(asked, buffer).pipe(
          // Failed or interrupted: the budget goes back; the buffer, which a read may still be filling, is not reused.
          Effect.onError(() => reservation.release)
        )
        const readMs = nowMs() - startedAt
        // A pull asked for before another worker took half the range may go past its new end.
        const kept = bytes.subarray(0, Math.max(0, Math.min(bytes.length, segment.end - segment.position)))
        if (kept.length === 0) {
          if (buffer !== undefined) context.buffers?.give(buffer)
          yield* reservation.release
          return
        }
        const offset = segment.position
        segment.position += kept.length
        metrics.unsafeRecordChunk(source, kept.length, readMs)
        yield* sizing.observe({ bytes: kept.length, latencyMs: readMs, asked: reservation.bytes })
        deliver({ offset, bytes: kept, reservation, buffer, readMs })
      }).pipe(Effect.zipRight(Effect.suspend(() => fetch(segment, cursor, sizing))))
    })

  /** One segment, in its own span. */
  const runSegment = (segment: Segment, cursor: ReadCursor, sizing: ChunkSizing) =>
    fetch(segment, cursor, sizing).pipe(
      Effect.ensuring(cursor.drop),
      Effect.withSpan("StreamingReader.segment", {
        attributes: { source, start: segment.position, end: segment.end }
      })
    )

  /** A worker: its first range, then ranges claimed from the plan until none is left. */
  const worker = (first: { readonly segment: Segment; readonly cursor: ReadCursor } | undefined) =>
    Effect.gen(function*() {
      const sizing = yield* context.sizing
      const policy = yield* context.policy
      metrics.unsafeRecordSegments(source, ++active)
      yield* Effect.addFinalizer(() => Effect.sync(() => metrics.unsafeRecordSegments(source, --active)))
      let current = first
      while (true) {
        if (current === undefined) {
          // A connection splits another's range only while the consumer keeps up: when it does not,
          // more connections gain nothing, and the bytes the other already received past the split
          // would be fetched twice.
          const segment = plan!.claim(waitingForConsumer === 0)
          if (segment === undefined) return
          const cursor = makeReadCursor({
            handle,
            options,
            scope: context.scope,
            policy,
            metrics,
            start: { offset: segment.position, identity: context.identity },
            acknowledged: context.acknowledged,
            end: () => segment.end,
            knownVersion: true
          })
          current = { segment, cursor }
        }
        yield* runSegment(current.segment, current.cursor, sizing)
        current = undefined
      }
    }).pipe(Effect.scoped)

  const workers = new Set<Fiber.RuntimeFiber<unknown, ReadError>>()

  /** Runs a worker in the read's scope, counted from now until it ends; its failure fails the read. */
  const launch = (work: Effect.Effect<unknown, ReadError>) =>
    Effect.suspend(() => {
      running++
      return Effect.tap(
        Effect.forkIn(
          Effect.onExit(work, (exit) =>
            Effect.sync(() => {
              running--
              if (Exit.isFailure(exit) && failure === undefined && !Cause.isInterruptedOnly(exit.cause)) {
                failure = exit.cause
              }
              arrived.fire()
            })),
          context.scope
        ),
        (fiber) => {
          workers.add(fiber)
          fiber.addObserver(() => workers.delete(fiber))
        }
      )
    })

  const start = Effect.suspend(() => {
    started = true
    plan = makeSegmentPlan(context.gaps(ordered), context.connections, options.minSegmentSize)
    const firstSegment = plan.claim()
    if (firstSegment === undefined) return Effect.void
    context.setFirstSegment(firstSegment)
    // The first request asked for more than the first segment (the whole object, before its size
    // was known): it is asked again for that segment alone, so the server does not send the
    // other segments' bytes over it too.
    const asked = context.first.attemptEnd()
    const narrow = asked === undefined || asked > firstSegment.end ? context.first.drop : Effect.void
    return Effect.zipRight(
      narrow,
      Effect.zipRight(
        launch(worker({ segment: firstSegment, cursor: context.first })),
        Effect.forEach(
          Array.from({ length: context.connections - 1 }),
          () => launch(context.extraConnection(worker(undefined))),
          { discard: true }
        )
      )
    )
  })

  const take = (offset: number): SegmentChunk | undefined => {
    if (ordered) {
      const chunk = window.get(offset)
      if (chunk !== undefined) window.delete(offset)
      return chunk
    }
    return arrivals.shift()
  }

  const release = releaseChunk(context.buffers)

  /** The consumer's first pull says how it takes the chunks; those fetched already follow. */
  const choose = (inOrder: boolean, offset: number) => {
    chosen = true
    wanted = offset
    if (inOrder === ordered) return
    ordered = inOrder
    for (const chunk of Array.from(window.values()).sort((a, b) => a.offset - b.offset)) arrivals.push(chunk)
    window.clear()
    taken.fire()
  }

  const next = (inOrder: boolean, offset: number): Effect.Effect<Option.Option<SegmentChunk>, ReadError> =>
    Effect.suspend(() => {
      if (!chosen) {
        choose(inOrder, offset)
        if (!started) return Effect.zipRight(start, next(inOrder, offset))
      }
      if (inOrder !== ordered) return Effect.dieMessage("a read over segments is taken either in order or as it comes")
      wanted = offset
      const wait = arrived.current()
      const chunk = take(offset)
      if (chunk !== undefined) {
        taken.fire()
        return Effect.succeed(Option.some(chunk))
      }
      if (failure !== undefined) return Effect.failCause(failure)
      // The chunk wanted may be further on than any worker reads: let one ahead of it have budget.
      taken.fire()
      if (running === 0) {
        const left = plan?.remaining() ?? 0
        return left === 0 && window.size === 0
          ? Effect.succeed(Option.none())
          : Effect.dieMessage(`the segments of ${source} stopped with ${left} bytes left to fetch`)
      }
      return Effect.zipRight(Deferred.await(wait), next(inOrder, offset))
    })

  return {
    next,
    startEarly: Effect.suspend(() => {
      if (started) return Effect.void
      wanted = context.gaps(true)[0]?.start ?? 0
      return start
    }),
    release,
    stop: Effect.suspend(() => Fiber.interruptAll(Array.from(workers))),
    releaseAll: Effect.suspend(() => {
      const left = [...window.values(), ...arrivals.splice(0)]
      window.clear()
      return Effect.forEach(left, release, { discard: true })
    })
  }
}
