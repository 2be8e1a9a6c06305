/**
 * The benchmark suite (`npm run bench`; `BENCH_QUICK=1 npm run bench` for a smoke test).
 * Writes random files once into a temp dir, runs every variant in a fresh `node` process,
 * alternating variants round by round, and writes `bench/results/REPORT.md`,
 * `throughput.svg`, `rss.svg` and `results.json`. A failing run or scenario is reported,
 * never fatal; every child is killed and the temp dir removed at the end.
 * `BENCH_ONLY=copy,read,...` runs only the named scenarios (see `ScenarioName`). Quick and
 * partial runs write to `bench/results/dev/` instead (ignored by git). `BENCH_RENDER=<results.json>`
 * renders the report and charts again from a run's raw figures, measuring nothing. The nginx
 * and segments scenarios install nginx (and aria2c) with `apt-get` when missing and this process
 * is root, and are reported as skipped (the aria2c rows alone, for aria2c) when they cannot be had.
 */
import { execFileSync, spawnSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import type { ChildOutcome, ChildSpec } from "./lib/child.js"
import { compileRunners, freePort, killAll, runChild, startDaemon, startServer } from "./lib/child.js"
import { fileSha256, makeRandomFile, remove, warm } from "./lib/files.js"
import type { BenchConfig, BenchResults, MachineInfo, VariantRuns } from "./lib/model.js"
import { summariseProfile } from "./lib/profile.js"
import {
  renderReport,
  renderRssChart,
  renderThroughputChart,
  segmentCounts,
  segmentsId,
  segmentsSkip,
  unthrottledSegmentCounts
} from "./lib/report.js"
import { MB, mbPerSec } from "./lib/stats.js"
import type { EffectJob, FaultyJob, PlainJob, StackName } from "./runners/protocol.js"

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

/** The scenarios, in the order they run; `BENCH_ONLY` picks some of them. */
type ScenarioName =
  | "copy"
  | "read"
  | "http"
  | "faulty"
  | "memory"
  | "concurrent"
  | "cli"
  | "nginx"
  | "segments"
  | "soak"
  | "profile"
  | "startup"

const quick = process.env.BENCH_QUICK === "1"
const only = process.env.BENCH_ONLY?.split(",").map((name) => name.trim())

const config: BenchConfig = quick
  ? {
    quick,
    bigSize: 128 * MiB,
    httpSize: 64 * MiB,
    smallSize: 1 * MiB,
    latencySize: 2 * MiB,
    streams: 100,
    streamSize: 4 * MiB,
    runs: 2,
    sideRuns: 1,
    concurrentRuns: 1,
    soakSmallFiles: 8,
    soakMs: 10_000,
    latencyDelayMs: 20,
    nginxSize: 32 * MiB,
    faultySize: 16 * MiB,
    faultyReads: 24,
    // Halving 32 MiB down to the CLI's default 4 MiB `--min-segment-size` still gives 8 segments.
    segmentsSize: 32 * MiB,
    segmentsLimitRate: 8 * MiB,
    segmentsRuns: 1,
    startupRuns: 3
  }
  : {
    quick,
    bigSize: 1 * GiB,
    httpSize: 256 * MiB,
    smallSize: 1 * MiB,
    latencySize: 4 * MiB,
    streams: 100,
    streamSize: 16 * MiB,
    runs: 5,
    sideRuns: 3,
    concurrentRuns: 3,
    soakSmallFiles: 8,
    soakMs: 60_000,
    latencyDelayMs: 20,
    nginxSize: 150 * MiB,
    faultySize: 32 * MiB,
    faultyReads: 24,
    segmentsSize: 96 * MiB,
    segmentsLimitRate: 8 * MiB,
    segmentsRuns: 2,
    startupRuns: 10
  }

const root = NodePath.resolve(import.meta.dirname, "..")
/** Quick and partial runs write to `results/dev/` (never committed), so they never overwrite a full run's report. */
const resultsDir = NodePath.join(root, "bench", "results", ...(quick || only !== undefined ? ["dev"] : []))
const benchStart = performance.now()

const log = (line: string) =>
  process.stderr.write(`[${((performance.now() - benchStart) / 1000).toFixed(0).padStart(4)} s] ${line}\n`)

const machineInfo = (): MachineInfo => {
  let commit = "unknown"
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"]
    }).trim()
  } catch {
    commit = "unknown"
  }
  return {
    cpus: NodeOs.cpus()[0]?.model ?? "unknown CPU",
    cores: NodeOs.cpus().length,
    memoryGb: NodeOs.totalmem() / 1e9,
    node: process.version,
    os: `${NodeOs.type()} ${NodeOs.release()}`,
    commit
  }
}

/** One variant of a scenario. */
interface Variant {
  readonly id: string
  readonly label: string
  /** Bytes one run must move. */
  readonly bytes: number
  /** How many runs: `config.runs` for the main comparisons, `config.sideRuns` for the others. */
  readonly runs: number
  /** The child to run; `scratch` is a fresh directory for this run's outputs. */
  readonly spec: (scratch: string) => ChildSpec
  /** Checks what the run left in `scratch` (and printed); a message when it is wrong. */
  readonly check?: (scratch: string, outcome: ChildOutcome) => string | undefined
}

