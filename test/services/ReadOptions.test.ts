import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, FastCheck as fc } from "effect"
import {
  decodeReadOptions,
  formatSize,
  GiB,
  InvalidOptions,
  KiB,
  MiB,
  ReadOptions
} from "../../src/services/ReadOptions.js"
import type { ReadOptionsInput } from "../../src/services/ReadOptions.js"

/** The first option a decode refuses, as its message; or `valid`. */
const outcome = (input: ReadOptionsInput) =>
  decodeReadOptions(input).pipe(
    Effect.match({ onFailure: (error) => error.message, onSuccess: () => "valid" })
  )

/** The checks the options had before they were Schema refinements, in their order, as the messages they failed with. */
const handWritten = (input: ReadOptionsInput): string => {
  const options = {
    chunkSize: input.chunkSize ?? 64 * KiB,
    minChunk: input.minChunk ?? 32 * KiB,
    maxChunk: input.maxChunk ?? 256 * KiB,
    memoryLimit: input.memoryLimit ?? 50 * MiB,
    checkpointEvery: input.checkpointEvery ?? 5,
    retries: input.retries ?? 10,
    maxRetryDelayMs: input.maxRetryDelayMs ?? 10_000,
    stallTimeoutMs: input.stallTimeoutMs ?? 30_000,
    rate: input.rate
  }
  const checks: ReadonlyArray<readonly [string, number | undefined, number, number, (n: number) => string]> = [
    ["minChunk", options.minChunk, 1 * KiB, 64 * MiB, formatSize],
    ["maxChunk", options.maxChunk, options.minChunk, 64 * MiB, formatSize],
    ["chunkSize", options.chunkSize, options.minChunk, options.maxChunk, formatSize],
    ["memoryLimit", options.memoryLimit, 1 * MiB, 64 * GiB, formatSize],
    ["checkpointEvery", options.checkpointEvery, 1, 1_000_000, String],
    ["retries", options.retries, 0, 1_000, String],
    ["maxRetryDelayMs", options.maxRetryDelayMs, 0, 3_600_000, String],
    ["stallTimeoutMs", options.stallTimeoutMs, 10, 3_600_000, String],
    ["rate", options.rate, 1, 64 * GiB, (n) => `${formatSize(n)}/s`]
  ]
  for (const [option, value, min, max, format] of checks) {
    if (value === undefined) continue
    if (!(Number.isInteger(value) && value >= min && value <= max)) {
      return new InvalidOptions({ option, value: format(value), allowed: `${format(min)} to ${format(max)}` }).message
    }
  }
  return "valid"
}

/** Numbers near the edges of every range, and some that are no range's. */
const anyNumber = fc.oneof(
  fc.constantFrom(0, 1, 9, 10, 1023, 1024, 32 * KiB - 1, 32 * KiB, 64 * KiB, 256 * KiB, 64 * MiB, 64 * MiB + 1),
  fc.constantFrom(MiB - 1, MiB, 64 * GiB, 64 * GiB + 1, 1_000, 1_001, 1_000_000, 1_000_001, 3_600_000, 3_600_001),
  fc.constantFrom(-1, 1.5, 1024.5, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY),
  fc.integer({ min: -10, max: 128 * MiB }),
  fc.double({ noNaN: true })
)

/** A valid set of options. */
const validOptions = fc
  .record({
    minChunk: fc.integer({ min: 1 * KiB, max: 64 * MiB }),
    maxShare: fc.double({ min: 0, max: 1, noNaN: true }),
    chunkShare: fc.double({ min: 0, max: 1, noNaN: true }),
    memoryLimit: fc.integer({ min: 1 * MiB, max: 64 * GiB }),
    checkpointEvery: fc.integer({ min: 1, max: 1_000_000 }),
    retries: fc.integer({ min: 0, max: 1_000 }),
    maxRetryDelayMs: fc.integer({ min: 0, max: 3_600_000 }),
    stallTimeoutMs: fc.integer({ min: 10, max: 3_600_000 }),
    rate: fc.option(fc.integer({ min: 1, max: 64 * GiB }), { nil: undefined })
  })
  .map(({ chunkShare, maxShare, minChunk, rate, ...rest }): ReadOptionsInput => {
    const maxChunk = minChunk + Math.floor((64 * MiB - minChunk) * maxShare)
    const chunkSize = minChunk + Math.floor((maxChunk - minChunk) * chunkShare)
    return { ...rest, minChunk, maxChunk, chunkSize, ...(rate === undefined ? {} : { rate }) }
  })

