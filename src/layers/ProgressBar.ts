/**
 * The progress bar of a copy on a terminal: one bar per source in a `cli-progress` MultiBar,
 * as the copy reports its start and each chunk written, with the rate over the last seconds
 * and the connections a read over segments uses.
 */
import type { MultiBar } from "cli-progress"
import { formatSize } from "../services/ReadOptions.js"
import type { CopyProgress } from "./FileCopy.js"

/** The rate shown is over about this many milliseconds. */
const rateWindowMs = 3_000

/** A progress bar in `bars` for one copy; `now` is the clock in milliseconds. */
export const makeProgress = (bars: MultiBar, now: () => number = Date.now): CopyProgress => {
  let bar: ReturnType<MultiBar["create"]> | undefined
  let done = 0
  let connections = ""
  /** Recent (time, bytes done) samples, oldest first. */
  const samples: Array<{ readonly at: number; readonly done: number }> = []
  const rate = () => {
    const first = samples[0]
    const last = samples[samples.length - 1]
    if (first === undefined || last === undefined || last.at <= first.at) return "-"
    return `${formatSize(((last.done - first.done) * 1000) / (last.at - first.at))}/s`
  }
  return {
    start: (source, total, startOffset, segments = 1) => {
      done = startOffset
      connections = segments > 1 ? ` (${segments} connections)` : ""
      samples.push({ at: now(), done })
      bar = bars.create(total ?? 0, startOffset, { source, size: formatSize(startOffset), rate: "-", connections })
    },
    advance: (bytes) => {
      done += bytes
      const at = now()
      samples.push({ at, done })
      while (samples.length > 2 && samples[0]!.at < at - rateWindowMs) samples.shift()
      bar?.update(done, { size: formatSize(done), rate: rate(), connections })
    },
    stop: () => bar?.stop()
  }
}
