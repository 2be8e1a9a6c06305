/**
 * The Markdown report and its two charts, from one run's results.
 */
import type { HeapReading, RssPoint } from "../runners/protocol.js"
import type { BenchResults, ChunkSummary, VariantRuns } from "./model.js"
import {
  chunkFigures,
  failures,
  idleRss,
  jsonField,
  okOutcomes,
  okResults,
  procPeakRss,
  rssAboveIdle,
  throughput,
  wallSeconds,
  wallThroughput,
  warmThroughput,
  workMs
} from "./model.js"
import { before } from "./before.js"
import type { Spread } from "./stats.js"
import { MB, median, slope } from "./stats.js"
import type { Bar, Line } from "./svg.js"
import { barChart, lineChart } from "./svg.js"

/** Copy variants, in the order shown. */
export const copyIds = [
  "copy.pipeline",
  "copy.enhanced",
  "copy.no-adaptive",
  "copy.no-budget",
  "copy.no-backpressure",
  "copy.no-rate",
  "copy.no-retries",
  "copy.no-checkpoints"
] as const
/** Read-only variants, in the order shown. */
export const readIds = [
  "read.fh64",
  "read.fh256",
  "read.enhanced",
  "read.enhanced-reuse",
  "read.enhanced-reuse-64k",
  "read.enhanced-reuse-256k",
  "read.basic",
  "read.platform"
] as const
/** HTTP variants, in the order shown. */
export const httpIds = [
  "http.undici",
  "http.fetch",
  "http.enhanced",
  "http.enhanced-reuse",
  "http.enhanced-one",
  "http.basic"
] as const
/** Whole-process CLI copy variants, in the order shown. */
export const cliIds = ["cli.pipeline", "cli.copy", "cli.copy-json"] as const
/** Copies from nginx, in the order shown. */
export const nginxIds = ["nginx.curl", "nginx.cli"] as const
/** Connection counts of the segmented reads from nginx with its per-connection `limit_rate`, in the order shown. */
export const segmentCounts = [1, 2, 4, 8, 16] as const
/** Connection counts of the segmented reads from the same nginx without the limit. */
export const unthrottledSegmentCounts = [1, 4, 8] as const
/** The id of a segmented read: our CLI or `aria2c`, at `n` connections, with nginx's limit or without. */
export const segmentsId = (tool: "cli" | "aria2c", n: number, unthrottled = false): string =>
  `segments.${unthrottled ? "unthrottled." : ""}${tool}-${n}`
/** The names under which parts of the segments scenario are reported skipped (`BenchResults.skipped`). */
export const segmentsSkip = { aria2c: "segments (aria2c rows)", flag: "segments (`--segments`)" } as const

/** `limit_rate` as nginx's configuration writes it (`8m`: 8 MiB/s). */
const limitRate = (bytesPerSecond: number) => `limit_rate ${bytesPerSecond / 1024 ** 2}m`

const num = (n: number, digits = 0) =>
  Number.isFinite(n) ? n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits }) : "–"
const ratio = (a: number, b: number) =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : "–"
const range = (s: Spread, digits = 0) => s.n === 0 ? "–" : `${num(s.min, digits)}–${num(s.max, digits)}`
const kib = (bytes: number) => Number.isFinite(bytes) ? `${num(bytes / 1024)} KiB` : "–"
const signedPercent = (a: number, b: number) =>
  Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${a >= b ? "+" : ""}${((a / b - 1) * 100).toFixed(1)} %` : "–"

/** A size as a person reads it: `1 GiB`, `256 MiB`, `4 KiB`. */
export const sizeLabel = (bytes: number): string => {
  for (const [unit, size] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytes >= size) return `${num(bytes / size, Number.isInteger(bytes / size) ? 0 : 1)} ${unit}`
  }
  return `${bytes} B`
}

/** A Markdown table: the first column aligned left, the others right (or all left, `leftAligned`). */
const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>, leftAligned = false) =>
  [
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => i === 0 || leftAligned ? "---" : "---:").join("|")}|`,
    ...rows.map((row) => `| ${row.join(" | ")} |`)
  ].join("\n")

const runsCell = (variant: VariantRuns | undefined) => {
  if (variant === undefined) return "not run"
  const ok = okOutcomes(variant).length
  return ok === variant.outcomes.length ? `${ok}` : `${ok} of ${variant.outcomes.length} ⚠`
}

const chunkSizes = (chunks: ChunkSummary | undefined) =>
  chunks === undefined ? "" : `${kib(chunks.meanChunkBytes)} / ${kib(chunks.maxChunkBytes)}`
const latencies = (chunks: ChunkSummary | undefined) =>
  chunks === undefined
    ? ""
    : `${num(chunks.p50ChunkMs, 2)} / ${num(chunks.p95ChunkMs, 2)} / ${num(chunks.p99ChunkMs, 2)}`

/** One goal of the Goals table: its reference figure, what this run measured, and the figures behind it. */
interface Goal {
  readonly measure: string
  readonly before: string
  readonly now: string
  readonly goal: string
  readonly pass: boolean | undefined
  /** The figures `now` is computed from. */
  readonly detail: string
  /** Why the goal was not measured, when its scenario was skipped. */
  readonly skipped?: string
}

const verdict = (goal: Goal) =>
  goal.skipped !== undefined
    ? "skipped"
    : goal.pass === undefined
    ? "n/a (not measured)"
    : goal.pass
    ? "**PASS**"
    : "**MISS**"

/** The soak window the growth is measured over: the last five sixths (50 s of 60 s). */
export const soakWindowMs = (soakMs: number): number => Math.round((soakMs * 5) / 6)

/** Least-squares slope of an RSS series over its last `windowMs`, in MB/s. */
export const soakSlope = (series: ReadonlyArray<RssPoint>, windowMs: number): number => {
  const end = series.length === 0 ? 0 : series[series.length - 1]![0]
  return slope(series.filter(([t]) => t >= end - windowMs).map(([t, rss]): RssPoint => [t / 1000, rss / MB]))
}

const soakGrowth = (results: BenchResults) => {
  const soak = okResults(results.variants.get("soak"))[0]
  return soak?.series === undefined ? Number.NaN : soakSlope(soak.series, soakWindowMs(results.config.soakMs))
}

/** Median retries of a variant's runs (faulty reads). */
const retriesOf = (variant: VariantRuns | undefined) =>
  median(okResults(variant).flatMap((result) => result.retries === undefined ? [] : [result.retries]))

