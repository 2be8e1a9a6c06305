/**
 * Sources held by the process: bytes in memory (seekable) and a Node `Readable` (read once,
 * in order; resumable only forward, within the process), read straight from its events.
 */
import * as Effect from "effect/Effect"
import type { Readable } from "node:stream"
import type { SourceHandle } from "../../services/ByteSource.js"
import { NotResumable, TransientReadError } from "../../services/ByteSource.js"
import { readableRange } from "./readableRange.js"

/** A source over bytes in memory; every pull is a copy, so the caller's array is never handed out. */
export const openBytes = (name: string, bytes: Uint8Array): SourceHandle => ({
  source: name,
  seekable: true,
  canStall: false,
  readFrom: (offset) =>
    Effect.sync(() => {
      let position = Math.min(offset, bytes.length)
      return {
        identity: { size: bytes.length },
        pull: (maxBytes: number) =>
          Effect.sync(() => {
            const end = Math.min(position + maxBytes, bytes.length)
            const out = bytes.slice(position, end)
            position = end
            return out
          })
      }
    })
})

/**
 * A source over a Node `Readable`, consumed once. A new attempt may start at the current
 * position or ahead of it (skipping bytes), never behind it. A pull returns what has arrived
 * instead of waiting for the whole size (see `readableRange`); the stream is destroyed when the
 * source's scope closes before its end.
 */
export const openReadable = (name: string, readable: Readable) =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const pull = yield* readableRange(readable, scope, {
      skip: 0,
      limit: Number.POSITIVE_INFINITY,
      onEnd: () => undefined,
      onError: (error) =>
        new TransientReadError({ source: name, reason: error instanceof Error ? error.message : String(error) })
    })
    let position = 0
    const counted = (maxBytes: number, into?: Uint8Array) =>
      Effect.map(pull(maxBytes, into), (bytes) => {
        position += bytes.length
        return bytes
      })
    const handle: SourceHandle = {
      source: name,
      seekable: false,
      canStall: true,
      readFrom: (offset) =>
        Effect.gen(function*() {
          if (offset < position) {
            return yield* new NotResumable({
              source: name,
              offset,
              reason: `a stream cannot go back; ${position} bytes were already consumed`
            })
          }
          while (position < offset) {
            const skipped = yield* counted(Math.min(offset - position, 1024 * 1024))
            if (skipped.length === 0) break
          }
          return { identity: {}, pull: counted }
        })
    }
    return handle
  })