const tmp = NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "streaming-reader-bench-"))
let runnersDir = ""

const cleanUp = () => {
  killAll()
  try {
    remove(tmp)
  } catch (error) {
    log(`could not remove ${tmp}: ${error instanceof Error ? error.message : String(error)}`)
  }
  if (runnersDir === "") return
  remove(runnersDir)
  try {
    NodeFs.rmdirSync(NodePath.dirname(runnersDir))
  } catch {
    // `node_modules/.cache` holds other tools' caches too: left as it is.
  }
}
process.on("exit", cleanUp)
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    log(`${signal}: stopping`)
    killAll()
    // The rest on the next turn: a wrapper (`tsx`) hears first that the signal is handled here.
    setImmediate(() => {
      cleanUp()
      process.exit(130)
    })
  })
}

const defaultTimeoutMs = 180_000

const plain = (job: PlainJob, nodeFlags: ReadonlyArray<string> = []): ChildSpec => ({
  args: [...nodeFlags, NodePath.join(runnersDir, "plain.js"), JSON.stringify(job)],
  cwd: root,
  timeoutMs: defaultTimeoutMs,
  expectResult: true
})

const effect = (
  job: EffectJob,
  env: Readonly<Record<string, string>> = {},
  nodeFlags: ReadonlyArray<string> = [],
  timeoutMs = defaultTimeoutMs
): ChildSpec => ({
  args: [...nodeFlags, NodePath.join(runnersDir, "effect.js"), JSON.stringify(job)],
  env,
  cwd: root,
  timeoutMs,
  expectResult: true
})

const outputSize = (expected: number) => (scratch: string) => {
  const size = NodeFs.statSync(NodePath.join(scratch, "out.bin"), { throwIfNoEntry: false })?.size
  return size === expected ? undefined : `output has ${size ?? "no"} bytes, expected ${expected}`
}

const copyJob = (src: string, scratch: string, stack: StackName = "enhanced"): EffectJob => ({
  kind: "copy",
  stack,
  src,
  out: NodePath.join(scratch, "out.bin"),
  statePath: NodePath.join(scratch, "state.db")
})

const results: BenchResults = {
  config,
  machine: machineInfo(),
  startedAt: new Date(),
  finishedAt: new Date(),
  variants: new Map(),
  profiles: [],
  scenarioErrors: [],
  skipped: [],
  durations: []
}

const summary = (outcome: ChildOutcome, variant: Variant) => {
  if (!outcome.ok) return `FAILED: ${outcome.error ?? ""}`
  const result = outcome.result
  if (result === undefined) {
    const seconds = `${(outcome.wallMs / 1000).toFixed(2)} s whole process`
    return Number.isFinite(variant.bytes)
      ? `${seconds} (${mbPerSec(variant.bytes, outcome.wallMs).toFixed(0)} MB/s, peak RSS ${
        (outcome.procPeakRss / MB).toFixed(0)
      } MB)`
      : seconds
  }
  const warm = result.warm === undefined ? "" : ` (2nd pass ${mbPerSec(result.bytes, result.warm.ms).toFixed(0)})`
  const retries = result.retries === undefined ? "" : `, ${result.retries} retries`
  return `${mbPerSec(result.bytes, result.ms).toFixed(0)} MB/s${warm}, RSS idle ${
    (result.idleRss / MB).toFixed(0)
  } MB, peak +${((result.peakRss - result.idleRss) / MB).toFixed(1)} MB${retries}, ${
    (outcome.wallMs / 1000).toFixed(1)
  } s in all`
}

/**
 * Runs the variants in rounds, alternating (A B C A B C …), each run in a fresh process; a
 * variant takes part in the first `variant.runs` rounds.
 */
const runRounds = async (scenario: string, variants: ReadonlyArray<Variant>) => {
  for (const variant of variants) {
    const entry: VariantRuns = { id: variant.id, label: variant.label, bytes: variant.bytes, outcomes: [] }
    results.variants.set(variant.id, entry)
  }
  const rounds = Math.max(0, ...variants.map((variant) => variant.runs))
  for (let round = 1; round <= rounds; round++) {
    for (const variant of variants.filter((v) => v.runs >= round)) {
      const scratch = NodeFs.mkdtempSync(NodePath.join(tmp, "run-"))
      let outcome = await runChild(variant.spec(scratch))
      if (outcome.ok) {
        const moved = outcome.result?.bytes
        const problem = moved !== undefined && Number.isFinite(variant.bytes) && moved !== variant.bytes
          ? `moved ${moved} bytes, expected ${variant.bytes}`
          : variant.check?.(scratch, outcome)
        if (problem !== undefined) outcome = { ...outcome, ok: false, error: problem }
      }
      remove(scratch)
      results.variants.get(variant.id)!.outcomes.push(outcome)
      log(`[${scenario} ${round}/${variant.runs}] ${variant.label}: ${summary(outcome, variant)}`)
    }
  }
}