/** The faulty-read variant with all reads at once. */
const faultyManyId = (results: BenchResults) => `faulty.${results.config.faultyReads}`

/** A figure with its unit, or `–` when it was not measured. */
const withUnit = (n: number, digits: number, unit: string, signed = false) =>
  Number.isFinite(n) ? `${signed && n >= 0 ? "+" : ""}${num(n, digits)} ${unit}` : "–"

const seconds = (s: number) => withUnit(s, 2, "s")

const goalsOf = (results: BenchResults): ReadonlyArray<Goal> => {
  const v = (id: string) => results.variants.get(id)
  const check = (value: number, ok: (x: number) => boolean) => Number.isFinite(value) ? ok(value) : undefined
  const skipped = (scenario: string) => results.skipped.find((s) => s.scenario === scenario)?.reason
  const mbps = (id: string) => throughput(v(id)).median
  const wall = (id: string) => wallSeconds(v(id)).median

  const readOurs = mbps("read.enhanced")
  const readBase = mbps("read.fh256")
  const readWarm = ratio(warmThroughput(v("read.enhanced")).median, warmThroughput(v("read.fh256")).median)

  const httpOurs = mbps("http.enhanced")
  const httpUndici = mbps("http.undici")
  const httpFetch = mbps("http.fetch")

  const pipelineWall = wall("cli.pipeline")
  const cliHashWall = wall("cli.copy-json")
  const cliCopyWall = wall("cli.copy")

  const curlWall = wall("nginx.curl")
  const nginxWall = wall("nginx.cli")
  const nginxSkipped = skipped("nginx")

  const streams = rssAboveIdle(v("concurrent.100")).median
  const faultyOne = rssAboveIdle(v("faulty.1")).median
  const faultyMany = rssAboveIdle(v(faultyManyId(results))).median

  const segmentsSize = sizeLabel(results.config.segmentsSize)
  const limit = limitRate(results.config.segmentsLimitRate)
  const segmentsSkipped = skipped("segments") ?? skipped(segmentsSkip.flag)
  const aria2cSkipped = segmentsSkipped ?? skipped(segmentsSkip.aria2c)
  const oneSegment = wall(segmentsId("cli", 1))
  const eightSegments = wall(segmentsId("cli", 8))
  const aria2cEight = wall(segmentsId("aria2c", 8))
  const fastOne = wall(segmentsId("cli", 1, true))
  const fastEight = wall(segmentsId("cli", 8, true))
  const used = (id: string) => num(jsonField(v(id), "segments").median)
  /** A segments goal, or the same marked skipped (the scenario, aria2c or the CLI's flag missing). */
  const segmentsGoal = (goal: Omit<Goal, "skipped">, reason: string | undefined): Goal =>
    reason === undefined
      ? goal
      : { ...goal, now: `skipped: ${reason}`, detail: `skipped: ${reason}; ${goal.detail}`, skipped: reason }

  const helpWall = wall("startup.bin")
  const npmWall = wall("startup.npm")

  const small = rssAboveIdle(v("rss.copy-1mib")).median
  const large = rssAboveIdle(v("copy.enhanced")).median
  const growth = soakGrowth(results)
  const p99 = chunkFigures(v("read.enhanced"))?.p99ChunkMs ?? Number.NaN
  const big = sizeLabel(results.config.bigSize)
  return [
    {
      measure: "file read, default options (owned chunks, i.e. NOT reuseBuffers) / `FileHandle.read` loop at 256 KiB",
      before: before.fileRead,
      now: ratio(readOurs, readBase),
      goal: "≥ 0.85×",
      pass: check(readOurs / readBase, (x) => x >= 0.85),
      detail: `${num(readOurs)} vs ${num(readBase)} MB/s, ${big} page-cached; 2nd pass ${readWarm}`
    },
    {
      measure: "HTTP read on loopback / `undici.request` body drained",
      before: before.http,
      now: Number.isFinite(httpOurs)
        ? `${ratio(httpOurs, httpUndici)} (vs \`fetch\` ${ratio(httpOurs, httpFetch)})`
        : "–",
      goal: "≥ 0.90× (and ≥ `fetch`)",
      pass: Number.isFinite(httpOurs / httpUndici) && Number.isFinite(httpOurs / httpFetch)
        ? httpOurs / httpUndici >= 0.9 && httpOurs >= httpFetch
        : undefined,
      detail: `ours ${num(httpOurs)}, undici.request ${num(httpUndici)}, fetch ${num(httpFetch)} MB/s, ${
        sizeLabel(results.config.httpSize)
      }`
    },
    {
      measure: "CLI copy with sha256 (`--json`) / `stream.pipeline` at defaults",
      before: before.cliHash,
      now: ratio(pipelineWall, cliHashWall),
      goal: "≥ 1.5×",
      pass: check(pipelineWall / cliHashWall, (x) => x >= 1.5),
      detail: `wall, spawn to exit, ${big}: pipeline script ${seconds(pipelineWall)}, CLI --json ${
        seconds(cliHashWall)
      }`
    },
    {
      measure: "CLI copy without hashing / `stream.pipeline` at defaults",
      before: before.cliCopy,
      now: ratio(pipelineWall, cliCopyWall),
      goal: "≥ 1.6×",
      pass: check(pipelineWall / cliCopyWall, (x) => x >= 1.6),
      detail: `wall, spawn to exit, ${big}: pipeline script ${seconds(pipelineWall)}, CLI ${seconds(cliCopyWall)}`
    },
    {
      measure: `CLI copy from nginx on loopback, ${
        sizeLabel(results.config.nginxSize)
      }, \`--json\`: wall time of \`curl -o\` / ours`,
      before: before.nginx,
      now: nginxSkipped === undefined ? ratio(curlWall, nginxWall) : `skipped: ${nginxSkipped}`,
      goal: "≥ 0.8×",
      pass: check(curlWall / nginxWall, (x) => x >= 0.8),
      detail: nginxSkipped === undefined
        ? `curl ${seconds(curlWall)}, CLI --json ${seconds(nginxWall)}`
        : `skipped: ${nginxSkipped}`,
      ...(nginxSkipped === undefined ? {} : { skipped: nginxSkipped })
    },
    segmentsGoal({
      measure: `CLI from nginx with \`${limit}\` per connection, ${segmentsSize}: wall time of 1 segment / 8 segments`,
      before: before.segmentsSpeedup,
      now: ratio(oneSegment, eightSegments),
      goal: "≥ 5×",
      pass: check(oneSegment / eightSegments, (x) => x >= 5),
      detail: `\`--segments 1\` ${seconds(oneSegment)}, \`--segments 8\` ${seconds(eightSegments)} (connections used: ${
        used(segmentsId("cli", 1))
      } and ${used(segmentsId("cli", 8))}); the limit alone allows ${
        seconds(results.config.segmentsSize / results.config.segmentsLimitRate)
      } and ${seconds(results.config.segmentsSize / results.config.segmentsLimitRate / 8)}`
    }, segmentsSkipped),
    segmentsGoal({
      measure: `8 segments from the same nginx (\`${limit}\`): wall time ours / \`aria2c -x8 -s8\``,
      before: before.segmentsAria2c,
      now: ratio(eightSegments, aria2cEight),
      goal: "≤ 1.25×",
      pass: check(eightSegments / aria2cEight, (x) => x <= 1.25),
      detail: `\`--segments 8\` ${seconds(eightSegments)}, \`aria2c -x8 -s8 -k 1M\` ${seconds(aria2cEight)}`
    }, aria2cSkipped),
    segmentsGoal({
      measure: `nginx unthrottled on loopback, ${segmentsSize}: wall time of 8 segments / 1 segment`,
      before: before.segmentsUnthrottled,
      now: ratio(fastEight, fastOne),
      goal: "≤ 1.1×",
      pass: check(fastEight / fastOne, (x) => x <= 1.1),
      detail: `\`--segments 1\` ${seconds(fastOne)}, \`--segments 8\` ${seconds(fastEight)} (connections used: ${
        used(segmentsId("cli", 1, true))
      } and ${used(segmentsId("cli", 8, true))})`
    }, segmentsSkipped),
    {
      measure: `${results.config.streams} concurrent reads, owned chunks: RSS above idle`,
      before: before.concurrent,
      now: withUnit(streams, 1, "MB"),
      goal: "< 50 MB",
      pass: check(streams, (x) => x < 50),
      detail: `peak RSS − idle, ${results.config.streams} reads of ${
        sizeLabel(results.config.streamSize)
      } at once, default options`
    },
    {
      measure: `${results.config.faultyReads} concurrent faulty HTTP reads: peak RSS above one read`,
      before: before.faulty,
      now: withUnit(faultyMany - faultyOne, 1, "MB", true),
      goal: "< 40 MB",
      pass: check(faultyMany - faultyOne, (x) => x < 40),
      detail: `peak RSS − idle: ${num(faultyMany, 1)} MB (${results.config.faultyReads} reads) − ${
        num(faultyOne, 1)
      } MB (1 read), ${sizeLabel(results.config.faultySize)} each; retries: ${
        num(retriesOf(v(faultyManyId(results))))
      } and ${num(retriesOf(v("faulty.1")))}`
    },
    {
      measure: "`streaming-reader --help` wall time (bin)",
      before: before.help,
      now: seconds(helpWall),
      goal: "< 0.40 s",
      pass: check(helpWall, (x) => x < 0.4),
      detail: `median of ${okOutcomes(v("startup.bin")).length} runs of \`node bin/streaming-reader.js --help\``
    },
    {
      measure: "`npm start` overhead over the bin",
      before: before.npmStart,
      now: seconds(npmWall - helpWall),
      goal: "< 0.1 s",
      pass: check(npmWall - helpWall, (x) => x < 0.1),
      detail: `\`npm start --silent -- --help\` ${seconds(npmWall)} − bin ${seconds(helpWall)} (medians)`
    },
    {
      measure: `copy: peak RSS growth, 1 MiB → ${big} source`,
      before: before.copyRss,
      now: withUnit(large - small, 1, "MB", true),
      goal: "< 20 MB",
      pass: check(large - small, (x) => x < 20),
      detail: `\`copyToFile\` peak RSS − idle ${num(small, 1)} → ${num(large, 1)} MB`
    },
    {
      measure: `soak: RSS slope over the last ${num(soakWindowMs(results.config.soakMs) / 1000)} s of ${
        num(results.config.soakMs / 1000)
      } s`,
      before: before.soak,
      now: withUnit(growth, 3, "MB/s"),
      goal: "< 0.1 MB/s",
      pass: check(growth, (x) => x < 0.1),
      detail: "least squares over every 50 ms sample"
    },
    {
      measure: "p99 chunk latency, local file (default options)",
      before: before.p99,
      now: withUnit(p99, 2, "ms"),
      goal: "< 5 ms",
      pass: check(p99, (x) => x < 5),
      detail: "`ReaderMetrics` of the file read above"
    }
  ]
}

