/**
 * Runs the built command line as a child process, as a user would.
 */
import { spawn } from "node:child_process"
import * as NodePath from "node:path"

/** The entry point of the built command line. */
export const cliEntry = NodePath.resolve(import.meta.dirname, "../../dist/programs/main.js")

/** What a finished run printed and how it exited. */
export interface CliResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** A run of the command line started in the background. */
export interface CliProcess {
  /** The process id. */
  readonly pid: number
  /** Sends `signal` to the process. */
  readonly signal: (signal: NodeJS.Signals) => void
  /** What was printed on stderr so far. */
  readonly stderr: () => string
  /** Resolves once the process has exited and its output is closed. */
  readonly exited: Promise<CliResult>
}

/** Starts `streaming-reader <args>` without waiting for it; the caller must make it exit. */
export const startCli = (
  args: ReadonlyArray<string>,
  options: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv } = {}
): CliProcess => {
  const child = spawn(process.execPath, [cliEntry, ...args], {
    cwd: options.cwd ?? process.cwd(),
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<CliResult>((resolve, reject) => {
    child.on("error", reject)
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
  return {
    pid: child.pid!,
    signal: (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal)
    },
    stderr: () => stderr,
    exited
  }
}

/** Runs `streaming-reader <args>` to completion. */
export const runCli = (
  args: ReadonlyArray<string>,
  options: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv } = {}
): Promise<CliResult> => startCli(args, options).exited

/** The arguments of `streaming-reader read <source> --out <out> --state <state> <flags>`. */
export const readArgs = (
  source: string,
  out: string,
  state: string,
  ...flags: ReadonlyArray<string>
): ReadonlyArray<string> => ["read", source, "--out", out, "--state", state, ...flags]
