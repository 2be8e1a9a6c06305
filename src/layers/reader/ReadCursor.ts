/**
 * Attempts and cursors: one read's connection to its source. An attempt opens a cursor at the
 * read position; a failed pull drops it, and the retry policy decides whether another attempt
 * starts where the read stands. A source no strong validator vouches for is read again from
 * byte 0 and continues only past a prefix whose sha256 matches the bytes already read.
 */
import { createHash } from "node:crypto"
import type { Hash } from "node:crypto"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Scope from "effect/Scope"
import type { SourceCursor, SourceError, SourceHandle, SourceIdentity } from "../../services/ByteSource.js"
import {
  resumableAtOffset,
  sameIdentity,
  SourceChanged,
  SourceStalled,
  TransientReadError
} from "../../services/ByteSource.js"
import type { ReaderMetricsShape } from "../../services/ReaderMetrics.js"
import type { ReadOptions } from "../../services/ReadOptions.js"
import type { ReadError, ReadStart } from "../../services/StreamingReader.js"
import type { RetryPolicy } from "../../services/StreamRecoveryManager.js"

/** The largest pull while checking the prefix of a source read again from byte 0. */
const verifyPullBytes = 256 * 1024

/** Where a read stands against its source: the bytes pulled so far and the version they came from. */
export interface ReadCursor {
  /** Bytes pulled from the source (read ahead included): where the next attempt starts. */
  readonly position: () => number
  /** The version being read: the start's when resuming, else the first attempt's. */
  readonly identity: () => SourceIdentity | undefined
  /**
   * The sha256 of every byte pulled, kept for a source no strong validator vouches for (so a
   * new attempt can check the prefix it reads again); `undefined` for other sources.
   */
  readonly prefixHash: () => Hash | undefined
  /** Starts the first attempt (with retries). A resume whose unvalidated source changed starts again at byte 0. */
  readonly begin: Effect.Effect<void, ReadError>
  /** Pulls up to `maxBytes` (into `into` when given), starting a new attempt after a failure; empty at the end. */
  readonly pull: (maxBytes: number, into: Uint8Array | undefined) => Effect.Effect<Uint8Array, ReadError>
  /** Whether the current attempt's source can read ahead on its own and bytes remain to be read. */
  readonly canPrefetch: () => boolean
  /** Starts the next pull's read at the source (see `SourceCursor.prefetch`); nothing without an attempt. */
  readonly prefetch: (maxBytes: number, into: Uint8Array | undefined) => void
  /** Closes the current attempt's connection, if any, once a read it started has finished. */
  readonly drop: Effect.Effect<void>
  /** Whether the last attempt's source answered with exactly the range asked for (see `SourceCursor.ranged`). */
  readonly ranged: () => boolean
  /** Where the current attempt's request ends (exclusive); `undefined` for one to the end of the source, or no attempt. */
  readonly attemptEnd: () => number | undefined
}

/** What a cursor needs from its read. */
export interface ReadCursorContext {
  readonly handle: SourceHandle
  readonly options: ReadOptions
  /** The read's scope: each attempt lives in a child of it. */
  readonly scope: Scope.Scope
  readonly policy: RetryPolicy
  readonly metrics: ReaderMetricsShape
  /** Where the read starts and the version it expects. */
  readonly start: ReadStart
  /** The offset the consumer acknowledged, reported with `RetriesExhausted`. */
  readonly acknowledged: () => number
  /**
   * Where the bytes wanted end (exclusive), when not at the end of the source: one segment of a
   * read over several. It may move closer while the read goes on (another segment takes the rest).
   */
  readonly end?: () => number | undefined
  /** The start's identity holds at every offset, 0 included: a segment of a read whose version is known. */
  readonly knownVersion?: boolean
}

