/**
 * Reads a V8 `.cpuprofile` (`node --cpu-prof`): self time per function and per origin
 * (idle, GC, Effect, the platform packages, our code, Node internals).
 */
import * as NodeFs from "node:fs"

interface CallFrame {
  readonly functionName: string
  readonly url: string
  readonly lineNumber: number
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: CallFrame
  readonly children?: ReadonlyArray<number>
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly startTime: number
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

/** Self time of one function or one origin. */
export interface SelfTime {
  readonly name: string
  readonly ms: number
  /** Share of the profiled time. */
  readonly share: number
  /** The caller under which most of this self time was spent (functions only). */
  readonly caller?: string
}

/** What a profile says: its length, the busiest functions and where the time went by origin. */
export interface ProfileSummary {
  readonly totalMs: number
  readonly functions: ReadonlyArray<SelfTime>
  readonly origins: ReadonlyArray<SelfTime>
}

/** Where a function comes from, by its script URL. */
const originOf = (frame: CallFrame): string => {
  if (frame.url === "") {
    return ["(idle)", "(garbage collector)", "(program)", "(root)"].includes(frame.functionName)
      ? frame.functionName
      : "native (V8 builtins, C++)"
  }
  if (frame.url.startsWith("node:")) return "Node internals (node:*)"
  const match = /node_modules\/((?:@[^/]+\/)?[^/.][^/]*)\//.exec(frame.url)
  if (match !== null) return match[1]!
  if (frame.url.includes("/dist/")) return "streaming-reader (dist/)"
  if (frame.url.includes("streaming-reader-bench")) return "bench runner"
  return "other"
}

/** A function's name and short location: `name (file:line)`. */
const labelOf = (frame: CallFrame, root: string): string => {
  const file = frame.url
    .replace(`file://${root}/`, "")
    .replace(/^.*node_modules\//, "")
    .replace(/^.*\.cache\/streaming-reader-bench\//, "bench/runners/")
  const name = frame.functionName === "" ? "(anonymous)" : frame.functionName
  return file === "" ? name : `${name} (${file}:${frame.lineNumber + 1})`
}

const add = <K>(map: Map<K, number>, key: K, us: number) => map.set(key, (map.get(key) ?? 0) + us)

const ranked = (
  times: ReadonlyMap<string, number>,
  totalUs: number,
  limit: number,
  callers?: ReadonlyMap<string, ReadonlyMap<string, number>>
): ReadonlyArray<SelfTime> =>
  [...times]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([name, us]) => {
      const caller = [...(callers?.get(name) ?? new Map<string, number>())].sort((a, b) => b[1] - a[1])[0]?.[0]
      const time: SelfTime = { name, ms: us / 1000, share: totalUs === 0 ? 0 : us / totalUs }
      return caller === undefined ? time : { ...time, caller }
    })

/**
 * Summarises the profile at `path`: the `top` functions by self time (with their main caller)
 * and every origin, counting only samples inside `windowUs` (the work, start-up excluded).
 */
export const summariseProfile = (
  path: string,
  root: string,
  windowUs?: readonly [number, number],
  top = 15
): ProfileSummary => {
  const profile = JSON.parse(NodeFs.readFileSync(path, "utf8")) as CpuProfile
  const frames = new Map(profile.nodes.map((node) => [node.id, node.callFrame]))
  const parents = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id)
  const functions = new Map<string, number>()
  const callers = new Map<string, Map<string, number>>()
  const origins = new Map<string, number>()
  let totalUs = 0
  let at = profile.startTime
  profile.samples.forEach((id, index) => {
    const us = profile.timeDeltas[index] ?? 0
    at += us
    const frame = frames.get(id)
    if (frame === undefined) return
    if (windowUs !== undefined && (at < windowUs[0] || at > windowUs[1])) return
    totalUs += us
    const label = labelOf(frame, root)
    add(functions, label, us)
    add(origins, originOf(frame), us)
    const parent = frames.get(parents.get(id) ?? -1)
    if (parent !== undefined) {
      const byCaller = callers.get(label) ?? new Map<string, number>()
      callers.set(label, add(byCaller, labelOf(parent, root), us))
    }
  })
  return {
    totalMs: totalUs / 1000,
    functions: ranked(functions, totalUs, top, callers),
    origins: ranked(origins, totalUs, 20)
  }
}
