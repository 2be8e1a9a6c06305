/**
 * ReadOptions: the options of one read, their defaults (DESIGN.md) and their validation.
 */
import * as Arr from "effect/Array"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

/** Bytes in a kibibyte. */
export const KiB = 1024
/** Bytes in a mebibyte. */
export const MiB = 1024 * KiB
/** Bytes in a gibibyte. */
export const GiB = 1024 * MiB

/** An option was given a value outside its allowed range (or of the wrong type). */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>()("InvalidOptions", {
  option: Schema.String,
  value: Schema.String,
  allowed: Schema.String
}) {
  override get message() {
    return `invalid option ${this.option}: ${this.value} (allowed: ${this.allowed})`
  }
}

/** A byte count as a person reads it: `64KiB`, `1.5MiB`, `100B`. */
export const formatSize = (bytes: number): string => {
  const units: ReadonlyArray<[string, number]> = [["GiB", GiB], ["MiB", MiB], ["KiB", KiB]]
  for (const [unit, size] of units) {
    if (Math.abs(bytes) >= size) return `${Number((bytes / size).toFixed(2))}${unit}`
  }
  return `${bytes}B`
}

const sizePattern = /^(\d+(?:\.\d+)?)\s*(b|k|kb|kib|m|mb|mib|g|gb|gib)?$/i
const unitBytes: Record<string, number> = {
  b: 1,
  k: KiB,
  kb: KiB,
  kib: KiB,
  m: MiB,
  mb: MiB,
  mib: MiB,
  g: GiB,
  gb: GiB,
  gib: GiB
}

/** Parses a size such as `64KiB`, `1MiB`, `2GiB` or `4096` into bytes; `undefined` when it is not one. */
export const parseSize = (text: string): number | undefined => {
  const match = sizePattern.exec(text.trim())
  if (match === null) return undefined
  const bytes = Number(match[1]) * unitBytes[(match[2] ?? "b").toLowerCase()]!
  return Number.isSafeInteger(Math.round(bytes)) ? Math.round(bytes) : undefined
}

/** The annotation that keeps an option's allowed range on its refinement, for `InvalidOptions`. */
const RangeId: unique symbol = Symbol.for("streaming-reader/ReadOptions/Range")

/** An option's allowed range and how its values are written in `InvalidOptions`. */
interface Range {
  readonly min: number
  readonly max: number
  readonly format: (n: number) => string
}

/** Whole numbers from `min` to `max`; a value outside is an `InvalidOptions` written with `format`. */
const range = (min: number, max: number, format: (n: number) => string = String) =>
  Schema.Int.pipe(Schema.between(min, max)).annotations({ [RangeId]: { min, max, format } satisfies Range })

/** Byte counts from `min` to `max`, written as `64KiB`. */
const sizeRange = (min: number, max: number) => range(min, max, formatSize)

/** The most segments one read may use. */
export const maxSegments = 64

/** Segments per HTTP(S) object by default (see the README's measurement). */
export const defaultSegments = 4

/** The largest chunk any option allows. */
const chunkLimit = 64 * MiB

/**
 * The issue of `value` outside `schema`, at the path of `option`; nothing when it is inside. For
 * the ranges that depend on other options, checked once all of them are decoded.
 */
const outOfRange = (option: string, options: object, value: number, schema: Schema.Schema<number>) =>
  Either.match(ParseResult.validateEither(schema)(value), {
    onLeft: (issue) => new ParseResult.Pointer(option, options, issue),
    onRight: () => undefined
  })

