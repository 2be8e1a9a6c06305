/**
 * Child processes: every variant runs in a fresh process (`node`, or another program such as
 * `curl` or `npm`). Runners are transpiled once (no `tsx` loader in the children: it costs about
 * a second of start-up per process), each child is timed from spawn to exit, its RSS is also
 * sampled from `/proc` (for the CLI, which prints no figures), and every child still alive
 * (servers included) is killed by `killAll`.
 */
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodeNet from "node:net"
import * as NodePath from "node:path"
import ts from "typescript"
import type { RunnerResult } from "../runners/protocol.js"
import { errorPrefix, resultPrefix, sampleEveryMs } from "../runners/protocol.js"

const live = new Set<ChildProcess>()

/** Kills (SIGKILL) every child still running. */
export const killAll = (): void => {
  for (const child of live) child.kill("SIGKILL")
  live.clear()
}

/**
 * Transpiles `bench/runners/*.ts` into `node_modules/.cache/streaming-reader-bench` (so bare
 * imports such as `effect` resolve from the project) and returns that directory.
 */
export const compileRunners = (root: string): string => {
  const from = NodePath.join(root, "bench", "runners")
  const to = NodePath.join(root, "node_modules", ".cache", "streaming-reader-bench")
  NodeFs.rmSync(to, { recursive: true, force: true })
  NodeFs.mkdirSync(to, { recursive: true })
  NodeFs.writeFileSync(NodePath.join(to, "package.json"), "{ \"type\": \"module\" }\n")
  for (const name of NodeFs.readdirSync(from).filter((file) => file.endsWith(".ts"))) {
    const output = ts.transpileModule(NodeFs.readFileSync(NodePath.join(from, name), "utf8"), {
      fileName: name,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, sourceMap: false }
    })
    NodeFs.writeFileSync(NodePath.join(to, name.replace(/\.ts$/, ".js")), output.outputText)
  }
  return to
}

/** The environment of a child: ours without any `STREAMING_READER_*` flag, plus `extra`. */
const childEnv = (extra: Readonly<Record<string, string>>): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (!name.startsWith("STREAMING_READER_") && name !== "NODE_OPTIONS") env[name] = value
  }
  return { ...env, ...extra }
}

/** Resident set size of a live process from `/proc/<pid>/status`, in bytes; 0 when unknown. */
const procRss = (pid: number): number => {
  try {
    const match = /VmRSS:\s+(\d+)\s+kB/.exec(NodeFs.readFileSync(`/proc/${pid}/status`, "utf8"))
    return match === null ? 0 : Number(match[1]) * 1024
  } catch {
    return 0
  }
}

/** How to run one child. */
export interface ChildSpec {
  /** The program to run, looked up in `PATH`; this process's `node` when absent. */
  readonly command?: string
  /** Arguments to the program. */
  readonly args: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  readonly cwd: string
  readonly timeoutMs: number
  /** Whether the child prints a `BENCH_RESULT` line (runners) or not (the CLI). */
  readonly expectResult: boolean
  /** Keep what the child printed on stdout in the outcome (the CLI's `--json` line). */
  readonly keepStdout?: boolean
}

/** How one child went. */
export interface ChildOutcome {
  readonly ok: boolean
  readonly error?: string
  /** Spawn to exit, in milliseconds. */
  readonly wallMs: number
  /** Highest RSS the parent saw in `/proc` (every 50 ms), in bytes. */
  readonly procPeakRss: number
  readonly result?: RunnerResult
  /** What the child printed on stdout, when the spec asked to keep it. */
  readonly stdout?: string
}

const tail = (text: string, lines: number) => text.trim().split("\n").slice(-lines).join(" | ").slice(0, 600)
const head = (text: string, lines: number) => text.trim().split("\n").slice(0, lines).join(" | ").slice(0, 600)

