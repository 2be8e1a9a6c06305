/**
 * The `demo` command (and `npm start`): runs the demo of `layers/Demo.ts` and exits 0 when the
 * copy's sha256 matches the server's.
 */
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { errorLine, exitCodeFor } from "../layers/CommandLine.js"
import type { DemoOptions } from "../layers/Demo.js"
import { demo } from "../layers/Demo.js"

/** Runs the demo; returns the exit code: 0 when the copy's sha256 matches the server's. */
export const runDemo = (options: DemoOptions = {}) =>
  demo(options).pipe(
    Effect.map((report) => report.exitCode),
    Effect.catchAll((error) => Effect.as(Console.error(`streaming-reader: ${errorLine(error)}`), exitCodeFor(error)))
  )