/** Runs one scenario; a failure is recorded, not thrown. */
const scenario = async (name: ScenarioName, body: () => Promise<void>) => {
  if (only !== undefined && !only.includes(name)) return
  const startedAt = performance.now()
  log(`scenario ${name}`)
  try {
    await body()
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    results.scenarioErrors.push({ scenario: name, error: message })
    log(`scenario ${name} FAILED: ${message}`)
  }
  results.durations.push({ scenario: name, seconds: (performance.now() - startedAt) / 1000 })
}

/** The data files of every scenario. */
interface DataFiles {
  readonly big: string
  readonly bigSha256: string
  readonly http: string
  readonly tiny: string
  readonly latency: string
  /** Hard links to one `streamSize` file. */
  readonly streams: ReadonlyArray<string>
  /** The object of the faulty HTTP reads. */
  readonly faulty: string
  readonly faultySha256: string
  /** The object nginx serves, alone in its directory (nginx's root). */
  readonly nginx: string
  readonly nginxSha256: string
  /** The object of the segmented reads, alone in its directory (that nginx's root). */
  readonly segments: string
  readonly segmentsSha256: string
}

const makeData = async (): Promise<DataFiles> => {
  const dataDir = NodePath.join(tmp, "data")
  NodeFs.mkdirSync(dataDir)
  const wwwDir = NodePath.join(tmp, "www")
  NodeFs.mkdirSync(wwwDir)
  const at = (name: string) => NodePath.join(dataDir, name)
  const big = at("big.bin")
  const faulty = at("faulty.bin")
  const nginx = NodePath.join(wwwDir, "nginx.bin")
  const segmentsDir = NodePath.join(tmp, "www-segments")
  NodeFs.mkdirSync(segmentsDir)
  const segments = NodePath.join(segmentsDir, "segments.bin")
  const files: DataFiles = {
    big,
    bigSha256: await makeRandomFile(big, config.bigSize),
    http: at("http.bin"),
    tiny: at("tiny.bin"),
    latency: at("latency.bin"),
    streams: Array.from({ length: config.streams }, (_, i) => at(`stream-${String(i).padStart(3, "0")}.bin`)),
    faulty,
    faultySha256: await makeRandomFile(faulty, config.faultySize),
    nginx,
    nginxSha256: await makeRandomFile(nginx, config.nginxSize),
    segments,
    segmentsSha256: await makeRandomFile(segments, config.segmentsSize)
  }
  await makeRandomFile(files.http, config.httpSize)
  await makeRandomFile(files.tiny, config.smallSize)
  await makeRandomFile(files.latency, config.latencySize)
  await makeRandomFile(files.streams[0]!, config.streamSize)
  for (const link of files.streams.slice(1)) NodeFs.linkSync(files.streams[0]!, link)
  for (const path of [files.big, files.http, files.tiny, files.latency, files.streams[0]!, faulty, nginx, segments]) {
    await warm(path)
  }
  return files
}

const flags = [
  ["no-adaptive", "ADAPTIVE_CHUNKS", "adaptive chunks"],
  ["no-budget", "MEMORY_BUDGET", "memory budget"],
  ["no-backpressure", "BACKPRESSURE", "backpressure"],
  ["no-rate", "RATE_LIMIT", "rate limiter"],
  ["no-retries", "RETRIES", "retries"],
  ["no-checkpoints", "CHECKPOINTS", "checkpoints"]
] as const

const copyScenario = (files: DataFiles) => {
  const size = config.bigSize
  const copy = (id: string, label: string, runs: number, spec: (scratch: string) => ChildSpec): Variant => ({
    id,
    label,
    bytes: size,
    runs,
    spec,
    check: outputSize(size)
  })
  return runRounds("copy", [
    copy(
      "copy.pipeline",
      "stream.pipeline(createReadStream, createWriteStream), defaults",
      config.runs,
      (scratch) => plain({ kind: "pipeline-copy", src: files.big, out: NodePath.join(scratch, "out.bin"), warm: true })
    ),
    copy(
      "copy.enhanced",
      "copyToFile, enhanced, all features on",
      config.runs,
      (scratch) => effect({ ...copyJob(files.big, scratch), warm: true })
    ),
    ...flags.map(([id, flag, name]) =>
      copy(
        `copy.${id}`,
        `copyToFile, enhanced, ${name} off`,
        config.sideRuns,
        (scratch) => effect(copyJob(files.big, scratch), { [`STREAMING_READER_${flag}`]: "false" })
      )
    )
  ])
}

