/**
 * The file source: opened once through `@effect/platform` FileSystem, read positionally, one
 * read of n bytes per pull. The reader may start the next pull's read early (`prefetch`), so it
 * runs in Node's thread pool while the chunk before is handled.
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import type { PlatformError } from "@effect/platform/Error"
import { Effect } from "effect"
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
  /** Called once the read is done. */
  readonly waiters: Array<() => void>
}

/** Starts reading up to `length` bytes at `position` into `into` or a fresh buffer. */
const startRead = (fd: number, length: number, position: number, path: string, into: Uint8Array | undefined) => {
  const read: FileRead = { position, length, into, outcome: undefined, waiters: [] }
  const buffer = into ?? Buffer.allocUnsafeSlow(length)
  NodeFs.read(fd, buffer, 0, length, position, (error, bytesRead) => {
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
          /** The read started ahead for the next pull, if any. */
          let ahead: FileRead | undefined
          /** The read under way, if any: the attempt ends only once it no longer fills a buffer. */
          let inFlight: FileRead | undefined
          const start = (maxBytes: number, into: Uint8Array | undefined) => {
            const read = startRead(fd, maxBytes, position, path, into)
            inFlight = read
            read.waiters.push(() => {
              if (inFlight === read) inFlight = undefined
            })
            return read
          }
          yield* Effect.addFinalizer(() =>
            Effect.async<void>((resume) => {
              if (inFlight === undefined) resume(Effect.void)
              else whenDone(inFlight, () => resume(Effect.void))
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
                const started = ahead
                ahead = undefined
                if (started === undefined) return deliver(start(maxBytes, into))
                if (started.position === position && started.length === maxBytes && started.into === into) {
                  return deliver(started)
                }
                // Read ahead for another pull: once it is done with its buffer, read what is asked.
                whenDone(started, () => deliver(start(maxBytes, into)))
              }),
            prefetch: (maxBytes, into) => {
              if (ahead === undefined && inFlight === undefined) ahead = start(maxBytes, into)
            }
          }
          return cursor
        })
    }
    return handle
  })
