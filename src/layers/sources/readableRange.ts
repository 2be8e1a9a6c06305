/**
 * Reads a byte range of a Node `Readable` in the sizes the caller pulls, straight from the
 * stream's own events: each piece that arrives is clipped to the range and queued, and a pull
 * takes whole pieces from the queue (joined when it spans several), with no stream step per piece.
 */
import * as Effect from "effect/Effect"
import * as Scope from "effect/Scope"
import type { Readable } from "node:stream"
import { defaultHoldMs } from "./rechunk.js"

const empty = new Uint8Array(0)

/** What is queued before the first pull says how much it wants. */
const initialReadAhead = 64 * 1024

/** Which bytes of the stream are delivered, and what its end and its failures mean. */
export interface ReadableRangeOptions<E> {
  /** Bytes at the start of the stream that are discarded. */
  readonly skip: number
  /** Bytes delivered after those at most (`Infinity` for the rest); bytes past them are dropped. */
  readonly limit: number
  /**
   * The failure, if any, that the end of the bytes means: called once, when the stream ended
   * or `limit` was reached, with the count of stream bytes received (skipped ones included).
   */
  readonly onEnd: (received: number) => E | undefined
  /** The failure a stream error (or a close before the end) means. */
  readonly onError: (cause: unknown) => E
  /** The longest a pull holding bytes waits for more, in ms; `defaultHoldMs` by default. */
  readonly holdMs?: number
}

/** A pull of between 1 and `maxBytes` bytes (none at the end), joined into `into` when it is long enough. */
export type RangePull<E> = (maxBytes: number, into?: Uint8Array) => Effect.Effect<Uint8Array, E>

/** The pull that waits for more bytes, and how it is woken. */
interface Waiter {
  readonly maxBytes: number
  readonly wake: () => void
  hold: ReturnType<typeof setTimeout> | undefined
  turn: ReturnType<typeof setImmediate> | undefined
}

/** Wraps a view of `bytes` from `from` to `to` as a plain `Uint8Array`, whatever array type `bytes` is. */
const view = (bytes: Uint8Array, from: number, to: number): Uint8Array =>
  new Uint8Array(bytes.buffer, bytes.byteOffset + from, to - from)

/**
 * Reads `readable` as `pull(maxBytes, into?)`, living in `scope`: closing it stops the reading
 * and destroys the stream if it has not ended.
 *
 * The stream flows while fewer bytes are queued than the last pull asked for (not counting those
 * a woken pull is about to take), and is paused beyond that, so it reads at most about one pull
 * ahead and its own backpressure holds the rest (for a socket, in the kernel).
 *
 * A pull with enough bytes queued returns at once. One with too few waits for more: until the
 * first piece when it holds nothing, then at most `holdMs` in all before it returns what it
 * holds, and one turn of the event loop's I/O more, so that pieces that came during a busy
 * stretch are taken before deciding that nothing more has arrived. Interrupting a pull loses
 * nothing: the bytes stay queued for the next one. After the end or a failure, pulls first
 * return the bytes still queued; then the end gives empty arrays and a failure fails every pull.
 * One pull at a time.
 */