/** The Goals table (in the shape of the project README's) and the figures behind each row. */
const goalsSection = (results: BenchResults) => {
  const goals = goalsOf(results)
  return [
    "## Goals",
    "",
    table(
      ["measure", "before", "now", "goal", "verdict"],
      goals.map((g) => [g.measure, g.before, g.now, g.goal, verdict(g)])
    ),
    "",
    "\"before\" is the reference figure of the report of 2026-11-28 (`bench/lib/before.ts`); \"now\" is",
    "this run. Ratios are ours / the primitive for throughput and the primitive's wall time / ours",
    "for whole processes, so ≥ 1 means we are faster; both sides are measured in this run. The",
    "segments rows say which way round their ratio is.",
    "",
    "### Figures behind the goals",
    "",
    table(["measure", "figures"], goals.map((g) => [g.measure, g.detail]), true),
    ""
  ].join("\n")
}

const copySection = (results: BenchResults) => {
  const v = (id: string) => results.variants.get(id)
  const base = throughput(v("copy.pipeline")).median
  const warmBase = warmThroughput(v("copy.pipeline")).median
  const allOn = throughput(v("copy.enhanced")).median
  const rows = copyIds.flatMap((id) => {
    const variant = v(id)
    if (variant === undefined) return []
    const mbps = throughput(variant)
    const warm = warmThroughput(variant)
    const chunks = chunkFigures(variant)
    return [[
      variant.label,
      num(mbps.median),
      range(mbps),
      ratio(mbps.median, base),
      warm.n === 0 ? "" : `${num(warm.median)} (${ratio(warm.median, warmBase)})`,
      id.startsWith("copy.no-") ? signedPercent(mbps.median, allOn) : "",
      num(wallSeconds(variant).median, 2),
      num(rssAboveIdle(variant).median, 1),
      chunkSizes(chunks),
      chunks === undefined ? "" : num(chunks.chunks),
      chunks === undefined ? "" : num(chunks.p99ChunkMs, 2),
      runsCell(variant)
    ]]
  })
  const onMs = workMs(v("copy.enhanced"))
  const offMs = workMs(v("copy.no-checkpoints"))
  const checkpoints = (chunkFigures(v("copy.enhanced"))?.chunks ?? Number.NaN) / 5
  return [
    `## Copy ${sizeLabel(results.config.bigSize)} file → file`,
    "",
    table(
      [
        "variant",
        "median MB/s",
        "min–max",
        "vs pipeline",
        "2nd pass MB/s (vs pipeline's)",
        "vs all on",
        "process s",
        "RSS − idle MB",
        "chunk mean / max",
        "chunks",
        "p99 chunk ms",
        "runs"
      ],
      rows
    ),
    "",
    "MB/s is measured inside the process around the copy alone (imports and layer construction",
    "excluded); the CLI's copies, timed from spawn to exit, are in the next section. \"process s\" is",
    "spawn to exit (both passes for the main variants). \"vs all on\" is the change in MB/s with one",
    "feature switched off (`STREAMING_READER_<FLAG>=false`): positive means the feature costs that",
    "much. \"2nd pass\": the same copy again (to a new file) in the same process right after (JIT",
    "warm), for the main variants.",
    "",
    "### Checkpoints every 5 chunks (SQLite state) on vs off",
    "",
    table(["", "median copy ms (on / off)", "checkpoints saved (≈ chunks / 5)", "cost"], [[
      "all features on vs `STREAMING_READER_CHECKPOINTS=false`",
      `${num(onMs)} / ${num(offMs)}`,
      num(checkpoints),
      `${signedPercent(onMs, offMs)} of the time, ≈ ${num(((onMs - offMs) * 1000) / checkpoints)} µs per checkpoint`
    ]]),
    ""
  ].join("\n")
}

