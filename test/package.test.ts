import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as NodePath from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { promisify } from "node:util"

const root = fileURLToPath(new URL("..", import.meta.url))

const run = (command: string, args: ReadonlyArray<string>) =>
  Effect.promise(() => promisify(execFile)(command, [...args], { cwd: root, maxBuffer: 16 * 1024 * 1024 }))

/** The files `npm pack` would put in the tarball. */
const packedFiles = run("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"]).pipe(
  Effect.map(({ stdout }) => {
    const [pack] = JSON.parse(stdout) as ReadonlyArray<{ readonly files: ReadonlyArray<{ readonly path: string }> }>
    return pack!.files.map((file) => file.path)
  })
)

const exported = ["StreamingReader", "readToFile", "createReader", "toReadable", "toWebStream", "EnhancedStack"]

describe("package", () => {
  it.effect("npm pack ships the build, the bin, the README and no sources or tests", () =>
    Effect.gen(function*() {
      const files = yield* packedFiles
      for (
        const file of [
          "dist/index.js",
          "dist/index.d.ts",
          "dist/programs/main.js",
          "bin/streaming-reader.js",
          "README.md",
          "package.json"
        ]
      ) {
        assert.include(files, file)
      }
      assert.deepStrictEqual(files.filter((file) => file.startsWith("src/") || file.startsWith("test/")), [])
      assert.deepStrictEqual(files.filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts")), [])
    }))

  it.effect("the built entry point exports the public API", () =>
    Effect.gen(function*() {
      const entry = pathToFileURL(NodePath.join(root, "dist", "index.js")).href
      const module = (yield* Effect.promise(() => import(entry))) as Record<string, unknown>
      for (const name of exported) assert.isDefined(module[name], name)
      assert.strictEqual(typeof module["readToFile"], "function")
      assert.strictEqual(typeof module["createReader"], "function")
    }))

  it.effect("the exports map resolves the package by its name", () =>
    Effect.gen(function*() {
      const script = `const m = await import("streaming-reader"); console.log(JSON.stringify(Object.keys(m)))`
      const { stdout } = yield* run(process.execPath, ["--input-type=module", "-e", script])
      const names = JSON.parse(stdout) as ReadonlyArray<string>
      for (const name of exported) assert.include(names, name)
      const { stdout: resolved } = yield* run(process.execPath, [
        "--input-type=module",
        "-e",
        `console.log(import.meta.resolve("streaming-reader"))`
      ])
      assert.strictEqual(resolved.trim(), pathToFileURL(NodePath.join(root, "dist", "index.js")).href)
    }))
})
