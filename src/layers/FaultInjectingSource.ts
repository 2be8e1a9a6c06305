/**
 * A testing utility, public for users who test their own consumers: a `ByteSource` over bytes
 * in memory that fails on a plan (cut the connection at byte N, fail with a given error, stall,
 * or change the source's version). Provide it with `TestStack(FaultInjectingSource.layer(...))`
 * to see a pipeline survive exactly the faults it must.
 */
import * as Data from "effect/Data"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Ref from "effect/Ref"
import type { SourceError, SourceHandle, SourceIdentity } from "../services/ByteSource.js"
import { ByteSource, describeSource, TransientReadError } from "../services/ByteSource.js"

/** One planned failure; each fires once, on the first pull that reaches byte `at`. */
export type Fault = Data.TaggedEnum<{
  /** The connection drops. */
  Cut: { readonly at: number }
  /** The pull fails with `error`. */
  Fail: { readonly at: number; readonly error: SourceError }
  /** The pull never answers. */
  Stall: { readonly at: number }
  /** The source is replaced by a new version (new ETag), and the connection drops. */
  Change: { readonly at: number }
}>

/** Constructors for `Fault`. */
export const Fault = Data.taggedEnum<Fault>()

/** What a fault-injecting source has seen, for assertions. */
export interface FaultLog {
  /** The offsets each attempt started at. */
  readonly attempts: ReadonlyArray<number>
  /** Faults that fired. */
  readonly fired: ReadonlyArray<Fault>
}

/** Controls of a fault-injecting source. */
export interface FaultInjection {
  readonly log: Effect.Effect<FaultLog>
}

/** How a fault-injecting source describes its versions, and what a `Change` turns it into. */
export interface FaultOptions {
  /** `weak`: a weak ETag and `strongValidator: false`, so resumes read again from byte 0. */
  readonly validator?: "strong" | "weak"
  /** The bytes served after a `Change` (the same bytes by default). */
  readonly changedTo?: Uint8Array
}

/**
 * A `ByteSource` that serves `bytes` under any source name (every read is of the same
 * object) and injects `faults` in order.
 */
export const make = (initial: Uint8Array, faults: ReadonlyArray<Fault>, options: FaultOptions = {}) =>
  Effect.gen(function*() {
    const pending = yield* Ref.make<ReadonlyArray<Fault>>([...faults].sort((a, b) => a.at - b.at))
    const log = yield* Ref.make<FaultLog>({ attempts: [], fired: [] })
    let version = 1
    let bytes = initial
    const identity = (): SourceIdentity =>
      options.validator === "weak"
        ? { size: bytes.length, etag: `W/"v${version}"`, strongValidator: false }
        : { size: bytes.length, etag: `"v${version}"` }

    const fire = (fault: Fault, source: string) =>
      Effect.zipRight(
        Ref.update(log, (l) => ({ ...l, fired: [...l.fired, fault] })),
        Fault.$match(fault, {
          Cut: ({ at }) => Effect.fail(new TransientReadError({ source, reason: `connection reset at byte ${at}` })),
          Fail: ({ error }) => Effect.fail(error),
          Stall: () => Effect.never,
          Change: ({ at }) =>
            Effect.suspend(() => {
              version++
              bytes = options.changedTo ?? bytes
              return Effect.fail(new TransientReadError({ source, reason: `connection reset at byte ${at}` }))
            })
        })
      )

    const open = (source: string): SourceHandle => ({
      source,
      seekable: true,
      canStall: true,
      readFrom: (offset) =>
        Effect.gen(function*() {
          yield* Ref.update(log, (l) => ({ ...l, attempts: [...l.attempts, offset] }))
          const seen = identity()
          const served = bytes
          let position = offset
          return {
            identity: seen,
            pull: (maxBytes: number) =>
              Effect.gen(function*() {
                const next = (yield* Ref.get(pending))[0]
                if (next !== undefined && next.at <= position) {
                  yield* Ref.update(pending, (all) => all.slice(1))
                  return yield* fire(next, source)
                }
                if (seen.etag !== identity().etag) {
                  return yield* new TransientReadError({ source, reason: "connection reset: object replaced" })
                }
                const limit = next === undefined ? served.length : Math.min(served.length, next.at)
                const out = served.slice(position, Math.max(position, Math.min(position + maxBytes, limit)))
                position += out.length
                return out
              })
          }
        })
    })

    const sources = ByteSource.of({
      open: (input) => Effect.succeed(open(typeof input === "string" ? input : describeSource(input)))
    })
    const injection: FaultInjection = { log: Ref.get(log) }
    return { sources, injection }
  })

/** A fault-injecting `ByteSource` layer; the returned `injection` reads its log. */
export const layer = (
  bytes: Uint8Array,
  faults: ReadonlyArray<Fault>,
  options: FaultOptions = {}
): Layer.Layer<ByteSource> =>
  Layer.effect(ByteSource, Effect.map(make(bytes, faults, options), ({ sources }) => sources))