const readSection = (results: BenchResults) => {
  const v = (id: string) => results.variants.get(id)
  const fh64 = throughput(v("read.fh64")).median
  const fh256 = throughput(v("read.fh256")).median
  const warmFh256 = warmThroughput(v("read.fh256")).median
  const rows = readIds.flatMap((id) => {
    const variant = v(id)
    if (variant === undefined) return []
    const mbps = throughput(variant)
    const warm = warmThroughput(variant)
    const chunks = chunkFigures(variant)
    return [[
      variant.label,
      num(mbps.median),
      range(mbps),
      ratio(mbps.median, fh64),
      ratio(mbps.median, fh256),
      warm.n === 0 ? "" : `${num(warm.median)} (${ratio(warm.median, warmFh256)})`,
      num(rssAboveIdle(variant).median, 1),
      chunkSizes(chunks),
      latencies(chunks),
      runsCell(variant)
    ]]
  })
  /** Milliseconds per chunk, from the same reader at 64 KiB and at 256 KiB over the same bytes. */
  const perChunk = (at64: VariantRuns | undefined, at256: VariantRuns | undefined) => {
    const chunks = (variant: VariantRuns | undefined, size: number) =>
      chunkFigures(variant)?.chunks ?? results.config.bigSize / size
    return (workMs(at64) - workMs(at256)) / (chunks(at64, 64 * 1024) - chunks(at256, 256 * 1024))
  }
  const ours = perChunk(v("read.enhanced-reuse-64k"), v("read.enhanced-reuse-256k"))
  const theirs = perChunk(v("read.fh64"), v("read.fh256"))
  return [
    `## Read-only ${sizeLabel(results.config.bigSize)} file`,
    "",
    table(
      [
        "variant",
        "median MB/s",
        "min–max",
        "vs FH loop 64 KiB",
        "vs FH loop 256 KiB",
        "2nd pass MB/s (vs FH 256 KiB's)",
        "RSS − idle MB",
        "chunk mean / max",
        "chunk ms p50 / p95 / p99",
        "runs"
      ],
      rows
    ),
    "",
    "Every stream is drained with `Stream.runFold` counting bytes (the count is checked against the",
    "file size). Our reader is opened with `StreamingReader.open` so its figures come from",
    "`ReaderMetrics.stats` of that source. \"fixed\" runs with `STREAMING_READER_ADAPTIVE_CHUNKS=false`.",
    "",
    `Cost per chunk, from the time difference between 64 KiB and 256 KiB chunks over the same bytes:`,
    `our reader (reuseBuffers, fixed sizes) ≈ **${num(ours * 1000)} µs** per chunk; the FileHandle`,
    `loop ≈ ${num(theirs * 1000)} µs per chunk.`,
    ""
  ].join("\n")
}

const httpSection = (results: BenchResults) => {
  const v = (id: string) => results.variants.get(id)
  const base = throughput(v("http.undici")).median
  const fetchBase = throughput(v("http.fetch")).median
  const warmBase = warmThroughput(v("http.undici")).median
  const rows = httpIds.flatMap((id) => {
    const variant = v(id)
    if (variant === undefined) return []
    const mbps = throughput(variant)
    const warm = warmThroughput(variant)
    const chunks = chunkFigures(variant)
    return [[
      variant.label,
      num(mbps.median),
      range(mbps),
      ratio(mbps.median, base),
      ratio(mbps.median, fetchBase),
      warm.n === 0 ? "" : `${num(warm.median)} (${ratio(warm.median, warmBase)})`,
      num(rssAboveIdle(variant).median, 1),
      chunkSizes(chunks),
      latencies(chunks),
      runsCell(variant)
    ]]
  })
  return [
    `## HTTP on loopback, ${sizeLabel(results.config.httpSize)} object`,
    "",
    "A plain `node:http` server in its own process serves the file (Range, ETag, 256 KiB reads).",
    "`undici.request` (the `undici` package `@effect/platform-node` brings) and `fetch` (Node's own",
    "undici) drain the body with `for await` and a `getReader()` loop; each loads its undici",
    "before the work is timed, as our runner builds its layers first.",
    "",
    table(
      [
        "variant",
        "median MB/s",
        "min–max",
        "vs undici.request",
        "vs fetch",
        "2nd pass MB/s (vs undici.request's)",
        "RSS − idle MB",
        "chunk mean / max",
        "chunk ms p50 / p95 / p99",
        "runs"
      ],
      rows
    ),
    ""
  ].join("\n")
}

