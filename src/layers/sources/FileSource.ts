/**
 * The file source: opened once through `@effect/platform` FileSystem, read positionally, one
 * read of n bytes per pull.
 */
import type * as FileSystem from "@effect/platform/FileSystem"
import type { PlatformError } from "@effect/platform/Error"
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import type { SourceHandle, SourceIdentity } from "../../services/ByteSource.js"
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

/** Reads up to `length` bytes at `position` into `into` or a fresh buffer (shorter at the end of the file). */
const readAt = (fd: number, length: number, position: number, path: string, into: Uint8Array | undefined) =>
  Effect.async<Uint8Array, TransientReadError>((resume) => {
    const buffer = into ?? Buffer.allocUnsafeSlow(length)
    NodeFs.read(fd, buffer, 0, length, position, (error, bytesRead) => {
      if (error) resume(Effect.fail(new TransientReadError({ source: path, reason: fileSystemReason(error) })))
      else resume(Effect.succeed(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead)))
    })
  })

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
          return {
            identity,
            pull: (maxBytes: number, into?: Uint8Array) =>
              Effect.map(readAt(fd, maxBytes, position, path, into), (bytes) => {
                position += bytes.length
                return bytes
              })
          }
        })
    }
    return handle
  })