const readScenario = (files: DataFiles) => {
  const read = (
    id: string,
    label: string,
    runs: number,
    spec: (job: EffectJob & { readonly kind: "read" }) => ChildSpec,
    options: {
      readonly reuseBuffers: boolean
      readonly stack?: StackName
      readonly chunkSize?: number
      readonly warm?: boolean
    }
  ): Variant => ({
    id,
    label,
    bytes: config.bigSize,
    runs,
    spec: () => spec({ kind: "read", stack: "enhanced", src: files.big, ...options })
  })
  const plainRead = (id: string, label: string, chunk: number): Variant => ({
    id,
    label,
    bytes: config.bigSize,
    runs: config.runs,
    spec: () => plain({ kind: "fh-read", src: files.big, chunk, warm: true })
  })
  const fixed = (job: EffectJob) => effect(job, { STREAMING_READER_ADAPTIVE_CHUNKS: "false" })
  return runRounds("read", [
    plainRead("read.fh64", "FileHandle.read loop, 64 KiB", 64 * KiB),
    plainRead("read.fh256", "FileHandle.read loop, 256 KiB", 256 * KiB),
    read("read.enhanced", "reader, enhanced, default options", config.runs, effect, {
      reuseBuffers: false,
      warm: true
    }),
    read("read.enhanced-reuse", "reader, enhanced, reuseBuffers", config.runs, effect, {
      reuseBuffers: true,
      warm: true
    }),
    {
      id: "read.platform",
      label: "@effect/platform FileSystem.stream",
      bytes: config.bigSize,
      runs: config.sideRuns,
      spec: () => effect({ kind: "platform-read", src: files.big })
    },
    read("read.basic", "reader, BasicStack (64 KiB fixed)", config.sideRuns, effect, {
      reuseBuffers: false,
      stack: "basic"
    }),
    read("read.enhanced-reuse-64k", "reader, enhanced, reuseBuffers, fixed 64 KiB", config.sideRuns, fixed, {
      reuseBuffers: true
    }),
    read("read.enhanced-reuse-256k", "reader, enhanced, reuseBuffers, fixed 256 KiB", config.sideRuns, fixed, {
      reuseBuffers: true,
      chunkSize: 256 * KiB
    })
  ])
}

const httpScenario = async (files: DataFiles) => {
  const server = await startServer([NodePath.join(runnersDir, "server.js"), NodePath.dirname(files.http)], root)
  try {
    const origin = `http://127.0.0.1:${server.port}`
    const url = `${origin}/${NodePath.basename(files.http)}`
    const read = (id: string, label: string, runs: number, reuseBuffers: boolean, stack: StackName): Variant => ({
      id,
      label,
      bytes: config.httpSize,
      runs,
      spec: () => effect({ kind: "read", stack, src: url, reuseBuffers, warm: runs === config.runs })
    })
    await runRounds("http", [
      {
        id: "http.fetch",
        label: "fetch (undici), body drained",
        bytes: config.httpSize,
        runs: config.runs,
        spec: () => plain({ kind: "fetch-read", url, warm: true })
      },
      {
        id: "http.undici",
        label: "undici.request, body drained",
        bytes: config.httpSize,
        runs: config.runs,
        spec: () => plain({ kind: "undici-read", url, warm: true })
      },
      read("http.enhanced", "reader, enhanced, default options", config.runs, false, "enhanced"),
      read("http.enhanced-reuse", "reader, enhanced, reuseBuffers", config.sideRuns, true, "enhanced"),
      {
        ...read(
          "http.enhanced-one",
          "reader, enhanced, one connection (`segments: 1`)",
          config.sideRuns,
          false,
          "enhanced"
        ),
        spec: () => effect({ kind: "read", stack: "enhanced", src: url, reuseBuffers: false, segments: 1 })
      },
      read("http.basic", "reader, BasicStack (64 KiB fixed)", config.sideRuns, false, "basic")
    ])
    const delayed = `${origin}/${NodePath.basename(files.latency)}?delayMs=${config.latencyDelayMs}`
    await runRounds("http latency", [
      {
        id: "latency.http",
        label: `reader, enhanced, HTTP with ${config.latencyDelayMs} ms per 64 KiB`,
        bytes: config.latencySize,
        runs: config.sideRuns,
        spec: () => effect({ kind: "read", stack: "enhanced", src: delayed, reuseBuffers: false })
      }
    ])
  } finally {
    server.stop()
  }
}

const memoryScenario = (files: DataFiles) =>
  runRounds("memory", [
    {
      id: "rss.copy-1mib",
      label: "copyToFile, enhanced, all features on, 1 MiB",
      bytes: config.smallSize,
      runs: config.runs,
      spec: (scratch) => effect(copyJob(files.tiny, scratch)),
      check: outputSize(config.smallSize)
    },
    {
      id: "rss.pipeline-1mib",
      label: "stream.pipeline, defaults, 1 MiB",
      bytes: config.smallSize,
      runs: config.runs,
      spec: (scratch) => plain({ kind: "pipeline-copy", src: files.tiny, out: NodePath.join(scratch, "out.bin") }),
      check: outputSize(config.smallSize)
    }
  ])

const concurrentScenario = (files: DataFiles) =>
  runRounds("concurrent", [
    {
      id: "concurrent.100",
      label: `${config.streams} concurrent streams, enhanced, default options (owned chunks)`,
      bytes: config.streams * config.streamSize,
      runs: config.concurrentRuns,
      spec: () => effect({ kind: "concurrent", sources: files.streams })
    }
  ])

