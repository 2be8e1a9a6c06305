/**
 * The `StreamingReader`: one pull loop that asks the chunk sizer for a size, reserves it from
 * the memory budget, takes it from the rate limiter, reads it from the source and emits it.
 * Failed attempts resume where the stream stands; acknowledged offsets are checkpointed.
 * Which of these parts are adaptive and which are plain is decided by the layers provided
 * (see `Stacks.ts`); the loop is the same.
 */
import { createHash } from "node:crypto"
import type { Hash } from "node:crypto"
import { Clock, Effect, ExecutionStrategy, Exit, Fiber, Layer, Option, Scope, Stream } from "effect"
import { AdaptiveChunkSizer } from "../services/AdaptiveChunkSizer.js"
import { AdaptiveMemoryManager } from "../services/AdaptiveMemoryManager.js"
import type { MemoryReservation } from "../services/AdaptiveMemoryManager.js"
import { AdaptiveRateLimiter } from "../services/AdaptiveRateLimiter.js"
import { BackpressureController } from "../services/BackpressureController.js"
import type { SourceCursor, SourceError, SourceIdentity, SourceInput } from "../services/ByteSource.js"
import {
  ByteSource,
  resumableAtOffset,
  sameIdentity,
  SourceChanged,
  SourceStalled,
  TransientReadError
} from "../services/ByteSource.js"
import type { CheckpointKey, OutputCheck } from "../services/CheckpointStore.js"
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

/** The largest pull while checking the prefix of a source read again from byte 0. */
const verifyPullBytes = 256 * 1024

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

    /** How many bytes of the checkpoint the destination still holds as it wrote them. */
    const resumable = Option.isNone(saved)
      ? 0
      : Math.min(
        saved.value.offset,
        options.maxResumeOffset ?? saved.value.offset,
        hooks.resumeOffset === undefined ? saved.value.offset : yield* hooks.resumeOffset(saved.value)
      )
    /** The offset of the first byte the stream emits. */
    let startOffset = resumable
    /** The version being read: the checkpoint's when resuming, else the first attempt's. */
    let identity: SourceIdentity | undefined = startOffset > 0 && Option.isSome(saved) ? saved.value.identity : undefined
    /**
     * The sha256 of the bytes the consumer acknowledged, kept for a source no strong validator
     * vouches for: a resume reads it again from byte 0 and continues only past an equal prefix.
     */
    let prefixHash: Hash | undefined
    /** The digest the first attempt of a resumed read must find before `startOffset`. */
    let expectedPrefix = startOffset > 0 && Option.isSome(saved) ? saved.value.prefixSha256 : undefined
    /** Whether the session is being opened (its first attempt): a changed unvalidated source then starts again from 0. */
    let opening = true
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
      const offset = acknowledged
      const prefixSha256 = prefixHash?.copy().digest("hex")
      const save = (output: OutputCheck | undefined) =>
        store.save({
          key,
          offset,
          identity: identity!,
          chunkSize: lastChunkSize,
          updatedAt: Date.now(),
          ...(output === undefined ? {} : { output }),
          ...(prefixSha256 === undefined ? {} : { prefixSha256 })
        })
      const described = hooks.describeOutput === undefined ? save(undefined) : Effect.flatMap(hooks.describeOutput(offset), save)
      return hooks.beforeCheckpoint === undefined ? described : Effect.zipRight(hooks.beforeCheckpoint, described)
    }).pipe(Effect.withSpan("StreamingReader.checkpoint"))

    const dropAttempt = Effect.suspend(() => {
      const current = attempt
      attempt = undefined
      return current === undefined ? Effect.void : Scope.close(current.scope, Exit.void)
    })

    /** Bounds an effect that waits on a peer by the stall timeout, for sources that can stall. */
    const bounded = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SourceStalled, R> =>
      handle.canStall
        ? effect.pipe(
          Effect.timeoutFail({
            duration: options.stallTimeoutMs,
            onTimeout: () => new SourceStalled({ source, afterMs: options.stallTimeoutMs })
          })
        )
        : effect

    /**
     * Reads the first `length` bytes of an attempt that started at byte 0 and tells whether their
     * sha256 is `expected`: a source without a strong validator is the same version only so.
     */
    const prefixMatches = (cursor: SourceCursor, length: number, expected: string | undefined) =>
      Effect.gen(function*() {
        if (expected === undefined) return { matches: false, hash: undefined }
        const hash = createHash("sha256")
        let verified = 0
        while (verified < length) {
          const bytes = yield* bounded(cursor.pull(Math.min(length - verified, verifyPullBytes)))
          if (bytes.length === 0) return { matches: false, hash: undefined }
          hash.update(bytes)
          verified += bytes.length
        }
        return { matches: hash.copy().digest("hex") === expected, hash }
      })

    /** A resumed first attempt of an unvalidated source that changed: the read starts again at byte 0. */
    const startOver = (attemptScope: Scope.CloseableScope) =>
      Effect.gen(function*() {
        yield* Scope.close(attemptScope, Exit.void)
        yield* Effect.logWarning(
          `${source} has no strong validator and is not the version of the checkpoint; reading it again from byte 0`
        )
        startOffset = 0
        readPosition = 0
        emitted = 0
        acknowledged = 0
        identity = undefined
        expectedPrefix = undefined
        prefixHash = undefined
      })

    const startAttempt: Effect.Effect<SourceCursor, SourceError> = Effect.gen(function*() {
      const attemptScope = yield* Scope.fork(scope, ExecutionStrategy.sequential)
      const byRange = identity === undefined || resumableAtOffset(identity)
      const cursor = yield* bounded(handle.readFrom(byRange ? readPosition : 0, identity)).pipe(
        Scope.extend(attemptScope),
        Effect.tapError(() => Scope.close(attemptScope, Exit.void))
      )
      const changed = identity !== undefined && !sameIdentity(identity, cursor.identity)
      if (!byRange && readPosition > 0) {
        const expected = opening ? expectedPrefix : prefixHash?.copy().digest("hex")
        const prefix = changed
          ? { matches: false, hash: undefined }
          : yield* prefixMatches(cursor, readPosition, expected).pipe(
            Effect.tapError(() => Scope.close(attemptScope, Exit.void))
          )
        if (!prefix.matches) {
          if (!opening) {
            yield* Scope.close(attemptScope, Exit.void)
            return yield* new SourceChanged({ source, expected: identity ?? {}, actual: cursor.identity })
          }
          yield* startOver(attemptScope)
          return yield* startAttempt
        }
        prefixHash ??= prefix.hash
      } else if (changed) {
        yield* Scope.close(attemptScope, Exit.void)
        return yield* new SourceChanged({ source, expected: identity ?? {}, actual: cursor.identity })
      }
      identity ??= cursor.identity
      if (prefixHash === undefined && readPosition === 0 && !resumableAtOffset(identity)) prefixHash = createHash("sha256")
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

    const pullOnce = (maxBytes: number, into: Uint8Array | undefined) =>
      Effect.gen(function*() {
        const cursor = attempt?.cursor ?? (yield* startAttempt)
        const bytes = yield* bounded(cursor.pull(maxBytes, into))
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
    opening = false
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
        prefixHash?.update(held.bytes)
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
      // A source re-read from 0 on resume is hashed as the consumer acknowledges it, in order: no read ahead.
      if (consumerMs >= readAheadAfterMs && prefixHash === undefined) readAhead = yield* Effect.forkIn(readChunk, scope)
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