/** Makes the cursor of one read. */
export const makeReadCursor = (context: ReadCursorContext): ReadCursor => {
  const { handle, options, policy, metrics } = context
  const source = handle.source
  let position = context.start.offset
  let identity: SourceIdentity | undefined = position > 0 || context.knownVersion === true
    ? context.start.identity
    : undefined
  const wantedEnd = context.end ?? (() => undefined)
  let expectedPrefix = position > 0 ? context.start.prefixSha256 : undefined
  let prefixHash: Hash | undefined
  /** Whether the read is being opened: a changed unvalidated source then starts again from 0. */
  let opening = true
  let failedAttempts = 0
  let attempt:
    | { readonly scope: Scope.CloseableScope; readonly cursor: SourceCursor; readonly end: number | undefined }
    | undefined
  let ranged = false

  const drop = Effect.suspend(() => {
    const current = attempt
    attempt = undefined
    return current === undefined ? Effect.void : Scope.close(current.scope, Exit.void)
  })

  /** Bounds an effect that waits on a peer by the stall timeout, for sources that can stall. */
  const bounded = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SourceStalled, R> =>
    handle.canStall
      ? Effect.timeoutFail(effect, {
        duration: options.stallTimeoutMs,
        onTimeout: () => new SourceStalled({ source, afterMs: options.stallTimeoutMs })
      })
      : effect

  /** Reads the first `length` bytes of an attempt from byte 0 and tells whether their sha256 is `expected`. */
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

  const changedError = (actual: SourceIdentity) => new SourceChanged({ source, expected: identity ?? {}, actual })

  /** A resumed read of an unvalidated source that is not the version it expects starts again at byte 0. */
  const startOver = Effect.suspend(() => {
    position = 0
    identity = undefined
    expectedPrefix = undefined
    prefixHash = undefined
    return Effect.logWarning(
      `${source} has no strong validator and is not the version of the checkpoint; reading it again from byte 0`
    )
  })

  const startAttempt: Effect.Effect<SourceCursor, SourceError> = Effect.gen(function*() {
    const attemptScope = yield* Scope.fork(context.scope, ExecutionStrategy.sequential)
    const closeOnError = <A, E>(effect: Effect.Effect<A, E>) =>
      Effect.tapError(effect, () => Scope.close(attemptScope, Exit.void))
    const byRange = identity === undefined || resumableAtOffset(identity)
    const end = byRange ? wantedEnd() : undefined
    const cursor = yield* bounded(handle.readFrom(byRange ? position : 0, identity, end)).pipe(
      Scope.extend(attemptScope),
      closeOnError
    )
    const changed = identity !== undefined && !sameIdentity(identity, cursor.identity)
    if (!byRange && position > 0) {
      const expected = opening ? expectedPrefix : prefixHash?.copy().digest("hex")
      const prefix = changed
        ? { matches: false, hash: undefined }
        : yield* closeOnError(prefixMatches(cursor, position, expected))
      if (!prefix.matches) {
        yield* Scope.close(attemptScope, Exit.void)
        if (!opening) return yield* changedError(cursor.identity)
        yield* startOver
        return yield* startAttempt
      }
      prefixHash ??= prefix.hash
    } else if (changed) {
      yield* Scope.close(attemptScope, Exit.void)
      return yield* changedError(cursor.identity)
    }
    identity ??= cursor.identity
    if (prefixHash === undefined && position === 0 && !resumableAtOffset(identity)) prefixHash = createHash("sha256")
    if (failedAttempts > 0) yield* metrics.recovery(source)
    attempt = { scope: attemptScope, cursor, end }
    ranged = cursor.ranged === true
    return cursor
  }).pipe((body) =>
    // An attempt after a failure, or at an offset, is a resume.
    Effect.suspend(() =>
      Effect.withSpan(body, failedAttempts > 0 || position > 0 ? "StreamingReader.resume" : "StreamingReader.attempt", {
        attributes: { source, offset: position }
      })
    )
  )

  const withRetries = <A>(run: Effect.Effect<A, SourceError>): Effect.Effect<A, ReadError> =>
    Effect.catchAll(run, (error) =>
      drop.pipe(
        Effect.zipRight(policy.onFailure(error, context.acknowledged())),
        Effect.zipRight(Effect.sync(() => failedAttempts++)),
        Effect.zipRight(metrics.retry(source)),
        Effect.zipRight(Effect.suspend(() => withRetries(run)))
      ))

  /** Pulls from `cursor`; an early end of a source whose size is known is a transient failure. */
  const pullFrom = (cursor: SourceCursor, maxBytes: number, into: Uint8Array | undefined) =>
    Effect.flatMap(
      bounded(cursor.pull(maxBytes, into)),
      (bytes) => {
        const end = wantedEnd() ?? identity?.size
        return bytes.length === 0 && end !== undefined && position < end
          ? Effect.fail(new TransientReadError({ source, reason: `source ended early at byte ${position} of ${end}` }))
          : Effect.succeed(bytes)
      }
    )

  const pullOnce = (maxBytes: number, into: Uint8Array | undefined) =>
    Effect.suspend(() => {
      const current = attempt?.cursor
      return current === undefined
        ? Effect.flatMap(startAttempt, (cursor) => pullFrom(cursor, maxBytes, into))
        : pullFrom(current, maxBytes, into)
    })

  /** Moves the position past `bytes`; the first bytes after failures tell the policy the read progresses. */
  const advance = (bytes: Uint8Array): Effect.Effect<Uint8Array> => {
    position += bytes.length
    prefixHash?.update(bytes)
    if (bytes.length === 0 || failedAttempts === 0) return Effect.succeed(bytes)
    failedAttempts = 0
    return Effect.as(policy.onProgress, bytes)
  }

  return {
    position: () => position,
    identity: () => identity,
    prefixHash: () => prefixHash,
    begin: Effect.ensuring(
      withRetries(Effect.asVoid(startAttempt)),
      Effect.sync(() => {
        opening = false
      })
    ),
    pull: (maxBytes, into) => Effect.flatMap(withRetries(pullOnce(maxBytes, into)), advance),
    canPrefetch: () =>
      attempt?.cursor.prefetch !== undefined && (identity?.size === undefined || position < identity.size),
    prefetch: (maxBytes, into) => attempt?.cursor.prefetch?.(maxBytes, into),
    drop,
    ranged: () => ranged,
    attemptEnd: () => attempt?.end
  }
}