const soakScenario = (files: DataFiles) =>
  runRounds("soak", [
    {
      id: "soak",
      label: `soak, ${config.soakMs / 1000} s of reads`,
      bytes: Number.NaN,
      runs: 1,
      spec: () =>
        effect(
          {
            kind: "soak",
            sources: [files.big, ...files.streams.slice(0, config.soakSmallFiles)],
            durationMs: config.soakMs
          },
          {},
          ["--expose-gc"],
          config.soakMs + 120_000
        )
    }
  ])

/** The CLI's bin, as a user runs it. */
const bin = () => NodePath.join(root, "bin", "streaming-reader.js")

/** The CLI's bundle, which the bin imports (`npm run build` writes it). */
const mainJs = () => NodePath.join(root, "dist", "programs", "main.js")

/** A run of the CLI (`node bin/streaming-reader.js …`, or another entry), timed from spawn to exit. */
const cli = (args: ReadonlyArray<string>, keepStdout = false, entry = bin()): ChildSpec => ({
  args: [entry, ...args],
  cwd: root,
  timeoutMs: defaultTimeoutMs,
  expectResult: false,
  keepStdout
})

/** Checks the CLI's `--json` line: the bytes and the sha256 of the source (none with `--no-hash`). */
const jsonSummary = (bytes: number, sha256: string | undefined) => (_: string, outcome: ChildOutcome) => {
  const line = (outcome.stdout ?? "").trim().split("\n").pop() ?? ""
  try {
    const summary = JSON.parse(line) as { readonly bytes?: number; readonly sha256?: string }
    if (summary.bytes !== bytes) return `--json says ${summary.bytes ?? "no"} bytes, expected ${bytes}`
    if (sha256 !== undefined && summary.sha256 !== sha256) {
      return `--json says sha256 ${summary.sha256 ?? "none"}, expected ${sha256}`
    }
    return undefined
  } catch {
    return `no --json line: ${line.slice(0, 200)}`
  }
}

/** Both checks in turn. */
const both = (
  first: (scratch: string, outcome: ChildOutcome) => string | undefined,
  second: (scratch: string, outcome: ChildOutcome) => string | undefined
) =>
(scratch: string, outcome: ChildOutcome) => first(scratch, outcome) ?? second(scratch, outcome)

const cliScenario = (files: DataFiles) => {
  const size = config.bigSize
  const copyArgs = (scratch: string) => [
    "read",
    files.big,
    "--out",
    NodePath.join(scratch, "out.bin"),
    "--quiet",
    "--state",
    NodePath.join(scratch, "state.db")
  ]
  return runRounds("cli", [
    {
      id: "cli.pipeline",
      label: "`stream.pipeline(createReadStream, createWriteStream)` script, defaults",
      bytes: size,
      runs: config.runs,
      spec: (scratch) => ({
        args: [NodePath.join(runnersDir, "copy-script.js"), files.big, NodePath.join(scratch, "out.bin")],
        cwd: root,
        timeoutMs: defaultTimeoutMs,
        expectResult: false
      }),
      check: outputSize(size)
    },
    {
      id: "cli.copy",
      label: "CLI `read <file> --out --quiet` (no hashing)",
      bytes: size,
      runs: config.runs,
      spec: (scratch) => cli(copyArgs(scratch)),
      check: outputSize(size)
    },
    {
      id: "cli.copy-json",
      label: "CLI `read <file> --out --quiet --json` (sha256)",
      bytes: size,
      runs: config.runs,
      spec: (scratch) => cli([...copyArgs(scratch), "--json"], true),
      check: both(outputSize(size), jsonSummary(size, files.bigSha256))
    }
  ])
}

/** Directories searched for a program besides `PATH` (nginx lives in `/usr/sbin`). */
const sbinDirs = ["/usr/local/sbin", "/usr/sbin", "/sbin"]

/** The full path of an executable program, from `PATH` and the sbin directories. */
const findProgram = (name: string): string | undefined => {
  const dirs = [...(process.env.PATH ?? "").split(NodePath.delimiter).filter((dir) => dir !== ""), ...sbinDirs]
  for (const dir of dirs) {
    const path = NodePath.join(dir, name)
    try {
      NodeFs.accessSync(path, NodeFs.constants.X_OK)
      if (NodeFs.statSync(path).isFile()) return path
    } catch {
      continue
    }
  }
  return undefined
}

/**
 * A program from its Debian package (of the same name unless `debianPackage` says otherwise):
 * found, or installed with `apt-get install -y` when this process is root (once more after
 * `apt-get update` if that fails); a reason when it cannot be had.
 */
const ensureProgram = (
  name: string,
  debianPackage = name
): { readonly path: string } | { readonly reason: string } => {
  const found = findProgram(name)
  if (found !== undefined) return { path: found }
  if (process.getuid?.() !== 0) return { reason: `${name} unavailable (not installed, and not root to install it)` }
  const aptGet = (args: ReadonlyArray<string>) => {
    log(`apt-get ${args.join(" ")}`)
    const run = spawnSync("apt-get", [...args], {
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
      stdio: "ignore",
      timeout: 180_000
    })
    return run.status === 0
  }
  if (!aptGet(["install", "-y", debianPackage])) {
    aptGet(["update"])
    aptGet(["install", "-y", debianPackage])
  }
  const installed = findProgram(name)
  if (installed === undefined) return { reason: `${name} unavailable (apt-get install failed)` }
  if (name === "nginx" && NodeFs.existsSync("/run/nginx.pid")) {
    // The package may have started the system's nginx (port 80): only ours is wanted.
    spawnSync(installed, ["-s", "quit"], { stdio: "ignore", timeout: 10_000 })
  }
  return { path: installed }
}

