/**
 * The file destination: where a copy writes. It writes into a partial file beside the output,
 * holds a lock so there is one writer per output, and renames the partial file into place only
 * when the copy is complete and verified.
 */

/** The partial file of an output `<out>` is `<out>.partial`. */
export const partialSuffix = ".partial"

/** The lock of an output `<out>` is `<out>.lock`: the process that writes it. */
export const lockSuffix = ".lock"
