/**
 * The `StreamingReader`: one pull loop that asks the chunk sizer for a size, reserves it from
 * the memory budget, takes it from the rate limiter, reads it from the source and emits it.
 * Failed attempts resume where the stream stands; acknowledged offsets are checkpointed.
 * Which of these parts are adaptive and which are plain is decided by the layers provided
 * (see `Stacks.ts`); the loop is the same.
 */
import { Clock, Effect, ExecutionStrategy, Exit, Fiber, Layer, Option, Scope, Stream } from "effect"
import { AdaptiveChunkSizer } from "../services/AdaptiveChunkSizer.js"
import { AdaptiveMemoryManager } from "../services/AdaptiveMemoryManager.js"
import type { MemoryReservation } from "../services/AdaptiveMemoryManager.js"
import { AdaptiveRateLimiter } from "../services/AdaptiveRateLimiter.js"
import { BackpressureController } from "../services/BackpressureController.js"
import type { SourceCursor, SourceError, SourceIdentity, SourceInput } from "../services/ByteSource.js"
import { ByteSource, sameIdentity, SourceChanged, SourceStalled, TransientReadError } from "../services/ByteSource.js"
import type { CheckpointKey } from "../services/CheckpointStore.js"
import { CheckpointStore } from "../services/CheckpointStore.js"
import { ReaderMetrics } from "../services/ReaderMetrics.js"
import { ResourceCleanupManager } from "../services/ResourceCleanupManager.js"
import type { ReadOptionsInput } from "../services/ReadOptions.js"
import { decodeReadOptions } from "../services/ReadOptions.js"
import type { ReadError, ReadHooks, ReadSession } from "../services/StreamingReader.js"
import { StreamingReader } from "../services/StreamingReader.js"
import { RetriesExhausted, StreamRecoveryManager } from "../services/StreamRecoveryManager.js"
import { makeBufferPool } from "./BufferPool.js"

const nowMs = Effect.map(Clock.currentTimeNanos, (nanos) => Number(nanos) / 1e6)

const empty = new Uint8Array(0)

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

/** A chunk read from the source with what it holds until the consumer is done with it. */
interface ReadChunk {
  readonly bytes: Uint8Array
  readonly reservation: MemoryReservation
  /** The reused buffer the bytes are a view of, returned to the free list on release. */
  readonly buffer: Uint8Array | undefined
  readonly readMs: number
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

