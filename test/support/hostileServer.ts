/**
 * A hostile HTTP/1.1 server on 127.0.0.1 for fuzz tests, written on raw sockets so that it can
 * break HTTP framing. It serves one fixed object (random bytes from a seed); how it answers
 * each request is drawn from a PRNG seeded with the same seed: honest 206s, whole 200s, 416s,
 * 5xx, redirects to itself, rare 404s, missing or lying Content-Range, Content-Length too short,
 * too long or missing (chunked), weak, absent or changing ETags, Last-Modified with or without a
 * later Date, truncated bodies, extra bytes past the framing, dropped connections and stalls.
 *
 * It lies only in ways a careful client can notice: a byte is never sent at a position the
 * headers give it unless it is the object's byte there, and no answer claims the object is
 * shorter than it is. So a client that finishes must have the object exactly.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import * as Net from "node:net"
import { formatContentRange, formatUnsatisfiedRange, parseRangeHeader } from "../../src/layers/sources/HttpRanges.js"

/** A seeded PRNG (mulberry32): the same seed draws the same numbers. */
export const makePrng = (seed: number) => {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  /** An integer in [min, max]. */
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1))
  /** `true` with probability `p`. */
  const chance = (p: number) => next() < p
  /** One of the keys, drawn with the weights given. */
  const pick = <K extends string>(weights: Readonly<Record<K, number>>): K => {
    const entries = Object.entries(weights) as Array<[K, number]>
    let roll = next() * entries.reduce((sum, [, w]) => sum + w, 0)
    for (const [key, weight] of entries) {
      roll -= weight
      if (roll < 0) return key
    }
    return entries[entries.length - 1]![0]
  }
  return { next, int, chance, pick }
}

/** The object a seed stands for: a few hundred KiB of random bytes. */
export const hostileObject = (seed: number): Uint8Array => {
  const prng = makePrng(seed ^ 0x5bd1e995)
  const out = new Uint8Array(prng.int(100 * 1024, 400 * 1024))
  for (let i = 0; i < out.length; i += 4) {
    const word = Math.floor(prng.next() * 4294967296)
    out[i] = word & 0xff
    out[i + 1] = (word >>> 8) & 0xff
    out[i + 2] = (word >>> 16) & 0xff
    out[i + 3] = (word >>> 24) & 0xff
  }
  return out
}

/** What the server did with one request, for the report of a failing seed. */
export interface HostileAnswer {
  readonly request: string
  readonly answer: string
}

/** A running hostile server. */
export interface HostileServer {
  /** The seed of the object and of the schedule. */
  readonly seed: number
  /** The object served. */
  readonly object: Uint8Array
  /** The object's URL, its last path segment `o<seed>.bin`. */
  readonly url: string
  /** Every request and how it was answered, oldest first. */
  readonly answers: () => ReadonlyArray<HostileAnswer>
}

interface Request {
  readonly method: string
  readonly path: string
  readonly headers: Readonly<Record<string, string>>
}

// Reads one request head from the socket; `undefined` when the peer closes first.
const readRequest = (socket: Net.Socket, onRequest: (request: Request) => void) => {
  let buffered = ""
  const onData = (data: Buffer) => {
    buffered += data.toString("latin1")
    const end = buffered.indexOf("\r\n\r\n")
    if (end === -1) return
    socket.off("data", onData)
    const [line = "", ...lines] = buffered.slice(0, end).split("\r\n")
    const [method = "", path = ""] = line.split(" ")
    const headers: Record<string, string> = {}
    for (const header of lines) {
      const colon = header.indexOf(":")
      if (colon > 0) headers[header.slice(0, colon).trim().toLowerCase()] = header.slice(colon + 1).trim()
    }
    onRequest({ method, path, headers })
  }
  socket.on("data", onData)
}

