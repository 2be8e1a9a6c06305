/**
 * The behaviour every `CheckpointStore` must have, registered once per implementation.
 */
import { assert, describe, layer } from "@effect/vitest"
import { Effect, FastCheck as fc, Option } from "effect"
import type { Layer } from "effect"
import { CheckpointStore } from "../../src/services/CheckpointStore.js"
import type { ByteRange, Checkpoint, CheckpointKey, OutputCheck } from "../../src/services/CheckpointStore.js"

const checkpoint = (key: CheckpointKey, offset: number, overrides: Partial<Checkpoint> = {}): Checkpoint => ({
  key,
  offset,
  identity: {
    size: 10 * 1024 * 1024 * 1024,
    mtimeMs: 1_700_000_000_123.456,
    etag: "\"abc-123\"",
    lastModified: "Tue, 14 Nov 2023 22:13:20 GMT"
  },
  chunkSize: 64 * 1024,
  updatedAt: 1_700_000_000_999,
  ...overrides
})

const text = fc.string({ unit: "grapheme", maxLength: 40 })
const finiteNonNegative = fc.double({ min: 0, max: 1e15, noNaN: true, noDefaultInfinity: true }).filter((n) =>
  !Object.is(n, -0)
)

const sha256Hex = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((bytes) => Buffer.from(bytes).toString("hex"))

/** What a file destination records of itself: a 64 KiB tail before an offset of 10 GiB. */
const outputCheck: OutputCheck = {
  dev: 66_306,
  ino: 2 ** 40 + 7,
  tailLength: 64 * 1024,
  tailSha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
}

const prefixSha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/** Sorted, disjoint ranges that do not touch: the bounds are distinct numbers, paired in order. */
const arbitraryRanges = fc.uniqueArray(fc.maxSafeNat(), { minLength: 2, maxLength: 12 }).map((bounds) => {
  const sorted = [...bounds].sort((a, b) => a - b)
  const ranges: Array<ByteRange> = []
  for (let i = 0; i + 1 < sorted.length; i += 2) ranges.push({ start: sorted[i]!, end: sorted[i + 1]! })
  return ranges
})

/**
 * Any checkpoint a read could record: offsets up to 2^53 - 1, any subset of identity fields,
 * with or without verification (and its tail end) and acknowledged ranges.
 */
export const arbitraryCheckpoint: fc.Arbitrary<Checkpoint> = fc.record({
  key: fc.record({ source: text, destination: text }),
  offset: fc.maxSafeNat(),
  identity: fc.record(
    {
      size: fc.maxSafeNat(),
      mtimeMs: finiteNonNegative,
      ctimeMs: finiteNonNegative,
      dev: fc.maxSafeNat(),
      ino: fc.maxSafeNat(),
      etag: text,
      lastModified: text,
      strongValidator: fc.boolean()
    },
    { requiredKeys: [] }
  ),
  chunkSize: fc.integer({ min: 1, max: 64 * 1024 * 1024 }),
  updatedAt: fc.maxSafeNat(),
  output: fc.record({
    dev: fc.maxSafeNat(),
    ino: fc.maxSafeNat(),
    tailLength: fc.maxSafeNat(),
    tailSha256: sha256Hex,
    tailEnd: fc.maxSafeNat()
  }, { requiredKeys: ["dev", "ino", "tailLength", "tailSha256"] }),
  prefixSha256: sha256Hex,
  ranges: arbitraryRanges
}, { requiredKeys: ["key", "offset", "identity", "chunkSize", "updatedAt"] })