/** Rows of whole-process variants: seconds, MB/s, the baseline's seconds over these, peak RSS from `/proc`. */
const wallRows = (results: BenchResults, ids: ReadonlyArray<string>, baseId: string) => {
  const baseWall = wallSeconds(results.variants.get(baseId)).median
  return ids.flatMap((id) => {
    const variant = results.variants.get(id)
    if (variant === undefined) return []
    const wall = wallSeconds(variant)
    return [[
      variant.label,
      num(wall.median, 2),
      range(wall, 2),
      num(wallThroughput(variant).median),
      ratio(baseWall, wall.median),
      num(procPeakRss(variant).median),
      runsCell(variant)
    ]]
  })
}

const wallHeader = (base: string) => [
  "variant",
  "median s",
  "min–max s",
  "MB/s (whole process)",
  `${base} s / this s`,
  "peak RSS MB",
  "runs"
]

const cliSection = (results: BenchResults) =>
  cliIds.every((id) => results.variants.get(id) === undefined) ? "" : [
    `## CLI copy ${sizeLabel(results.config.bigSize)} file → file, whole process`,
    "",
    table(wallHeader("pipeline"), wallRows(results, cliIds, "cli.pipeline")),
    "",
    "Each run is timed from spawn to exit, start-up included, on both sides: the CLI is",
    "`node bin/streaming-reader.js read <file> --out <tmp> --quiet --state <tmp>/state.db` (with",
    "`--json` it hashes the output and prints a summary line, whose byte count and sha256 are",
    "checked); the baseline is a script of its own (`runners/copy-script.ts`) that does",
    "`stream.pipeline(createReadStream, createWriteStream)` at Node's defaults. Peak RSS is what the",
    "parent saw in `/proc/<pid>/status` every 50 ms.",
    ""
  ].join("\n")

const nginxSection = (results: BenchResults) => {
  const skipped = results.skipped.find((s) => s.scenario === "nginx")
  if (skipped !== undefined) {
    return [`## Copy from nginx on loopback`, "", `Skipped: ${skipped.reason}.`, ""].join("\n")
  }
  if (nginxIds.every((id) => results.variants.get(id) === undefined)) return ""
  return [
    `## Copy from nginx on loopback, ${sizeLabel(results.config.nginxSize)} object, whole process`,
    "",
    table(wallHeader("curl"), wallRows(results, nginxIds, "nginx.curl")),
    "",
    "nginx runs in the foreground (`daemon off; master_process off;`, one worker, `sendfile on`) on",
    "127.0.0.1 with a generated configuration whose every path is in a temp dir. `curl -s -f -o <tmp>",
    "URL` against `node bin/streaming-reader.js read URL --out <tmp> --json --state <tmp>/s.db`, each",
    "timed from spawn to exit; the output's size and the CLI's sha256 are checked.",
    ""
  ].join("\n")
}

/** One row of a segments table: our CLI and aria2c at `n` connections. */
const segmentsRow = (results: BenchResults, n: number, unthrottled: boolean) => {
  const ours = results.variants.get(segmentsId("cli", n, unthrottled))
  const aria2c = results.variants.get(segmentsId("aria2c", n, unthrottled))
  const oursWall = wallSeconds(ours)
  const oneWall = wallSeconds(results.variants.get(segmentsId("cli", 1, unthrottled))).median
  const aria2cWall = wallSeconds(aria2c).median
  const floor = results.config.segmentsSize / results.config.segmentsLimitRate / n
  return [
    `${n}`,
    ...(unthrottled ? [] : [num(floor, 2)]),
    num(oursWall.median, 2),
    range(oursWall, 2),
    num(wallThroughput(ours).median),
    num(procPeakRss(ours).median),
    num(jsonField(ours, "segments").median),
    ratio(oneWall, oursWall.median),
    num(aria2cWall, 2),
    num(wallThroughput(aria2c).median),
    num(procPeakRss(aria2c).median),
    ratio(oursWall.median, aria2cWall),
    `${runsCell(ours)} / ${aria2c === undefined ? "–" : runsCell(aria2c)}`
  ]
}

const segmentsHeader = (unthrottled: boolean) => [
  "N",
  ...(unthrottled ? [] : ["limit's floor s"]),
  "ours s",
  "min–max s",
  "ours MB/s",
  "ours peak RSS MB",
  "connections used",
  "1 segment s / this s",
  "aria2c s",
  "aria2c MB/s",
  "aria2c peak RSS MB",
  "ours s / aria2c s",
  "runs (ours / aria2c)"
]

const segmentsSection = (results: BenchResults) => {
  const skipped = results.skipped.find((s) => s.scenario === "segments")
  if (skipped !== undefined) {
    return [`## Segmented reads from nginx`, "", `Skipped: ${skipped.reason}.`, ""].join("\n")
  }
  const ids = [
    ...segmentCounts.map((n) => segmentsId("cli", n)),
    ...unthrottledSegmentCounts.map((n) => segmentsId("cli", n, true))
  ]
  if (ids.every((id) => results.variants.get(id) === undefined)) return ""
  const limit = limitRate(results.config.segmentsLimitRate)
  const notes = [segmentsSkip.flag, segmentsSkip.aria2c].flatMap((name) => {
    const part = results.skipped.find((s) => s.scenario === name)
    return part === undefined ? [] : [`**${name} skipped**: ${part.reason}.`, ""]
  })
  return [
    `## Segmented reads from nginx, ${sizeLabel(results.config.segmentsSize)} object, whole process`,
    "",
    ...notes,
    `### With \`${limit};\` (per connection)`,
    "",
    table(segmentsHeader(false), segmentCounts.map((n) => segmentsRow(results, n, false))),
    "",
    "### Unthrottled (the same nginx, a location without the limit)",
    "",
    table(segmentsHeader(true), unthrottledSegmentCounts.map((n) => segmentsRow(results, n, true))),
    "",
    "nginx runs as in the nginx copy above (one worker in the foreground, `sendfile on`, a generated",
    `configuration) and serves the object with its default ETag and Range support: under \`/limited/\``,
    `with \`${limit};\` (${num(results.config.segmentsLimitRate / 1e6, 2)} MB/s per connection), at \`/\` without it.`,
    "Ours is `node dist/programs/main.js read URL --out <tmp> --segments N --json --no-hash --quiet --state",
    "<tmp>/s.db --restart`, every other option at its default (`--min-segment-size` too, so a small",
    "object may get fewer connections than asked; \"connections used\" is the `segments` field of its",
    "`--json` line). The reference is `aria2c -xN -sN -k 1M --min-split-size=1M --file-allocation=none",
    "--allow-overwrite=true --auto-file-renaming=false -d <tmp> -o out.bin URL`. Both are timed from",
    "spawn to exit (start-up included), alternating; peak RSS is what the parent saw in",
    "`/proc/<pid>/status` every 50 ms. Every output's size and sha256 (hashed from the file after the",
    "run) are checked, and the bytes of our `--json` line too (`--no-hash`: like aria2c, ours does not",
    "hash what it wrote; a copy over segments would read its output back to). The limit's floor is the",
    `object's size / (N × ${num(results.config.segmentsLimitRate / 1e6, 2)} MB/s). "1 segment s / this s" ≥ 1 means N`,
    "connections are faster than one; \"ours s / aria2c s\" ≤ 1 means ours is faster.",
    ""
  ].join("\n")
}

