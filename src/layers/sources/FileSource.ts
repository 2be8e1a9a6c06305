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
  /** The bytes read (a view of the buffer), once done. */
  result: Uint8Array | TransientReadError | undefined
  readonly waiters: Array<() => void>
}

/** Starts reading up to `length` bytes at `position` into `into` or a fresh buffer. */
const startRead = (fd: number, length: number, position: number, path: string, into: Uint8Array | undefined) => {
  const read: FileRead = { position, length, into, result: undefined, waiters: [] }
  const buffer = into ?? Buffer.allocUnsafeSlow(length)
  NodeFs.read(fd, buffer, 0, length, position, (error, bytesRead) => {
    read.result = error
      ? new TransientReadError({ source: path, reason: fileSystemReason(error) })
      : bytesRead === buffer.length
      ? buffer
      : buffer.subarray(0, bytesRead)
    for (const wake of read.waiters.splice(0)) wake()
  })
  return read
}

/** Waits until `read` is done (at once when it is), without taking its result. */
const settled = (read: FileRead) =>
  Effect.async<void>((resume) => {
    if (read.result !== undefined) return resume(Effect.void)
    const wake = () => resume(Effect.void)
    read.waiters.push(wake)
    return Effect.sync(() => {
      const index = read.waiters.indexOf(wake)
      if (index >= 0) read.waiters.splice(index, 1)
    })
  })

/** The bytes of a finished read, or its failure. */
const resultOf = (read: FileRead): Effect.Effect<Uint8Array, TransientReadError> =>
  read.result instanceof Uint8Array ? Effect.succeed(read.result) : Effect.fail(read.result!)

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
          /** The read under way or done and not yet pulled: at most one per attempt. */
          let current: FileRead | undefined
          // The attempt ends only once no read of its own is still filling a buffer.
          yield* Effect.addFinalizer(() => current === undefined ? Effect.void : settled(current))
          const start = (maxBytes: number, into: Uint8Array | undefined) => {
            current = startRead(fd, maxBytes, position, path, into)
            return current
          }
          const take = (read: FileRead) =>
            Effect.zipRight(
              settled(read),
              Effect.suspend(() => {
                if (current === read) current = undefined
                return Effect.map(resultOf(read), (bytes) => {
                  position += bytes.length
                  return bytes
                })
              })
            )
          const cursor: SourceCursor = {
            identity,
            pull: (maxBytes, into) =>
              Effect.suspend(() => {
                const ahead = current
                if (ahead === undefined) return take(start(maxBytes, into))
                if (ahead.position === position && ahead.length === maxBytes && ahead.into === into) return take(ahead)
                // Read ahead for another pull: wait for it to finish with its buffer, then read what is asked.
                return Effect.zipRight(settled(ahead), Effect.suspend(() => take(start(maxBytes, into))))
              }),
            prefetch: (maxBytes, into) => {
              if (current === undefined) start(maxBytes, into)
            }
          }
          return cursor
        })
    }
    return handle
  })