/**
 * An nginx configuration with every path in `dir`: one worker in the foreground, serving `wwwDir`;
 * `serverLines` go into its server block (locations).
 */
const nginxConfig = (dir: string, wwwDir: string, port: number, serverLines: ReadonlyArray<string> = []) =>
  [
    "daemon off;",
    "master_process off;",
    "worker_processes 1;",
    `pid ${dir}/nginx.pid;`,
    `error_log ${dir}/error.log warn;`,
    "events { worker_connections 256; }",
    "http {",
    "  access_log off;",
    "  default_type application/octet-stream;",
    "  sendfile on;",
    "  tcp_nopush on;",
    `  client_body_temp_path ${dir}/client_body;`,
    `  proxy_temp_path ${dir}/proxy;`,
    `  fastcgi_temp_path ${dir}/fastcgi;`,
    `  uwsgi_temp_path ${dir}/uwsgi;`,
    `  scgi_temp_path ${dir}/scgi;`,
    "  server {",
    `    listen 127.0.0.1:${port};`,
    `    root ${wwwDir};`,
    ...serverLines.map((line) => `    ${line}`),
    "  }",
    "}",
    ""
  ].join("\n")

const skip = (name: ScenarioName, reason: string) => {
  results.skipped.push({ scenario: name, reason })
  log(`scenario ${name} skipped: ${reason}`)
}

/** Starts nginx (`nginxPath`) on a free port with its own temp dir and `nginxConfig(…, wwwDir, …, serverLines)`. */
const startNginx = async (nginxPath: string, wwwDir: string, serverLines: ReadonlyArray<string> = []) => {
  const dir = NodeFs.mkdtempSync(NodePath.join(tmp, "nginx-"))
  const port = await freePort()
  const conf = NodePath.join(dir, "nginx.conf")
  NodeFs.writeFileSync(conf, nginxConfig(dir, wwwDir, port, serverLines))
  return startDaemon(nginxPath, ["-p", dir, "-c", conf, "-e", NodePath.join(dir, "error.log")], dir, port)
}

const nginxScenario = async (files: DataFiles) => {
  const nginx = ensureProgram("nginx")
  if ("reason" in nginx) return skip("nginx", nginx.reason)
  const curl = ensureProgram("curl")
  if ("reason" in curl) return skip("nginx", curl.reason)
  const server = await startNginx(nginx.path, NodePath.dirname(files.nginx))
  const port = server.port
  try {
    const url = `http://127.0.0.1:${port}/${NodePath.basename(files.nginx)}`
    const size = config.nginxSize
    await runRounds("nginx", [
      {
        id: "nginx.curl",
        label: "`curl -s -o <file> URL`",
        bytes: size,
        runs: config.runs,
        spec: (scratch) => ({
          command: curl.path,
          args: ["-s", "-f", "-o", NodePath.join(scratch, "out.bin"), url],
          cwd: root,
          timeoutMs: defaultTimeoutMs,
          expectResult: false
        }),
        check: outputSize(size)
      },
      {
        id: "nginx.cli",
        label: "CLI `read URL --out <file> --json`",
        bytes: size,
        runs: config.runs,
        spec: (scratch) =>
          cli(
            [
              "read",
              url,
              "--out",
              NodePath.join(scratch, "out.bin"),
              "--json",
              "--state",
              NodePath.join(scratch, "s.db")
            ],
            true
          ),
        check: both(outputSize(size), jsonSummary(size, files.nginxSha256))
      }
    ])
  } finally {
    server.stop()
  }
}

/** Checks the run's `out.bin`: its size and its sha256 (hashed from the file, after the run). */
const outputSha256 = (expected: number, sha256: string) => (scratch: string) => {
  const path = NodePath.join(scratch, "out.bin")
  const wrongSize = outputSize(expected)(scratch)
  if (wrongSize !== undefined) return wrongSize
  const actual = fileSha256(path)
  return actual === sha256 ? undefined : `output's sha256 is ${actual}, expected ${sha256}`
}

/** Whether this build's CLI has `read --segments` (it appears in `read --help`). */
const cliHasSegments = () => {
  const help = spawnSync(process.execPath, [mainJs(), "read", "--help"], { encoding: "utf8", timeout: 30_000 })
  return `${help.stdout ?? ""}${help.stderr ?? ""}`.includes("--segments")
}

/**
 * One object from nginx over up to N ranged connections: our CLI (`read --segments N`) against
 * `aria2c -x N -s N`, with nginx's `limit_rate` on each connection, then without it.
 */
