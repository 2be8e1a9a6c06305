/**
 * The `demo` command (and `npm start`): runs the demo of `layers/Demo.ts` and exits 0 when the
 * copy's sha256 matches the server's.
 */
import { HelpDoc, Options, ValidationError } from "@effect/cli"
import { Console, Effect } from "effect"
import { errorLine, exitCodeFor } from "../layers/CommandLine.js"
import type { DemoOptions } from "../layers/Demo.js"
import { demo } from "../layers/Demo.js"
import { GiB, MiB, parseSize } from "../services/ReadOptions.js"

/** Runs the demo; returns the exit code: 0 when the copy's sha256 matches the server's. */
export const runDemo = (options: DemoOptions = {}) =>
  demo(options).pipe(
    Effect.map((report) => report.exitCode),
    Effect.catchAll((error) => Effect.as(Console.error(`streaming-reader: ${errorLine(error)}`), exitCodeFor(error)))
  )

/** The options of `demo`. */
export const demoConfig = {
  size: Options.text("size").pipe(
    Options.withDefault("256MiB"),
    Options.withDescription("size of the object served and copied, 1MiB to 64GiB (default 256MiB)"),
    Options.mapEffect((text) => {
      const bytes = parseSize(text)
      return bytes === undefined || bytes < 1 * MiB || bytes > 64 * GiB
        ? Effect.fail(ValidationError.invalidValue(HelpDoc.p(`--size: not a size from 1MiB to 64GiB: ${text}`)))
        : Effect.succeed(bytes)
    })
  )
}
