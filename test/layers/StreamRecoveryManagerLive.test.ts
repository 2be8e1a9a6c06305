import { assert, describe, it, layer } from "@effect/vitest"
import { Cause, Chunk, Clock, Effect, Equal, Exit, FastCheck as fc, Fiber, Option, Random, TestClock } from "effect"
import type { Duration } from "effect"
import * as StreamRecoveryManagerLive from "../../src/layers/StreamRecoveryManagerLive.js"
import {
  AccessDenied,
  HttpStatusError,
  InvalidUrl,
  NotAFile,
  NotResumable,
  RangeNotSupported,
  SourceChanged,
  SourceNotFound,
  SourceStalled,
  TransientReadError
} from "../../src/services/ByteSource.js"
import type { SourceError } from "../../src/services/ByteSource.js"
import { RetriesExhausted, StreamRecoveryManager } from "../../src/services/StreamRecoveryManager.js"
import type { ErrorClass, RetryPolicy } from "../../src/services/StreamRecoveryManager.js"

const source = "https://example.com/big.bin"
const transient = new TransientReadError({ source, reason: "socket hang up" })

const table: ReadonlyArray<readonly [SourceError, ErrorClass]> = [
  [transient, "retryable"],
  [new SourceStalled({ source, afterMs: 30_000 }), "retryable"],
  [new HttpStatusError({ source, status: 500 }), "retryable"],
  [new HttpStatusError({ source, status: 502 }), "retryable"],
  [new HttpStatusError({ source, status: 503, retryAfterMs: 1_000 }), "retryable"],
  [new HttpStatusError({ source, status: 504 }), "retryable"],
  [new HttpStatusError({ source, status: 429, retryAfterMs: 2_000 }), "retryable"],
  [new HttpStatusError({ source, status: 408 }), "retryable"],
  [new HttpStatusError({ source, status: 400 }), "fatal"],
  [new HttpStatusError({ source, status: 401 }), "fatal"],
  [new HttpStatusError({ source, status: 403 }), "fatal"],
  [new HttpStatusError({ source, status: 404 }), "fatal"],
  [new HttpStatusError({ source, status: 412 }), "fatal"],
  [new HttpStatusError({ source, status: 416 }), "fatal"],
  [new SourceNotFound({ source }), "fatal"],
  [new AccessDenied({ source }), "fatal"],
  [new NotAFile({ source }), "fatal"],
  [new InvalidUrl({ input: "ftp://x", reason: "unsupported scheme" }), "fatal"],
  [new RangeNotSupported({ source, reason: "status 200 to a range request" }), "fatal"],
  [new SourceChanged({ source, expected: { etag: "\"a\"" }, actual: { etag: "\"b\"" } }), "fatal"],
  [new NotResumable({ source, offset: 10, reason: "stream already consumed" }), "fatal"]
]

/**
 * Runs `effect` on the test clock, advancing exactly to each sleep it starts, and checks it is still
 * running one millisecond before each wake-up. Returns the total time it waited and its exit.
 */
const observe = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    let waited = 0
    for (let step = 0; step < 100; step++) {
      yield* Effect.yieldNow()
      const done = yield* Fiber.poll(fiber)
      if (Option.isSome(done)) return { waited, exit: done.value }
      const sleeps = yield* TestClock.sleeps()
      if (Chunk.isEmpty(sleeps)) continue
      const delay = Chunk.unsafeHead(sleeps) - (yield* Clock.currentTimeMillis)
      if (delay > 1) {
        yield* TestClock.adjust(delay - 1)
        assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)), `finished before its ${delay} ms wait`)
      }
      yield* TestClock.adjust(Math.min(delay, 1))
      waited += delay
    }
    return assert.fail("the effect neither finished nor slept")
  })

/** One failure handled by the policy: how long it waited and whether it allowed another attempt. */
const fail = (policy: RetryPolicy, error: SourceError = transient, checkpointOffset = 0) =>
  observe(policy.onFailure(error, checkpointOffset))