const faultySection = (results: BenchResults) => {
  const one = results.variants.get("faulty.1")
  const many = results.variants.get(faultyManyId(results))
  if (one === undefined && many === undefined) return ""
  const row = (variant: VariantRuns | undefined) => {
    const above = rssAboveIdle(variant)
    return [
      variant?.label ?? "",
      num(above.median, 1),
      range(above, 1),
      num(idleRss(variant).median, 1),
      num(retriesOf(variant)),
      num(throughput(variant).median),
      num(wallSeconds(variant).median, 2),
      runsCell(variant)
    ]
  }
  const difference = rssAboveIdle(many).median - rssAboveIdle(one).median
  return [
    `## Faulty HTTP reads, ${sizeLabel(results.config.faultySize)} object`,
    "",
    table(
      ["variant", "peak RSS − idle MB", "min–max", "idle RSS MB", "retries", "total MB/s", "process s", "runs"],
      [row(one), row(many)]
    ),
    "",
    `${results.config.faultyReads} reads at once take **${difference >= 0 ? "+" : ""}${
      num(difference, 1)
    } MB** of peak RSS above one read (medians).`,
    "",
    "The bench's server (`runners/server.ts`, `?faults=1`) answers about one request in ten with a",
    "503 and cuts the connection after a pseudo-random 2–8 MiB of each response it does not refuse;",
    "the reader resumes with Range requests. Each child reads through the package's public API",
    "(`dist/index.js`, `EnhancedStack`, default options but `retries: 50, maxRetryDelayMs: 50`) and",
    "checks every read's byte count and sha256; retries are the reader's own count (`ReaderMetrics`).",
    ""
  ].join("\n")
}

const startupSection = (results: BenchResults) => {
  const ids = ["startup.bin", "startup.npm"]
  if (ids.every((id) => results.variants.get(id) === undefined)) return ""
  const bin = wallSeconds(results.variants.get("startup.bin")).median
  const rows = ids.flatMap((id) => {
    const variant = results.variants.get(id)
    if (variant === undefined) return []
    const wall = wallSeconds(variant)
    const over = id === "startup.bin" ? "" : num(wall.median - bin, 3)
    return [[variant.label, num(wall.median, 3), range(wall, 3), over, runsCell(variant)]]
  })
  return [
    "## Start-up",
    "",
    table(["command", "median s", "min–max s", "over the bin, s", "runs"], rows),
    "",
    "Spawn to exit, the two commands alternating; `npm start` is whatever the `start` script does.",
    ""
  ].join("\n")
}

const latencySection = (results: BenchResults) => {
  const v = (id: string) => results.variants.get(id)
  const row = (label: string, id: string, warm = false) => {
    const chunks = chunkFigures(v(id), warm)
    return [
      label,
      num(chunks?.p50ChunkMs ?? Number.NaN, 2),
      num(chunks?.p95ChunkMs ?? Number.NaN, 2),
      num(chunks?.p99ChunkMs ?? Number.NaN, 2),
      chunkSizes(chunks),
      num((warm ? warmThroughput(v(id)) : throughput(v(id))).median, 1),
      runsCell(v(id))
    ]
  }
  return [
    "## Per-chunk latency",
    "",
    table(["source", "p50 ms", "p95 ms", "p99 ms", "chunk mean / max", "MB/s", "runs"], [
      row("local file, reader, enhanced, default options", "read.enhanced"),
      row("… same, 2nd pass in the process", "read.enhanced", true),
      row("local file, reader, enhanced, reuseBuffers", "read.enhanced-reuse"),
      row("… same, 2nd pass in the process", "read.enhanced-reuse", true),
      row("local file, copyToFile, enhanced, all features on", "copy.enhanced"),
      row("… same, 2nd pass in the process", "copy.enhanced", true),
      row("HTTP loopback, reader, enhanced, default options", "http.enhanced"),
      row("… same, 2nd pass in the process", "http.enhanced", true),
      row(
        `HTTP loopback, ${results.config.latencyDelayMs} ms before each 64 KiB of the body, ${
          sizeLabel(results.config.latencySize)
        }`,
        "latency.http"
      )
    ]),
    "",
    "A chunk's latency is the time of its read from the source as `ReaderMetrics` records it;",
    "quantiles come from its `Metric.summary` (last 2,048 chunks, medians over runs). The chunk",
    "mean is bytes / chunks: the summary's own median chunk size is biased low (Effect's quantile",
    "picks the value below a large run of equal values), so it is not shown.",
    ""
  ].join("\n")
}

