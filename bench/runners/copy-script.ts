/**
 * The copy a user would write without the library, as a whole program: `stream.pipeline` of a
 * `createReadStream` into a `createWriteStream`, at Node's defaults. Timed by the parent from
 * spawn to exit, like the CLI, so both sides pay for their start-up.
 * Usage: `node bench/runners/copy-script.js <src> <out>`.
 */
import * as NodeFs from "node:fs"
import { pipeline } from "node:stream/promises"

const [src, out] = process.argv.slice(2)
if (src === undefined || out === undefined) throw new Error("usage: copy-script.js <src> <out>")
await pipeline(NodeFs.createReadStream(src), NodeFs.createWriteStream(out))