/** Starts a hostile server for `seed` on 127.0.0.1; it closes (every socket destroyed) with the scope. */
export const makeHostileServer = (seed: number): Effect.Effect<HostileServer, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<{ readonly server: HostileServer; readonly close: () => Promise<void> }>((resume) => {
      const object = hostileObject(seed)
      const size = object.length
      const prng = makePrng(seed)
      const path = `/o${seed}.bin`
      const answers: Array<HostileAnswer> = []
      const sockets = new Set<Net.Socket>()

      // Fixed for the schedule: which validators the object has.
      const etagMode = prng.pick({ strong: 4, weak: 2, none: 2 })
      const modified = Date.UTC(2024, 0, 1) + prng.int(0, 1e9) * 1000
      const lastModified = prng.chance(0.7) ? new Date(modified).toUTCString() : undefined
      const dateMode = prng.pick({ later: 3, same: 1, none: 1 })
      let version = 1
      const etag = () => etagMode === "none" ? undefined : `${etagMode === "weak" ? "W/" : ""}"v${version}-${seed}"`

      const validatorHeaders = (): Array<[string, string]> => {
        const headers: Array<[string, string]> = []
        const tag = etag()
        if (tag !== undefined) headers.push(["ETag", tag])
        if (lastModified !== undefined) headers.push(["Last-Modified", lastModified])
        if (dateMode !== "none") {
          headers.push(["Date", new Date(dateMode === "later" ? modified + 86_400_000 : modified).toUTCString()])
        }
        return headers
      }

      const head = (status: number, reason: string, headers: ReadonlyArray<readonly [string, string | number]>) =>
        `HTTP/1.1 ${status} ${reason}\r\n${
          headers.map(([name, value]) => `${name}: ${value}\r\n`).join("")
        }Connection: close\r\n\r\n`

      const answer = (socket: Net.Socket, request: Request) => {
        const log = (text: string) =>
          answers.push({
            request: `${request.method} ${request.path} range=${request.headers["range"] ?? "-"} if-range=${
              request.headers["if-range"] ?? "-"
            }`,
            answer: text
          })
        const finish = (text: string, data: string | Uint8Array) => {
          log(text)
          socket.end(data)
        }
        if (!request.path.startsWith(path)) {
          return finish("404 (wrong path)", head(404, "Not Found", [["Content-Length", 0]]))
        }
        if (prng.chance(0.03)) version += 1 // a new ETag for the same bytes

        const kind = prng.pick({ serve: 80, status416: 3, status500: 5, status503: 6, redirect: 6, notFound: 0.5 })
        if (kind === "status500" || kind === "status503") {
          const status = kind === "status500" ? 500 : 503
          return finish(`${status}`, head(status, "Unavailable", [["Content-Length", 0]]))
        }
        if (kind === "notFound") return finish("404", head(404, "Not Found", [["Content-Length", 0]]))
        if (kind === "redirect") {
          return finish("302 to itself", head(302, "Found", [["Location", path], ["Content-Length", 0]]))
        }

        const range = parseRangeHeader(request.headers["range"])
        const offset = range?.end === undefined ? range?.start : undefined
        if (kind === "status416") {
          return finish(
            `416 */${size}`,
            head(416, "Range Not Satisfiable", [["Content-Range", formatUnsatisfiedRange(size)], ["Content-Length", 0]])
          )
        }
        const ifRange = request.headers["if-range"]
        const tag = etag()
        const ifRangeHolds = ifRange === undefined ||
          (ifRange.startsWith("\"")
            ? tag !== undefined && !tag.startsWith("W/") && ifRange === tag
            : ifRange === lastModified)
        const ranged = prng.chance(0.85) && offset !== undefined && ifRangeHolds
        if (ranged && offset >= size) {
          return finish(
            `416 */${size} (at the end)`,
            head(416, "Range Not Satisfiable", [["Content-Range", formatUnsatisfiedRange(size)], ["Content-Length", 0]])
          )
        }

        // What is sent: object[start, start + length) (true bytes), framed as the headers say.
        const lie = prng.chance(0.2)
        const start = ranged ? offset : 0
        const capped = ranged && prng.chance(0.1) ? prng.int(1, size - start) : size - start
        let length = capped
        const headers: Array<[string, string | number]> = [
          ["Content-Type", "application/octet-stream"],
          ...validatorHeaders()
        ]
        const notes: Array<string> = []
        let status = 200
        if (ranged) {
          status = 206
          let claimStart = start
          let claimEnd = start + length - 1
          let claimTotal: number | undefined = size
          const rangeLie = lie ? prng.pick({ missing: 1, start: 1, end: 2, unknown: 2, total: 1, none: 2 }) : "none"
          if (rangeLie === "start") claimStart = Math.max(0, start + prng.int(-1000, 1000))
          if (rangeLie === "end") claimEnd = start + prng.int(0, length - 1)
          if (rangeLie === "unknown") claimTotal = undefined
          if (rangeLie === "total") claimTotal = size + prng.int(1, 5000)
          if (claimEnd < claimStart) claimEnd = claimStart
          const claimed = formatContentRange({ start: claimStart, end: claimEnd, total: claimTotal })
          if (rangeLie !== "missing") headers.push(["Content-Range", claimed])
          notes.push(`206 ${rangeLie === "missing" ? "no Content-Range" : claimed} sending ${start}+${length}`)
          // With the start claimed elsewhere, no byte may sit at a position it does not hold: send none.
          if (claimStart !== start) length = 0
        } else {
          notes.push(`200 sending ${length}${request.headers["range"] === undefined ? "" : " (range ignored)"}`)
        }

        // How the body is framed, and how it goes wrong.
        const framing = lie
          ? prng.pick({ exact: 2, short: status === 206 ? 2 : 0, long: 2, chunked: 2 })
          : prng.pick({ exact: 9, chunked: 1 })
        let declared = length
        if (framing === "short") declared = prng.int(0, Math.max(0, length - 1))
        if (framing === "long") declared = length + prng.int(1, 5000)
        if (framing !== "chunked") headers.push(["Content-Length", declared])
        else headers.push(["Transfer-Encoding", "chunked"])
        notes.push(framing === "chunked" ? "chunked" : `Content-Length ${declared}`)

        // Extra bytes go past the framing; with a Content-Length too long they would sit inside it.
        const fault = prng.pick({ none: 80, drop: 12, extra: framing === "long" ? 0 : 5, stall: 1.5 })
        const body = object.subarray(start, start + Math.min(length, framing === "short" ? declared : length))
        const cut = fault === "drop" || fault === "stall" ? prng.int(0, body.length) : body.length
        notes.push(fault === "none" ? "" : `${fault} at ${cut}`)
        log(notes.filter((note) => note !== "").join(", "))

        socket.write(head(status, status === 206 ? "Partial Content" : "OK", headers))
        const payload = body.subarray(0, cut)
        if (framing === "chunked") {
          if (payload.length > 0) socket.write(`${payload.length.toString(16)}\r\n`)
          if (payload.length > 0) socket.write(payload)
          if (payload.length > 0) socket.write("\r\n")
        } else {
          socket.write(payload)
        }
        if (fault === "drop") return void socket.destroy()
        if (fault === "stall") return // the client's stall timeout ends it, or the server's close
        if (framing === "chunked") socket.write("0\r\n\r\n")
        if (fault === "extra") socket.write(new Uint8Array(prng.int(1, 3000)).fill(0xee))
        socket.end()
      }

      const server = Net.createServer((socket) => {
        sockets.add(socket)
        socket.on("close", () => sockets.delete(socket))
        socket.on("error", () => socket.destroy())
        readRequest(socket, (request) => answer(socket, request))
      })
      server.on("error", (error) => resume(Effect.die(error)))
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        if (address === null || typeof address === "string") return resume(Effect.dieMessage("no TCP address"))
        const hostile: HostileServer = {
          seed,
          object,
          url: `http://127.0.0.1:${address.port}${path}`,
          answers: () => answers.slice()
        }
        const close = () =>
          new Promise<void>((done) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => done())
          })
        resume(Effect.succeed({ server: hostile, close }))
      })
    }),
    ({ close }) => Effect.promise(close)
  ).pipe(Effect.map(({ server }) => server))
