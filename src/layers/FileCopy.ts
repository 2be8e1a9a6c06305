/**
 * The file copy: reads one source with the `StreamingReader` into a file destination,
 * acknowledging each chunk once it is written, resuming where a previous run left off, and
 * reports what it did.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { createHash } from "node:crypto"
import * as FileDestination from "./FileDestination.js"
import type { DestinationError } from "./FileDestination.js"
import { MemoryMonitor } from "../services/MemoryMonitor.js"
import { ReaderMetrics } from "../services/ReaderMetrics.js"
import type { ReadOptionsInput } from "../services/ReadOptions.js"
import { resumableAtOffset } from "../services/ByteSource.js"
import type { SourceChanged } from "../services/ByteSource.js"
import type { ReadError } from "../services/StreamingReader.js"
import { IntegrityMismatch, StreamingReader } from "../services/StreamingReader.js"

/** What one copy did: the `--json` summary line. */
export interface CopySummary {
  readonly source: string
  readonly bytes: number
  readonly sha256: string | null
  readonly chunks: number
  readonly retries: number
  readonly resumedFrom: number
  readonly durationMs: number
  readonly mbPerSec: number
  readonly p95ChunkMs: number
  readonly peakRssMb: number
  /** The most connections the source was fetched over at once (more than one: in segments). */
  readonly segments: number
}

/** Progress of one copy, for a progress bar. */
export interface CopyProgress {
  /** The copy starts: its source, size, where it resumes and how many connections it uses. */
  readonly start: (source: string, total: number | undefined, startOffset: number, segments?: number) => void
  readonly advance: (bytes: number) => void
  readonly stop: () => void
}

/** How to copy; `E` is what the `beforeWrite` guard may fail with. */
export interface CopyRequest<E = never> {
  readonly source: string
  readonly out: string
  readonly options: ReadOptionsInput
  /** Hash the output (needed for `--json` and `--expect-sha256`). */
  readonly hash: boolean
  readonly expectSha256?: string
  /** Flush the output to disk (fsync) before each checkpoint and at the end. */
  readonly durable?: boolean
  readonly progress?: CopyProgress
  /**
   * Hold the output's lock file (the default): one writer per output. Workers of the job queue
   * turn it off, as the lease's epoch fences their writes instead.
   */
  readonly lock?: boolean
  /** Runs before each write to the output (truncation at open included); its failure stops the copy before the write. */
  readonly beforeWrite?: Effect.Effect<void, E>
}

/** The local path of a source that is a file, to refuse an output that is the source itself. */
const localPath = (source: string): string | undefined => /^[a-z][a-z0-9+.-]*:\/\//i.test(source) ? undefined : source

/** Copies of a source without a strong validator started again from byte 0 after it changed during a copy. */
export const maxStartsOver = 2

/**
 * Copies one source into a file, resuming from its checkpoint; fails with a typed error. The
 * bytes go to `<out>.partial`, which is renamed to `out` once complete (and its sha256 checked).
 * A source without a strong validator that changes during the copy is copied again from byte 0
 * (a few times at most); one with a strong validator is refused with `SourceChanged`.
 */
export const copyToFile = <E = never>(request: CopyRequest<E>) => {
  const attempt = (startsOver: number, restart: boolean): ReturnType<typeof copyOnce<E>> =>
    copyOnce(restart ? { ...request, options: { ...request.options, restart: true } } : request).pipe(
      Effect.catchIf(
        (error): error is SourceChanged =>
          Predicate.isTagged(error, "SourceChanged") && !resumableAtOffset((error as SourceChanged).expected) &&
          startsOver < maxStartsOver,
        (error) =>
          Effect.zipRight(
            Effect.logWarning(
              `${error.source} changed during the copy and has no strong validator; copying it again from byte 0`
            ),
            attempt(startsOver + 1, true)
          )
      )
    )
  return attempt(0, false)
}

/**
 * Opens the read of a copy: resumes from the saved checkpoint when the partial file still holds
 * the bytes it recorded; otherwise the read starts again at byte 0.
 */
const openRead = (source: string, options: ReadOptionsInput, destination: FileDestination.FileDestination) =>
  Effect.gen(function*() {
    const reader = yield* StreamingReader
    const resumeScope = yield* Scope.fork(yield* Effect.scope, ExecutionStrategy.sequential)
    const session = yield* Scope.extend(reader.open(source, options), resumeScope)
    if (Option.isNone(session.resumedFrom)) return session
    const holds = yield* destination.resumeOffset(session.resumedFrom.value)
    if (holds >= session.startOffset) return session
    yield* Effect.logWarning(
      `${destination.partialPath} does not hold the bytes the checkpoint recorded (replaced, modified or truncated); copying again from byte 0`
    )
    yield* Scope.close(resumeScope, Exit.void)
    return yield* reader.open(source, options, { offset: 0 })
  })