const memorySection = (results: BenchResults) => {
  const v = (id: string) => results.variants.get(id)
  const size = sizeLabel(results.config.bigSize)
  const rows = ([
    ["rss.copy-1mib", "copyToFile, enhanced, all features on", "1 MiB"],
    ["copy.enhanced", "copyToFile, enhanced, all features on", size],
    ["rss.pipeline-1mib", "stream.pipeline, defaults", "1 MiB"],
    ["copy.pipeline", "stream.pipeline, defaults", size]
  ] as const).map(([id, label, source]) => {
    const above = rssAboveIdle(v(id))
    const delta = (pick: (reading: HeapReading) => number) =>
      num(
        median(
          okResults(v(id)).flatMap((r) =>
            r.memoryBefore === undefined || r.memoryAfter === undefined
              ? []
              : [(pick(r.memoryAfter) - pick(r.memoryBefore)) / MB]
          )
        ),
        1
      )
    return [
      label,
      source,
      num(idleRss(v(id)).median, 1),
      num(above.median, 1),
      range(above, 1),
      delta((r) => r.heapUsed),
      delta((r) => r.arrayBuffers),
      runsCell(v(id))
    ]
  })
  const concurrent = v("concurrent.100")
  const meanAbove = median(
    okResults(concurrent).map((r) => {
      const series = r.series ?? []
      return series.reduce((total, [, rss]) => total + rss - r.idleRss, 0) / Math.max(1, series.length) / MB
    })
  )
  const soak = okResults(v("soak"))[0]
  const window = soakWindowMs(results.config.soakMs)
  return [
    "## Memory",
    "",
    "### Peak RSS growth with the source's size (copy)",
    "",
    table(
      ["variant", "source", "idle RSS MB", "peak − idle MB", "min–max", "heapUsed Δ MB", "arrayBuffers Δ MB", "runs"],
      rows
    ),
    "",
    "The Δ columns compare `process.memoryUsage()` right before and right after the copy (medians).",
    "",
    `### ${results.config.streams} concurrent streams of ${
      sizeLabel(results.config.streamSize)
    } (one process, EnhancedStack, 50 MiB budget)`,
    "",
    table(["", "median", "min–max", "runs"], [
      ["total MB/s", num(throughput(concurrent).median), range(throughput(concurrent)), runsCell(concurrent)],
      ["peak RSS − idle, MB", num(rssAboveIdle(concurrent).median, 1), range(rssAboveIdle(concurrent), 1), ""],
      ["mean RSS − idle while reading, MB", num(meanAbove, 1), "", ""],
      ["idle RSS, MB", num(idleRss(concurrent).median, 1), "", ""]
    ]),
    "",
    "All streams start at once (`Effect.forEach` with unbounded concurrency), each `reader.read(path)`",
    "with default options (owned chunks), drained; the paths are hard links to one page-cached file.",
    "",
    `### Soak: ${num(results.config.soakMs / 1000)} s of continuous reads`,
    "",
    soak === undefined
      ? `not measured: ${failures(v("soak")).join("; ") || "not run"}`
      : table(["", "value"], [
        ["reads completed", num(soak.reads ?? Number.NaN)],
        ["bytes read", `${num(soak.bytes / MB)} MB (${num(soak.bytes / MB / (soak.ms / 1000))} MB/s)`],
        ["idle RSS → peak RSS", `${num(soak.idleRss / MB, 1)} → ${num(soak.peakRss / MB, 1)} MB`],
        [`RSS slope over the last ${num(window / 1000)} s (least squares)`, `${num(soakGrowth(results), 4)} MB/s`],
        [
          "RSS after a full GC (`global.gc()`), before → after the soak",
          soak.settled === undefined
            ? "–"
            : `${num(soak.settled.before.rss / MB, 1)} → ${num(soak.settled.after.rss / MB, 1)} MB (${
              num((soak.settled.after.rss - soak.settled.before.rss) / MB, 1)
            } MB)`
        ],
        [
          "heapUsed after a full GC, before → after",
          soak.settled === undefined
            ? "–"
            : `${num(soak.settled.before.heapUsed / MB, 1)} → ${num(soak.settled.after.heapUsed / MB, 1)} MB`
        ],
        [
          "heapUsed at start → end (no forced GC)",
          `${num((soak.memoryBefore?.heapUsed ?? Number.NaN) / MB, 1)} → ${
            num((soak.memoryAfter?.heapUsed ?? Number.NaN) / MB, 1)
          } MB`
        ],
        [
          "arrayBuffers at start → end (no forced GC)",
          `${num((soak.memoryBefore?.arrayBuffers ?? Number.NaN) / MB, 1)} → ${
            num((soak.memoryAfter?.arrayBuffers ?? Number.NaN) / MB, 1)
          } MB`
        ]
      ]),
    "",
    `One process reads the ${sizeLabel(results.config.bigSize)} file, then ${results.config.soakSmallFiles} files of`,
    `${sizeLabel(results.config.streamSize)}, one after the other, again and again, each with \`reader.read(path)\``,
    "at default options. RSS sampled every 50 ms; the series is in `rss.svg`. The goal is judged on",
    "the slope of every sample, as specified; RSS follows the garbage collector's sawtooth (cycles of",
    "tens of seconds), so that slope swings with where the cycles fall. What a full collection leaves",
    "(the child runs with `--expose-gc`) is the steadier sign of a leak.",
    ""
  ].join("\n")
}

const profileSection = (results: BenchResults) =>
  results.profiles.length === 0 ? "" : [
    "## Where the time goes (`node --cpu-prof`, one run each, samples of the work only)",
    "",
    "Self time by origin and by function; \"main caller\" is the caller under which most of that",
    "function's self time was spent. `(idle)` is the main thread waiting (for the thread pool,",
    "a timer or the disk).",
    "",
    ...results.profiles.flatMap((profile) =>
      profile.passes.flatMap(({ mbPerSec, pass, summary }) => [
        `### ${profile.label}, ${pass}: ${num(mbPerSec)} MB/s under the profiler, ${num(summary.totalMs)} ms sampled`,
        "",
        table(
          ["origin", "self ms", "share"],
          summary.origins.map((o) => [o.name, num(o.ms), `${(o.share * 100).toFixed(1)} %`])
        ),
        "",
        table(
          ["function (self time)", "main caller", "self ms", "share"],
          summary.functions.map((f) => [
            `\`${f.name}\``,
            f.caller === undefined ? "" : `\`${f.caller}\``,
            num(f.ms),
            `${(f.share * 100).toFixed(1)} %`
          ])
        ),
        ""
      ])
    )
  ].join("\n")

const failureSection = (results: BenchResults) => {
  const lines = [
    ...results.skipped.map((s) => `- scenario **${s.scenario}** skipped: ${s.reason}`),
    ...results.scenarioErrors.map((e) => `- scenario **${e.scenario}** failed: ${e.error}`),
    ...[...results.variants.values()].flatMap((variant) =>
      failures(variant).map((error) => `- ${variant.label} (\`${variant.id}\`): ${error.replace(/\|/g, "/")}`)
    )
  ]
  return lines.length === 0 ? "" : ["## Failures and skipped scenarios", "", ...lines, ""].join("\n")
}

