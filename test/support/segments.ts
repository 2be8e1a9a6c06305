/**
 * What the tests of reads over segments share: a test stack that reads over HTTP, retries that
 * do not slow a test down, and arbitraries for a read over segments and its faults.
 */
import { FastCheck as fc, Layer } from "effect"
import * as ByteSourceLive from "../../src/layers/ByteSourceLive.js"
import { PlatformLive, TestStack } from "../../src/layers/Stacks.js"
import type { ReadOptionsInput } from "../../src/services/ReadOptions.js"
import type { SegmentFault } from "./segmentServer.js"

const KiB = 1024
const MiB = 1024 * KiB

/** The byte sources of the live stacks, over Node's file system and HTTP client. */
export const liveSources = ByteSourceLive.layer.pipe(Layer.provide(PlatformLive))

/** A test stack over the live byte sources (in-memory checkpoints, steady memory). */
export const liveTestStack = TestStack(liveSources)

/** Retries that do not slow a test down. */
export const fastRetries: ReadOptionsInput = { retries: 100, maxRetryDelayMs: 10 }

/** A fault for a request: none most of the time, else a drop after some bytes or a 503. */
export const arbitraryFault: fc.Arbitrary<SegmentFault | undefined> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.nat(256 * KiB).map((after): SegmentFault => ({ _tag: "Drop", after })) },
  { weight: 1, arbitrary: fc.constant<SegmentFault>({ _tag: "Status", status: 503 }) }
)

/**
 * A read over segments: the segment count, the object's size, the minimum segment size, the
 * fault each request meets in turn, and the seed of the object's bytes.
 */
export const arbitrarySegmentedRead: [
  segments: fc.Arbitrary<number>,
  size: fc.Arbitrary<number>,
  minSegmentSize: fc.Arbitrary<number>,
  faults: fc.Arbitrary<Array<SegmentFault | undefined>>,
  seed: fc.Arbitrary<number>
] = [
  fc.integer({ min: 1, max: 8 }),
  fc.integer({ min: 300 * KiB, max: 3 * MiB }),
  fc.integer({ min: 64 * KiB, max: 256 * KiB }),
  fc.array(arbitraryFault, { maxLength: 24 }),
  fc.integer({ min: 1, max: 1_000_000 })
]
