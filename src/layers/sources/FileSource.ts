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

const toSourceError = (path: string) => (error: PlatformError) => {
  if (error._tag === "SystemError") {
    switch (error.reason) {
      case "NotFound":
        return new SourceNotFound({ source: path })
      case "PermissionDenied":
        return new AccessDenied({ source: path })
      case "BadResource":
        return new NotAFile({ source: path })
    }
  }
  return new TransientReadError({ source: path, reason: error.message })
}

const identityOf = (info: FileSystem.File.Info): SourceIdentity => {
  const mtime = info.mtime._tag === "Some" ? info.mtime.value.getTime() : undefined
  return mtime === undefined ? { size: Number(info.size) } : { size: Number(info.size), mtimeMs: mtime }
}

/** Reads up to `length` bytes at `position` into `into` or a fresh buffer (shorter at the end of the file). */
const readAt = (fd: number, length: number, position: number, path: string, into: Uint8Array | undefined) =>
  Effect.async<Uint8Array, TransientReadError>((resume) => {
    const buffer = into ?? Buffer.allocUnsafeSlow(length)
    NodeFs.read(fd, buffer, 0, length, position, (error, bytesRead) => {
      if (error) resume(Effect.fail(new TransientReadError({ source: path, reason: error.message })))
      else resume(Effect.succeed(bytesRead === buffer.length ? buffer : buffer.subarray(0, bytesRead)))
    })
  })

/** Opens a local file for positional reads; the descriptor is closed with the scope. */
export const openFile = (fs: FileSystem.FileSystem, path: string) =>
  Effect.gen(function*() {
    const info = yield* fs.stat(path).pipe(Effect.mapError(toSourceError(path)))
    if (info.type !== "File") return yield* new NotAFile({ source: path })
    const file = yield* fs.open(path, { flag: "r" }).pipe(Effect.mapError(toSourceError(path)))
    const fd = file.fd as unknown as number
    const handle: SourceHandle = {
      source: path,
      seekable: true,
    canStall: false,
      readFrom: (offset) =>
        Effect.gen(function*() {
          const identity = identityOf(yield* file.stat.pipe(Effect.mapError(toSourceError(path))))
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
