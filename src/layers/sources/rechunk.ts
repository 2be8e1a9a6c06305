/**
 * Turns a source that yields pieces of whatever size it likes into one that yields exactly the
 * size each pull asks for (the last pull before the end may be shorter).
 */
import { Effect } from "effect"

const empty = new Uint8Array(0)

/**
 * Wraps `pullNext` (the next piece, `undefined` at the end) into `pull(n, into?)`. Pieces are
 * sliced with `subarray`; pieces that one pull spans are joined into `into` when it is given
 * (and long enough), else into a new array. When `pullNext` fails after a pull has gathered
 * some bytes, the pull returns them and the next pull fails with that error.
 */
export const rechunk = <E>(pullNext: Effect.Effect<Uint8Array | undefined, E>) => {
  let leftover: Uint8Array = empty
  let ended = false
  let failure: { readonly error: E } | undefined
  return (maxBytes: number, into?: Uint8Array): Effect.Effect<Uint8Array, E> =>
    Effect.gen(function*() {
      if (leftover.length >= maxBytes) {
        const out = leftover.subarray(0, maxBytes)
        leftover = leftover.subarray(maxBytes)
        return out
      }
      if (failure !== undefined) return yield* Effect.fail(failure.error)
      const parts: Array<Uint8Array> = leftover.length > 0 ? [leftover] : []
      let have = leftover.length
      leftover = empty
      while (have < maxBytes && !ended) {
        const next = yield* pullNext.pipe(
          Effect.catchAll((error) => {
            if (have === 0) return Effect.fail(error)
            failure = { error }
            return Effect.succeed(null)
          })
        )
        if (next === null) break
        if (next === undefined) ended = true
        else if (next.length > 0) {
          parts.push(next)
          have += next.length
        }
      }
      const size = Math.min(have, maxBytes)
      if (parts.length === 0) return empty
      if (parts.length === 1) {
        leftover = parts[0]!.subarray(size)
        return parts[0]!.subarray(0, size)
      }
      const out = into !== undefined && into.length >= size ? into.subarray(0, size) : new Uint8Array(size)
      let filled = 0
      for (const part of parts) {
        const n = Math.min(part.length, size - filled)
        out.set(n === part.length ? part : part.subarray(0, n), filled)
        filled += n
        if (n < part.length) leftover = part.subarray(n)
      }
      return out
    })
}
