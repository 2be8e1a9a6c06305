/**
 * The "before" column of the report's Goals table: reference figures, not measured by the run
 * that shows them. They come from the report of 2026-11-28 (its `REPORT.md` and the project
 * README's table of that date); "now" beside them is measured in the run.
 */

/** The goals, by the key the report judges them under. */
export type GoalKey =
  | "fileRead"
  | "http"
  | "cliHash"
  | "cliCopy"
  | "nginx"
  | "segmentsSpeedup"
  | "segmentsAria2c"
  | "segmentsUnthrottled"
  | "concurrent"
  | "faulty"
  | "help"
  | "npmStart"
  | "copyRss"
  | "soak"
  | "p99"

/** Each goal's reference figure, as written in the report. */
export const before: Readonly<Record<GoalKey, string>> = {
  fileRead: "0.41×",
  http: "0.33–0.42×",
  cliHash: "0.54×",
  cliCopy: "1.0×",
  nginx: "about 0.1×",
  // The segments goals are newer than that report: one connection per object then, so no figure.
  segmentsSpeedup: "–",
  segmentsAria2c: "–",
  segmentsUnthrottled: "–",
  concurrent: "105 MB",
  faulty: "+78 MB",
  help: "0.64 s",
  npmStart: "2.3 s",
  copyRss: "+18.1 MB",
  soak: "0.059 MB/s",
  p99: "1.44 ms"
}
