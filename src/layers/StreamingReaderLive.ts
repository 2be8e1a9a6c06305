/**
 * The `StreamingReader`: one pull loop over three parts. The cursor (`reader/ReadCursor.ts`)
 * holds the connection to the source and starts new attempts after failures; the chunk supply
 * (`reader/ChunkSupply.ts`) sizes, budgets, rate-limits and reads each chunk; the
 * acknowledgements (`reader/Acknowledgements.ts`) checkpoint what the consumer says it has
 * durably handled. Which parts are adaptive and which are plain is decided by the layers
 * provided (see `Stacks.ts`); the loop is the same.
 */
import type { Hash } from "node:crypto"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Sink from "effect/Sink"
import * as Stream from "effect/Stream"
import type * as Clock from "effect/Clock"
import type * as Scope from "effect/Scope"
import { AdaptiveChunkSizer } from "../services/AdaptiveChunkSizer.js"
import { AdaptiveMemoryManager } from "../services/AdaptiveMemoryManager.js"
import { AdaptiveRateLimiter } from "../services/AdaptiveRateLimiter.js"
import { BackpressureController } from "../services/BackpressureController.js"
import type { BackpressureControllerShape } from "../services/BackpressureController.js"
import type { SourceInput } from "../services/ByteSource.js"
import { ByteSource } from "../services/ByteSource.js"
import type { Checkpoint, CheckpointKey } from "../services/CheckpointStore.js"
import { CheckpointStore } from "../services/CheckpointStore.js"
import { ReaderMetrics } from "../services/ReaderMetrics.js"
import type { ReaderMetricsShape } from "../services/ReaderMetrics.js"
import { ResourceCleanupManager } from "../services/ResourceCleanupManager.js"
import type { ReadOptionsInput } from "../services/ReadOptions.js"
import { decodeReadOptions, InvalidOptions } from "../services/ReadOptions.js"
import type { ReadError, ReadSession, ReadStart, SourceChunk } from "../services/StreamingReader.js"
import { StreamingReader } from "../services/StreamingReader.js"
import { RetriesExhausted, StreamRecoveryManager } from "../services/StreamRecoveryManager.js"
import { makeBufferPool } from "./BufferPool.js"
import { makeAcknowledgements } from "./reader/Acknowledgements.js"
import type { Acknowledgements } from "./reader/Acknowledgements.js"
import type { ChunkSupply, ReadChunk } from "./reader/ChunkSupply.js"
import { makeChunkSupply } from "./reader/ChunkSupply.js"
import type { ReadCursor } from "./reader/ReadCursor.js"
import { makeReadCursor } from "./reader/ReadCursor.js"
import type { Segment } from "./reader/SegmentPlan.js"
import { gapsOf } from "./reader/SegmentPlan.js"
import type { SegmentChunk, Segments } from "./reader/Segments.js"
import { connectionsFor, makeSegments } from "./reader/Segments.js"

/** The most bytes of free reusable buffers a reader keeps (less when the memory budget is smaller). */
export const maxPooledBytes = 32 * 1024 * 1024

/**
 * A consumer that takes at least this long (ms) with a chunk gets the next one read meanwhile
 * (writing chunk n while chunk n+1 is read). A faster consumer, draining or folding, gains
 * nothing from it, so the fiber a read ahead costs is not spent.
 */
export const readAheadAfterMs = 0.05

/**
 * The order a read's resources are released in when it ends: stop reading ahead, close the
 * connection, give back the chunk and buffers, then save the checkpoint of what the consumer
 * acknowledged (which must not race a read still under way).
 */
export const CleanupPriority = { readAhead: 50, connection: 40, chunk: 30, buffers: 20, checkpoint: 10 } as const

/**
 * The loop of a read over segments taken as the segments fetch it: each pull gives back the
 * chunk the consumer held and takes whichever chunk is ready, with its offset.
 */