const segmentsScenario = async (files: DataFiles) => {
  const nginx = ensureProgram("nginx")
  if ("reason" in nginx) return skip("segments", nginx.reason)
  const aria2c = ensureProgram("aria2c", "aria2")
  if ("reason" in aria2c) {
    results.skipped.push({ scenario: segmentsSkip.aria2c, reason: aria2c.reason })
    log(`segments: aria2c rows skipped: ${aria2c.reason}`)
  }
  const hasFlag = cliHasSegments()
  if (!hasFlag) {
    const reason = "`dist/programs/main.js read --help` has no `--segments`: ours ran on one connection"
    results.skipped.push({ scenario: segmentsSkip.flag, reason })
    log(`segments: ${reason}`)
  }
  const wwwDir = NodePath.dirname(files.segments)
  const rate = config.segmentsLimitRate
  const server = await startNginx(nginx.path, wwwDir, [
    `location /limited/ { alias ${wwwDir}/; limit_rate ${rate / MiB}m; }`
  ])
  try {
    const name = NodePath.basename(files.segments)
    const size = config.segmentsSize
    const check = outputSha256(size, files.segmentsSha256)
    const variants = (url: string, counts: ReadonlyArray<number>, unthrottled: boolean, prefix: string) =>
      counts.flatMap((n): Array<Variant> => [
        {
          id: segmentsId("cli", n, unthrottled),
          label: hasFlag
            ? `${prefix}CLI \`read URL --segments ${n}\``
            : `${prefix}CLI \`read URL\` for N = ${n}, without \`--segments\` (not in this build)`,
          bytes: size,
          runs: config.segmentsRuns,
          spec: (scratch) =>
            cli(
              [
                "read",
                url,
                "--out",
                NodePath.join(scratch, "out.bin"),
                ...(hasFlag ? ["--segments", String(n)] : []),
                "--json",
                "--no-hash",
                "--quiet",
                "--state",
                NodePath.join(scratch, "s.db"),
                "--restart"
              ],
              true,
              mainJs()
            ),
          check: both(check, jsonSummary(size, undefined))
        },
        ...("reason" in aria2c ? [] : [{
          id: segmentsId("aria2c", n, unthrottled),
          label: `${prefix}\`aria2c -x${n} -s${n} -k 1M\``,
          bytes: size,
          runs: config.segmentsRuns,
          spec: (scratch: string): ChildSpec => ({
            command: aria2c.path,
            args: [
              `-x${n}`,
              `-s${n}`,
              "-k",
              "1M",
              "--min-split-size=1M",
              "--file-allocation=none",
              "--allow-overwrite=true",
              "--auto-file-renaming=false",
              "-d",
              scratch,
              "-o",
              "out.bin",
              url
            ],
            cwd: root,
            timeoutMs: defaultTimeoutMs,
            expectResult: false
          }),
          check
        }])
      ])
    const origin = `http://127.0.0.1:${server.port}`
    await runRounds("segments", variants(`${origin}/limited/${name}`, segmentCounts, false, ""))
    await runRounds(
      "segments unthrottled",
      variants(`${origin}/${name}`, unthrottledSegmentCounts, true, "unthrottled: ")
    )
  } finally {
    server.stop()
  }
}

const faultyScenario = async (files: DataFiles) => {
  const server = await startServer([NodePath.join(runnersDir, "server.js"), NodePath.dirname(files.faulty)], root)
  try {
    const url = `http://127.0.0.1:${server.port}/${NodePath.basename(files.faulty)}?faults=1`
    const faulty = (id: string, label: string, reads: number): Variant => {
      const job: FaultyJob = {
        url,
        reads,
        size: config.faultySize,
        sha256: files.faultySha256,
        retries: 50,
        maxRetryDelayMs: 50
      }
      return {
        id,
        label,
        bytes: reads * config.faultySize,
        runs: config.sideRuns,
        spec: () => ({
          args: [NodePath.join(runnersDir, "faulty.js"), JSON.stringify(job)],
          cwd: root,
          timeoutMs: defaultTimeoutMs,
          expectResult: true
        })
      }
    }
    await runRounds("faulty", [
      faulty("faulty.1", "one faulty read", 1),
      faulty(`faulty.${config.faultyReads}`, `${config.faultyReads} faulty reads at once`, config.faultyReads)
    ])
  } finally {
    server.stop()
  }
}

const startupScenario = () =>
  runRounds("startup", [
    {
      id: "startup.bin",
      label: "`node bin/streaming-reader.js --help`",
      bytes: Number.NaN,
      runs: config.startupRuns,
      spec: () => cli(["--help"])
    },
    {
      id: "startup.npm",
      label: "`npm start --silent -- --help`",
      bytes: Number.NaN,
      runs: config.startupRuns,
      spec: () => ({
        command: "npm",
        args: ["start", "--silent", "--", "--help"],
        cwd: root,
        timeoutMs: defaultTimeoutMs,
        expectResult: false
      })
    }
  ])

