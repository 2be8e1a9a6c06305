/**
 * The live `ReaderMetrics`: Effect `Metric`s labelled with the source, so an exporter sees
 * them and the CLI's summary reads the same values.
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"
import type * as MetricLabel from "effect/MetricLabel"
import type * as MetricPair from "effect/MetricPair"
import type { ReadStats } from "../services/ReaderMetrics.js"
import { ReaderMetrics } from "../services/ReaderMetrics.js"

/** Bytes delivered to consumers. */
export const bytesRead = Metric.counter("streaming_reader_bytes_total", { description: "bytes delivered" })
/** Chunks delivered to consumers. */
export const chunksRead = Metric.counter("streaming_reader_chunks_total", { description: "chunks delivered" })
/** Failed attempts that were retried. */
export const retries = Metric.counter("streaming_reader_retries_total", { description: "failed attempts retried" })
/** Reads resumed after a failure. */
export const recoveries = Metric.counter("streaming_reader_recoveries_total", { description: "resumes after failure" })
/** Reads that completed. */
export const succeeded = Metric.counter("streaming_reader_streams_succeeded_total", { description: "reads completed" })
/** Reads that failed. */
export const failed = Metric.counter("streaming_reader_streams_failed_total", { description: "reads failed" })
/** Segments of a read over several connections fetching now. */
export const activeSegments = Metric.gauge("streaming_reader_active_segments", {
  description: "segments of a read fetching now"
})
/** The most segments of a read of the source fetching at once. */
export const peakSegments = Metric.gauge("streaming_reader_peak_segments", {
  description: "most segments of a read fetching at once"
})
/** Bytes reserved from the shared memory budget. */
export const budgetInUse = Metric.gauge("streaming_reader_budget_bytes", { description: "memory budget in use" })
/**
 * How long a consumer waited for a chunk, in milliseconds: 36 buckets growing by half from 5 µs
 * (up to about 45 s). A histogram's state is a fixed array of counts, so a source's metrics take
 * the same few hundred bytes whatever it reads, and an update allocates nothing.
 */
export const chunkLatency = Metric.histogram(
  "streaming_reader_chunk_latency_ms",
  MetricBoundaries.exponential({ start: 0.005, factor: 1.5, count: 36 }),
  "time a consumer waited for a chunk"
)
/** Size of each chunk delivered, in bytes: powers of two from 1 KiB to 64 MiB. */
export const chunkSize = Metric.histogram(
  "streaming_reader_chunk_bytes",
  MetricBoundaries.exponential({ start: 1024, factor: 2, count: 17 }),
  "size of each chunk"
)

const noTags: ReadonlyArray<MetricLabel.MetricLabel> = []

/**
 * The `q` quantile of a histogram: found in the bucket where the cumulative count reaches
 * `q * count`, interpolated linearly inside it, and kept within the values seen (min, max).
 */
export const histogramQuantile = (state: MetricState.MetricState.Histogram, q: number): number => {
  if (state.count === 0) return 0
  const rank = q * state.count
  let below = 0
  let lower = 0
  for (const [bound, cumulative] of state.buckets) {
    if (cumulative >= rank) {
      const inBucket = cumulative - below
      const upper = Number.isFinite(bound) ? bound : state.max
      const value = inBucket === 0 ? upper : lower + (upper - lower) * (rank - below) / inBucket
      return Math.min(state.max, Math.max(state.min, value))
    }
    below = cumulative
    lower = bound
  }
  return state.max
}

const escapeLabel = (value: string) => value.replace(/\\/g, "\\\\").replace(/"/g, "\\\"").replace(/\n/g, "\\n")

const labels = (tags: ReadonlyArray<MetricLabel.MetricLabel>, extra: ReadonlyArray<readonly [string, string]> = []) => {
  const all = [...tags.map((tag) => [tag.key, tag.value] as const), ...extra]
  return all.length === 0 ? "" : `{${all.map(([key, value]) => `${key}="${escapeLabel(value)}"`).join(",")}}`
}