const makeUnorderedLoop = (
  source: string,
  segments: Segments,
  acks: Acknowledgements,
  metrics: ReaderMetricsShape
) => {
  let held: SegmentChunk | undefined
  let finished = false
  const step: Effect.Effect<SourceChunk, Option.Option<ReadError>> = Effect.suspend(() => {
    if (finished) return Effect.fail(Option.none())
    const release = held === undefined ? Effect.void : segments.release(held)
    held = undefined
    return release.pipe(
      Effect.zipRight(segments.next(false, 0)),
      Effect.mapError(Option.some),
      Effect.flatMap((next): Effect.Effect<SourceChunk, Option.Option<ReadError>> => {
        if (Option.isNone(next)) {
          finished = true
          return acks.finish.pipe(
            Effect.zipRight(metrics.outcome(source, true)),
            Effect.mapError(Option.some),
            Effect.zipRight(Effect.fail(Option.none()))
          )
        }
        held = next.value
        acks.emitRange(next.value.offset + next.value.bytes.length)
        return Effect.succeed({ offset: next.value.offset, bytes: next.value.bytes })
      }),
      Effect.tapError((error) => Option.isSome(error) ? metrics.outcome(source, false) : Effect.void)
    )
  })
  return {
    chunks: Stream.repeatEffectOption(step),
    releaseHeld: Effect.suspend(() => held === undefined ? Effect.void : segments.release(held))
  }
}

/** The chunks of a read over segments, in source order, as the pull loop takes them. */
const orderedSupply = (segments: Segments, acks: Acknowledgements, lastSize: () => number): ChunkSupply => {
  let first = true
  return {
    next: Effect.suspend(() => {
      // In order, every byte from the start is handed out: the ranges a resume held are read again.
      if (first) acks.dropRanges()
      first = false
      return segments.next(true, acks.emitted())
    }),
    release: segments.release,
    canPrepare: () => false,
    prepareNext: Effect.void,
    releasePrepared: segments.releaseAll,
    lastSize
  }
}

/** What the pull loop of one read drives. */
interface PullLoopContext {
  readonly source: string
  readonly scope: Scope.Scope
  readonly cursor: ReadCursor
  readonly chunks: ChunkSupply
  readonly acks: Acknowledgements
  readonly pressure: BackpressureControllerShape
  readonly metrics: ReaderMetricsShape
  readonly clock: Clock.Clock
  /** Pulling a chunk acknowledges the one before. */
  readonly onPull: boolean
}

/**
 * The pull loop: each pull of the consumer releases the chunk it held (acknowledging it with
 * `onPull`), takes the next chunk (prepared or read ahead, or read now) and hands it out with
 * its offset. Without pressure, the read of the chunk after it starts before the consumer has
 * it: at the source when the source reads ahead on its own, else in a fiber for a consumer slow
 * enough to be worth one. Each pull is a handful of steps; nothing waits that need not.
 */
