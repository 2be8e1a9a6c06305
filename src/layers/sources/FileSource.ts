/**
 * The file source: opened once through `@effect/platform` FileSystem, read positionally, one
 * read of n bytes per pull. The reader may start the next pull's read early (`prefetch`), so it
 * runs in Node's thread pool while the chunk before is handled.
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import type { PlatformError } from "@effect/platform/Error"
import * as Effect from "effect/Effect"
import * as NodeFs from "node:fs"
import type { SourceCursor, SourceHandle, SourceIdentity } from "../../services/ByteSource.js"
import { AccessDenied, NotAFile, SourceNotFound, TransientReadError } from "../../services/ByteSource.js"
import { failureKind, fileSystemReason } from "../SystemErrors.js"

// A failure to stat or open the file as a typed error, by the kind of failure it is.
const toSourceError = (path: string) => (error: PlatformError) => {
  switch (failureKind(error)) {
    case "NotFound":
      return new SourceNotFound({ source: path })
    case "AccessDenied":
      return new AccessDenied({ source: path })
    case "IsDirectory":
      return new NotAFile({ source: path, kind: "directory" })
    case "Permanent":
      return new NotAFile({ source: path, kind: fileSystemReason(error) })
    case "Transient":
    case undefined:
      return new TransientReadError({ source: path, reason: fileSystemReason(error) })
  }
}

/**
 * A file's version: size, mtime, change time, device and inode. A replacement that keeps size
 * and mtime (`cp -p`, `rsync -a`, `tar` restores) still has another inode or change time.
 */
const identityOf = (stats: NodeFs.Stats): SourceIdentity => ({
  size: stats.size,
  mtimeMs: stats.mtimeMs,
  ctimeMs: stats.ctimeMs,
  dev: stats.dev,
  ino: stats.ino
})

const fstat = (fd: number, path: string) =>
  Effect.async<NodeFs.Stats, TransientReadError>((resume) => {
    NodeFs.fstat(fd, (error, stats) => {
      if (error) resume(Effect.fail(new TransientReadError({ source: path, reason: fileSystemReason(error) })))
      else resume(Effect.succeed(stats))
    })
  })

const kindOf = (type: FileSystem.File.Type): string =>
  type === "Directory" ? "directory" : type === "FIFO" ? "named pipe" : type === "Socket" ?
    "socket" :
    type === "CharacterDevice" || type === "BlockDevice"
    ? "device"
    : type === "SymbolicLink"
    ? "symbolic link"
    : "not a file"

/** A positional read handed to Node's thread pool, and whoever waits for it. */
interface FileRead {
  readonly position: number
  readonly length: number
  readonly into: Uint8Array | undefined
  /** The bytes read (a view of the buffer) or the failure, once done. */
  outcome: Effect.Effect<Uint8Array, TransientReadError> | undefined
  /** How many bytes it read; 0 until done, and after a failure. */
  bytesRead: number
  /** Called once the read is done. */
  readonly waiters: Array<() => void>
}

/** Starts reading up to `length` bytes at `position` into `into` or a fresh buffer. */
const startRead = (fd: number, length: number, position: number, path: string, into: Uint8Array | undefined) => {
  const read: FileRead = { position, length, into, outcome: undefined, bytesRead: 0, waiters: [] }
  const buffer = into ?? Buffer.allocUnsafeSlow(length)
  NodeFs.read(fd, buffer, 0, length, position, (error, bytesRead) => {
    read.bytesRead = error ? 0 : bytesRead
    read.outcome = error
      ? Effect.fail(new TransientReadError({ source: path, reason: fileSystemReason(error) }))
      : Effect.succeed(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead))
    for (const wake of read.waiters.splice(0)) wake()
  })
  return read
}

/** Calls `then` once `read` is done: at once when it is. */
const whenDone = (read: FileRead, then: () => void) => {
  if (read.outcome === undefined) read.waiters.push(then)
  else then()
}

/** Opens a local file for positional reads; the descriptor is closed with the scope. */
export const openFile = (fs: FileSystem.FileSystem, path: string) =>
  Effect.gen(function*() {
    const info = yield* fs.stat(path).pipe(Effect.mapError(toSourceError(path)))
    if (info.type !== "File") return yield* new NotAFile({ source: path, kind: kindOf(info.type) })
    const file = yield* fs.open(path, { flag: "r" }).pipe(Effect.mapError(toSourceError(path)))
    const fd = file.fd as unknown as number
    const handle: SourceHandle = {
      source: path,
      seekable: true,
      canStall: false,
      readFrom: (offset) =>
        Effect.gen(function*() {
          const identity = identityOf(yield* fstat(fd, path))
          let position = offset
          /** Reads started for the next pulls, oldest first; at most one is under way at a time. */
          const ahead: Array<FileRead> = []
          /** A read asked for while another was under way: it starts the moment that one is done. */
          let queued: { readonly maxBytes: number; readonly into: Uint8Array | undefined } | undefined
          /** The read under way, if any: the attempt ends only once it no longer fills a buffer. */
          let inFlight: FileRead | undefined

          /** The read started last: reads start one after another, each where the one before ended. */
          let lastStarted: FileRead | undefined

          /** Where the next read starts: after the last one (done by now), unless it ended or failed there. */
          const nextStart = (): number | undefined => {
            const at = lastStarted === undefined
              ? position
              : lastStarted.bytesRead === 0
              ? undefined
              : lastStarted.position + lastStarted.bytesRead
            return at !== undefined && at < identity.size! ? at : undefined
          }
          const start = (maxBytes: number, into: Uint8Array | undefined, at: number) => {
            const read = startRead(fd, maxBytes, at, path, into)
            inFlight = read
            lastStarted = read
            read.waiters.push(() => {
              if (inFlight === read) inFlight = undefined
              // Back to back: the queued read goes to the thread pool from this callback.
              const next = queued
              queued = undefined
              const from = next === undefined ? undefined : nextStart()
              if (next !== undefined && from !== undefined) ahead.push(start(next.maxBytes, next.into, from))
            })
            return read
          }
          /** Calls `then` once no read of this attempt is under way. */
          const whenIdle = (then: () => void) =>
            inFlight === undefined ? then() : whenDone(inFlight, () => whenIdle(then))
          yield* Effect.addFinalizer(() =>
            Effect.async<void>((resume) => {
              queued = undefined
              whenIdle(() => resume(Effect.void))
            })
          )
          const cursor: SourceCursor = {
            identity,
            // The read starts, or is taken over, inside the callback that waits for it.
            pull: (maxBytes, into) =>
              Effect.async<Uint8Array, TransientReadError>((resume) => {
                const deliver = (read: FileRead) =>
                  whenDone(read, () =>
                    resume(Effect.map(read.outcome!, (bytes) => {
                      position += bytes.length
                      return bytes
                    })))
                const first = ahead[0]
                if (
                  first !== undefined && first.position === position && first.length === maxBytes && first.into === into
                ) {
                  ahead.shift()
                  return deliver(first)
                }
                // Nothing read ahead for this pull (or for another one): drop what was, then read what is asked.
                ahead.length = 0
                queued = undefined
                lastStarted = undefined
                whenIdle(() => deliver(start(maxBytes, into, position)))
              }),
            prefetch: (maxBytes, into) => {
              if (queued !== undefined) return
              if (inFlight !== undefined) {
                queued = { maxBytes, into }
                return
              }
              const from = nextStart()
              if (from !== undefined) ahead.push(start(maxBytes, into, from))
            }
          }
          return cursor
        })
    }
    return handle
  })