/** The typed failure an exit ended with, if any. */
const failure = <A, E>(exit: Exit.Exit<A, E>): Option.Option<E> =>
  Exit.isFailure(exit) ? Cause.failureOption(exit.cause) : Option.none()

/** Asserts that `exit` failed with an error equal (`Equal.equals`, field by field) to `expected`. */
const assertFailsWith = <A, E>(exit: Exit.Exit<A, E>, expected: E) => {
  const actual = failure(exit)
  assert.isTrue(
    Equal.equals(actual, Option.some(expected)),
    `expected failure ${String(expected)}, got ${String(exit)}`
  )
}

const seeded = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.withRandom(effect, Random.make("recovery"))

const makePolicy = (retries: number, maxDelay: Duration.DurationInput = "10 seconds") =>
  StreamRecoveryManager.pipe(Effect.flatMap((manager) => manager.policy({ source, retries, maxDelay })))

describe("StreamRecoveryManagerLive", () => {
  describe("classify", () => {
    it("classifies every source error", () => {
      for (const [error, expected] of table) {
        assert.strictEqual(StreamRecoveryManagerLive.classify(error), expected, `${error._tag} ${error.message}`)
      }
    })

    it.prop("an HTTP status is retryable exactly when it is 408, 429 or 5xx", [fc.integer({ min: 100, max: 599 })], ([
      status
    ]) => {
      const expected = status === 408 || status === 429 || status >= 500 ? "retryable" : "fatal"
      assert.strictEqual(StreamRecoveryManagerLive.classify(new HttpStatusError({ source, status })), expected)
    })
  })

  layer(StreamRecoveryManagerLive.layer)((it) => {
    it.effect("the service classifies like the exported function", () =>
      Effect.gen(function*() {
        const manager = yield* StreamRecoveryManager
        for (const [error, expected] of table) assert.strictEqual(manager.classify(error), expected)
      }))

    it.effect("a fatal error fails at once with the error itself", () =>
      Effect.gen(function*() {
        const policy = yield* makePolicy(5)
        for (const [error, expected] of table) {
          if (expected === "retryable") continue
          const { exit, waited } = yield* fail(policy, error)
          assertFailsWith(exit, error)
          assert.strictEqual(waited, 0)
        }
      }))

    it.effect("retries are exhausted after `retries` consecutive failures, keeping the checkpoint", () =>
      Effect.gen(function*() {
        const policy = yield* makePolicy(3)
        for (let attempt = 1; attempt <= 3; attempt++) {
          const { exit, waited } = yield* fail(policy, transient, 1_000)
          assert.deepStrictEqual(exit, Exit.void)
          assert.isAbove(waited, 0)
        }
        const last = new HttpStatusError({ source, status: 502 })
        const { exit, waited } = yield* fail(policy, last, 4_096)
        assert.strictEqual(waited, 0)
        assertFailsWith(
          exit,
          new RetriesExhausted({ source, attempts: 4, lastError: last.message, checkpointOffset: 4_096 })
        )
        assert.strictEqual(yield* policy.retries, 4)
      }).pipe(seeded))

    it.effect("with no retries allowed the first retryable failure is final", () =>
      Effect.gen(function*() {
        const policy = yield* makePolicy(0)
        const { exit } = yield* fail(policy, transient, 12)
        assertFailsWith(
          exit,
          new RetriesExhausted({ source, attempts: 1, lastError: transient.message, checkpointOffset: 12 })
        )
      }))

    it.effect("progress starts the count and the backoff again", () =>
      Effect.gen(function*() {
        const policy = yield* makePolicy(3)
        const first: Array<number> = []
        for (let attempt = 0; attempt < 3; attempt++) {
          const { exit, waited } = yield* fail(policy)
          assert.deepStrictEqual(exit, Exit.void)
          first.push(waited)
        }
        yield* policy.onProgress
        const second: Array<number> = []
        for (let attempt = 0; attempt < 3; attempt++) {
          const { exit, waited } = yield* fail(policy)
          assert.deepStrictEqual(exit, Exit.void)
          second.push(waited)
        }
        assert.isAtMost(second[0]!, 100, "the backoff did not start again after progress")
        assert.isAtLeast(second[2]!, 200)
        const { exit } = yield* fail(policy, transient, 99)
        assertFailsWith(
          exit,
          new RetriesExhausted({ source, attempts: 4, lastError: transient.message, checkpointOffset: 99 })
        )
        assert.strictEqual(yield* policy.retries, 7)
      }).pipe(seeded))

    it.effect("progress without failures changes nothing", () =>
      Effect.gen(function*() {
        const policy = yield* makePolicy(1)
        yield* policy.onProgress
        yield* policy.onProgress
        assert.deepStrictEqual((yield* fail(policy)).exit, Exit.void)
        assert.isTrue(Exit.isFailure((yield* fail(policy)).exit))
      }))

    it.effect("delays grow exponentially with equal jitter and are capped at maxDelay", () =>
      Effect.gen(function*() {
        const policy = yield* makePolicy(20, "1 second")
        for (let attempt = 0; attempt < 12; attempt++) {
          const { exit, waited } = yield* fail(policy)
          assert.deepStrictEqual(exit, Exit.void)
          const upper = Math.min(100 * 2 ** attempt, 1_000)
          const lower = Math.min(50 * 2 ** attempt, 1_000)
          assert.isAtLeast(waited, lower, `attempt ${attempt}`)
          assert.isAtMost(waited, upper, `attempt ${attempt}`)
        }
      }).pipe(seeded))

    it.effect.prop(
      "every delay stays within its jitter band, whatever the random seed",
      [fc.integer()],
      ([seed]) =>
        Effect.gen(function*() {
          const policy = yield* makePolicy(8, "5 seconds")
          for (let attempt = 0; attempt < 8; attempt++) {
            const { waited } = yield* fail(policy)
            assert.isAtLeast(waited, Math.min(50 * 2 ** attempt, 5_000))
            assert.isAtMost(waited, Math.min(100 * 2 ** attempt, 5_000))
          }
        }).pipe(Effect.withRandom(Random.make(seed))),
      { fastCheck: { numRuns: 10 } }
    )

    it.effect("Retry-After is waited for when longer than the backoff", () =>
      Effect.gen(function*() {
        const policy = yield* makePolicy(5, "10 seconds")
        const { exit, waited } = yield* fail(policy, new HttpStatusError({ source, status: 503, retryAfterMs: 3_000 }))
        assert.deepStrictEqual(exit, Exit.void)
        assert.strictEqual(waited, 3_000)
        const tooMany = yield* fail(policy, new HttpStatusError({ source, status: 429, retryAfterMs: 2_500 }))
        assert.strictEqual(tooMany.waited, 2_500)
      }).pipe(seeded))

    it.effect("Retry-After is bounded by maxDelay", () =>
      Effect.gen(function*() {
        const policy = yield* makePolicy(5, "5 seconds")
        const { exit, waited } = yield* fail(policy, new HttpStatusError({ source, status: 429, retryAfterMs: 60_000 }))
        assert.deepStrictEqual(exit, Exit.void)
        assert.strictEqual(waited, 5_000)
      }))

    it.effect("a Retry-After shorter than the backoff does not shorten it", () =>
      Effect.gen(function*() {
        const policy = yield* makePolicy(10, "10 seconds")
        for (let attempt = 0; attempt < 4; attempt++) yield* fail(policy)
        const { waited } = yield* fail(policy, new HttpStatusError({ source, status: 503, retryAfterMs: 1 }))
        assert.isAtLeast(waited, 50 * 2 ** 4)
        assert.isAtMost(waited, 100 * 2 ** 4)
      }).pipe(seeded))

    it.effect("each read gets its own policy", () =>
      Effect.gen(function*() {
        const a = yield* makePolicy(1)
        const b = yield* makePolicy(1)
        yield* fail(a)
        assert.isTrue(Exit.isFailure((yield* fail(a)).exit))
        assert.deepStrictEqual((yield* fail(b)).exit, Exit.void)
        assert.strictEqual(yield* a.retries, 2)
        assert.strictEqual(yield* b.retries, 1)
      }))
  })
})