const makePullLoop = (context: PullLoopContext) => {
  const { acks, chunks, clock, cursor, metrics, pressure, scope, source } = context
  const nowMs = () => Number(clock.unsafeCurrentTimeNanos()) / 1e6
  let finished = false
  let lastEmittedAt: number | undefined
  /** How long the consumer took with its last chunk. */
  let consumerMs = 0
  /** The chunk the consumer holds: released (its bytes and buffer) when it pulls again. */
  let held: ReadChunk | undefined
  /** The next chunk, read in a fiber while the consumer handles the one it holds. */
  let readAhead: Fiber.RuntimeFiber<Option.Option<ReadChunk>, ReadError> | undefined

  const finish = Effect.suspend(() => {
    finished = true
    return Effect.zipRight(Effect.zipRight(cursor.drop, acks.finish), metrics.outcome(source, true))
  })

  /** Gives back the chunk the consumer held, telling the controller how long it took. */
  const releaseHeldChunk = Effect.suspend(() => {
    const chunk = held
    if (chunk === undefined) return Effect.void
    const pulledAt = nowMs()
    consumerMs = pulledAt - (lastEmittedAt ?? pulledAt)
    return pressure.reportConsumer({ readMs: chunk.readMs, waitMs: consumerMs }).pipe(
      Effect.zipRight(chunks.release(chunk)),
      Effect.zipRight(Effect.sync(() => {
        held = undefined
      }))
    )
  })

  /** The read after the chunk handed out: prepared at the source, or in a fiber, or not at all. */
  const readNextEarly = (hashBefore: Hash | undefined) =>
    Effect.flatMap(pressure.current, (level): Effect.Effect<void> => {
      // A source checked by its prefix digest is hashed in order: no read ahead. Under pressure, none either.
      if (level !== "none" || hashBefore !== undefined) return Effect.void
      if (chunks.canPrepare()) return chunks.prepareNext
      if (consumerMs < readAheadAfterMs) return Effect.void
      return Effect.map(Effect.forkIn(chunks.next, scope), (fiber) => {
        readAhead = fiber
      })
    })

  /** Hands the next chunk to the consumer, or ends the read. */
  const handOut = (next: Option.Option<ReadChunk>, hashBefore: Hash | undefined) => {
    if (Option.isNone(next)) return Effect.zipRight(finish, Effect.fail(Option.none()))
    held = next.value
    const chunk: SourceChunk = { offset: acks.emitted(), bytes: next.value.bytes }
    acks.emit(chunk.bytes, hashBefore)
    lastEmittedAt = nowMs()
    return Effect.as(readNextEarly(hashBefore), chunk)
  }

  /** One pull of the consumer. */
  const step: Effect.Effect<SourceChunk, Option.Option<ReadError>> = Effect.suspend(() => {
    if (finished) return Effect.fail(Option.none())
    const release = context.onPull
      ? Effect.zipRight(releaseHeldChunk, Effect.suspend(() => acks.acknowledge(acks.emitted())))
      : releaseHeldChunk
    return release.pipe(
      Effect.zipRight(Effect.suspend(() => {
        const hashBefore: Hash | undefined = cursor.prefixHash()?.copy()
        const ahead = readAhead
        readAhead = undefined
        return Effect.flatMap(
          ahead === undefined ? chunks.next : Fiber.join(ahead),
          (next) => handOut(next, hashBefore)
        )
      })),
      Effect.mapError((error): Option.Option<ReadError> =>
        Option.isOption(error) ? error : Option.some(
          // A read ahead gave up before the consumer acknowledged the chunk it held; it has now.
          error._tag === "RetriesExhausted"
            ? new RetriesExhausted({ ...error, checkpointOffset: acks.acknowledged() })
            : error
        )
      ),
      Effect.tapError((error) => Option.isSome(error) ? metrics.outcome(source, false) : Effect.void)
    )
  })

  return {
    /** The chunks with their offsets. */
    chunks: Stream.repeatEffectOption(step),
    /** The bytes alone: the same loop, not a stream mapped over the other. */
    bytes: Stream.repeatEffectOption(Effect.map(step, (chunk) => chunk.bytes)),
    /** Stops the read ahead; a chunk it read that the consumer never took still holds its bytes. */
    releaseReadAhead: Effect.suspend(() =>
      readAhead === undefined ?
        Effect.void :
        Effect.flatMap(Fiber.interrupt(readAhead), (exit) =>
          Exit.isSuccess(exit) && Option.isSome(exit.value) ? chunks.release(exit.value.value) : Effect.void)
    ),
    /** Gives back what the chunk the consumer holds has, and a chunk prepared for it. */
    releaseHeld: Effect.suspend(() =>
      Effect.zipRight(held === undefined ? Effect.void : chunks.release(held), chunks.releasePrepared)
    )
  }
}

