/**
 * ReadOptions: the options of one read, their defaults (DESIGN.md) and their validation.
 */
import { Effect, Schema } from "effect"

/** Bytes in a kibibyte. */
export const KiB = 1024
/** Bytes in a mebibyte. */
export const MiB = 1024 * KiB
/** Bytes in a gibibyte. */
export const GiB = 1024 * MiB

/** An option was given a value outside its allowed range. */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  option: Schema.String,
  value: Schema.String,
  allowed: Schema.String
}) {
  override get message() {
    return `invalid option ${this.option}: ${this.value} (allowed: ${this.allowed})`
  }
}

/** The options of one read, every field set. */
export class ReadOptions extends Schema.Class<ReadOptions>("ReadOptions")({
  /** First chunk size in bytes; the fixed size when adaptive sizing is off. */
  chunkSize: Schema.optionalWith(Schema.Number, { default: () => 64 * KiB }),
  /** Smallest chunk the adaptive sizer may choose. */
  minChunk: Schema.optionalWith(Schema.Number, { default: () => 32 * KiB }),
  /** Largest chunk the adaptive sizer may choose. */
  maxChunk: Schema.optionalWith(Schema.Number, { default: () => 256 * KiB }),
  /** Hard limit of bytes buffered by all reads in the process (the budget of the stack built from these options). */
  memoryLimit: Schema.optionalWith(Schema.Number, { default: () => 50 * MiB }),
  /** A checkpoint is saved every this many chunks. */
  checkpointEvery: Schema.optionalWith(Schema.Number, { default: () => 5 }),
  /** Retries allowed in a row without forward progress. */
  retries: Schema.optionalWith(Schema.Number, { default: () => 10 }),
  /** Longest wait between two attempts, in milliseconds. */
  maxRetryDelayMs: Schema.optionalWith(Schema.Number, { default: () => 10_000 }),
  /** No bytes for this long (ms) is a stall, which ends the attempt. */
  stallTimeoutMs: Schema.optionalWith(Schema.Number, { default: () => 30_000 }),
  /** Cap on the read rate in bytes per second; none when absent. */
  rate: Schema.optional(Schema.Number),
  /** Ignore any checkpoint and start from byte 0. */
  restart: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /**
   * Hand out chunks that are views into buffers the reader reuses: a chunk is valid only until
   * the consumer pulls the next one. For consumers that are done with each chunk by then
   * (writing it to a file, hashing it); it keeps memory flat and allocates nothing per chunk.
   */
  reuseBuffers: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  /**
   * Resume no further than this offset: how many bytes the destination still holds. A resume
   * may start earlier than its checkpoint (bytes are read again), never later.
   */
  maxResumeOffset: Schema.optional(Schema.Number),
  /** Where the bytes go (the checkpoint's key with the source); no checkpoints when absent. */
  destination: Schema.optional(Schema.String)
}) {}

/** Options as callers give them: every field optional. */
export type ReadOptionsInput = typeof ReadOptions.Encoded

/** A byte count as a person reads it: `64KiB`, `1.5MiB`, `100B`. */
export const formatSize = (bytes: number): string => {
  const units: ReadonlyArray<[string, number]> = [["GiB", GiB], ["MiB", MiB], ["KiB", KiB]]
  for (const [unit, size] of units) {
    if (Math.abs(bytes) >= size) return `${Number((bytes / size).toFixed(2))}${unit}`
  }
  return `${bytes}B`
}

const sizePattern = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i
const unitBytes: Record<string, number> = { b: 1, k: KiB, kb: KiB, kib: KiB, m: MiB, mb: MiB, mib: MiB, g: GiB, gb: GiB, gib: GiB }

/** Parses a size such as `64KiB`, `1MiB`, `2GiB` or `4096` into bytes; `undefined` when it is not one. */
export const parseSize = (text: string): number | undefined => {
  const match = sizePattern.exec(text.trim())
  if (match === null) return undefined
  const bytes = Number(match[1]) * unitBytes[(match[2] ?? "b").toLowerCase()]!
  return Number.isSafeInteger(Math.round(bytes)) ? Math.round(bytes) : undefined
}

const inRange = (option: string, value: number, min: number, max: number, format: (n: number) => string = String) =>
  Number.isInteger(value) && value >= min && value <= max
    ? Effect.void
    : Effect.fail(
      new InvalidOptions({ option, value: format(value), allowed: `${format(min)} to ${format(max)}` })
    )

/** Decodes and validates options once; a bad value fails with `InvalidOptions` naming it and its range. */
export const decodeReadOptions = (input: ReadOptionsInput = {}): Effect.Effect<ReadOptions, InvalidOptions> =>
  Effect.gen(function*() {
    const options = yield* Schema.decodeUnknown(ReadOptions)(input).pipe(
      Effect.mapError((error) => new InvalidOptions({ option: "options", value: "", allowed: error.message }))
    )
    yield* inRange("minChunk", options.minChunk, 1 * KiB, 64 * MiB, formatSize)
    yield* inRange("maxChunk", options.maxChunk, options.minChunk, 64 * MiB, formatSize)
    yield* inRange("chunkSize", options.chunkSize, options.minChunk, options.maxChunk, formatSize)
    yield* inRange("memoryLimit", options.memoryLimit, 1 * MiB, 64 * GiB, formatSize)
    yield* inRange("checkpointEvery", options.checkpointEvery, 1, 1_000_000)
    yield* inRange("retries", options.retries, 0, 1_000)
    yield* inRange("maxRetryDelayMs", options.maxRetryDelayMs, 0, 3_600_000)
    yield* inRange("stallTimeoutMs", options.stallTimeoutMs, 10, 3_600_000)
    if (options.maxResumeOffset !== undefined) {
      yield* inRange("maxResumeOffset", options.maxResumeOffset, 0, Number.MAX_SAFE_INTEGER)
    }
    if (options.rate !== undefined) yield* inRange("rate", options.rate, 1, 64 * GiB, (n) => `${formatSize(n)}/s`)
    return options
  })