/** Formats a metrics snapshot in the Prometheus text exposition format (version 0.0.4). */
export const toPrometheus = (pairs: ReadonlyArray<MetricPair.MetricPair.Untyped>): string => {
  const families = new Map<string, { type: string; help: string; lines: Array<string> }>()
  const family = (name: string, type: string, help: Option.Option<string>) => {
    let entry = families.get(name)
    if (entry === undefined) {
      entry = { type, help: Option.getOrElse(help, () => name), lines: [] }
      families.set(name, entry)
    }
    return entry.lines
  }
  for (const { metricKey: key, metricState: state } of pairs) {
    const name = key.name.replace(/[^a-zA-Z0-9_:]/g, "_")
    if (MetricState.isCounterState(state)) {
      family(name, "counter", key.description).push(`${name}${labels(key.tags)} ${state.count}`)
    } else if (MetricState.isGaugeState(state)) {
      family(name, "gauge", key.description).push(`${name}${labels(key.tags)} ${state.value}`)
    } else if (MetricState.isSummaryState(state)) {
      const lines = family(name, "summary", key.description)
      for (const [q, value] of state.quantiles) {
        if (Option.isSome(value)) lines.push(`${name}${labels(key.tags, [["quantile", String(q)]])} ${value.value}`)
      }
      lines.push(`${name}_sum${labels(key.tags)} ${state.sum}`, `${name}_count${labels(key.tags)} ${state.count}`)
    } else if (MetricState.isHistogramState(state)) {
      const lines = family(name, "histogram", key.description)
      for (const [bound, count] of state.buckets) {
        const le = Number.isFinite(bound) ? String(bound) : "+Inf"
        lines.push(`${name}_bucket${labels(key.tags, [["le", le]])} ${count}`)
      }
      lines.push(`${name}_sum${labels(key.tags)} ${state.sum}`, `${name}_count${labels(key.tags)} ${state.count}`)
    } else if (MetricState.isFrequencyState(state)) {
      const lines = family(name, "counter", key.description)
      for (const [word, count] of state.occurrences) {
        lines.push(`${name}${labels(key.tags, [["value", word]])} ${count}`)
      }
    }
  }
  return Array.from(
    families,
    ([name, { help, lines, type }]) => [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines].join("\n")
  ).join("\n") + "\n"
}

/** Builds the metrics service; labelled metrics are made once per source. */
export const make = Effect.sync(() => {
  const bySource = new Map<string, ReturnType<typeof labelled>>()
  const labelled = (source: string) => ({
    bytes: Metric.tagged(bytesRead, "source", source),
    chunks: Metric.tagged(chunksRead, "source", source),
    retries: Metric.tagged(retries, "source", source),
    recoveries: Metric.tagged(recoveries, "source", source),
    succeeded: Metric.tagged(succeeded, "source", source),
    failed: Metric.tagged(failed, "source", source),
    latency: Metric.tagged(chunkLatency, "source", source),
    size: Metric.tagged(chunkSize, "source", source),
    segments: Metric.tagged(activeSegments, "source", source),
    peakSegments: Metric.tagged(peakSegments, "source", source)
  })
  const of = (source: string) => {
    let metrics = bySource.get(source)
    if (metrics === undefined) {
      metrics = labelled(source)
      bySource.set(source, metrics)
    }
    return metrics
  }
  return ReaderMetrics.of({
    unsafeRecordChunk: (source, bytes, latencyMs) => {
      const metrics = of(source)
      metrics.bytes.unsafeUpdate(bytes, noTags)
      metrics.chunks.unsafeUpdate(1, noTags)
      metrics.latency.unsafeUpdate(latencyMs, noTags)
      metrics.size.unsafeUpdate(bytes, noTags)
    },
    retry: (source) => Metric.increment(of(source).retries),
    recovery: (source) => Metric.increment(of(source).recoveries),
    outcome: (source, ok) => Metric.increment(ok ? of(source).succeeded : of(source).failed),
    unsafeRecordSegments: (source, active) => {
      const metrics = of(source)
      metrics.segments.unsafeUpdate(active, noTags)
      if (active > metrics.peakSegments.unsafeValue(noTags).value) metrics.peakSegments.unsafeUpdate(active, noTags)
    },
    unsafeRecordBudget: (bytes) => budgetInUse.unsafeUpdate(bytes, noTags),
    prometheus: Effect.map(Metric.snapshot, toPrometheus),
    stats: Effect.fn("ReaderMetrics.stats")(function*(source: string) {
      const metrics = of(source)
      const latency = yield* Metric.value(metrics.latency)
      const size = yield* Metric.value(metrics.size)
      const bytes = (yield* Metric.value(metrics.bytes)).count
      const chunks = (yield* Metric.value(metrics.chunks)).count
      const stats: ReadStats = {
        bytes,
        chunks,
        retries: (yield* Metric.value(metrics.retries)).count,
        recoveries: (yield* Metric.value(metrics.recoveries)).count,
        p50ChunkMs: histogramQuantile(latency, 0.5),
        p95ChunkMs: histogramQuantile(latency, 0.95),
        p99ChunkMs: histogramQuantile(latency, 0.99),
        meanChunkBytes: chunks > 0 ? Math.round(bytes / chunks) : 0,
        maxChunkBytes: size.count > 0 ? size.max : 0,
        maxSegments: Math.max(1, (yield* Metric.value(metrics.peakSegments)).value)
      }
      return stats
    })
  })
})

/** The live `ReaderMetrics`. */
export const layer: Layer.Layer<ReaderMetrics> = Layer.effect(ReaderMetrics, make)
