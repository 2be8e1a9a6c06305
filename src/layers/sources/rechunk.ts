/**
 * Turns a source that yields chunks of whatever size it likes into one that yields exactly the
 * size each pull asks for (the last pull before the end may be shorter).
 */
import { Effect, Option } from "effect"

const empty = new Uint8Array(0)

/**
 * Wraps `pullNext` (the next chunk, `None` at the end) into `pull(n)`. Chunks are sliced with
 * `subarray` and joined only when one pull spans several of them.
 */
export const rechunk = <E>(pullNext: Effect.Effect<Option.Option<Uint8Array>, E>) => {
  let leftover: Uint8Array = empty
  let ended = false
  return (maxBytes: number): Effect.Effect<Uint8Array, E> =>
    Effect.gen(function*() {
      if (leftover.length >= maxBytes) {
        const out = leftover.subarray(0, maxBytes)
        leftover = leftover.subarray(maxBytes)
        return out
      }
      const parts: Array<Uint8Array> = leftover.length > 0 ? [leftover] : []
      let have = leftover.length
      leftover = empty
      while (have < maxBytes && !ended) {
        const next = yield* pullNext
        if (Option.isNone(next)) {
          ended = true
        } else if (next.value.length > 0) {
          parts.push(next.value)
          have += next.value.length
        }
      }
      if (have > maxBytes) {
        const last = parts[parts.length - 1]!
        const keep = last.length - (have - maxBytes)
        leftover = last.subarray(keep)
        parts[parts.length - 1] = last.subarray(0, keep)
        have = maxBytes
      }
      if (parts.length === 0) return empty
      if (parts.length === 1) return parts[0]!
      return Buffer.concat(parts, have)
    })
}
