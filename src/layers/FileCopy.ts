/**
 * The file copy: reads one source with the `StreamingReader` into a file destination,
 * resuming where a previous run left off, and reports what it did.
 */
import { Effect, Predicate, Stream } from "effect"
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
}

/** Progress of one copy, for a progress bar. */
export interface CopyProgress {
  readonly start: (source: string, total: number | undefined, startOffset: number) => void
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
            Effect.logWarning(`${error.source} changed during the copy and has no strong validator; copying it again from byte 0`),
            attempt(startsOver + 1, true)
          )
      )
    )
  return attempt(0, false)
}

const copyOnce = Effect.fn("copyToFile")(function*<E = never>(request: CopyRequest<E>) {
  const reader = yield* StreamingReader
  const metrics = yield* ReaderMetrics
  const monitor = yield* MemoryMonitor
  const startedAt = Date.now()
  const destination = yield* FileDestination.open(request.out, localPath(request.source), {
    lock: request.lock !== false
  })
  // Each chunk is written (and hashed) before the next is pulled, so the reader may reuse buffers.
  const session = yield* reader.open(
    request.source,
    { ...request.options, destination: destination.path, reuseBuffers: true },
    {
      resumeOffset: (checkpoint) =>
        Effect.tap(destination.resumeOffset(checkpoint), (offset) =>
          offset < checkpoint.offset
            ? Effect.logWarning(
              `${destination.partialPath} does not hold the bytes the checkpoint recorded (replaced, modified or truncated); copying again from byte 0`
            )
            : Effect.void),
      describeOutput: destination.check,
      ...(request.durable === true ? { beforeCheckpoint: Effect.orDie(destination.flush) } : {})
    }
  )
  const guard = request.beforeWrite ?? Effect.void
  yield* guard
  yield* destination.startAt(session.startOffset)
  const hash = request.hash ? createHash("sha256") : undefined
  if (hash !== undefined) yield* destination.readPrefix(session.startOffset, (bytes) => hash.update(bytes))
  request.progress?.start(session.source, session.identity.size, session.startOffset)
  let position = session.startOffset
  yield* session.stream.pipe(
    Stream.runForEach((bytes) =>
      Effect.map(Effect.zipRight(guard, destination.write(bytes, position, () => hash?.update(bytes))), () => {
        position += bytes.length
        request.progress?.advance(bytes.length)
      })
    ),
    Effect.ensuring(Effect.sync(() => request.progress?.stop()))
  )
  const sha256 = hash?.digest("hex") ?? null
  if (request.expectSha256 !== undefined && sha256 !== request.expectSha256.toLowerCase()) {
    yield* destination.discard
    return yield* new IntegrityMismatch({ source: session.source, expected: request.expectSha256, actual: sha256 ?? "" })
  }
  yield* guard
  yield* destination.commit(request.durable === true)
  // The source's metrics in this process: a command line copies each source once.
  const after = yield* metrics.stats(session.source)
  const durationMs = Date.now() - startedAt
  const readBytes = position - session.startOffset
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
    peakRssMb: Number(((yield* monitor.peakRss) / 1e6).toFixed(1))
  }
  return summary
}, Effect.scoped)

/** Every failure a copy can end with. */
export type CopyError = ReadError | DestinationError