const copyOnce = Effect.fn("copyToFile")(function*<E = never>(request: CopyRequest<E>) {
  const metrics = yield* ReaderMetrics
  const monitor = yield* MemoryMonitor
  const startedAt = yield* Clock.currentTimeMillis
  const destination = yield* FileDestination.open(request.out, localPath(request.source), {
    lock: request.lock !== false
  })
  // Each chunk is written (and hashed) before the next is pulled, so the reader may reuse buffers.
  const session = yield* openRead(
    request.source,
    { ...request.options, destination: destination.path, reuseBuffers: true },
    destination
  )
  const durable = request.durable === true
  const guard = request.beforeWrite ?? Effect.void
  yield* guard
  const held = session.heldRanges
  /** Chunks come as the segments fetch them (or a resume holds ranges): not in order. */
  const overSegments = session.segments > 1 || held.length > 0
  yield* destination.startAt(session.startOffset, held.length > 0)
  /** The output's sha256 as the chunks come in order; a copy over segments hashes its file at the end. */
  const hash = request.hash && !overSegments ? createHash("sha256") : undefined
  if (hash !== undefined) yield* destination.readPrefix(session.startOffset, (bytes) => hash.update(bytes))
  const heldBytes = held.reduce((sum, range) => sum + range.end - range.start, 0)
  request.progress?.start(session.source, session.identity.size, session.startOffset + heldBytes, session.segments)
  /** The end of the furthest chunk written, and of the last one (with its length). */
  let highest = session.startOffset
  let last = { end: session.startOffset, length: 0 }
  let fetched = 0
  /** What a checkpoint records of the output: its bytes before the last chunk's end (only that chunk's, over segments). */
  const outputCheck = () => overSegments ? destination.check(last.end, last.length) : destination.check(last.end)

  /** Acknowledges the chunk written from `start` to `end`; a checkpoint carries the output's check, after an fsync with `durable`. */
  const acknowledge = (start: number, end: number) =>
    session.checkpointDue(end)
      ? Effect.gen(function*() {
        if (durable) yield* destination.flush
        yield* session.acknowledgeRange(start, end, yield* outputCheck())
      })
      : session.acknowledgeRange(start, end)
  /** A copy stopped part-way keeps a checkpoint of what it wrote, with the output's check. */
  const checkpointPartWay = Effect.gen(function*() {
    if (durable) yield* destination.flush
    yield* session.checkpoint(yield* outputCheck())
  }).pipe(Effect.ignoreLogged)

  // The reader reads the next chunks while chunk n is written here and hashed on this thread meanwhile.
  yield* session.unorderedChunks.pipe(
    Stream.runForEach((chunk) =>
      guard.pipe(
        Effect.zipRight(destination.startWrite(chunk.bytes, chunk.offset)),
        Effect.flatMap((written) => {
          hash?.update(chunk.bytes)
          return written
        }),
        Effect.zipRight(Effect.suspend(() => {
          const end = chunk.offset + chunk.bytes.length
          last = { end, length: chunk.bytes.length }
          highest = Math.max(highest, end)
          fetched += chunk.bytes.length
          request.progress?.advance(chunk.bytes.length)
          return acknowledge(chunk.offset, end)
        }))
      )
    ),
    Effect.onExit((exit) => Exit.isSuccess(exit) ? Effect.void : checkpointPartWay),
    Effect.ensuring(Effect.sync(() => request.progress?.stop()))
  )
  const position = session.identity.size ?? highest
  const sha256 = hash !== undefined
    ? hash.digest("hex")
    : request.hash
    ? yield* hashOfFile(destination, position)
    : null
  if (request.expectSha256 !== undefined && sha256 !== request.expectSha256.toLowerCase()) {
    yield* destination.discard
    return yield* new IntegrityMismatch({
      source: session.source,
      expected: request.expectSha256,
      actual: sha256 ?? ""
    })
  }
  yield* guard
  yield* destination.commit(durable)
  // The source's metrics in this process: a command line copies each source once.
  const after = yield* metrics.stats(session.source)
  const durationMs = (yield* Clock.currentTimeMillis) - startedAt
  const readBytes = fetched
  const summary: CopySummary = {
    source: session.source,
    bytes: position,
    sha256,
    chunks: after.chunks,
    retries: after.retries,
    resumedFrom: session.startOffset,
    durationMs,
    mbPerSec: Number((readBytes / 1e6 / Math.max(durationMs / 1000, 0.001)).toFixed(1)),
    p95ChunkMs: Number(after.p95ChunkMs.toFixed(3)),
    peakRssMb: Number(((yield* monitor.peakRss) / 1e6).toFixed(1)),
    // Connections used at once: fewer than planned when other reads held the host's connections.
    segments: session.segments > 1 ? after.maxSegments : 1
  }
  return summary
}, Effect.scoped)

/** The sha256 of the first `length` bytes of the destination's partial file. */
const hashOfFile = (destination: FileDestination.FileDestination, length: number) => {
  const hash = createHash("sha256")
  return Effect.map(destination.readPrefix(length, (bytes) => hash.update(bytes)), () => hash.digest("hex"))
}

/** Every failure a copy can end with. */
export type CopyError = ReadError | DestinationError