/** Registers the shared checkpoint-store tests for the store `makeLayer` builds (one store for the whole suite). */
export const checkpointStoreContract = (
  name: string,
  makeLayer: () => Layer.Layer<CheckpointStore, unknown>
): void => {
  describe(`${name} (CheckpointStore contract)`, () => {
    layer(makeLayer())((it) => {
      it.effect("a saved checkpoint loads back with every identity field", () =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          const saved = checkpoint({ source: "https://example.com/big.bin", destination: "/out/big.bin" }, 123_456)
          yield* store.save(saved)
          const loaded = yield* store.load(saved.key)
          assert.deepStrictEqual(loaded, Option.some(saved))
        }))

      it.effect("an identity with no known fields loads back empty", () =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          const saved = checkpoint({ source: "stream:stdin", destination: "/out/empty-identity" }, 7, { identity: {} })
          yield* store.save(saved)
          assert.deepStrictEqual(yield* store.load(saved.key), Option.some(saved))
        }))

      it.effect("a checkpoint with the destination's check and the source prefix digest loads back with both", () =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          const saved = checkpoint(
            { source: "https://example.com/weak.bin", destination: "/out/verified.bin" },
            10 * 2 ** 30,
            {
              identity: { size: 20 * 2 ** 30, etag: "W/\"weak\"", strongValidator: false },
              output: outputCheck,
              prefixSha256
            }
          )
          yield* store.save(saved)
          assert.deepStrictEqual(yield* store.load(saved.key), Option.some(saved))
        }))

      it.effect("a checkpoint with only one of the two checks loads back with that one alone", () =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          const onlyOutput = checkpoint(
            { source: "/data/only-output.bin", destination: "/out/only-output.bin" },
            4096,
            {
              output: { ...outputCheck, tailLength: 4096 }
            }
          )
          const onlyPrefix = checkpoint(
            { source: "/data/only-prefix.bin", destination: "/out/only-prefix.bin" },
            4096,
            {
              prefixSha256
            }
          )
          yield* store.save(onlyOutput)
          yield* store.save(onlyPrefix)
          const loadedOutput = Option.getOrThrow(yield* store.load(onlyOutput.key))
          const loadedPrefix = Option.getOrThrow(yield* store.load(onlyPrefix.key))
          assert.deepStrictEqual(loadedOutput, onlyOutput)
          assert.deepStrictEqual(loadedPrefix, onlyPrefix)
          assert.isFalse("prefixSha256" in loadedOutput, "no prefix digest appears from nowhere")
          assert.isFalse("output" in loadedPrefix, "no output check appears from nowhere")
        }))

      it.effect("a save without the checks replaces a checkpoint that had them, and the other way round", () =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          const key = { source: "/data/checks-replaced.bin", destination: "/out/checks-replaced.bin" }
          const plain = checkpoint(key, 100)
          const verified = checkpoint(key, 200, { output: outputCheck, prefixSha256 })
          yield* store.save(verified)
          yield* store.save(plain)
          const loaded = Option.getOrThrow(yield* store.load(key))
          assert.deepStrictEqual(loaded, plain)
          assert.isFalse("output" in loaded || "prefixSha256" in loaded, "the old checks are gone")
          yield* store.save(verified)
          assert.deepStrictEqual(yield* store.load(key), Option.some(verified))
        }))

      it.effect("a checkpoint with acknowledged ranges and a tail check past the offset loads back exactly", () =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          const saved = checkpoint(
            { source: "https://example.com/segmented.bin", destination: "/out/segmented.bin" },
            4 * 2 ** 20,
            {
              output: { ...outputCheck, tailEnd: 5 * 2 ** 32 + 65_536 },
              prefixSha256,
              ranges: [
                { start: 8 * 2 ** 20, end: 12 * 2 ** 20 },
                { start: 2 ** 32, end: 2 ** 32 + 2 ** 20 },
                { start: 5 * 2 ** 32, end: 5 * 2 ** 32 + 65_536 }
              ]
            }
          )
          yield* store.save(saved)
          assert.deepStrictEqual(yield* store.load(saved.key), Option.some(saved))
        }))

      it.effect("a save without ranges or a tail end clears those of the checkpoint it replaces", () =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          const key = { source: "https://example.com/ranges-cleared.bin", destination: "/out/ranges-cleared.bin" }
          const segmented = checkpoint(key, 1000, {
            output: { ...outputCheck, tailEnd: 9000 },
            ranges: [{ start: 2000, end: 3000 }, { start: 8000, end: 9000 }]
          })
          const contiguous = checkpoint(key, 9000, { output: outputCheck })
          yield* store.save(segmented)
          yield* store.save(contiguous)
          const loaded = Option.getOrThrow(yield* store.load(key))
          assert.deepStrictEqual(loaded, contiguous)
          assert.isFalse("ranges" in loaded, "the old ranges are gone")
          assert.isFalse(loaded.output !== undefined && "tailEnd" in loaded.output, "the old tail end is gone")
          yield* store.save(segmented)
          assert.deepStrictEqual(yield* store.load(key), Option.some(segmented))
          yield* store.save({ ...contiguous, ranges: [] })
          const { ranges, ...rest } = Option.getOrThrow(yield* store.load(key))
          assert.deepStrictEqual(ranges ?? [], [], "an empty list of ranges loads as none")
          assert.deepStrictEqual(rest, contiguous)
        }))

      it.effect("a save replaces the checkpoint under the same key", () =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          const key = { source: "/data/upsert.bin", destination: "/out/upsert.bin" }
          yield* store.save(checkpoint(key, 100))
          const second = checkpoint(key, 200, {
            identity: { size: 999, etag: "\"v2\"" },
            chunkSize: 32 * 1024,
            updatedAt: 5
          })
          yield* store.save(second)
          assert.deepStrictEqual(yield* store.load(key), Option.some(second))
        }))

      it.effect("delete removes the checkpoint, and deleting a missing key succeeds", () =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          const key = { source: "/data/delete.bin", destination: "/out/delete.bin" }
          yield* store.save(checkpoint(key, 42))
          yield* store.delete(key)
          assert.deepStrictEqual(yield* store.load(key), Option.none())
          yield* store.delete(key)
          assert.deepStrictEqual(yield* store.load(key), Option.none())
        }))

      it.effect("loading a key never saved is None", () =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          assert.deepStrictEqual(yield* store.load({ source: "/never/saved", destination: "/nowhere" }), Option.none())
        }))

      it.effect("keys that share a source or a destination are distinct", () =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          const a = checkpoint({ source: "/data/shared.bin", destination: "/out/a.bin" }, 1)
          const b = checkpoint({ source: "/data/shared.bin", destination: "/out/b.bin" }, 2)
          const c = checkpoint({ source: "/data/other.bin", destination: "/out/a.bin" }, 3)
          yield* store.save(a)
          yield* store.save(b)
          yield* store.save(c)
          assert.deepStrictEqual(yield* store.load(a.key), Option.some(a))
          assert.deepStrictEqual(yield* store.load(b.key), Option.some(b))
          assert.deepStrictEqual(yield* store.load(c.key), Option.some(c))
          yield* store.delete(a.key)
          assert.deepStrictEqual(yield* store.load(a.key), Option.none())
          assert.deepStrictEqual(yield* store.load(b.key), Option.some(b))
          assert.deepStrictEqual(yield* store.load(c.key), Option.some(c))
        }))

      it.effect("offsets beyond 2^32 keep every bit", () =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          for (const offset of [2 ** 32, 2 ** 32 + 1, 2 ** 40 + 12_345, Number.MAX_SAFE_INTEGER]) {
            const saved = checkpoint({ source: "/data/huge.bin", destination: `/out/huge-${offset}` }, offset, {
              identity: { size: Number.MAX_SAFE_INTEGER }
            })
            yield* store.save(saved)
            const loaded = yield* store.load(saved.key)
            assert.deepStrictEqual(loaded, Option.some(saved))
            assert.strictEqual(Option.getOrThrow(loaded).offset, offset)
          }
        }))

      it.effect.prop("any checkpoint round-trips", [arbitraryCheckpoint], ([generated]) =>
        Effect.gen(function*() {
          const store = yield* CheckpointStore
          const saved: Checkpoint = { ...generated, key: { ...generated.key, source: `prop:${generated.key.source}` } }
          yield* store.save(saved)
          assert.deepStrictEqual(yield* store.load(saved.key), Option.some(saved))
        }), { fastCheck: { numRuns: 100 } })
    })
  })
}