  const open = Effect.fn("StreamingReader.open")(function*(
    input: SourceInput,
    optionsInput?: ReadOptionsInput,
    hooks: ReadHooks = {}
  ) {
    const options = yield* decodeReadOptions(optionsInput)
    const scope = yield* Effect.scope
    const handle = yield* sources.open(input)
    const source = handle.source
    const key: CheckpointKey | undefined = options.destination === undefined
      ? undefined
      : { source: handle.checkpointKey ?? source, destination: options.destination }
    const saved = key === undefined || options.restart ? Option.none() : yield* store.load(key)
    const policy = yield* recovery.policy({ source, retries: options.retries, maxDelay: options.maxRetryDelayMs })
    const sizing = yield* sizer.make({ initial: options.chunkSize, min: options.minChunk, max: options.maxChunk })
    const rate = yield* limiter.forStream(options.rate)
    yield* pressure.trackStream

    const startOffset = Option.match(saved, {
      onNone: () => 0,
      onSome: (checkpoint) => Math.min(checkpoint.offset, options.maxResumeOffset ?? checkpoint.offset)
    })
    let identity: SourceIdentity | undefined = Option.getOrUndefined(Option.map(saved, (c) => c.identity))
    /** Bytes pulled from the source, read ahead included: where a new attempt starts. */
    let readPosition = startOffset
    /** Bytes handed to the consumer. */
    let emitted = startOffset
    /** Bytes the consumer is done with: what a checkpoint may vouch for. */
    let acknowledged = startOffset
    let chunksSinceCheckpoint = 0
    let lastChunkSize = options.chunkSize
    let attempt: { readonly scope: Scope.CloseableScope; readonly cursor: SourceCursor } | undefined
    let failedAttempts = 0
    let finished = false
    let lastEmittedAt: number | undefined
    /** How long the consumer took with its last chunk. */
    let consumerMs = 0
    /** The chunk the consumer holds: released (its bytes and buffer) when it pulls again. */
    let held: ReadChunk | undefined
    /** The next chunk, read while the consumer handles the one it holds. */
    let readAhead: Fiber.RuntimeFiber<Option.Option<ReadChunk>, ReadError> | undefined

    const saveCheckpoint = Effect.suspend(() => {
      if (key === undefined || identity === undefined) return Effect.void
      const checkpoint = { key, offset: acknowledged, identity, chunkSize: lastChunkSize, updatedAt: Date.now() }
      return hooks.beforeCheckpoint === undefined
        ? store.save(checkpoint)
        : Effect.zipRight(hooks.beforeCheckpoint, store.save(checkpoint))
    }).pipe(Effect.withSpan("StreamingReader.checkpoint"))

    const dropAttempt = Effect.suspend(() => {
      const current = attempt
      attempt = undefined
      return current === undefined ? Effect.void : Scope.close(current.scope, Exit.void)
    })

    const startAttempt = Effect.gen(function*() {
      const attemptScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
      const cursor = yield* handle.readFrom(readPosition, identity).pipe(
        Scope.extend(attemptScope),
        Effect.tapError(() => Scope.close(attemptScope, Exit.void))
      )
      if (identity !== undefined && !sameIdentity(identity, cursor.identity)) {
        yield* Scope.close(attemptScope, Exit.void)
        return yield* new SourceChanged({ source, expected: identity, actual: cursor.identity })
      }
      identity ??= cursor.identity
      if (failedAttempts > 0) yield* metrics.recovery(source)
      attempt = { scope: attemptScope, cursor }
      return cursor
    }).pipe((body) =>
      // An attempt after a failure, or at a checkpoint, is a resume.
      Effect.suspend(() =>
        Effect.withSpan(body, failedAttempts > 0 || readPosition > 0 ? "StreamingReader.resume" : "StreamingReader.attempt", {
          attributes: { source, offset: readPosition }
        })
      )
    )

    const boundedPull = (cursor: SourceCursor, maxBytes: number, into: Uint8Array | undefined) =>
      cursor.pull(maxBytes, into).pipe(
        Effect.timeoutFail({
          duration: options.stallTimeoutMs,
          onTimeout: () => new SourceStalled({ source, afterMs: options.stallTimeoutMs })
        })
      )

    const pullOnce = (maxBytes: number, into: Uint8Array | undefined) =>
      Effect.gen(function*() {
        const cursor = attempt?.cursor ?? (yield* startAttempt)
        const bytes = yield* (handle.canStall ? boundedPull(cursor, maxBytes, into) : cursor.pull(maxBytes, into))
        if (bytes.length === 0 && identity?.size !== undefined && readPosition < identity.size) {
          return yield* new TransientReadError({
            source,
            reason: `source ended early at byte ${readPosition} of ${identity.size}`
          })
        }
        return bytes
      })

    const withRecovery = <A>(run: Effect.Effect<A, SourceError>): Effect.Effect<A, ReadError> =>
      Effect.catchAll(run, (error) =>
        dropAttempt.pipe(
          Effect.zipRight(policy.onFailure(error, acknowledged)),
          Effect.zipRight(Effect.sync(() => failedAttempts++)),
          Effect.zipRight(metrics.retry(source)),
          Effect.zipRight(Effect.suspend(() => withRecovery(run)))
        ))

    const release = (chunk: ReadChunk) =>
      Effect.suspend(() => {
        if (chunk.buffer !== undefined) buffers.give(chunk.buffer)
        return chunk.reservation.release
      })

    /** Reads the next chunk from the source: size, budget, rate, then the bytes. `None` at the end. */
    const readChunk = Effect.gen(function*() {
      const size = yield* sizing.next
      const reservation = yield* memory.reserve(size)
      yield* Effect.flatMap(memory.inUse, metrics.budgetInUse)
      const allowed = yield* rate.take(reservation.bytes)
      const buffer = options.reuseBuffers ? buffers.take(reservation.bytes) : undefined
      const startedAt = yield* nowMs
      const bytes = yield* withRecovery(pullOnce(allowed, buffer)).pipe(
        // Failed or interrupted (a read ahead cut short when the read ends): give the bytes back.
        Effect.onError(() => release({ bytes: empty, reservation, buffer, readMs: 0 }))
      )
      const readMs = (yield* nowMs) - startedAt
      const chunk: ReadChunk = { bytes, reservation, buffer, readMs }
      if (bytes.length === 0) {
        yield* release(chunk)
        return Option.none<ReadChunk>()
      }
      readPosition += bytes.length
      lastChunkSize = reservation.bytes
      failedAttempts = 0
      yield* policy.onProgress
      yield* sizing.observe({ bytes: bytes.length, latencyMs: readMs })
      yield* metrics.chunk(source, bytes.length, readMs)
      return Option.some(chunk)
    })

    const finish = Effect.gen(function*() {
      finished = true
      yield* dropAttempt
      if (key !== undefined) yield* store.delete(key)
      yield* metrics.outcome(source, true)
    })

    yield* withRecovery(Effect.asVoid(startAttempt))
    if (key !== undefined) yield* saveCheckpoint

    yield* cleanup.register({
      name: `${source}: read ahead`,
      priority: CleanupPriority.readAhead,
      release: Effect.suspend(() =>
        readAhead === undefined ? Effect.void : Effect.flatMap(Fiber.interrupt(readAhead), (exit) =>
          // A chunk read ahead that the consumer never took still holds its bytes.
          Exit.isSuccess(exit) && Option.isSome(exit.value) ? release(exit.value.value) : Effect.void)
      )
    })
    yield* cleanup.register({ name: `${source}: connection`, priority: CleanupPriority.connection, release: dropAttempt })
    yield* cleanup.register({
      name: `${source}: held chunk`,
      priority: CleanupPriority.chunk,
      release: Effect.suspend(() => held === undefined ? Effect.void : release(held))
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
      release: Effect.suspend(() => finished ? Effect.void : saveCheckpoint)
    })

    /** One pull of the consumer: acknowledge what it holds, then hand it the next chunk. */
    const nextChunk = Effect.gen(function*() {
      if (finished) return Option.none<Uint8Array>()
      const pulledAt = yield* nowMs
      acknowledged = emitted
      if (held !== undefined) {
        consumerMs = pulledAt - (lastEmittedAt ?? pulledAt)
        yield* pressure.reportConsumer({ readMs: held.readMs, waitMs: consumerMs })
        yield* release(held)
        held = undefined
      }
      if (chunksSinceCheckpoint >= options.checkpointEvery) {
        chunksSinceCheckpoint = 0
        yield* saveCheckpoint
      }
      const next = yield* (readAhead === undefined ? readChunk : Fiber.join(readAhead)).pipe(
        Effect.mapError((error) =>
          // The read ahead gave up before the consumer acknowledged the chunk it held; it has now.
          error._tag === "RetriesExhausted" ? new RetriesExhausted({ ...error, checkpointOffset: acknowledged }) : error
        )
      )
      readAhead = undefined
      if (Option.isNone(next)) {
        yield* finish
        return Option.none<Uint8Array>()
      }
      held = next.value
      emitted += held.bytes.length
      chunksSinceCheckpoint++
      if (consumerMs >= readAheadAfterMs) readAhead = yield* Effect.forkIn(readChunk, scope)
      lastEmittedAt = yield* nowMs
      return Option.some(held.bytes)
    })
    const step: Effect.Effect<Uint8Array, Option.Option<ReadError>> = nextChunk.pipe(
      Effect.mapError(Option.some),
      Effect.flatMap(Option.match({ onNone: () => Effect.fail(Option.none()), onSome: Effect.succeed }))
    )

    const session: ReadSession = {
      source,
      startOffset,
      identity: identity ?? {},
      stream: Stream.repeatEffectOption(step).pipe(
        Stream.tapError(() => metrics.outcome(source, false))
      )
    }
    return session
  })

  return StreamingReader.of({
    open,
    read: (input, options) => Stream.unwrapScoped(Effect.map(open(input, options), (session) => session.stream))
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
