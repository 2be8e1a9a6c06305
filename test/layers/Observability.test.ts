import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Metric, MetricBoundaries, Option, Stream, TestClock, Tracer } from "effect"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as ByteSourceLive from "../../src/layers/ByteSourceLive.js"
import * as FaultInjectingSource from "../../src/layers/FaultInjectingSource.js"
import { histogramQuantile } from "../../src/layers/ReaderMetricsLive.js"
import { TestStack } from "../../src/layers/Stacks.js"
import { ByteSource } from "../../src/services/ByteSource.js"
import { ReaderMetrics } from "../../src/services/ReaderMetrics.js"
import { KiB } from "../../src/services/ReadOptions.js"
import { StreamingReader } from "../../src/services/StreamingReader.js"
import { testBytes } from "../support/files.js"
import { makeSegmentServer } from "../support/segmentServer.js"

/** Wraps the current tracer so every span name is recorded. */
const recordingSpans = <A, E, R>(names: Array<string>, effect: Effect.Effect<A, E, R>) =>
  Effect.tracerWith((tracer) =>
    Effect.withTracer(
      effect,
      Tracer.make({
        span: (name, ...rest) => {
          names.push(name)
          return tracer.span(name, ...rest)
        },
        context: (f, fiber) => tracer.context(f, fiber)
      })
    )
  )

describe("observability", () => {
  it.scoped("spans around open, attempt, checkpoint and resume, and metrics in the Prometheus format", () =>
    Effect.gen(function*() {
      const source = "https://objects.test/observed.bin"
      const bytes = testBytes(512 * KiB, 51)
      const { sources } = yield* FaultInjectingSource.make(bytes, [FaultInjectingSource.Fault.Cut({ at: 200_000 })])
      const context = yield* Layer.build(TestStack(Layer.succeed(ByteSource, sources)))
      const reader = Context.get(context, StreamingReader)
      const names: Array<string> = []
      const read = yield* Effect.fork(recordingSpans(
        names,
        Stream.runDrain(
          reader.read(source, { acknowledge: "on-pull", destination: "/out/observed.bin", checkpointEvery: 2 })
        )
      ))
      for (let i = 0; i < 100 && Option.isNone(yield* Fiber.poll(read)); i++) yield* TestClock.adjust("100 millis")
      yield* Fiber.join(read)
      for (
        const span of [
          "StreamingReader.open",
          "StreamingReader.attempt",
          "StreamingReader.checkpoint",
          "StreamingReader.resume"
        ]
      ) {
        assert.include(names, span)
      }
      const text = yield* Context.get(context, ReaderMetrics).prometheus
      const label = `{source="${source}"}`
      assert.include(text, "# TYPE streaming_reader_bytes_total counter")
      assert.include(text, `streaming_reader_bytes_total${label} ${bytes.length}`)
      assert.include(text, `streaming_reader_retries_total${label} 1`)
      assert.include(text, `streaming_reader_recoveries_total${label} 1`)
      assert.include(text, `streaming_reader_streams_succeeded_total${label} 1`)
      assert.include(text, "# TYPE streaming_reader_chunk_latency_ms histogram")
      assert.match(text, /\nstreaming_reader_budget_bytes [1-9]\d*\n/, "the budget in use is recorded")
      assert.match(text, /streaming_reader_chunk_latency_ms_bucket\{source="[^"]+",le="\+Inf"\} [1-9]\d*\n/)
      const chunks = Number(/streaming_reader_chunk_bytes_count\{source="[^"]+"\} (\d+)/.exec(text)?.[1])
      assert.isAbove(chunks, 0, "every chunk's size is counted")
      assert.include(text, `streaming_reader_chunk_latency_ms_count${label} ${chunks}`)
    }))
})

describe("observability over segments", () => {
  it.scopedLive("a span per segment, and the active and peak segments per source as metrics", () =>
    Effect.gen(function*() {
      const body = testBytes(1024 * KiB, 52)
      const server = yield* makeSegmentServer({ body })
      const sources = ByteSourceLive.layer.pipe(
        Layer.provide(Layer.mergeAll(NodeContext.layer, NodeHttpClient.layerUndici))
      )
      const context = yield* Layer.build(TestStack(sources))
      const reader = Context.get(context, StreamingReader)
      const names: Array<string> = []
      const bytes = yield* recordingSpans(
        names,
        Stream.runFold(reader.read(server.url, { segments: 4, minSegmentSize: 64 * KiB }), 0, (n, c) => n + c.length)
      )
      assert.strictEqual(bytes, body.length)
      const segmentSpans = names.filter((name) => name === "StreamingReader.segment").length
      assert.isAtLeast(segmentSpans, 4, "one span per range a connection fetched, steals included")
      const text = yield* Context.get(context, ReaderMetrics).prometheus
      const label = `{source="${server.url}"}`
      assert.include(text, `streaming_reader_peak_segments${label} 4`)
      assert.include(text, `streaming_reader_active_segments${label} 0`, "no segment fetches after the read")
    }))
})

describe("histogramQuantile", () => {
  it.effect("finds the bucket of the rank and interpolates within it, inside the values seen", () =>
    Effect.gen(function*() {
      const latency = Metric.histogram("quantile_test_ms", MetricBoundaries.fromIterable([1, 2, 4, 8]))
      for (const value of [0.5, 1.5, 1.5, 3, 3, 3, 3, 6, 6, 7]) yield* Metric.update(latency, value)
      const state = yield* Metric.value(latency)
      assert.strictEqual(histogramQuantile(state, 0.1), 1, "rank 1 of 10 is the top of the first bucket")
      assert.closeTo(histogramQuantile(state, 0.5), 3, 0.01, "rank 5 of 10 is the second of four in (2, 4]")
      assert.strictEqual(histogramQuantile(state, 1), 7, "never above the largest value")
      const empty = yield* Metric.value(Metric.histogram("quantile_test_empty", MetricBoundaries.fromIterable([1])))
      assert.strictEqual(histogramQuantile(empty, 0.95), 0)
    }))
})