/** Runs one child to its end (or kills it at the timeout) and reads its result line. */
export const runChild = (spec: ChildSpec): Promise<ChildOutcome> =>
  new Promise((resolve) => {
    const startedAt = performance.now()
    const child = spawn(spec.command ?? process.execPath, [...spec.args], {
      cwd: spec.cwd,
      env: childEnv(spec.env ?? {}),
      stdio: ["ignore", "pipe", "pipe"]
    })
    live.add(child)
    let stdout = ""
    let stderr = ""
    let procPeakRss = 0
    let timedOut = false
    child.stdout.setEncoding("utf8").on("data", (data: string) => void (stdout += data))
    child.stderr.setEncoding("utf8").on("data", (data: string) => void (stderr = (stderr + data).slice(-20_000)))
    const sampler = setInterval(() => {
      if (child.pid !== undefined) procPeakRss = Math.max(procPeakRss, procRss(child.pid))
    }, sampleEveryMs)
    const timer = setTimeout(() => {
      timedOut = true
      child.kill("SIGKILL")
    }, spec.timeoutMs)
    const finish = (outcome: Omit<ChildOutcome, "wallMs" | "procPeakRss">) => {
      clearInterval(sampler)
      clearTimeout(timer)
      live.delete(child)
      const wallMs = performance.now() - startedAt
      resolve({ ...outcome, wallMs, procPeakRss, ...(spec.keepStdout === true ? { stdout } : {}) })
    }
    child.on("error", (error) => finish({ ok: false, error: `spawn failed: ${error.message}` }))
    child.on("close", (code, signal) => {
      const lines = stdout.split("\n")
      const resultLine = lines.find((line) => line.startsWith(resultPrefix))
      const errorLine = lines.find((line) => line.startsWith(errorPrefix))
      if (timedOut) return finish({ ok: false, error: `timed out after ${spec.timeoutMs / 1000} s` })
      if (errorLine !== undefined) {
        const { error } = JSON.parse(errorLine.slice(errorPrefix.length)) as { readonly error: string }
        return finish({ ok: false, error: head(error, 2) })
      }
      if (code !== 0) {
        return finish({ ok: false, error: `exit ${code ?? signal}: ${tail(stderr, 4) || tail(stdout, 4)}` })
      }
      if (!spec.expectResult) return finish({ ok: true })
      if (resultLine === undefined) return finish({ ok: false, error: `no result line: ${tail(stderr, 4)}` })
      finish({ ok: true, result: JSON.parse(resultLine.slice(resultPrefix.length)) as RunnerResult })
    })
  })

/** A long-running child (the HTTP server) that announced its port. */
export interface Server {
  readonly port: number
  readonly stop: () => void
}

/** Starts a child that prints `listening <port>` once ready; fails after `timeoutMs`. */
export const startServer = (args: ReadonlyArray<string>, cwd: string, timeoutMs = 20_000): Promise<Server> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...args], { cwd, env: childEnv({}), stdio: ["ignore", "pipe", "pipe"] })
    live.add(child)
    let stdout = ""
    let stderr = ""
    const stop = () => {
      child.kill("SIGKILL")
      live.delete(child)
    }
    const timer = setTimeout(() => {
      stop()
      reject(new Error(`server did not start: ${tail(stderr, 4)}`))
    }, timeoutMs)
    child.stderr.setEncoding("utf8").on("data", (data: string) => void (stderr = (stderr + data).slice(-20_000)))
    child.stdout.setEncoding("utf8").on("data", (data: string) => {
      stdout += data
      const match = /listening (\d+)/.exec(stdout)
      if (match !== null) {
        clearTimeout(timer)
        resolve({ port: Number(match[1]), stop })
      }
    })
    child.on("close", (code) => {
      live.delete(child)
      clearTimeout(timer)
      reject(new Error(`server exited (${code}): ${tail(stderr, 4)}`))
    })
  })

/** A free TCP port on 127.0.0.1 (free when asked; the caller binds it right after). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const probe = NodeNet.createServer()
    probe.once("error", reject)
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      probe.close(() => resolve(port))
    })
  })

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`; fails after `timeoutMs` or once `alive` is false. */
const listening = (port: number, timeoutMs: number, alive: () => boolean): Promise<void> => {
  const deadline = performance.now() + timeoutMs
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const socket = NodeNet.connect(port, "127.0.0.1")
      socket.once("connect", () => {
        socket.destroy()
        resolve()
      })
      socket.once("error", () => {
        socket.destroy()
        if (!alive() || performance.now() > deadline) reject(new Error(`nothing listens on port ${port}`))
        else setTimeout(attempt, 50)
      })
    }
    attempt()
  })
}

/**
 * Starts a long-running program (nginx in the foreground) that listens on `port` once ready;
 * it is killed by `stop` or by `killAll`. Fails when it exits or does not listen in time.
 */
export const startDaemon = async (
  command: string,
  args: ReadonlyArray<string>,
  cwd: string,
  port: number,
  timeoutMs = 20_000
): Promise<Server> => {
  const child = spawn(command, [...args], { cwd, env: childEnv({}), stdio: ["ignore", "ignore", "pipe"] })
  live.add(child)
  let stderr = ""
  child.stderr.setEncoding("utf8").on("data", (data: string) => void (stderr = (stderr + data).slice(-20_000)))
  const stop = () => {
    child.kill("SIGKILL")
    live.delete(child)
  }
  const exited = new Promise<never>((_, reject) => {
    child.once("error", (error) => reject(new Error(`${command} did not start: ${error.message}`)))
    child.once("exit", (code, signal) => {
      live.delete(child)
      reject(new Error(`${command} exited (${code ?? signal}): ${tail(stderr, 4)}`))
    })
  })
  exited.catch(() => undefined)
  try {
    await Promise.race([listening(port, timeoutMs, () => child.exitCode === null && child.signalCode === null), exited])
  } catch (error) {
    stop()
    throw error
  }
  return { port, stop }
}