/** The options of one read, every field set. */
export class ReadOptions extends Schema.Class<ReadOptions>("ReadOptions")(
  Schema.Struct({
    /** First chunk size in bytes; the fixed size when adaptive sizing is off (from `minChunk` to `maxChunk`). */
    chunkSize: Schema.optionalWith(Schema.Number, { default: () => 64 * KiB }),
    /** Smallest chunk the adaptive sizer may choose. */
    minChunk: Schema.optionalWith(sizeRange(1 * KiB, chunkLimit), { default: () => 32 * KiB }),
    /** Largest chunk the adaptive sizer may choose (from `minChunk` to 64 MiB). */
    maxChunk: Schema.optionalWith(Schema.Number, { default: () => 256 * KiB }),
    /** Hard limit of bytes buffered by all reads in the process (the budget of the stack built from these options). */
    memoryLimit: Schema.optionalWith(sizeRange(1 * MiB, 64 * GiB), { default: () => 50 * MiB }),
    /** A checkpoint is saved every this many chunks. */
    checkpointEvery: Schema.optionalWith(range(1, 1_000_000), { default: () => 5 }),
    /** Retries allowed in a row without forward progress. */
    retries: Schema.optionalWith(range(0, 1_000), { default: () => 10 }),
    /** Longest wait between two attempts, in milliseconds. */
    maxRetryDelayMs: Schema.optionalWith(range(0, 3_600_000), { default: () => 10_000 }),
    /** No bytes for this long (ms) is a stall, which ends the attempt. */
    stallTimeoutMs: Schema.optionalWith(range(10, 3_600_000), { default: () => 30_000 }),
    /** Cap on the read rate in bytes per second; none when absent. */
    rate: Schema.optional(range(1, 64 * GiB, (n) => `${formatSize(n)}/s`)),
    /** Ignore any checkpoint and start from byte 0. */
    restart: Schema.optionalWith(Schema.Boolean, { default: () => false }),
    /**
     * Hand out chunks that are views into buffers the reader reuses: a chunk is valid only until
     * the consumer pulls the next one. For consumers that are done with each chunk by then
     * (writing it to a file, hashing it); it keeps memory flat and allocates nothing per chunk.
     */
    reuseBuffers: Schema.optionalWith(Schema.Boolean, { default: () => false }),
    /**
     * Who acknowledges bytes: `explicit` (the default), the consumer with `acknowledge`; or
     * `on-pull`, pulling a chunk acknowledges the one before (for consumers that finish with each
     * chunk before asking for the next).
     */
    acknowledge: Schema.optionalWith(Schema.Literal("explicit", "on-pull"), { default: () => "explicit" as const }),
    /**
     * Up to this many ranged connections for one HTTP(S) object with a known size, a strong
     * validator and Range support; one connection otherwise, when the object is smaller than
     * two `minSegmentSize`s, or when the reader has no memory budget to bound its reorder window
     * (the basic stack).
     */
    segments: Schema.optionalWith(range(1, maxSegments), { default: () => defaultSegments }),
    /** The smallest range a segment is given, or split off another segment's remaining range. */
    minSegmentSize: Schema.optionalWith(sizeRange(64 * KiB, 1 * GiB), { default: () => 4 * MiB }),
    /** The most connections all segmented reads in the process hold to one host at once. */
    maxConnections: Schema.optionalWith(range(1, 1_000), { default: () => 16 }),
    /** The name checkpoints of this read are kept under, with the source (where its bytes go); no checkpoints when absent. */
    destination: Schema.optional(Schema.String)
  }).pipe(
    Schema.filter((options) =>
      outOfRange("maxChunk", options, options.maxChunk, sizeRange(options.minChunk, chunkLimit)) ??
        outOfRange("chunkSize", options, options.chunkSize, sizeRange(options.minChunk, options.maxChunk))
    )
  )
) {}

/** Options as callers give them: every field optional. */
export type ReadOptionsInput = typeof ReadOptions.Encoded

/** A value as `InvalidOptions` shows it: a number written with `format`, anything else as JSON. */
const show = (value: unknown, format: (n: number) => string = String): string =>
  typeof value === "number" ? format(value) : JSON.stringify(value) ?? String(value)

/** One value a decode refused: where it is, and the range it missed or the type it should have had. */
interface Miss {
  readonly path: string
  readonly actual: unknown
  readonly range?: Range
  readonly expected?: string
}

/** The values `issue` refused, in the order the decode met them; `path` is where `issue` is. */
const missesOf = (issue: ParseResult.ParseIssue, path: ReadonlyArray<PropertyKey>): ReadonlyArray<Miss> => {
  switch (issue._tag) {
    case "Pointer":
      return missesOf(issue.issue, [...path, ...Arr.ensure(issue.path)])
    case "Refinement": {
      const range = issue.ast.annotations[RangeId] as Range | undefined
      return range === undefined
        ? missesOf(issue.issue, path)
        : [{ path: path.map(String).join("."), actual: issue.actual, range }]
    }
    case "Transformation":
      return missesOf(issue.issue, path)
    case "Composite":
      return Arr.ensure(issue.issues).flatMap((inner) => missesOf(inner, path))
    case "Type":
      return [{ path: path.map(String).join("."), actual: issue.actual, expected: String(issue.ast) }]
    default:
      return [{ path: path.map(String).join("."), actual: issue.actual }]
  }
}

/** The `InvalidOptions` of a failed decode: the option outside its range, or else the one of the wrong type. */
const invalidOptions = (issue: ParseResult.ParseIssue): InvalidOptions => {
  const misses = missesOf(issue, [])
  const miss = misses.find((m) => m.range !== undefined) ?? misses[0]
  const option = miss === undefined || miss.path === "" ? "options" : miss.path
  if (miss?.range !== undefined) {
    const { format, max, min } = miss.range
    return new InvalidOptions({ option, value: show(miss.actual, format), allowed: `${format(min)} to ${format(max)}` })
  }
  // An optional field is a union with `undefined`: its other members are what the value could have been.
  const expected = misses.flatMap((m) =>
    m.path === miss?.path && m.expected !== undefined && m.expected !== "undefined" ? [m.expected] : []
  )
  return new InvalidOptions({ option, value: show(miss?.actual), allowed: expected.join(" or ") || "read options" })
}

/** Decodes and validates options once; a bad value fails with `InvalidOptions` naming it and its range. */
export const decodeReadOptions = (input: ReadOptionsInput = {}): Effect.Effect<ReadOptions, InvalidOptions> =>
  Schema.decodeUnknown(ReadOptions)(input).pipe(Effect.mapError((error) => invalidOptions(error.issue)))