/** Runs one job twice in one process under `node --cpu-prof` and summarises each pass. */
const profileOne = async (label: string, spec: (scratch: string, nodeFlags: ReadonlyArray<string>) => ChildSpec) => {
  const scratch = NodeFs.mkdtempSync(NodePath.join(tmp, "profile-"))
  try {
    const outcome = await runChild(spec(scratch, ["--cpu-prof", `--cpu-prof-dir=${scratch}`]))
    const result = outcome.result
    if (!outcome.ok || result === undefined) throw new Error(`${label}: ${outcome.error ?? "no result"}`)
    const file = NodeFs.readdirSync(scratch).find((name) => name.endsWith(".cpuprofile"))
    if (file === undefined) throw new Error(`${label}: no .cpuprofile written`)
    const path = NodePath.join(scratch, file)
    const passes = [{
      pass: "first pass (cold)",
      summary: summariseProfile(path, root, result.windowUs),
      mbPerSec: mbPerSec(result.bytes, result.ms)
    }]
    if (result.warm !== undefined) {
      passes.push({
        pass: "second pass (warm)",
        summary: summariseProfile(path, root, result.warm.windowUs),
        mbPerSec: mbPerSec(result.bytes, result.warm.ms)
      })
    }
    results.profiles.push({ label, passes })
    log(`[profile] ${label}: ${passes.map((p) => `${p.pass} ${p.mbPerSec.toFixed(0)} MB/s`).join(", ")}`)
  } finally {
    remove(scratch)
  }
}

const profileScenario = async (files: DataFiles) => {
  await profileOne(
    "copyToFile, enhanced, all features on",
    (scratch, flags) => effect({ ...copyJob(files.big, scratch), warm: true }, {}, flags)
  )
  await profileOne(
    "stream.pipeline copy, defaults (reference)",
    (scratch, flags) =>
      plain({ kind: "pipeline-copy", src: files.big, out: NodePath.join(scratch, "out.bin"), warm: true }, flags)
  )
  await profileOne(
    "reader, enhanced, reuseBuffers (read-only)",
    (_, flags) => effect({ kind: "read", stack: "enhanced", src: files.big, reuseBuffers: true, warm: true }, {}, flags)
  )
}

const writeResults = (final: BenchResults = { ...results, finishedAt: new Date() }) => {
  NodeFs.mkdirSync(resultsDir, { recursive: true })
  if (quick || only !== undefined) NodeFs.writeFileSync(NodePath.join(resultsDir, ".gitignore"), "*\n")
  NodeFs.writeFileSync(NodePath.join(resultsDir, "REPORT.md"), renderReport(final))
  NodeFs.writeFileSync(NodePath.join(resultsDir, "throughput.svg"), renderThroughputChart(final))
  NodeFs.writeFileSync(NodePath.join(resultsDir, "rss.svg"), renderRssChart(final))
  NodeFs.writeFileSync(
    NodePath.join(resultsDir, "results.json"),
    JSON.stringify({ ...final, variants: [...final.variants.values()] })
  )
}

/** Reads a `results.json` back (to render the report again without measuring); sizes it lacks are this run's. */
const readResults = (path: string): BenchResults => {
  const raw = JSON.parse(NodeFs.readFileSync(path, "utf8")) as
    & Omit<BenchResults, "variants" | "startedAt" | "finishedAt" | "skipped">
    & {
      readonly skipped?: BenchResults["skipped"]
      readonly variants: ReadonlyArray<VariantRuns>
      readonly startedAt: string
      readonly finishedAt: string
    }
  return {
    ...raw,
    config: { ...config, ...raw.config },
    skipped: raw.skipped ?? [],
    startedAt: new Date(raw.startedAt),
    finishedAt: new Date(raw.finishedAt),
    variants: new Map(raw.variants.map((variant) => [variant.id, variant]))
  }
}

const main = async () => {
  const render = process.env.BENCH_RENDER
  if (render !== undefined) {
    writeResults(readResults(render))
    log(`rendered ${render} into ${NodePath.relative(root, resultsDir)}/`)
    return
  }
  log(`${quick ? "QUICK" : "full"} bench in ${tmp}`)
  runnersDir = compileRunners(root)
  if (!NodeFs.existsSync(NodePath.join(root, "dist", "programs", "main.js"))) {
    throw new Error("dist/ is missing: run `npm run build` first (`npm run bench` does)")
  }
  const setupStart = performance.now()
  log("writing and caching the data files")
  const files = await makeData()
  results.durations.push({ scenario: "setup", seconds: (performance.now() - setupStart) / 1000 })
  await scenario("copy", () => copyScenario(files))
  await scenario("read", () => readScenario(files))
  await scenario("http", () => httpScenario(files))
  await scenario("faulty", () => faultyScenario(files))
  await scenario("memory", () => memoryScenario(files))
  await scenario("concurrent", () => concurrentScenario(files))
  await scenario("cli", () => cliScenario(files))
  await scenario("nginx", () => nginxScenario(files))
  await scenario("segments", () => segmentsScenario(files))
  await scenario("soak", () => soakScenario(files))
  await scenario("profile", () => profileScenario(files))
  await scenario("startup", startupScenario)
  writeResults()
  log(`done: ${NodePath.relative(root, NodePath.join(resultsDir, "REPORT.md"))}`)
}

main()
  .catch((error) => {
    log(`bench failed: ${error instanceof Error ? error.stack : String(error)}`)
    process.exitCode = 1
  })
  .finally(cleanUp)
