/**
 * The copy program: reads one source with the `StreamingReader` into a file, resuming where a
 * previous run left off, and reports what it did.
 */
import { Effect, Schema, Stream } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { MemoryMonitor } from "../services/MemoryMonitor.js"
import { ReaderMetrics } from "../services/ReaderMetrics.js"
import type { ReadOptionsInput } from "../services/ReadOptions.js"
import type { ReadError } from "../services/StreamingReader.js"
import { IntegrityMismatch, StreamingReader } from "../services/StreamingReader.js"

/** The output file could not be opened or written. */
export class OutputFailed extends Schema.TaggedError<OutputFailed>()("OutputFailed", {
  path: Schema.String,
  reason: Schema.String,
  /** Whether the output could not be opened at all (bad input) rather than failing part-way. */
  atOpen: Schema.Boolean
}) {
  override get message() {
    return `cannot write ${this.path}: ${this.reason}`
  }
}

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
  /** Runs before each write to the output (truncation at open included); its failure stops the copy before the write. */
  readonly beforeWrite?: Effect.Effect<void, E>
}

const errnoReason = (error: unknown) =>
  error instanceof Error && "code" in error
    ? (error as NodeJS.ErrnoException).code === "EISDIR" || (error as NodeJS.ErrnoException).code === "ERR_FS_EISDIR"
      ? "is a directory"
      : (error as NodeJS.ErrnoException).code === "ENOENT"
      ? "no such directory"
      : (error as NodeJS.ErrnoException).code === "EACCES"
      ? "permission denied"
      : error.message
    : String(error)

/**
 * Opens the output for writing at `offset`: existing bytes before it are kept, the rest cut off.
 * Starting from 0, an old output is removed rather than truncated: ext4 flushes a file truncated
 * to zero to disk when it is closed (`auto_da_alloc`), which cost a third of a second per GiB.
 */
const openOutput = (path: string, offset: number) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        if (offset === 0) NodeFs.rmSync(path, { force: true })
        const fd = NodeFs.openSync(path, NodeFs.constants.O_WRONLY | NodeFs.constants.O_CREAT, 0o644)
        try {
          if (offset > 0 && NodeFs.fstatSync(fd).size !== offset) NodeFs.ftruncateSync(fd, offset)
        } catch (error) {
          NodeFs.closeSync(fd)
          throw error
        }
        return fd
      },
      catch: (error) => new OutputFailed({ path, reason: errnoReason(error), atOpen: true })
    }),
    (fd) => Effect.sync(() => NodeFs.closeSync(fd))
  )

/** Writes `bytes` at `position`; `alongside` runs on this thread while the write is under way. */
const writeAt = (fd: number, bytes: Uint8Array, position: number, path: string, alongside: () => void) =>
  Effect.async<void, OutputFailed>((resume) => {
    const loop = (done: number) =>
      NodeFs.write(fd, bytes, done, bytes.length - done, position + done, (error, written) => {
        if (error) resume(Effect.fail(new OutputFailed({ path, reason: errnoReason(error), atOpen: false })))
        else if (done + written < bytes.length) loop(done + written)
        else resume(Effect.void)
      })
    loop(0)
    alongside()
  })

/** How many bytes the output already holds (0 when it does not exist yet). */
const existingSize = (path: string) => {
  try {
    return NodeFs.statSync(path).size
  } catch {
    return 0
  }
}

/** Feeds the first `length` bytes of a file to the hash (the part a resumed copy keeps). */
const hashPrefix = (path: string, length: number, hash: ReturnType<typeof createHash>) =>
  Effect.tryPromise({
    try: async () => {
      if (length === 0) return
      const stream = NodeFs.createReadStream(path, { start: 0, end: length - 1, highWaterMark: 1024 * 1024 })
      for await (const chunk of stream) hash.update(chunk as Buffer)
    },
    catch: (error) => new OutputFailed({ path, reason: errnoReason(error), atOpen: true })
  })

/** Copies one source into a file, resuming from its checkpoint; fails with a typed error. */
export const copyToFile = Effect.fn("copyToFile")(function*<E = never>(request: CopyRequest<E>) {
  const reader = yield* StreamingReader
  const metrics = yield* ReaderMetrics
  const monitor = yield* MemoryMonitor
  const out = NodePath.resolve(request.out)
  const startedAt = Date.now()
  // Each chunk is written (and hashed) before the next is pulled, so the reader may reuse buffers.
  let fd: number | undefined
  const flush = Effect.sync(() => fd !== undefined && NodeFs.fsyncSync(fd))
  const session = yield* reader.open(
    request.source,
    { ...request.options, destination: out, reuseBuffers: true, maxResumeOffset: existingSize(out) },
    request.durable === true ? { beforeCheckpoint: flush } : {}
  )
  const guard = request.beforeWrite ?? Effect.void
  yield* guard
  fd = yield* openOutput(out, session.startOffset)
  const output = fd
  const hash = request.hash ? createHash("sha256") : undefined
  if (hash !== undefined) yield* hashPrefix(out, session.startOffset, hash)
  request.progress?.start(session.source, session.identity.size, session.startOffset)
  let position = session.startOffset
  yield* session.stream.pipe(
    Stream.runForEach((bytes) =>
      Effect.map(Effect.zipRight(guard, writeAt(output, bytes, position, out, () => hash?.update(bytes))), () => {
        position += bytes.length
        request.progress?.advance(bytes.length)
      })
    ),
    Effect.ensuring(Effect.sync(() => request.progress?.stop()))
  )
  if (request.durable === true) yield* flush
  const sha256 = hash?.digest("hex") ?? null
  if (request.expectSha256 !== undefined && sha256 !== request.expectSha256.toLowerCase()) {
    return yield* new IntegrityMismatch({ source: session.source, expected: request.expectSha256, actual: sha256 ?? "" })
  }
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
export type CopyError = ReadError | OutputFailed
