/**
 * Temporary directories and deterministic test data.
 */
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"

/** A temporary directory removed with the scope. */
export const tempDir = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "streaming-reader-"))),
  (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
)

/** Deterministic pseudo-random bytes (xorshift), the same for the same seed. */
export const testBytes = (length: number, seed = 1): Uint8Array => {
  const out = new Uint8Array(length)
  let x = seed >>> 0 || 1
  for (let i = 0; i < length; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
  }
  return out
}

/** Writes `bytes` to `name` in `dir` and returns the path. */
export const writeFile = (dir: string, name: string, bytes: Uint8Array) => {
  const path = NodePath.join(dir, name)
  NodeFs.writeFileSync(path, bytes)
  return path
}

/** How many of this process's file descriptors are open on `path` (Linux). */
export const fdsOn = (path: string) => {
  const target = NodeFs.realpathSync(path)
  let count = 0
  for (const fd of NodeFs.readdirSync("/proc/self/fd")) {
    try {
      if (NodeFs.readlinkSync(`/proc/self/fd/${fd}`) === target) count++
    } catch {
      // closed while we looked
    }
  }
  return count
}

/** The number of fds open on `path` once it is 0, or whatever it is after `timeoutMs` (release is async). */
export const fdsClosedOn = (path: string, timeoutMs = 2_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    while (fdsOn(path) > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5))
    return fdsOn(path)
  })

/** Concatenates chunks into one array. */
export const concat = (chunks: Iterable<Uint8Array>) => Buffer.concat(Array.from(chunks, (c) => Buffer.from(c)))