const numericOptions = [
  "chunkSize",
  "minChunk",
  "maxChunk",
  "memoryLimit",
  "checkpointEvery",
  "retries",
  "maxRetryDelayMs",
  "stallTimeoutMs",
  "rate"
] as const

describe("decodeReadOptions", () => {
  it.effect("gives every default, as a ReadOptions", () =>
    Effect.gen(function*() {
      const options = yield* decodeReadOptions()
      assert.instanceOf(options, ReadOptions)
      assert.deepInclude(options, {
        chunkSize: 64 * KiB,
        minChunk: 32 * KiB,
        maxChunk: 256 * KiB,
        memoryLimit: 50 * MiB,
        checkpointEvery: 5,
        retries: 10,
        maxRetryDelayMs: 10_000,
        stallTimeoutMs: 30_000,
        restart: false,
        reuseBuffers: false,
        acknowledge: "explicit"
      })
      assert.isUndefined(options.rate)
      assert.isUndefined(options.destination)
      const given = yield* decodeReadOptions({ acknowledge: "on-pull", rate: 40 * MiB, destination: "/out/a.bin" })
      assert.deepInclude(given, { acknowledge: "on-pull", rate: 40 * MiB, destination: "/out/a.bin" })
    }))

  it.effect("a value out of range names the option, the value and the range, sizes and rates as they are typed", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<readonly [ReadOptionsInput, InvalidOptions]> = [
        [
          { chunkSize: 1024 * KiB },
          new InvalidOptions({ option: "chunkSize", value: "1MiB", allowed: "32KiB to 256KiB" })
        ],
        [{ chunkSize: 1 }, new InvalidOptions({ option: "chunkSize", value: "1B", allowed: "32KiB to 256KiB" })],
        [
          { chunkSize: 40_000.5 },
          new InvalidOptions({ option: "chunkSize", value: "39.06KiB", allowed: "32KiB to 256KiB" })
        ],
        [{ minChunk: 512 }, new InvalidOptions({ option: "minChunk", value: "512B", allowed: "1KiB to 64MiB" })],
        [{ maxChunk: 16 * KiB }, new InvalidOptions({ option: "maxChunk", value: "16KiB", allowed: "32KiB to 64MiB" })],
        [
          { maxChunk: 128 * MiB },
          new InvalidOptions({ option: "maxChunk", value: "128MiB", allowed: "32KiB to 64MiB" })
        ],
        [{ memoryLimit: 0 }, new InvalidOptions({ option: "memoryLimit", value: "0B", allowed: "1MiB to 64GiB" })],
        [
          { checkpointEvery: 0 },
          new InvalidOptions({ option: "checkpointEvery", value: "0", allowed: "1 to 1000000" })
        ],
        [{ retries: -1 }, new InvalidOptions({ option: "retries", value: "-1", allowed: "0 to 1000" })],
        [{ retries: 2.5 }, new InvalidOptions({ option: "retries", value: "2.5", allowed: "0 to 1000" })],
        [
          { maxRetryDelayMs: 4_000_000 },
          new InvalidOptions({ option: "maxRetryDelayMs", value: "4000000", allowed: "0 to 3600000" })
        ],
        [{ stallTimeoutMs: 5 }, new InvalidOptions({ option: "stallTimeoutMs", value: "5", allowed: "10 to 3600000" })],
        [
          { stallTimeoutMs: Number.NaN },
          new InvalidOptions({ option: "stallTimeoutMs", value: "NaN", allowed: "10 to 3600000" })
        ],
        [{ rate: 0 }, new InvalidOptions({ option: "rate", value: "0B/s", allowed: "1B/s to 64GiB/s" })],
        [{ rate: 100 * GiB }, new InvalidOptions({ option: "rate", value: "100GiB/s", allowed: "1B/s to 64GiB/s" })]
      ]
      for (const [input, expected] of cases) {
        assert.deepStrictEqual(yield* Effect.flip(decodeReadOptions(input)), expected, JSON.stringify(input))
      }
    }))

  it.effect("the chunk ranges follow the other chunk options", () =>
    Effect.gen(function*() {
      assert.deepStrictEqual(
        yield* Effect.flip(decodeReadOptions({ minChunk: 4 * KiB, maxChunk: 8 * KiB, chunkSize: 16 * KiB })),
        new InvalidOptions({ option: "chunkSize", value: "16KiB", allowed: "4KiB to 8KiB" })
      )
      assert.deepStrictEqual(
        yield* Effect.flip(decodeReadOptions({ minChunk: 64 * KiB, maxChunk: 48 * KiB, chunkSize: 16 * KiB })),
        new InvalidOptions({ option: "maxChunk", value: "48KiB", allowed: "64KiB to 64MiB" }),
        "maxChunk is checked before chunkSize"
      )
      const edges = yield* decodeReadOptions({ minChunk: 1 * KiB, maxChunk: 64 * MiB, chunkSize: 64 * MiB })
      assert.deepInclude(edges, { minChunk: 1 * KiB, maxChunk: 64 * MiB, chunkSize: 64 * MiB })
    }))

  it.effect("a value of the wrong type names the option and what it should be", () =>
    Effect.gen(function*() {
      const wrong = (input: Record<string, unknown>) => Effect.flip(decodeReadOptions(input as ReadOptionsInput))
      assert.deepStrictEqual(
        yield* wrong({ acknowledge: "sometimes" }),
        new InvalidOptions({ option: "acknowledge", value: "\"sometimes\"", allowed: "\"explicit\" or \"on-pull\"" })
      )
      assert.deepStrictEqual(
        yield* wrong({ restart: "yes" }),
        new InvalidOptions({ option: "restart", value: "\"yes\"", allowed: "boolean" })
      )
      assert.deepStrictEqual(
        yield* wrong({ minChunk: "64KiB" }),
        new InvalidOptions({ option: "minChunk", value: "\"64KiB\"", allowed: "1KiB to 64MiB" })
      )
      assert.deepStrictEqual(
        yield* wrong({ chunkSize: "64KiB" }),
        new InvalidOptions({ option: "chunkSize", value: "\"64KiB\"", allowed: "number" })
      )
      const error = yield* wrong({ destination: 7 })
      assert.strictEqual(error.message, "invalid option destination: 7 (allowed: string)")
    }))

  it.effect.prop(
    "one option changed from a valid set fails exactly as the hand-written checks did",
    { base: validOptions, option: fc.constantFrom(...numericOptions), value: anyNumber },
    ({ base, option, value }) =>
      Effect.gen(function*() {
        const input: ReadOptionsInput = { ...base, [option]: value }
        assert.strictEqual(yield* outcome(input), handWritten(input))
      })
  )

  it.effect.prop(
    "any options are accepted exactly when the hand-written checks accepted them",
    {
      input: fc.record(
        Object.fromEntries(numericOptions.map((option) => [option, anyNumber])) as Record<
          typeof numericOptions[number],
          typeof anyNumber
        >,
        { requiredKeys: [] }
      )
    },
    ({ input }) =>
      Effect.gen(function*() {
        const valid = Either.isRight(yield* Effect.either(decodeReadOptions(input)))
        assert.strictEqual(valid, handWritten(input) === "valid")
      })
  )
})