/** Builds the reader from the services it drives. */
export const make = Effect.gen(function*() {
  const sources = yield* ByteSource
  const sizer = yield* AdaptiveChunkSizer
  const memory = yield* AdaptiveMemoryManager
  const limiter = yield* AdaptiveRateLimiter
  const pressure = yield* BackpressureController
  const recovery = yield* StreamRecoveryManager
  const store = yield* CheckpointStore
  const metrics = yield* ReaderMetrics
  const cleanup = yield* ResourceCleanupManager
  const buffers = makeBufferPool(Math.min(memory.limit, maxPooledBytes))
  /** The connections each host gets from reads over segments, shared by every read of this reader. */
  const hostConnections = new Map<string, Effect.Semaphore>()
  const connectionsTo = (host: string, max: number) => {
    let permits = hostConnections.get(host)
    if (permits === undefined) {
      permits = Effect.unsafeMakeSemaphore(max)
      hostConnections.set(host, permits)
    }
    return permits
  }

  const open = Effect.fn("StreamingReader.open")(function*(
    input: SourceInput,
    optionsInput?: ReadOptionsInput,
    start?: ReadStart
  ) {
    const options = yield* decodeReadOptions(optionsInput)
    if (start !== undefined && !(Number.isSafeInteger(start.offset) && start.offset >= 0)) {
      return yield* new InvalidOptions({
        option: "start",
        value: String(start.offset),
        allowed: "an offset of 0 or more"
      })
    }
    const scope = yield* Effect.scope
    const clock = yield* Effect.clock
    // Under high pressure a new read waits here, before it holds a connection.
    yield* pressure.trackStream
    const handle = yield* sources.open(input)
    const source = handle.source
    const key: CheckpointKey | undefined = options.destination === undefined
      ? undefined
      : { source: handle.checkpointKey ?? source, destination: options.destination }
    const resumedFrom: Option.Option<Checkpoint> = start !== undefined || key === undefined || options.restart
      ? Option.none()
      : yield* store.load(key)
    const from: ReadStart = start ?? Option.getOrElse(resumedFrom, () => ({ offset: 0 }))
    const policy = yield* recovery.policy({ source, retries: options.retries, maxDelay: options.maxRetryDelayMs })
    const sizing = yield* sizer.make({ initial: options.chunkSize, min: options.minChunk, max: options.maxChunk })
    const rate = yield* limiter.forStream(options.rate)
    // Without a memory budget nothing would bound the reorder window: such a reader uses one connection.
    const host = options.segments > 1 && Number.isFinite(memory.limit) ? handle.connectionHost : undefined
    const permits = host === undefined ? undefined : connectionsTo(host, options.maxConnections)
    // A read that may fetch over segments holds one of its host's connections from the start.
    if (permits !== undefined) yield* Effect.acquireRelease(permits.take(1), () => permits.release(1))

    let acknowledged = () => from.offset
    let firstSegment: Segment | undefined
    let heldFrom = permits === undefined ? undefined : from.ranges?.find((range) => range.start > from.offset)?.start
    const cursor = makeReadCursor({
      handle,
      options,
      scope,
      policy,
      metrics,
      start: from,
      acknowledged: () => acknowledged(),
      // A resume over segments asks first for the gap before the first range it holds.
      end: () => firstSegment?.end ?? heldFrom
    })
    let chunks = makeChunkSupply({
      source,
      cursor,
      sizing,
      memory,
      rate,
      metrics,
      buffers: options.reuseBuffers ? buffers : undefined,
      initialSize: options.chunkSize,
      clock
    })
    yield* cursor.begin
    /** The offset of the first byte the stream emits: the start, or 0 when a changed source is read again. */
    const startOffset = cursor.position()
    const identity = cursor.identity() ?? {}
    const size = identity.size
    const startRanges = startOffset === from.offset ? from.ranges ?? [] : []
    const connections = permits === undefined ? 0 : connectionsFor(options, identity, cursor.ranged(), startOffset)
    const overSegments = connections > 1 || (connections === 1 && startRanges.length > 0)
    if (!overSegments && heldFrom !== undefined) {
      // Over one connection after all: the read goes on to the end, on a request that says so.
      heldFrom = undefined
      yield* cursor.drop
    }
    const acks = makeAcknowledgements({
      store,
      key,
      checkpointEvery: options.checkpointEvery,
      startOffset,
      startPrefixSha256: cursor.prefixHash()?.copy().digest("hex"),
      startRanges: overSegments ? startRanges : [],
      identity: cursor.identity,
      chunkSize: chunks.lastSize
    })
    acknowledged = acks.acknowledged
    /** Whether the read is taken through `unorderedChunks`. */
    let unordered = false
    const segments = !overSegments || size === undefined ? undefined : makeSegments({
      handle,
      options,
      scope,
      identity,
      gaps: (ordered) => ordered ? [{ start: startOffset, end: size }] : gapsOf(startOffset, size, startRanges),
      connections,
      first: cursor,
      setFirstSegment: (segment) => {
        firstSegment = segment
      },
      policy: recovery.policy({ source, retries: options.retries, maxDelay: options.maxRetryDelayMs }),
      // Segments exist only for large objects: each connection starts at the largest chunk.
      sizing: sizer.make({ initial: options.maxChunk, min: options.minChunk, max: options.maxChunk }),
      memory,
      buffers: options.reuseBuffers ? buffers : undefined,
      rate,
      metrics,
      clock,
      extraConnection: (work) => permits!.withPermitsIfAvailable(1)(work),
      acknowledged: () => acks.acknowledged()
    })
    if (segments !== undefined) {
      chunks = orderedSupply(segments, acks, chunks.lastSize)
      // The other connections open now, while the consumer gets ready, unless the consumer's way of
      // taking the chunks decides what to fetch (a resume that holds ranges fetches only the rest when taken as they come).
      if (startRanges.length === 0) yield* segments.startEarly
    }
    const unorderedLoop = segments === undefined ? undefined : makeUnorderedLoop(source, segments, acks, metrics)

    const loop = makePullLoop({
      source,
      scope,
      cursor,
      chunks,
      acks,
      pressure,
      metrics,
      clock,
      onPull: options.acknowledge === "on-pull"
    })

    yield* cleanup.register({
      name: `${source}: read ahead`,
      priority: CleanupPriority.readAhead,
      release: loop.releaseReadAhead
    })
    if (segments !== undefined) {
      yield* cleanup.register({
        name: `${source}: segments`,
        priority: CleanupPriority.readAhead,
        release: segments.stop
      })
    }
    yield* cleanup.register({
      name: `${source}: connection`,
      priority: CleanupPriority.connection,
      release: cursor.drop
    })
    yield* cleanup.register({
      name: `${source}: held chunk`,
      priority: CleanupPriority.chunk,
      release: unorderedLoop === undefined
        ? loop.releaseHeld
        : Effect.zipRight(loop.releaseHeld, unorderedLoop.releaseHeld)
    })
    yield* cleanup.register({
      name: `${source}: reusable buffers`,
      priority: CleanupPriority.buffers,
      release: Effect.sync(() => void buffers.clear()),
      emergency: true
    })
    yield* cleanup.register({
      name: `${source}: last checkpoint`,
      priority: CleanupPriority.checkpoint,
      release: acks.checkpoint()
    })

    const session: ReadSession = {
      source,
      startOffset,
      identity,
      resumedFrom: startOffset === from.offset ? resumedFrom : Option.none(),
      chunks: loop.chunks,
      stream: loop.bytes,
      segments: segments === undefined ? 1 : connections,
      heldRanges: segments === undefined ? [] : startRanges,
      unorderedChunks: unorderedLoop === undefined ? loop.chunks : Stream.unwrap(Effect.sync(() => {
        unordered = true
        return unorderedLoop.chunks
      })),
      acknowledge: acks.acknowledge,
      acknowledgeRange: unorderedLoop === undefined
        ? (_start, end, output) => acks.acknowledge(end, output)
        : acks.acknowledgeRange,
      checkpointDue: (end) => unordered ? acks.rangeCheckpointDue() : acks.checkpointDue(end),
      checkpoint: acks.checkpoint,
      acknowledged: Effect.sync(acks.resumePoint),
      sink: (handleChunk) =>
        Sink.forEach((chunk: SourceChunk) =>
          Effect.zipRight(handleChunk(chunk), acks.acknowledge(chunk.offset + chunk.bytes.length))
        )
    }
    return session
  })

  return StreamingReader.of({
    open,
    read: (input, optionsInput) =>
      Stream.unwrapScoped(Effect.gen(function*() {
        const options = yield* decodeReadOptions(optionsInput)
        if (options.destination !== undefined && options.acknowledge === "explicit") {
          return yield* new InvalidOptions({
            option: "acknowledge",
            value: "explicit",
            allowed: "\"on-pull\" for read() with a destination; open() acknowledges explicitly"
          })
        }
        return (yield* open(input, optionsInput)).stream
      }))
  })
})

/** The reader over whichever implementations of its parts are provided. */
export const layer: Layer.Layer<
  StreamingReader,
  never,
  | ByteSource
  | AdaptiveChunkSizer
  | AdaptiveMemoryManager
  | AdaptiveRateLimiter
  | BackpressureController
  | StreamRecoveryManager
  | CheckpointStore
  | ReaderMetrics
  | ResourceCleanupManager
> = Layer.effect(StreamingReader, make)