export const readableRange = <E>(
  readable: Readable,
  scope: Scope.Scope,
  options: ReadableRangeOptions<E>
): Effect.Effect<RangePull<E>> => {
  const holdMs = options.holdMs ?? defaultHoldMs
  const deliverFrom = options.skip
  const deliverTo = options.skip + options.limit
  const queue: Array<Uint8Array> = []
  let queued = 0
  let received = 0
  let readAhead = initialReadAhead
  /** Bytes a woken pull is about to take: not read ahead, so they do not pause the stream. */
  let claimed = 0
  let paused = false
  let finished = false
  let failure: { readonly error: E } | undefined
  let waiter: Waiter | undefined

  const settle = (error: E | undefined) => {
    if (finished) return
    finished = true
    if (error !== undefined) failure = { error }
    detach()
    if (waiter !== undefined) wakeWaiter(waiter)
  }

  const clearTimers = (entry: Waiter) => {
    if (entry.hold !== undefined) clearTimeout(entry.hold)
    if (entry.turn !== undefined) clearImmediate(entry.turn)
    entry.hold = undefined
    entry.turn = undefined
  }

  const wakeWaiter = (entry: Waiter) => {
    clearTimers(entry)
    if (waiter === entry) waiter = undefined
    claimed = Math.min(queued, entry.maxBytes)
    entry.wake()
  }

  const startHold = (entry: Waiter) => {
    entry.hold = setTimeout(() => {
      entry.hold = undefined
      entry.turn = setImmediate(() => {
        entry.turn = undefined
        wakeWaiter(entry)
      })
    }, holdMs)
  }

  // The stream flows while the queue, less what a woken pull is about to take, is below what the
  // waiting pull, or else the last one, wants.
  const regulate = () => {
    if (finished) return
    const wanted = waiter === undefined ? readAhead : Math.max(readAhead, waiter.maxBytes)
    if (queued - claimed >= wanted) {
      if (!paused) {
        paused = true
        readable.pause()
      }
    } else if (paused) {
      paused = false
      readable.resume()
    }
  }

  const onData = (piece: Uint8Array) => {
    const start = received
    received += piece.byteLength
    if (finished) return
    const from = Math.max(0, deliverFrom - start)
    const to = Math.min(piece.byteLength, deliverTo - start)
    if (from < to) {
      queue.push(view(piece, from, to))
      queued += to - from
    }
    if (start + to >= deliverTo) return settle(options.onEnd(received))
    const entry = waiter
    if (entry !== undefined && queued > 0) {
      if (queued >= entry.maxBytes) wakeWaiter(entry)
      else if (entry.hold === undefined && entry.turn === undefined) startHold(entry)
    }
    regulate()
  }
  const onEnd = () => settle(options.onEnd(received))
  const onError = (cause: unknown) => settle(options.onError(cause))
  const onClose = () => settle(options.onError(new Error("the stream closed before its end")))

  const detach = () => {
    readable.off("data", onData)
    readable.off("end", onEnd)
    readable.off("close", onClose)
    // The error listener stays: an error after this point must not go unhandled.
  }

  // Takes up to `maxBytes` from the queue: a view of the first piece when it covers them, else a join.
  const take = (maxBytes: number, into: Uint8Array | undefined): Uint8Array => {
    const size = Math.min(queued, maxBytes)
    queued -= size
    const first = queue[0]!
    if (first.byteLength >= size) {
      if (first.byteLength === size) queue.shift()
      else queue[0] = first.subarray(size)
      return first.subarray(0, size)
    }
    const out = into !== undefined && into.byteLength >= size
      ? into.subarray(0, size)
      : view(Buffer.allocUnsafeSlow(size), 0, size)
    let filled = 0
    while (filled < size) {
      const piece = queue[0]!
      const n = Math.min(piece.byteLength, size - filled)
      out.set(n === piece.byteLength ? piece : piece.subarray(0, n), filled)
      filled += n
      if (n === piece.byteLength) queue.shift()
      else queue[0] = piece.subarray(n)
    }
    return out
  }

  const deliver = (maxBytes: number, into: Uint8Array | undefined): Effect.Effect<Uint8Array, E> => {
    claimed = 0
    if (queued > 0) {
      const out = take(maxBytes, into)
      regulate()
      return Effect.succeed(out)
    }
    return failure === undefined ? Effect.succeed(empty) : Effect.fail(failure.error)
  }

  const awaitBytes = (maxBytes: number) =>
    Effect.async<void>((resume) => {
      const entry: Waiter = { maxBytes, wake: () => resume(Effect.void), hold: undefined, turn: undefined }
      waiter = entry
      if (queued > 0) startHold(entry)
      regulate()
      return Effect.sync(() => {
        clearTimers(entry)
        if (waiter === entry) waiter = undefined
      })
    })

  // A second pull while one waits would take its place: the contract is one pull at a time.
  const pull: RangePull<E> = (maxBytes, into) =>
    Effect.suspend(() => {
      readAhead = maxBytes
      if (queued >= maxBytes || finished) return deliver(maxBytes, into)
      return Effect.flatMap(
        awaitBytes(maxBytes),
        () => queued > 0 || finished ? deliver(maxBytes, into) : pull(maxBytes, into)
      )
    })

  const close = Effect.sync(() => {
    const ended = readable.readableEnded
    settle(options.onError(new Error("the read was closed")))
    if (!ended && !readable.destroyed) readable.destroy()
  })

  return Effect.as(
    Effect.zipRight(
      Scope.addFinalizer(scope, close),
      Effect.sync(() => {
        readable.on("error", onError)
        if (!readable.readable) {
          const errored = readable.errored
          return errored === null ? onEnd() : onError(errored)
        }
        readable.on("end", onEnd)
        readable.on("close", onClose)
        readable.on("data", onData)
      })
    ),
    pull
  )
}
