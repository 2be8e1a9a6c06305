/**
 * Node and web stream adapters: an Effect byte stream as a Node `Readable` or a WHATWG
 * `ReadableStream`, for code that is not written with Effect. Both pull from the Effect
 * stream only when their consumer wants more, fail with the stream's typed error, and release
 * the source (interrupting the fiber, closing the stream's scope) when the consumer cancels.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { Readable } from "node:stream"

/** How an adapter buffers and where it runs the stream. */
export interface AdapterOptions {
  /** Bytes the adapter may hold ahead of its consumer before it stops pulling (default 64 KiB). */
  readonly highWaterMark?: number
  /** The runtime the stream runs on (default: Effect's default runtime). */
  readonly runtime?: Runtime.Runtime<never>
}

/** Bytes an adapter holds ahead of its consumer when the options do not say. */
export const defaultHighWaterMark = 64 * 1024

/** A pull-on-demand view of a stream, run on a runtime inside a scope the adapter closes. */
interface Puller {
  /** The next non-empty chunks, or `undefined` at the end; rejects with the stream's error. */
  readonly next: () => Promise<ReadonlyArray<Uint8Array> | undefined>
  /** Interrupts a pull under way and closes the stream's scope (idempotent). */
  readonly close: () => Promise<void>
  /** Whether `close` has been called. */
  readonly closed: () => boolean
}

const makePuller = <E>(stream: Stream.Stream<Uint8Array, E>, runtime: Runtime.Runtime<never>): Puller => {
  const runFork = Runtime.runFork(runtime)
  const scope = Effect.runSync(Scope.make())
  let pull: Effect.Effect<ReadonlyArray<Uint8Array>, Option.Option<E>> | undefined
  let current: Fiber.RuntimeFiber<ReadonlyArray<Uint8Array> | undefined, E> | undefined
  let closing: Promise<void> | undefined

  const release = Scope.close(scope, Exit.void)

  const pullNonEmpty = Effect.gen(function*() {
    if (pull === undefined) {
      pull = yield* Stream.toPull(stream).pipe(
        Scope.extend(scope),
        Effect.map((effect) => Effect.map(effect, (chunk) => Array.from(chunk).filter((bytes) => bytes.length > 0)))
      )
    }
    while (true) {
      const chunks = yield* pull
      if (chunks.length > 0) return chunks
    }
  }).pipe(
    Effect.catchAll(Option.match({
      onNone: () => Effect.as(release, undefined),
      onSome: (error) => Effect.zipRight(release, Effect.fail(error))
    }))
  )

  return {
    next: () =>
      new Promise((resolve, reject) => {
        if (closing !== undefined) return resolve(undefined)
        const fiber = runFork(pullNonEmpty)
        current = fiber
        fiber.addObserver((exit) => {
          if (current === fiber) current = undefined
          if (Exit.isSuccess(exit)) resolve(exit.value)
          else reject(Cause.squash(exit.cause))
        })
      }),
    close: () => {
      if (closing === undefined) {
        const fiber = current
        closing = Effect.runPromise(
          Effect.zipRight(fiber === undefined ? Effect.void : Fiber.interrupt(fiber), release)
        )
      }
      return closing
    },
    closed: () => closing !== undefined
  }
}

/**
 * The stream as a Node `Readable` of bytes. It pulls only while its buffer is below
 * `highWaterMark`; a stream failure destroys it with the typed error itself (as with any Node
 * stream, bytes still buffered are dropped); `destroy()` interrupts the stream and releases
 * its source. Chunks are handed over as they are, so the stream must not reuse its buffers.
 */
export const toReadable = <E>(stream: Stream.Stream<Uint8Array, E>, options: AdapterOptions = {}): Readable => {
  const source = makePuller(stream, options.runtime ?? Runtime.defaultRuntime)
  let pulling = false
  const readable: Readable = new Readable({
    highWaterMark: options.highWaterMark ?? defaultHighWaterMark,
    read() {
      if (pulling) return
      pulling = true
      source.next().then(
        (chunks) => {
          pulling = false
          if (readable.destroyed) return
          if (chunks === undefined) readable.push(null)
          else for (const chunk of chunks) readable.push(chunk)
        },
        (error: unknown) => {
          pulling = false
          if (!source.closed()) readable.destroy(error as Error)
        }
      )
    },
    destroy(error, callback) {
      source.close().then(
        () => callback(error),
        (closeError: unknown) => callback(error ?? (closeError as Error))
      )
    }
  })
  return readable
}

/**
 * The stream as a WHATWG `ReadableStream` of bytes with a byte-length queuing strategy. It
 * pulls only when the queue is below `highWaterMark` bytes (plus the one chunk in hand); a
 * stream failure errors it with the typed error itself (queued bytes are dropped, as the
 * standard says); `cancel()` interrupts the stream and releases its source. Chunks are handed
 * over as they are, so the stream must not reuse its buffers. Built on Effect's
 * `Stream.toReadableStreamRuntime`, which starts the stream when the web stream is made.
 */
export const toWebStream = <E>(
  stream: Stream.Stream<Uint8Array, E>,
  options: AdapterOptions = {}
): ReadableStream<Uint8Array> =>
  Stream.toReadableStreamRuntime(stream, options.runtime ?? Runtime.defaultRuntime, {
    strategy: new ByteLengthQueuingStrategy({ highWaterMark: options.highWaterMark ?? defaultHighWaterMark })
  })
