/**
 * The progress bar of a copy on a terminal: one bar per source in a `cli-progress` MultiBar,
 * as the copy reports its start and each chunk written.
 */
import type { MultiBar } from "cli-progress"
import { formatSize } from "../services/ReadOptions.js"
import type { CopyProgress } from "./FileCopy.js"

/** A progress bar in `bars` for one copy. */
export const makeProgress = (bars: MultiBar): CopyProgress => {
  let bar: ReturnType<MultiBar["create"]> | undefined
  let done = 0
  return {
    start: (source, total, startOffset) => {
      done = startOffset
      bar = bars.create(total ?? 0, startOffset, { source, size: formatSize(startOffset) })
    },
    advance: (bytes) => {
      done += bytes
      bar?.update(done, { size: formatSize(done) })
    },
    stop: () => bar?.stop()
  }
}
