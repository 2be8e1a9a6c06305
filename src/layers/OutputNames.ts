/**
 * Output names under `--out-dir`: one file name per source, taken from its path or URL, safe
 * for a file system and distinct from every other output, partial file and lock in the
 * directory. The command line and the workers name outputs with it.
 */
import * as NodePath from "node:path"
import { lockSuffix, partialSuffix } from "./FileDestination.js"

/** The longest output name: its partial file and its lock must fit in a file name (255 bytes) too. */
export const maxNameBytes = 255 - Math.max(Buffer.byteLength(partialSuffix), Buffer.byteLength(lockSuffix))

/**
 * The name of a source's output in `--out-dir`: its file name, or for a URL the last segment of its
 * path, percent-decoded (never its query or fragment); `/`, `\`, NUL and control characters become
 * `_`, an empty name, `.` or `..` becomes `index`, and it is cut to `maxNameBytes` bytes of UTF-8,
 * its extension kept.
 */
export const outputName = (source: string): string => {
  const segment = isUrl(source) ? percentDecode(lastSegment(urlPathname(source))) : NodePath.basename(source)
  const safe = segment.replace(/[/\\\u0000-\u001f\u007f]/g, "_")
  return safe === "" || safe === "." || safe === ".." ? "index" : capBytes(safe, maxNameBytes)
}

/**
 * The output names of `sources` in one directory, in order: distinct, and none the partial file or
 * lock of another. A name taken already gets `.1`, `.2`, … (the first source keeps it), so the same
 * command always gives the same names.
 */
export const outputNames = (sources: ReadonlyArray<string>): ReadonlyArray<string> => {
  const taken = new Set<string>()
  const helpers = (name: string) => [name + partialSuffix, name + lockSuffix]
  const clashes = (name: string) =>
    taken.has(name) ||
    helpers(name).some((helper) => taken.has(helper)) ||
    [...taken].some((other) => helpers(other).includes(name))
  return sources.map((source) => {
    const base = outputName(source)
    let name = base
    for (let n = 1; clashes(name); n++) {
      const suffix = `.${n}`
      name = capBytes(base, maxNameBytes - Buffer.byteLength(suffix)) + suffix
    }
    taken.add(name)
    return name
  })
}

const isUrl = (source: string) => /^https?:\/\//i.test(source)

const urlPathname = (url: string) => {
  try {
    return new URL(url).pathname
  } catch {
    return url.replace(/^https?:\/\/[^/?#]*/i, "").replace(/[?#].*$/s, "")
  }
}

/** The last non-empty `/`-separated segment of a path ("" when there is none). */
const lastSegment = (path: string) => path.split("/").filter((segment) => segment !== "").pop() ?? ""

/** Decodes each run of percent escapes that is valid UTF-8; any other text is kept as it is. */
const percentDecode = (text: string) =>
  text.replace(/(?:%[0-9a-f]{2})+/gi, (run) => {
    try {
      return decodeURIComponent(run)
    } catch {
      return run
    }
  })

/** `name` cut to at most `max` bytes of UTF-8 on a character boundary, its extension kept when it is short. */
const capBytes = (name: string, max: number): string => {
  if (Buffer.byteLength(name) <= max) return name
  const extension = NodePath.extname(name)
  const extensionBytes = Buffer.byteLength(extension)
  return extension !== "" && extensionBytes <= max / 4
    ? cutBytes(name.slice(0, -extension.length), max - extensionBytes) + extension
    : cutBytes(name, max)
}

const cutBytes = (text: string, max: number) => {
  let out = ""
  let bytes = 0
  for (const char of text) {
    bytes += Buffer.byteLength(char)
    if (bytes > max) break
    out += char
  }
  return out
}
