import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Most test files wait on child processes and sockets, not the CPU: three at once on two cores.
    maxWorkers: 3,
    minWorkers: 1
  }
})