/** The whole report in Markdown. */
export const renderReport = (results: BenchResults): string => {
  const { config, machine } = results
  const minutes = (results.finishedAt.getTime() - results.startedAt.getTime()) / 60_000
  return [
    "# streaming-reader benchmarks",
    "",
    ...(config.quick ? ["> **QUICK MODE** (`BENCH_QUICK=1`): small files and few runs, a smoke test only.", ""] : []),
    `${results.startedAt.toISOString()} · ${machine.cpus}, ${machine.cores} cores · ${num(machine.memoryGb)} GB RAM ·`,
    `Node ${machine.node} · ${machine.os} · git HEAD ${machine.commit} (the working tree as built into dist/)`,
    "",
    `The run took ${minutes.toFixed(1)} min (${
      results.durations.map((d) => `${d.scenario} ${num(d.seconds)} s`).join(", ")
    }).`,
    `Each run is a fresh \`node\` process; variants alternate round by round (A B C A B C …).`,
    `Main comparisons (ours against the baselines): ${config.runs} runs each; the others`,
    `(features off, other baselines, fixed chunk sizes): ${config.sideRuns}. Medians with min–max.`,
    "MB = 10^6 bytes. Data: random bytes in a temp dir, flushed and page-cached before any run.",
    "Method in `bench/README.md`; every run's figures in `results.json`.",
    "",
    goalsSection(results),
    "![MB/s by variant](throughput.svg)",
    "",
    copySection(results),
    cliSection(results),
    readSection(results),
    httpSection(results),
    nginxSection(results),
    segmentsSection(results),
    faultySection(results),
    latencySection(results),
    memorySection(results),
    "![RSS over time](rss.svg)",
    "",
    startupSection(results),
    profileSection(results),
    failureSection(results)
  ].join("\n")
}

/** Whether a variant is timed from spawn to exit (the CLI, its baselines), not inside the process. */
const wholeProcess = (id: string) => id.startsWith("cli.") || id.startsWith("nginx.") || id.startsWith("segments.")

/** Bars of median MB/s for every throughput variant, grouped by scenario. */
export const renderThroughputChart = (results: BenchResults): string => {
  const bars: Array<Bar> = []
  const add = (group: string, ids: ReadonlyArray<string>) => {
    for (const id of ids) {
      const variant = results.variants.get(id)
      if (variant === undefined) continue
      const whole = wholeProcess(id)
      const mbps = whole ? wallThroughput(variant) : throughput(variant)
      const warm = warmThroughput(variant)
      bars.push({
        group,
        label: variant.label.replace(/`/g, "").replace(
          /^stream\.pipeline\(.*\)( script)?, defaults$/,
          "stream.pipeline$1, defaults"
        ),
        median: mbps.n === 0 ? undefined : mbps.median,
        min: mbps.min,
        max: mbps.max,
        ...(warm.n === 0 ? {} : { dot: warm.median })
      })
    }
  }
  add(`Copy ${sizeLabel(results.config.bigSize)} (file → file)`, copyIds)
  add(`Read-only ${sizeLabel(results.config.bigSize)} (file)`, readIds)
  add(`CLI copy ${sizeLabel(results.config.bigSize)}, whole process (start-up included)`, cliIds)
  add(`HTTP on loopback, ${sizeLabel(results.config.httpSize)}`, httpIds)
  add(`From nginx on loopback, ${sizeLabel(results.config.nginxSize)}, whole process`, nginxIds)
  const segmentsIds = (counts: ReadonlyArray<number>, unthrottled: boolean) =>
    counts.flatMap((n) => [segmentsId("cli", n, unthrottled), segmentsId("aria2c", n, unthrottled)])
  add(
    `From nginx with ${limitRate(results.config.segmentsLimitRate)} per connection, ${
      sizeLabel(results.config.segmentsSize)
    }, whole process`,
    segmentsIds(segmentCounts, false)
  )
  add(
    `From nginx unthrottled, ${sizeLabel(results.config.segmentsSize)}, whole process`,
    segmentsIds(unthrottledSegmentCounts, true)
  )
  return barChart(
    "Throughput by variant: median MB/s of the first pass, whiskers min–max",
    "MB/s (10^6 bytes per second)",
    bars,
    "median of the second pass in the same process (main variants)"
  )
}

/** RSS above idle over time: the soak run (with its fitted slope) and the concurrent run with the median peak. */
export const renderRssChart = (results: BenchResults): string => {
  const toLine = (name: string, series: ReadonlyArray<RssPoint>, idle: number): Line => ({
    name,
    points: series.map(([t, rss]) => [t / 1000, (rss - idle) / MB])
  })
  const soak = okResults(results.variants.get("soak"))[0]
  const concurrent = [...okResults(results.variants.get("concurrent.100"))].sort((a, b) => a.peakRss - b.peakRss)
  const middle = concurrent[Math.floor((concurrent.length - 1) / 2)]
  const soakLines: Array<Line> = []
  if (soak?.series !== undefined && soak.series.length > 1) {
    soakLines.push(toLine("RSS − idle", soak.series, soak.idleRss))
    const window = soakWindowMs(results.config.soakMs)
    const end = soak.series[soak.series.length - 1]![0]
    const tail = soak.series.filter(([t]) => t >= end - window).map(([t, rss]): RssPoint => [
      t / 1000,
      (rss - soak.idleRss) / MB
    ])
    const perSecond = slope(tail)
    const meanT = tail.reduce((total, [t]) => total + t, 0) / tail.length
    const meanY = tail.reduce((total, [, y]) => total + y, 0) / tail.length
    const at = (t: number) => meanY + perSecond * (t - meanT)
    const from = (end - window) / 1000
    soakLines.push({
      name: `fit: ${perSecond.toFixed(4)} MB/s`,
      points: [[from, at(from)], [end / 1000, at(end / 1000)]],
      dashed: true
    })
  }
  return lineChart("RSS above idle over time (sampled every 50 ms)", [
    {
      title: `Soak: ${results.config.soakMs / 1000} s of continuous reads (one process, EnhancedStack)`,
      xLabel: "seconds",
      yLabel: "MB above idle",
      lines: soakLines
    },
    {
      title: `${results.config.streams} concurrent streams of ${
        sizeLabel(results.config.streamSize)
      } (the run with the median peak)`,
      xLabel: "seconds",
      yLabel: "MB above idle",
      lines: middle?.series === undefined ? [] : [toLine("RSS − idle", middle.series, middle.idleRss)],
      reference: { y: 50, label: "goal: < 50 MB" }
    }
  ])
}
